//! What every simulated user did and saw, in one place (one process, so one clock): sends and
//! their acks, every delivered event, signals, counters and errors. The final figures are
//! computed from it by `report.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::stats::{Arrival, Latencies, SeqLog, Series};

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One composed message, by client_msg_id.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub sender: usize,
    pub channel: usize,
    pub first_sent: Instant,
    /// Server message id and seq, once acknowledged.
    pub acked: Option<(String, i64)>,
    /// Users the body mentions (members of the channel).
    pub mentions: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Signal {
    pub to_user: usize,
    pub from_user: usize,
    pub kind: String,
    pub sent_at_s: f64,
    pub acked: bool,
    pub received_by: Option<usize>,
}

/// A reconnect: the socket was lost and every channel was subscribed again.
#[derive(Debug, Clone)]
pub struct Resume {
    pub user: usize,
    pub lost_at_s: f64,
    pub resume_ms: f64,
    pub reason: String,
}

#[derive(Default)]
pub struct Inner {
    pub sends: HashMap<String, SentMessage>,
    pub logs: HashMap<(usize, usize), SeqLog>,
    /// (recipient, client_msg_id) of every `message_new` received.
    pub received: HashSet<(usize, String)>,
    pub delivery_latency: Latencies,
    pub ack_latency: Latencies,
    pub deliveries: Series,
    pub acks: Series,
    pub errors_series: Series,
    pub errors: BTreeMap<String, u64>,
    pub counters: BTreeMap<&'static str, u64>,
    pub signals: HashMap<String, Signal>,
    pub misaddressed_signals: u64,
    pub resumes: Vec<Resume>,
    /// Meetings created: id, offline invitees, seconds since the start.
    pub meeting_ids: Vec<(String, Vec<usize>, f64)>,
}

pub struct Recorder {
    pub start: Instant,
    pub start_unix_ms: u64,
    inner: Mutex<Inner>,
}

impl Recorder {
    pub fn new() -> Self {
        Self { start: Instant::now(), start_unix_ms: unix_ms(), inner: Mutex::default() }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("recorder lock")
    }

    pub fn since_start(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    pub fn count(&self, counter: &'static str) {
        *self.lock().counters.entry(counter).or_default() += 1;
    }

    /// An error answer or failure, as `<what>:<code>`.
    pub fn error(&self, what: &str, code: &str) {
        let at = self.since_start(Instant::now());
        let mut inner = self.lock();
        *inner.errors.entry(format!("{what}:{code}")).or_default() += 1;
        inner.errors_series.add(at);
    }

    pub fn composed(&self, client_msg_id: &str, message: SentMessage) {
        self.lock().sends.insert(client_msg_id.to_owned(), message);
    }

    pub fn acked(&self, client_msg_id: &str, message_id: String, seq: i64) {
        let now = Instant::now();
        let at = self.since_start(now);
        let mut inner = self.lock();
        let Some(sent) = inner.sends.get_mut(client_msg_id) else { return };
        if sent.acked.is_some() {
            return;
        }
        sent.acked = Some((message_id, seq));
        let ms = now.duration_since(sent.first_sent).as_secs_f64() * 1000.0;
        inner.ack_latency.push(ms);
        inner.acks.add(at);
    }

    pub fn subscribed(&self, user: usize, channel: usize, head_seq: i64) {
        self.lock().logs.entry((user, channel)).or_default().subscribed(head_seq);
    }

    pub fn last_seq(&self, user: usize, channel: usize) -> Option<i64> {
        self.lock().logs.get(&(user, channel)).and_then(SeqLog::last_seq)
    }

    pub fn max_seq(&self, user: usize, channel: usize) -> i64 {
        self.lock().logs.get(&(user, channel)).map_or(0, SeqLog::max)
    }

    /// An `event` frame; `client_msg_id` when it is a `message_new`.
    pub fn event(&self, user: usize, channel: usize, seq: i64, client_msg_id: Option<&str>) -> Arrival {
        let now = Instant::now();
        let at = self.since_start(now);
        let mut inner = self.lock();
        let arrival = inner.logs.entry((user, channel)).or_default().on_event(seq);
        if let Some(id) = client_msg_id {
            if arrival != Arrival::Duplicate && inner.received.insert((user, id.to_owned())) {
                if let Some(sent) = inner.sends.get(id) {
                    let ms = now.duration_since(sent.first_sent).as_secs_f64() * 1000.0;
                    inner.delivery_latency.push(ms);
                    inner.deliveries.add(at);
                }
            }
        }
        arrival
    }

    pub fn signal_sent(&self, nonce: &str, from_user: usize, to_user: usize, kind: &str) {
        let sent_at_s = self.since_start(Instant::now());
        let signal = Signal { to_user, from_user, kind: kind.to_owned(), sent_at_s, acked: false, received_by: None };
        self.lock().signals.insert(nonce.to_owned(), signal);
    }

    pub fn signal_acked(&self, nonce: &str) {
        if let Some(signal) = self.lock().signals.get_mut(nonce) {
            signal.acked = true;
        }
    }

    pub fn signal_received(&self, nonce: &str, by: usize) {
        let mut inner = self.lock();
        match inner.signals.get_mut(nonce) {
            Some(signal) if signal.to_user == by && signal.received_by.is_none() => signal.received_by = Some(by),
            Some(signal) if signal.to_user == by => *inner.counters.entry("signals_duplicated").or_default() += 1,
            _ => inner.misaddressed_signals += 1,
        }
    }

    pub fn resumed(&self, user: usize, lost_at: Instant, reason: String) {
        let lost_at_s = self.since_start(lost_at);
        let resume_ms = lost_at.elapsed().as_secs_f64() * 1000.0;
        self.lock().resumes.push(Resume { user, lost_at_s, resume_ms, reason });
    }
}
