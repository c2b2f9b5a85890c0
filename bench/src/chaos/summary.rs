//! The figures of a chaos run, gathered from every client's report and the stored history,
//! and the verdict: every check that must be 0 and is not becomes one failure line.

use std::collections::{BTreeMap, HashMap};

use super::check::{self, Ack, ContentMismatch, HistoryCheck, OrderBreak, Sent, Stored};
use super::client::{ClientReport, Misdelivered};
use super::recovery::{self, Action, Episode, Recovery};

/// The figures of a run and the verdict.
#[derive(Default)]
pub struct Summary {
    pub sent: u64,
    pub acked: u64,
    pub unacked: u64,
    pub rejected: BTreeMap<String, u64>,
    pub resends: u64,
    pub message_events: u64,
    pub history: Option<HistoryCheck>,
    pub ack_conflicts: u64,
    pub ack_wrong_id: u64,
    pub order_violations: u64,
    pub duplicates: u64,
    pub gaps_seen: u64,
    pub refetches: u64,
    pub unfilled_gaps: u64,
    pub not_delivered: u64,
    pub delivered_mismatches: u64,
    pub head_regressions: u64,
    /// Stored messages whose body, sender or client_msg_id is not what was sent.
    pub history_content: Vec<ContentMismatch>,
    /// Delivered `message_new` copies that are not what was sent, with the receiver's index.
    pub delivered_content: Vec<(usize, ContentMismatch)>,
    /// A sender's message stored below one it had seen acknowledged before writing it.
    pub order_breaks: Vec<OrderBreak>,
    pub disconnects: u64,
    pub episodes: Vec<Episode>,
    /// Lost sockets never resumed, plus clients whose first subscription round never finished.
    pub never_resumed: usize,
    pub never_ready: usize,
    pub ack_latency_ms: Vec<u64>,
    pub longest_ack_pause: Option<(u64, usize, u64)>,
    pub recoveries: Vec<Recovery>,
    /// From the first action until everything worked again (see [`recovery::recovery_ms`]).
    pub recovery_ms: Option<u64>,
    pub error_frames: BTreeMap<String, u64>,
    pub connect_failures: BTreeMap<String, u64>,
    pub disconnect_reasons: BTreeMap<String, u64>,
    pub traffic_started_ms: u64,
    /// Receivers still behind their channel's head at the end, whether they noticed or not.
    pub missing: Vec<Missing>,
    /// Examples of duplicate and late events, with the receiver's index.
    pub misdelivered: Vec<(usize, Misdelivered)>,
    pub failures: Vec<String>,
}

/// One receiver still behind in one channel at the end.
pub struct Missing {
    pub user: usize,
    pub channel: usize,
    pub contiguous: i64,
    pub max_seen: i64,
    pub head: i64,
    pub missing: u64,
    pub last_url: usize,
}

/// What [`Summary::new`] reads besides the client reports.
pub struct Inputs<'a> {
    pub channels: usize,
    pub user_ids: &'a [String],
    pub history: Option<&'a Vec<Vec<Stored>>>,
    pub actions: &'a [Action],
    pub traffic_started_ms: u64,
    pub lost_clients: usize,
}

impl Summary {
    pub fn new(reports: &[ClientReport], inputs: &Inputs) -> Self {
        let channels = inputs.channels;
        let history = inputs.history;
        let acks: Vec<Ack> = reports.iter().flat_map(|r| r.acks.iter().cloned()).collect();
        let sent: HashMap<String, Sent> = reports.iter().flat_map(|r| r.sent.iter().cloned()).collect();
        let mut summary = Summary {
            acked: acks.len() as u64,
            history: history.map(|history| HistoryCheck::new(&acks, history)),
            traffic_started_ms: inputs.traffic_started_ms,
            ..Summary::default()
        };
        if let Some(history) = history {
            for (channel, messages) in history.iter().enumerate() {
                summary.history_content.extend(check::content_mismatches(&sent, inputs.user_ids, channel, messages));
            }
            summary.order_breaks = check::sender_order_breaks(&acks, history);
        } else {
            summary.order_breaks = check::sender_order_breaks(&acks, &[]);
        }
        let heads = channel_heads(channels, reports, &acks, history);
        let mut ack_times = vec![Vec::new(); channels];
        for report in reports {
            summary.add_report(report, &heads, history);
            for (channel, delivered) in report.delivered.iter().enumerate() {
                let copies = check::content_mismatches(&sent, inputs.user_ids, channel, delivered.values());
                summary.delivered_content.extend(copies.into_iter().map(|m| (report.user, m)));
            }
            for (channel, times) in report.ack_times.iter().enumerate() {
                ack_times[channel].extend(times);
            }
        }
        summary.never_ready = reports.iter().filter(|r| !r.initially_ready).count();
        summary.never_resumed =
            summary.episodes.iter().filter(|e| e.resumed_at_ms.is_none()).count() + summary.never_ready;
        for (channel, times) in ack_times.iter_mut().enumerate() {
            times.sort_unstable();
            for pair in times.windows(2) {
                let pause = pair[1] - pair[0];
                if summary.longest_ack_pause.is_none_or(|(longest, _, _)| pause > longest) {
                    summary.longest_ack_pause = Some((pause, channel, pair[0]));
                }
            }
        }
        summary.recoveries = recovery::recoveries(inputs.actions, &summary.episodes, &ack_times);
        // Receivers left behind never recovered, however quickly everything else did.
        summary.recovery_ms = recovery::recovery_ms(inputs.actions, &summary.episodes, &ack_times)
            .filter(|_| summary.missing.is_empty() && summary.never_resumed == 0);
        summary.judge(inputs.lost_clients);
        summary
    }

    /// Adds one client's counters and its receivers' state against the channel heads.
    fn add_report(&mut self, report: &ClientReport, heads: &[i64], history: Option<&Vec<Vec<Stored>>>) {
        self.unacked += report.unacked.len() as u64;
        self.sent += report.acks.len() as u64 + report.unacked.len() as u64;
        for (code, count) in &report.rejected {
            self.sent += count;
            *self.rejected.entry(code.clone()).or_default() += count;
        }
        self.resends += report.resends;
        self.message_events += report.message_events;
        self.ack_conflicts += report.ack_conflicts;
        self.ack_wrong_id += report.ack_wrong_id;
        self.refetches += report.refetches;
        for (channel, tracker) in report.trackers.iter().enumerate() {
            self.order_violations += tracker.order_violations;
            self.duplicates += tracker.duplicates;
            self.gaps_seen += tracker.gaps_seen;
            self.unfilled_gaps += tracker.unfilled_gaps();
            self.not_delivered += tracker.missing_up_to(heads[channel]) - tracker.unfilled_gaps();
            self.head_regressions += tracker.head_regressions;
            if tracker.behind(heads[channel]) {
                self.missing.push(Missing {
                    user: report.user,
                    channel,
                    contiguous: tracker.contiguous(),
                    max_seen: tracker.max_seen(),
                    head: heads[channel],
                    missing: tracker.missing_up_to(heads[channel]),
                    last_url: report.last_url,
                });
            }
            if let Some(history) = history {
                self.delivered_mismatches += check::delivered_mismatches(&report.delivered[channel], &history[channel]);
            }
        }
        self.misdelivered.extend(report.misdelivered.iter().map(|example| (report.user, example.clone())));
        self.disconnects += report.disconnect_reasons.values().sum::<u64>();
        self.episodes.extend(report.episodes.iter().cloned());
        self.ack_latency_ms.extend(&report.ack_latency_ms);
        for (from, to) in [
            (&report.error_frames, &mut self.error_frames),
            (&report.connect_failures, &mut self.connect_failures),
            (&report.disconnect_reasons, &mut self.disconnect_reasons),
        ] {
            for (key, count) in from {
                *to.entry(key.clone()).or_default() += count;
            }
        }
    }

    /// Every figure that must be 0 and is not: one failure line each, with its count.
    fn judge(&mut self, lost_clients: usize) {
        let mut fail = |count: u64, what: &str| {
            if count > 0 {
                self.failures.push(format!("{what}: {count}"));
            }
        };
        match &self.history {
            Some(history) => {
                fail(history.lost.len() as u64, "acknowledged-but-lost");
                fail(history.mismatched.len() as u64, "ack seq mismatches");
                fail(history.duplicates, "duplicates in history");
                fail(history.disorder, "history out of seq order");
            }
            None => fail(1, "history could not be fetched from any node"),
        }
        fail(self.history_content.len() as u64, "content mismatches in history (body, sender or id not as sent)");
        fail(self.delivered_content.len() as u64, "content mismatches at receivers (body, sender or id not as sent)");
        fail(self.ack_conflicts, "conflicting acks for one client_msg_id");
        fail(self.ack_wrong_id, "acks for another client_msg_id");
        fail(self.order_violations, "order violations at receivers");
        fail(self.order_breaks.len() as u64, "per-sender order broken");
        fail(self.duplicates, "duplicates at receivers");
        fail(self.unfilled_gaps, "unfilled gaps at receivers");
        fail(self.missing.len() as u64, "receivers behind at end (receiver/channel pairs)");
        fail(self.not_delivered, "not delivered at end (events)");
        fail(self.delivered_mismatches, "delivered events differing from history");
        fail(self.head_regressions, "subscribe head_seq below a seq already seen");
        fail(self.never_resumed as u64, "clients that never resumed");
        fail(lost_clients as u64, "client tasks that did not report");
    }

    /// Copies whose content differs from what was sent, stored or delivered.
    pub fn content_mismatches(&self) -> u64 {
        (self.history_content.len() + self.delivered_content.len()) as u64 + self.delivered_mismatches
    }
}

/// The head every receiver must reach, per channel: the highest seq anyone acked, stored or saw.
fn channel_heads(
    channels: usize,
    reports: &[ClientReport],
    acks: &[Ack],
    history: Option<&Vec<Vec<Stored>>>,
) -> Vec<i64> {
    let mut heads = vec![0i64; channels];
    for report in reports {
        for (channel, tracker) in report.trackers.iter().enumerate() {
            heads[channel] = heads[channel].max(tracker.max_seen());
        }
    }
    for ack in acks {
        heads[ack.channel] = heads[ack.channel].max(ack.seq);
    }
    if let Some(history) = history {
        for (channel, messages) in history.iter().enumerate() {
            heads[channel] = heads[channel].max(messages.iter().map(|m| m.seq).max().unwrap_or(0));
        }
    }
    heads
}
