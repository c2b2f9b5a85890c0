//! The chaos run's output: the table of figures, the examples of each broken guarantee, the
//! recovery after each action, every lost connection, the verdict, and the machine-readable
//! `CHAOS_RESULT {json}` line (always the last one).

use serde_json::{json, Value};

use super::check::Seen;
use super::recovery::{self, Episode, Recovery};
use super::summary::Summary;
use super::Options;

/// Examples printed per kind of failure.
const EXAMPLES: usize = 10;

impl Summary {
    pub fn print(&self, opts: &Options, drain_secs: f64, drained: bool) {
        let resumes: Vec<u64> = self.episodes.iter().filter_map(Episode::resume_ms).collect();
        let (resume_median, resume_max) = recovery::median_max(&resumes);
        let mut latency = self.ack_latency_ms.clone();
        latency.sort_unstable();
        let percentile = |p: f64| percentile_of(&latency, p);
        let ms = |value: Option<u64>| value.map_or_else(|| "n/a".to_owned(), |v| format!("{v} ms"));
        let history = self.history.as_ref();
        let count = |value: Option<u64>| value.map_or_else(|| "n/a (no history)".to_owned(), |v| v.to_string());
        let mut table = crate::stats::Table::default();
        table.row("nodes", opts.urls.len());
        table.row("users / channels", format!("{} / {}", opts.users, opts.channels));
        table.row("rate", format!("{} msg/s per user, {} s, drain {drain_secs:.1} s", opts.rate, opts.seconds));
        table.row("messages sent (attempted)", self.sent);
        table.row("acknowledged", self.acked);
        table.row("unacknowledged at end", self.unacked);
        table.row("rejected (not retried)", self.rejected.values().sum::<u64>());
        table.row("resends (same client_msg_id)", self.resends);
        table.row("stored in history", count(history.map(|h| h.stored)));
        table.row("stored but never acked", count(history.map(|h| h.stored_unacked)));
        table.row("delivered (message events received)", self.message_events);
        table.row("acknowledged-but-lost", count(history.map(|h| h.lost.len() as u64)));
        table.row("ack seq mismatches", count(history.map(|h| h.mismatched.len() as u64)));
        table.row("conflicting acks", self.ack_conflicts);
        table.row("duplicates in history", count(history.map(|h| h.duplicates)));
        table.row("order violations", self.order_violations);
        table.row("duplicates at receivers", self.duplicates);
        table.row("gaps seen at receivers", self.gaps_seen);
        table.row("unfilled gaps at receivers", self.unfilled_gaps);
        table.row("not delivered at end", self.not_delivered);
        table.row("delivered events differing from history", self.delivered_mismatches);
        table.row("content mismatches in history", self.history_content.len());
        table.row("content mismatches at receivers", self.delivered_content.len());
        table.row("per-sender order broken", self.order_breaks.len());
        table.row("receivers behind at end", self.missing.len());
        table.row("drained in time", if drained { "yes" } else { "no" });
        table.row("reconnects (sockets lost)", self.disconnects);
        table.row("resumes / never resumed", format!("{} / {}", resumes.len(), self.never_resumed));
        table.row("resume time median", ms(resume_median));
        table.row("resume time max", ms(resume_max));
        table.row("recovery (first action to all working)", ms(self.recovery_ms));
        table.row("ack latency p50 / p99 / max", {
            format!("{} / {} / {}", ms(percentile(50.0)), ms(percentile(99.0)), ms(latency.last().copied()))
        });
        table.row(
            "longest ack pause in a channel",
            match self.longest_ack_pause {
                Some((pause, channel, at)) => format!(
                    "{pause} ms (channel {channel}, from +{:.1} s)",
                    at.saturating_sub(self.traffic_started_ms) as f64 / 1000.0
                ),
                None => "n/a".to_owned(),
            },
        );
        table.print("chaos results");
        let groups = [
            ("error frames", &self.error_frames),
            ("rejected sends", &self.rejected),
            ("sockets lost", &self.disconnect_reasons),
            ("failed connection attempts", &self.connect_failures),
        ];
        for (title, counts) in groups {
            if !counts.is_empty() {
                let items: Vec<String> = counts.iter().map(|(key, count)| format!("{key} x{count}")).collect();
                println!("{title}: {}", items.join(", "));
            }
        }
        if let Some(history) = history {
            for ack in history.lost.iter().take(EXAMPLES) {
                println!("LOST: channel {} client_msg_id {} acked at seq {}", ack.channel, ack.client_msg_id, ack.seq);
            }
            for (ack, stored) in history.mismatched.iter().take(EXAMPLES) {
                println!("MISMATCH: {} acked at seq {} but stored at seq {stored}", ack.client_msg_id, ack.seq);
            }
        }
        for m in self.history_content.iter().take(EXAMPLES) {
            println!(
                "CONTENT in history: channel {} seq {} {}: {:?} differs from what was sent",
                m.channel, m.seq, m.client_msg_id, m.fault
            );
        }
        for (user, m) in self.delivered_content.iter().take(EXAMPLES) {
            println!(
                "CONTENT at user{}: channel {} seq {} {}: {:?} differs from what was sent",
                user + 1,
                m.channel,
                m.seq,
                m.client_msg_id,
                m.fault
            );
        }
        for (user, example) in self.misdelivered.iter().take(EXAMPLES) {
            println!(
                "{} at user{} (on {}): channel {} seq {} at +{:.2} s",
                if example.seen == Seen::Late { "LATE" } else { "DUPLICATE" },
                user + 1,
                opts.urls[example.url],
                example.channel,
                example.seq,
                example.at_ms.saturating_sub(self.traffic_started_ms) as f64 / 1000.0
            );
        }
        for b in self.order_breaks.iter().take(EXAMPLES) {
            println!(
                "SENDER ORDER: user{} channel {}: {} stored at seq {} below {} at seq {}, acked before it was written",
                b.sender + 1,
                b.channel,
                b.later,
                b.later_seq,
                b.earlier,
                b.earlier_seq
            );
        }
        for m in self.missing.iter().take(12) {
            println!(
                "BEHIND: user{} (last on {}): channel {}: {} of seqs 1..={} never arrived (contiguous to {}, highest seen {})",
                m.user + 1,
                opts.urls[m.last_url],
                m.channel,
                m.missing,
                m.head,
                m.contiguous,
                m.max_seen
            );
        }
        if self.missing.len() > 12 {
            println!("... and {} more receiver/channel pairs behind", self.missing.len() - 12);
        }
        if !self.recoveries.is_empty() {
            println!();
            println!("== recovery after each action ==");
            for recovery in &self.recoveries {
                println!("{}", describe_recovery(recovery, self.traffic_started_ms));
            }
        }
        let mut episodes = self.episodes.clone();
        episodes.sort_by_key(|e| e.disconnected_at_ms);
        if !episodes.is_empty() {
            println!();
            println!("== lost connections ==");
            for episode in &episodes {
                let to = episode.to_url.map_or_else(|| "-".to_owned(), |url| opts.urls[url].clone());
                println!(
                    "+{:>6.2} s user{} {} -> {} after {} ({} attempts): {}",
                    episode.disconnected_at_ms.saturating_sub(self.traffic_started_ms) as f64 / 1000.0,
                    episode.user + 1,
                    opts.urls[episode.from_url],
                    to,
                    ms(episode.resume_ms()),
                    episode.attempts,
                    episode.reason
                );
            }
        }
        println!();
        if self.failures.is_empty() {
            println!("verdict: PASS (nothing acknowledged lost, no duplicate, no gap, same order everywhere, content as sent, every receiver at the head, every client resumed)");
        } else {
            println!("verdict: FAIL ({})", self.failures.join("; "));
        }
        println!("CHAOS_RESULT {}", self.json(opts, resume_median, resume_max, &latency, drained));
    }

    fn json(
        &self,
        opts: &Options,
        resume_median: Option<u64>,
        resume_max: Option<u64>,
        latency: &[u64],
        drained: bool,
    ) -> Value {
        let history = self.history.as_ref();
        let recoveries: Vec<Value> = self
            .recoveries
            .iter()
            .map(|r| {
                json!({
                    "label": r.action.label,
                    "at_ms": r.action.at_ms,
                    "disconnected": r.disconnected,
                    "unresumed": r.unresumed,
                    "all_resumed_after_ms": r.all_resumed_after_ms,
                    "max_resume_ms": r.max_resume_ms,
                    "longest_ack_pause_ms": r.longest_ack_pause_ms,
                })
            })
            .collect();
        let mut figures = json!({
            "passed": self.failures.is_empty(),
            "failures": self.failures,
            "nodes": opts.urls.len(),
            "users": opts.users,
            "channels": opts.channels,
            "rate": opts.rate,
            "seconds": opts.seconds,
            "sent": self.sent,
            "acknowledged": self.acked,
            "unacknowledged_at_end": self.unacked,
            "rejected": self.rejected.values().sum::<u64>(),
            "resends": self.resends,
            "stored": history.map(|h| h.stored),
            "stored_unacked": history.map(|h| h.stored_unacked),
            "delivered": self.message_events,
            "acknowledged_but_lost": history.map(|h| h.lost.len()),
            "ack_seq_mismatches": history.map(|h| h.mismatched.len()),
            "ack_conflicts": self.ack_conflicts,
            "history_duplicates": history.map(|h| h.duplicates),
            "history_disorder": history.map(|h| h.disorder),
            "order_violations": self.order_violations,
            "receiver_duplicates": self.duplicates,
            "gaps_seen": self.gaps_seen,
            "refetches": self.refetches,
            "unfilled_gaps": self.unfilled_gaps,
            "not_delivered_at_end": self.not_delivered,
        });
        // The stricter checks and the timings, in a second object: one `json!` that large
        // exceeds the macro's recursion limit.
        let strict = json!({
            "delivered_history_mismatches": self.delivered_mismatches,
            "content_mismatches_history": self.history_content.len(),
            "content_mismatches_delivered": self.delivered_content.len(),
            "content_mismatches": self.content_mismatches(),
            "sender_order_breaks": self.order_breaks.len(),
            "receivers_behind": self.missing.len(),
            "drained": drained,
            "reconnects": self.disconnects,
            "resumes": self.episodes.iter().filter(|e| e.resumed_at_ms.is_some()).count(),
            "unresumed": self.never_resumed,
            "never_ready": self.never_ready,
            "recovery_ms": self.recovery_ms,
            "resume_ms_median": resume_median,
            "resume_ms_max": resume_max,
            "ack_latency_ms_p50": percentile_of(latency, 50.0),
            "ack_latency_ms_p99": percentile_of(latency, 99.0),
            "ack_latency_ms_max": latency.last(),
            "longest_ack_pause_ms": self.longest_ack_pause.map(|(pause, _, _)| pause),
            "traffic_started_ms": self.traffic_started_ms,
            "recoveries": recoveries,
        });
        if let (Value::Object(all), Value::Object(more)) = (&mut figures, strict) {
            all.extend(more);
        }
        figures
    }
}

fn percentile_of(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn describe_recovery(recovery: &Recovery, traffic_started_ms: u64) -> String {
    let at = recovery.action.at_ms as i64 - traffic_started_ms as i64;
    let mut line = format!("+{:>6.2} s {}: ", at as f64 / 1000.0, recovery.action.label);
    if recovery.disconnected == 0 {
        line.push_str("no client lost its socket");
    } else {
        line.push_str(&format!("{} clients lost their socket", recovery.disconnected));
        match recovery.all_resumed_after_ms {
            Some(after) => line.push_str(&format!(
                ", all resumed {after} ms after the action (longest resume {} ms)",
                recovery.max_resume_ms.unwrap_or(0)
            )),
            None => line.push_str(&format!(", {} NEVER resumed", recovery.unresumed)),
        }
    }
    if let Some(pause) = recovery.longest_ack_pause_ms {
        line.push_str(&format!("; longest ack pause {pause} ms"));
    }
    line
}
