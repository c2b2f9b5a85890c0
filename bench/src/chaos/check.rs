//! The pure part of the chaos checker: per-channel sequence tracking at a receiver, the
//! comparison of acknowledgements with the stored history, and recovery times per action.
//! No I/O here, so all of it is unit tested.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a receiver made of one `event` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next seq, or one that fills a hole we asked the server to refill.
    New,
    /// New, but above `max_seen + 1`: seqs were skipped. Ask for a replay from `contiguous()`.
    Jump,
    /// New, but below a seq already seen, without a replay asked for: an order violation.
    Late,
    /// Already received, and not part of a replay we asked for.
    Duplicate,
    /// Already received, inside a replay we asked for (not a fault).
    Refetched,
}

/// One receiver's view of one channel: which seqs arrived, in which order.
///
/// The receiver subscribes first with `last_seq = 0`, so it expects every seq from 1 on, each
/// exactly once, in increasing order, over any number of reconnects.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Every seq in `1..=contiguous` has arrived: the `last_seq` to resume from.
    contiguous: i64,
    /// The highest seq that arrived.
    max_seen: i64,
    /// Seqs above `contiguous + 1` that arrived (non-empty only after a jump or disorder).
    above: BTreeSet<i64>,
    /// Seqs up to this one may arrive again: we asked for a replay from `contiguous`.
    refetch_until: i64,
    /// Events that arrived (duplicates included).
    pub events: u64,
    /// New seqs that arrived after a higher one.
    pub order_violations: u64,
    /// Seqs that arrived twice without being asked for.
    pub duplicates: u64,
    /// Seqs skipped when a jump was seen (filled later or not).
    pub gaps_seen: u64,
    /// Seqs that arrived again in a replay we asked for.
    pub refetched: u64,
    /// `subscribe` answers whose `head_seq` was below what this receiver had already seen.
    pub head_regressions: u64,
}

impl SeqTracker {
    /// The `last_seq` to send with `subscribe`.
    pub fn contiguous(&self) -> i64 {
        self.contiguous
    }

    pub fn max_seen(&self) -> i64 {
        self.max_seen
    }

    /// Records one event with `seq`.
    pub fn on_event(&mut self, seq: i64) -> Seen {
        self.events += 1;
        let had = seq <= self.contiguous || self.above.contains(&seq);
        if had {
            if seq <= self.refetch_until {
                self.refetched += 1;
                return Seen::Refetched;
            }
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        let seen = if seq < self.max_seen {
            if seq <= self.refetch_until {
                Seen::New
            } else {
                self.order_violations += 1;
                Seen::Late
            }
        } else if seq > self.max_seen + 1 {
            self.gaps_seen += u64::try_from(seq - self.max_seen - 1).unwrap_or(0);
            Seen::Jump
        } else {
            Seen::New
        };
        self.max_seen = self.max_seen.max(seq);
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            while self.above.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
        } else {
            self.above.insert(seq);
        }
        seen
    }

    /// We are about to send `subscribe` with `last_seq = contiguous()`: seqs up to the highest
    /// seen may come again without being duplicates.
    pub fn resubscribing(&mut self) -> i64 {
        self.refetch_until = self.max_seen;
        self.contiguous
    }

    /// The `subscribe` answer arrived (the replay, if any, came before it).
    pub fn subscribed(&mut self, head_seq: i64) {
        if head_seq < self.max_seen {
            self.head_regressions += 1;
        }
        self.refetch_until = 0;
    }

    /// Seqs below the highest one seen that never arrived.
    pub fn unfilled_gaps(&self) -> u64 {
        u64::try_from(self.max_seen - self.contiguous - self.above.len() as i64).unwrap_or(0)
    }

    /// Seqs in `1..=head` that never arrived: unfilled gaps plus the missing tail.
    pub fn missing_up_to(&self, head: i64) -> u64 {
        let tail = u64::try_from(head - self.max_seen).unwrap_or(0);
        self.unfilled_gaps() + tail
    }
}

/// An acknowledged send: the `ok` answer's seq for a client_msg_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub channel: usize,
    pub client_msg_id: String,
    pub seq: i64,
}

/// A stored message, as `GET /v1/channels/{id}/messages` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: i64,
    pub client_msg_id: String,
}

/// The stored history against the acknowledgements.
#[derive(Debug, Default, Clone)]
pub struct HistoryCheck {
    /// Messages in the history of all channels.
    pub stored: u64,
    /// Acknowledged client_msg_ids absent from the history: must be 0.
    pub lost: Vec<Ack>,
    /// Acknowledged with one seq, stored with another: must be 0.
    pub mismatched: Vec<(Ack, i64)>,
    /// client_msg_ids stored more than once in one channel (extra copies): must be 0.
    pub duplicates: u64,
    /// History seqs that are not strictly increasing: must be 0.
    pub disorder: u64,
    /// Stored messages whose send was never acknowledged (allowed: the ack was lost).
    pub stored_unacked: u64,
}

impl HistoryCheck {
    pub fn new(acks: &[Ack], history: &[Vec<Stored>]) -> Self {
        let mut check = HistoryCheck::default();
        let mut by_id: Vec<HashMap<&str, i64>> = Vec::with_capacity(history.len());
        for messages in history {
            let mut ids = HashMap::with_capacity(messages.len());
            let mut previous = i64::MIN;
            for message in messages {
                check.stored += 1;
                if message.seq <= previous {
                    check.disorder += 1;
                }
                previous = previous.max(message.seq);
                if ids.insert(message.client_msg_id.as_str(), message.seq).is_some() {
                    check.duplicates += 1;
                }
            }
            by_id.push(ids);
        }
        let mut acked: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); history.len()];
        for ack in acks {
            let Some(ids) = by_id.get(ack.channel) else {
                check.lost.push(ack.clone());
                continue;
            };
            acked[ack.channel].insert(ack.client_msg_id.as_str());
            match ids.get(ack.client_msg_id.as_str()) {
                None => check.lost.push(ack.clone()),
                Some(&seq) if seq != ack.seq => check.mismatched.push((ack.clone(), seq)),
                Some(_) => {}
            }
        }
        for (channel, ids) in by_id.iter().enumerate() {
            check.stored_unacked += ids.keys().filter(|id| !acked[channel].contains(*id)).count() as u64;
        }
        check
    }
}

/// A receiver's `message_new` events that disagree with the stored history (another message,
/// or none, at that seq): every receiver must see the same message at the same seq.
pub fn delivered_mismatches(delivered: &BTreeMap<i64, String>, history: &[Stored]) -> u64 {
    let stored: HashMap<i64, &str> = history.iter().map(|m| (m.seq, m.client_msg_id.as_str())).collect();
    delivered.iter().filter(|(seq, id)| stored.get(*seq) != Some(&id.as_str())).count() as u64
}

/// One lost connection and its resumption.
#[derive(Debug, Clone)]
pub struct Episode {
    pub user: usize,
    /// Index into the url list of the node the socket was on.
    pub from_url: usize,
    /// Where the client resumed, if it did.
    pub to_url: Option<usize>,
    pub disconnected_at_ms: u64,
    /// When every channel was subscribed again (replay included).
    pub resumed_at_ms: Option<u64>,
    pub reason: String,
    /// Connection attempts until one succeeded.
    pub attempts: u32,
}

impl Episode {
    pub fn resume_ms(&self) -> Option<u64> {
        Some(self.resumed_at_ms?.saturating_sub(self.disconnected_at_ms))
    }
}

/// A fault injected by the scenario script, read from the `--actions` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub at_ms: u64,
    pub label: String,
}

/// Parses `<unix_ms> <label>` lines; blank lines and `#` comments are skipped.
pub fn parse_actions(text: &str) -> Vec<Action> {
    let mut actions: Vec<Action> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (at, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            Some(Action { at_ms: at.parse().ok()?, label: label.trim().to_owned() })
        })
        .collect();
    actions.sort_by_key(|action| action.at_ms);
    actions
}

/// What followed one action, until the next one.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub action: Action,
    /// Connections lost in the window.
    pub disconnected: usize,
    /// Of those, how many never resumed.
    pub unresumed: usize,
    /// From the action to the last of those clients resumed.
    pub all_resumed_after_ms: Option<u64>,
    /// The longest resume (disconnect → resubscribed) in the window.
    pub max_resume_ms: Option<u64>,
    /// The longest pause between two consecutive acks of one channel that began in the window
    /// (from [`PAUSE_LEAD_MS`] before the action to as long before the next one).
    pub longest_ack_pause_ms: Option<u64>,
}

/// A pause in acks that begins this shortly before an action is the action's (the last ack
/// before the fault came a moment before it).
pub const PAUSE_LEAD_MS: u64 = 500;

/// Recovery per action; `ack_times` are the arrival times (unix ms) of acks, per channel.
pub fn recoveries(actions: &[Action], episodes: &[Episode], ack_times: &[Vec<u64>]) -> Vec<Recovery> {
    let mut sorted_acks: Vec<Vec<u64>> = ack_times.to_vec();
    for times in &mut sorted_acks {
        times.sort_unstable();
    }
    actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            let start = action.at_ms;
            let end = actions.get(index + 1).map_or(u64::MAX, |next| next.at_ms);
            let window: Vec<&Episode> =
                episodes.iter().filter(|e| e.disconnected_at_ms >= start && e.disconnected_at_ms < end).collect();
            let unresumed = window.iter().filter(|e| e.resumed_at_ms.is_none()).count();
            let all_resumed_after_ms = if window.is_empty() || unresumed > 0 {
                None
            } else {
                window.iter().filter_map(|e| e.resumed_at_ms).max().map(|at| at.saturating_sub(start))
            };
            let max_resume_ms = window.iter().filter_map(|e| e.resume_ms()).max();
            let (from, to) = (start.saturating_sub(PAUSE_LEAD_MS), end.saturating_sub(PAUSE_LEAD_MS));
            let longest_ack_pause_ms = sorted_acks
                .iter()
                .flat_map(|times| times.windows(2))
                .filter(|pair| pair[0] >= from && pair[0] < to)
                .map(|pair| pair[1] - pair[0])
                .max();
            Recovery {
                action: action.clone(),
                disconnected: window.len(),
                unresumed,
                all_resumed_after_ms,
                max_resume_ms,
                longest_ack_pause_ms,
            }
        })
        .collect()
}

/// The median and maximum of some durations.
pub fn median_max(values: &[u64]) -> (Option<u64>, Option<u64>) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let median = if sorted.is_empty() { None } else { Some(sorted[(sorted.len() - 1) / 2]) };
    (median, sorted.last().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(tracker: &mut SeqTracker, seqs: &[i64]) -> Vec<Seen> {
        seqs.iter().map(|&seq| tracker.on_event(seq)).collect()
    }

    #[test]
    fn in_order_stream_is_clean() {
        let mut t = SeqTracker::default();
        assert!(feed(&mut t, &[1, 2, 3, 4]).iter().all(|s| *s == Seen::New));
        assert_eq!((t.contiguous(), t.max_seen(), t.unfilled_gaps(), t.missing_up_to(6)), (4, 4, 0, 2));
        assert_eq!(t.order_violations + t.duplicates + t.gaps_seen, 0);
    }

    #[test]
    fn counts_jumps_duplicates_and_late_arrivals() {
        let mut t = SeqTracker::default();
        let seen = feed(&mut t, &[1, 2, 5, 5, 3, 2]);
        assert_eq!(seen, [Seen::New, Seen::New, Seen::Jump, Seen::Duplicate, Seen::Late, Seen::Duplicate]);
        assert_eq!(t.gaps_seen, 2);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.order_violations, 1);
        assert_eq!(t.contiguous(), 3);
        assert_eq!(t.unfilled_gaps(), 1, "4 never arrived");
        assert_eq!(t.missing_up_to(7), 3);
    }

    #[test]
    fn a_requested_replay_fills_holes_without_faults() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[1, 2, 5, 6]);
        assert_eq!(t.resubscribing(), 2);
        let seen = feed(&mut t, &[3, 4, 5, 6]);
        assert_eq!(seen, [Seen::New, Seen::New, Seen::Refetched, Seen::Refetched]);
        t.subscribed(6);
        assert_eq!((t.order_violations, t.duplicates, t.refetched, t.gaps_seen), (0, 0, 2, 2));
        assert_eq!((t.contiguous(), t.unfilled_gaps()), (6, 0));
        assert_eq!(t.on_event(6), Seen::Duplicate, "after the answer, repeats are duplicates again");
    }

    #[test]
    fn resume_after_reconnect_continues_the_sequence() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[1, 2, 3]);
        assert_eq!(t.resubscribing(), 3);
        feed(&mut t, &[4, 5]);
        t.subscribed(5);
        feed(&mut t, &[6]);
        assert_eq!((t.contiguous(), t.duplicates, t.gaps_seen, t.head_regressions), (6, 0, 0, 0));
        t.subscribed(2);
        assert_eq!(t.head_regressions, 1);
    }

    fn ack(channel: usize, id: &str, seq: i64) -> Ack {
        Ack { channel, client_msg_id: id.to_owned(), seq }
    }

    fn stored(seq: i64, id: &str) -> Stored {
        Stored { seq, client_msg_id: id.to_owned() }
    }

    #[test]
    fn history_check_finds_lost_mismatched_and_duplicated() {
        let acks = [ack(0, "a", 3), ack(0, "b", 4), ack(0, "c", 5), ack(1, "d", 2)];
        let history = vec![
            vec![stored(3, "a"), stored(4, "x"), stored(6, "c"), stored(7, "x"), stored(7, "y")],
            vec![stored(2, "d")],
        ];
        let check = HistoryCheck::new(&acks, &history);
        assert_eq!(check.stored, 6);
        assert_eq!(check.lost, [ack(0, "b", 4)]);
        assert_eq!(check.mismatched, [(ack(0, "c", 5), 6)]);
        assert_eq!(check.duplicates, 1);
        assert_eq!(check.disorder, 1);
        assert_eq!(check.stored_unacked, 2, "x and y");
    }

    #[test]
    fn clean_history_passes() {
        let acks = [ack(0, "a", 1), ack(0, "b", 2)];
        let check = HistoryCheck::new(&acks, &[vec![stored(1, "a"), stored(2, "b"), stored(5, "c")]]);
        assert!(check.lost.is_empty() && check.mismatched.is_empty());
        assert_eq!((check.duplicates, check.disorder, check.stored_unacked), (0, 0, 1));
    }

    #[test]
    fn delivered_events_must_match_history() {
        let history = [stored(1, "a"), stored(3, "b")];
        let mut delivered = BTreeMap::new();
        delivered.insert(1, "a".to_owned());
        delivered.insert(3, "b".to_owned());
        assert_eq!(delivered_mismatches(&delivered, &history), 0);
        delivered.insert(4, "c".to_owned());
        delivered.insert(1, "z".to_owned());
        assert_eq!(delivered_mismatches(&delivered, &history), 2);
    }

    #[test]
    fn parses_actions_and_times_recovery() {
        let actions = parse_actions("# comment\n2000 kill -9 n2\n\n1000 start\nbad line\n5000 pause n3\n");
        assert_eq!(actions.len(), 3);
        assert_eq!(actions[1], Action { at_ms: 2000, label: "kill -9 n2".to_owned() });
        let episode = |user, at, resumed: Option<u64>| Episode {
            user,
            from_url: 1,
            to_url: resumed.map(|_| 0),
            disconnected_at_ms: at,
            resumed_at_ms: resumed,
            reason: "closed".to_owned(),
            attempts: 1,
        };
        let episodes = [episode(0, 2010, Some(2300)), episode(1, 2020, Some(2900)), episode(2, 5100, None)];
        let acks = vec![vec![1000, 1900, 1950, 2700, 2750, 4600, 6000], vec![2100, 2200]];
        let recoveries = recoveries(&actions, &episodes, &acks);
        assert_eq!(recoveries[0].disconnected, 0);
        assert_eq!(recoveries[0].all_resumed_after_ms, None);
        assert_eq!(recoveries[0].longest_ack_pause_ms, Some(900), "1000 → 1900; 1950 → 2700 is the next action's");
        assert_eq!(recoveries[1].disconnected, 2);
        assert_eq!(recoveries[1].all_resumed_after_ms, Some(900));
        assert_eq!(recoveries[1].max_resume_ms, Some(880));
        assert_eq!(recoveries[1].longest_ack_pause_ms, Some(1850), "2750 → 4600; 4600 → 6000 is the pause's");
        assert_eq!(recoveries[2].longest_ack_pause_ms, Some(1400));
        assert_eq!((recoveries[2].disconnected, recoveries[2].unresumed), (1, 1));
        assert_eq!(recoveries[2].all_resumed_after_ms, None);
    }

    #[test]
    fn median_and_max() {
        assert_eq!(median_max(&[]), (None, None));
        assert_eq!(median_max(&[5, 1, 3]), (Some(3), Some(5)));
        assert_eq!(median_max(&[4, 1]), (Some(1), Some(4)));
    }
}
