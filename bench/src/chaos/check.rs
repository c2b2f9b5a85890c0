//! The pure part of the chaos checker: per-channel sequence tracking at a receiver, the
//! comparison of acknowledgements with the stored history, the content of every stored and
//! delivered copy against what was sent, and per-sender order. No I/O here, so all of it is
//! unit tested.

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

    /// Still behind the channel's `head` (after the drain this receiver lost events or a
    /// subscription, whether or not it noticed).
    pub fn behind(&self, head: i64) -> bool {
        self.contiguous < head
    }
}

/// An acknowledged send: the `ok` answer's seq for a client_msg_id.
///
/// The ticks come from the sending client's logical clock (one tick per first write and per
/// ack), so "acked before the other was first written" is exact within one sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub channel: usize,
    pub client_msg_id: String,
    pub seq: i64,
    /// The sending user's index.
    pub sender: usize,
    pub first_sent_tick: u64,
    pub acked_tick: u64,
}

/// A stored message, as `GET /v1/channels/{id}/messages` lists it, or a delivered copy (the
/// `message` of a `message_new` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: i64,
    pub client_msg_id: String,
    pub body: String,
    pub sender_id: String,
}

/// A message as the checker's client composed it: every stored or delivered copy must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub channel: usize,
    /// The sending user's index (into the user ids).
    pub sender: usize,
    pub body: String,
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
pub fn delivered_mismatches(delivered: &BTreeMap<i64, Stored>, history: &[Stored]) -> u64 {
    let stored: HashMap<i64, &str> = history.iter().map(|m| (m.seq, m.client_msg_id.as_str())).collect();
    delivered.iter().filter(|(seq, copy)| stored.get(*seq) != Some(&copy.client_msg_id.as_str())).count() as u64
}

/// How a copy differs from what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContentFault {
    /// A client_msg_id no client of this run composed.
    Unknown,
    /// Sent to another channel.
    Channel,
    Body,
    Sender,
}

/// One stored or delivered copy whose content is not what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMismatch {
    pub channel: usize,
    pub seq: i64,
    pub client_msg_id: String,
    pub fault: ContentFault,
}

/// The copies of `channel`'s messages (stored or delivered) whose client_msg_id, channel, body
/// or sender differ from what was sent; `sender_ids[i]` is user `i`'s id.
pub fn content_mismatches<'a>(
    sent: &HashMap<String, Sent>,
    sender_ids: &[String],
    channel: usize,
    copies: impl IntoIterator<Item = &'a Stored>,
) -> Vec<ContentMismatch> {
    copies
        .into_iter()
        .filter_map(|copy| {
            let fault = match sent.get(&copy.client_msg_id) {
                None => ContentFault::Unknown,
                Some(original) if original.channel != channel => ContentFault::Channel,
                Some(original) if original.body != copy.body => ContentFault::Body,
                Some(original) if sender_ids.get(original.sender) != Some(&copy.sender_id) => ContentFault::Sender,
                Some(_) => return None,
            };
            Some(ContentMismatch { channel, seq: copy.seq, client_msg_id: copy.client_msg_id.clone(), fault })
        })
        .collect()
}

/// A sender's message stored below one of its own that was acknowledged before it was even
/// first written: the channel broke the order that sender could observe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBreak {
    pub channel: usize,
    pub sender: usize,
    /// Acknowledged first, stored at `earlier_seq`.
    pub earlier: String,
    pub earlier_seq: i64,
    /// First written after that ack, yet stored at the lower `later_seq`.
    pub later: String,
    pub later_seq: i64,
}

/// Per-sender order, per channel: when a sender's message A was acknowledged before its
/// message B was first written, A's seq must be below B's. The seq is the stored one where
/// the history has the message, else the acknowledged one. Messages in flight together
/// (pipelined, retried) may land in any order and are not compared.
pub fn sender_order_breaks(acks: &[Ack], history: &[Vec<Stored>]) -> Vec<OrderBreak> {
    let stored: Vec<HashMap<&str, i64>> =
        history.iter().map(|messages| messages.iter().map(|m| (m.client_msg_id.as_str(), m.seq)).collect()).collect();
    let mut streams: BTreeMap<(usize, usize), Vec<(&Ack, i64)>> = BTreeMap::new();
    for ack in acks {
        let seq = stored.get(ack.channel).and_then(|ids| ids.get(ack.client_msg_id.as_str())).copied();
        streams.entry((ack.sender, ack.channel)).or_default().push((ack, seq.unwrap_or(ack.seq)));
    }
    let mut breaks = Vec::new();
    for ((sender, channel), mut by_ack) in streams {
        let mut by_write = by_ack.clone();
        by_ack.sort_by_key(|(ack, _)| ack.acked_tick);
        by_write.sort_by_key(|(ack, _)| ack.first_sent_tick);
        let mut acked_before = by_ack.iter().peekable();
        let mut highest: Option<(&Ack, i64)> = None;
        for &(later, later_seq) in &by_write {
            while let Some(&(earlier, seq)) = acked_before.next_if(|(a, _)| a.acked_tick < later.first_sent_tick) {
                if highest.is_none_or(|(_, top)| seq > top) {
                    highest = Some((earlier, seq));
                }
            }
            if let Some((earlier, earlier_seq)) = highest.filter(|&(_, top)| top > later_seq) {
                breaks.push(OrderBreak {
                    channel,
                    sender,
                    earlier: earlier.client_msg_id.clone(),
                    earlier_seq,
                    later: later.client_msg_id.clone(),
                    later_seq,
                });
            }
        }
    }
    breaks
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
        Ack { channel, client_msg_id: id.to_owned(), seq, sender: 0, first_sent_tick: 0, acked_tick: 0 }
    }

    fn stored(seq: i64, id: &str) -> Stored {
        Stored { seq, client_msg_id: id.to_owned(), body: format!("body of {id}"), sender_id: "u0".to_owned() }
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
        delivered.insert(1, stored(1, "a"));
        delivered.insert(3, stored(3, "b"));
        assert_eq!(delivered_mismatches(&delivered, &history), 0);
        delivered.insert(4, stored(4, "c"));
        delivered.insert(1, stored(1, "z"));
        assert_eq!(delivered_mismatches(&delivered, &history), 2);
    }

    #[test]
    fn a_receiver_that_silently_stopped_is_behind() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[1, 2, 3]);
        assert!(!t.behind(3));
        assert!(t.behind(9), "no gap was ever seen, yet 4..=9 never arrived");
        assert_eq!((t.unfilled_gaps(), t.missing_up_to(9)), (0, 6));
    }

    fn sent(channel: usize, sender: usize, id: &str) -> (String, Sent) {
        (id.to_owned(), Sent { channel, sender, body: format!("body of {id}") })
    }

    #[test]
    fn content_must_be_what_was_sent() {
        let sent: HashMap<String, Sent> = [sent(0, 0, "a"), sent(0, 1, "b"), sent(1, 0, "c"), sent(0, 0, "d")].into();
        let ids = ["u0".to_owned(), "u1".to_owned()];
        let mut rewritten = stored(2, "b");
        rewritten.sender_id = "u1".to_owned();
        assert!(content_mismatches(&sent, &ids, 0, &[stored(1, "a"), rewritten.clone()]).is_empty());
        rewritten.body = "tampered".to_owned();
        let mut impostor = stored(4, "d");
        impostor.sender_id = "u1".to_owned();
        let copies = [stored(1, "a"), rewritten, stored(3, "c"), impostor, stored(5, "zz")];
        let faults: Vec<(i64, ContentFault)> =
            content_mismatches(&sent, &ids, 0, &copies).into_iter().map(|m| (m.seq, m.fault)).collect();
        assert_eq!(
            faults,
            [
                (2, ContentFault::Body),
                (3, ContentFault::Channel),
                (4, ContentFault::Sender),
                (5, ContentFault::Unknown)
            ]
        );
    }

    fn timed(channel: usize, sender: usize, id: &str, seq: i64, ticks: (u64, u64)) -> Ack {
        Ack { channel, client_msg_id: id.to_owned(), seq, sender, first_sent_tick: ticks.0, acked_tick: ticks.1 }
    }

    #[test]
    fn per_sender_order_follows_what_the_sender_saw() {
        // a acked (tick 2) before b was written (tick 3): a must be below b.
        let in_order = [timed(0, 0, "a", 5, (1, 2)), timed(0, 0, "b", 9, (3, 4))];
        assert!(sender_order_breaks(&in_order, &[]).is_empty());
        let broken = [timed(0, 0, "a", 9, (1, 2)), timed(0, 0, "b", 5, (3, 4))];
        let breaks = sender_order_breaks(&broken, &[]);
        assert_eq!(breaks.len(), 1);
        assert_eq!((breaks[0].earlier.as_str(), breaks[0].later.as_str()), ("a", "b"));
        // In flight together (b written before a's ack): any order is fine.
        let pipelined = [timed(0, 0, "a", 9, (1, 3)), timed(0, 0, "b", 5, (2, 4))];
        assert!(sender_order_breaks(&pipelined, &[]).is_empty());
        // Other senders and other channels are not compared.
        let apart = [timed(0, 0, "a", 9, (1, 2)), timed(0, 1, "b", 5, (3, 4)), timed(1, 0, "c", 5, (3, 4))];
        assert!(sender_order_breaks(&apart, &[]).is_empty());
    }

    #[test]
    fn per_sender_order_uses_the_stored_seq() {
        let acks = [timed(0, 0, "a", 5, (1, 2)), timed(0, 0, "b", 9, (3, 4)), timed(0, 0, "c", 12, (5, 6))];
        let history = vec![vec![stored(5, "a"), stored(9, "b"), stored(12, "c")]];
        assert!(sender_order_breaks(&acks, &history).is_empty());
        let moved = vec![vec![stored(3, "c"), stored(5, "a"), stored(9, "b")]];
        let breaks = sender_order_breaks(&acks, &moved);
        assert_eq!(breaks.len(), 1, "c stored below b, which was acked before c was written");
        assert_eq!((breaks[0].earlier_seq, breaks[0].later_seq), (9, 3));
    }
}
