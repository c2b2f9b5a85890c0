//! The end of the day: expected against received for every figure, the verdict, a human
//! summary and the `SIM_RESULT` JSON (with per-second series and histograms for plots).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde_json::{json, Value};

use crate::record::{Inner, Signal};
use crate::stats::{Latencies, BUCKET_EDGES_MS};
use crate::world::{Kind, World};

/// A push the day should have produced, by (device token, message or meeting id).
#[derive(Debug, Clone)]
pub struct ExpectedPush {
    pub kind: &'static str,
    pub to: String,
    /// When the message was first sent or the meeting created, seconds since the start.
    pub at_s: f64,
}

pub type PushKey = (String, String);

pub fn expected_pushes(world: &World, inner: &Inner, start: Instant) -> HashMap<PushKey, ExpectedPush> {
    let mut keys = HashMap::new();
    for sent in inner.sends.values() {
        let Some((message_id, _)) = &sent.acked else { continue };
        let channel = &world.channels[sent.channel];
        let at_s = sent.first_sent.saturating_duration_since(start).as_secs_f64();
        let mut targets: Vec<(usize, &'static str)> = sent.mentions.iter().map(|&u| (u, "mention")).collect();
        if channel.kind == Kind::Dm {
            targets.extend(channel.members.iter().filter(|&&u| u != sent.sender).map(|&u| (u, "direct_message")));
        }
        for (user, kind) in targets {
            if let Some(device) = &world.users[user].device {
                let push = ExpectedPush { kind, to: world.users[user].username.clone(), at_s };
                keys.entry((device.clone(), message_id.clone())).or_insert(push);
            }
        }
    }
    for (meeting_id, invitees, at_s) in &inner.meeting_ids {
        for &user in invitees {
            if let Some(device) = &world.users[user].device {
                let push = ExpectedPush { kind: "meeting_invite", to: world.users[user].username.clone(), at_s: *at_s };
                keys.insert((device.clone(), meeting_id.clone()), push);
            }
        }
    }
    keys
}

/// Counts the fake FCM's accepted messages against the expected keys.
pub fn count_pushes(expected: &HashMap<PushKey, ExpectedPush>, received: &[Value], ours: &HashSet<String>) -> Value {
    let mut seen: HashMap<PushKey, u64> = HashMap::new();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for message in received {
        let token = message["token"].as_str().unwrap_or_default().to_owned();
        if !ours.contains(&token) {
            continue;
        }
        let data = &message["data"];
        let id = data["message_id"].as_str().or(data["meeting_id"].as_str()).unwrap_or_default().to_owned();
        *by_kind.entry(data["kind"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        *seen.entry((token, id)).or_default() += 1;
    }
    let delivered = expected.keys().filter(|key| seen.contains_key(*key)).count();
    let unexpected = seen.keys().filter(|key| !expected.contains_key(*key)).count();
    let duplicates: u64 = seen.values().map(|&n| n.saturating_sub(1)).sum();
    let mut missing: Vec<&ExpectedPush> =
        expected.iter().filter(|(key, _)| !seen.contains_key(*key)).map(|(_, p)| p).collect();
    missing.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let missing_examples: Vec<Value> = missing
        .iter()
        .take(10)
        .map(|p| json!({"kind": p.kind, "to": p.to, "at_s": (p.at_s * 100.0).round() / 100.0}))
        .collect();
    json!({"expected": expected.len(), "received": delivered, "missing": expected.len() - delivered,
           "duplicates": duplicates, "unexpected": unexpected, "by_kind": by_kind,
           "missing_examples": missing_examples})
}

fn latency(samples: &Latencies) -> Value {
    let round = |v: Option<f64>| v.map(|ms| (ms * 10.0).round() / 10.0);
    json!({"n": samples.len(), "p50": round(samples.percentile(50.0)), "p90": round(samples.percentile(90.0)),
           "p99": round(samples.percentile(99.0)), "max": round(samples.max())})
}

pub struct Inputs<'a> {
    pub world: &'a World,
    pub inner: &'a Inner,
    pub pushes: Value,
    pub actions: Vec<(f64, String)>,
    pub seconds: u64,
    pub nodes: usize,
    pub start_unix_ms: u64,
}

/// Every figure, and the list of broken guarantees (empty: PASS).
pub fn build(inputs: Inputs<'_>) -> Value {
    let Inputs { world, inner, pushes, actions, seconds, nodes, start_unix_ms } = inputs;
    let (mut expected, mut delivered) = (0u64, 0u64);
    let mut lost_examples = Vec::new();
    let acked = inner.sends.values().filter(|s| s.acked.is_some()).count();
    let mut notifications_expected = 0u64;
    for (client_msg_id, sent) in &inner.sends {
        if sent.acked.is_none() {
            continue;
        }
        for member in world.online_members(sent.channel) {
            expected += 1;
            if inner.received.contains(&(member, client_msg_id.clone())) {
                delivered += 1;
            } else if lost_examples.len() < 5 {
                lost_examples.push(format!(
                    "{} -> {} in {}",
                    client_msg_id, world.users[member].username, world.channels[sent.channel].name
                ));
            }
        }
        let channel = &world.channels[sent.channel];
        let mut notified: HashSet<usize> = sent.mentions.iter().copied().collect();
        if channel.kind == Kind::Dm {
            notified.extend(channel.members.iter().copied());
        }
        notified.remove(&sent.sender);
        notifications_expected += notified.iter().filter(|&&u| world.users[u].online).count() as u64;
    }
    let duplicates: u64 = inner.logs.values().map(|l| l.duplicates).sum();
    let out_of_order: u64 = inner.logs.values().map(|l| l.out_of_order).sum();
    let holes: u64 = inner.logs.values().map(|l| l.holes()).sum();
    let mut heads: HashMap<usize, i64> = HashMap::new();
    for (&(_, channel), log) in &inner.logs {
        let head = heads.entry(channel).or_default();
        *head = (*head).max(log.max());
    }
    let behind = inner.logs.iter().filter(|(&(_, channel), log)| log.max() < heads[&channel]).count();
    let signals_acked = inner.signals.values().filter(|s| s.acked).count();
    let signals_relayed = inner.signals.values().filter(|s| s.acked && s.received_by.is_some()).count();
    let lost_signals: Vec<&Signal> = inner.signals.values().filter(|s| s.acked && s.received_by.is_none()).collect();
    let fault_times: Vec<f64> = actions.iter().map(|(t, _)| *t).collect();
    let near_fault = |at: f64| fault_times.iter().any(|&t| at >= t - 2.0 && at <= t + 5.0);
    let receiver_lost_socket = |signal: &Signal| {
        inner.resumes.iter().any(|r| {
            r.user == signal.to_user && r.lost_at_s >= signal.sent_at_s - 0.5 && r.lost_at_s <= signal.sent_at_s + 5.0
        })
    };
    let explained = |signal: &&&Signal| near_fault(signal.sent_at_s) || receiver_lost_socket(signal);
    let signals_lost_in_fault = lost_signals.iter().filter(explained).count();
    let lost_signal_examples: Vec<Value> = lost_signals
        .iter()
        .take(10)
        .map(|s| {
            json!({"kind": s.kind, "from": world.users[s.from_user].username, "to": world.users[s.to_user].username,
            "sent_at_s": (s.sent_at_s * 100.0).round() / 100.0, "near_fault": near_fault(s.sent_at_s),
            "receiver_socket_lost": receiver_lost_socket(s)})
        })
        .collect();
    let unacked = inner.sends.len() - acked;
    let mut resume_ms = Latencies::default();
    inner.resumes.iter().for_each(|r| resume_ms.push(r.resume_ms));
    let length = seconds as usize + 30;
    let counter = |name: &str| inner.counters.get(name).copied().unwrap_or(0);

    let mut problems = Vec::new();
    if expected != delivered {
        problems.push(format!("{} deliveries lost (e.g. {})", expected - delivered, lost_examples.join("; ")));
    }
    if duplicates > 0 {
        problems.push(format!("{duplicates} duplicate events"));
    }
    if out_of_order > 0 {
        problems.push(format!("{out_of_order} events out of order"));
    }
    if holes > 0 {
        problems.push(format!("{holes} seqs never delivered (holes)"));
    }
    if behind > 0 {
        problems.push(format!("{behind} user-channel views behind the channel head"));
    }
    if unacked > 0 {
        problems.push(format!("{unacked} messages never acknowledged"));
    }
    if lost_signals.len() > signals_lost_in_fault {
        problems.push(format!(
            "{} acknowledged signals never reached their addressee, away from any fault",
            lost_signals.len() - signals_lost_in_fault
        ));
    }
    if inner.misaddressed_signals > 0 {
        problems.push(format!("{} signals reached the wrong user", inner.misaddressed_signals));
    }
    if pushes["missing"].as_u64().unwrap_or(0) > 0 {
        problems.push(format!(
            "{} pushes missing at the fake FCM (e.g. {})",
            pushes["missing"], pushes["missing_examples"]
        ));
    }
    if acked == 0 {
        problems.push("no message was acknowledged".into());
    }
    json!({
        "verdict": if problems.is_empty() { "PASS" } else { "FAIL" },
        "problems": problems,
        "start_unix_ms": start_unix_ms,
        "seconds": seconds,
        "nodes": nodes,
        "users": world.users.len(),
        "online_users": world.users.iter().filter(|u| u.online).count(),
        "channels": world.channels.len(),
        "messages": {"sent": inner.sends.len(), "acked": acked, "unacked": unacked,
            "refused": counter("sends_refused"), "resends": counter("resends"),
            "thread_replies": counter("thread_replies"), "with_mentions": counter("messages_with_mentions"),
            "dm": counter("dm_messages"), "files": counter("files_uploaded"), "edits": counter("edits"),
            "reactions": counter("reactions") + counter("unreactions")},
        "deliveries": {"expected": expected, "delivered": delivered, "lost": expected - delivered,
            "duplicates": duplicates, "out_of_order": out_of_order, "holes": holes, "behind": behind,
            "lost_examples": lost_examples},
        "latency_ms": {"ack": latency(&inner.ack_latency), "delivery": latency(&inner.delivery_latency)},
        "histogram": {"edges_ms": BUCKET_EDGES_MS.to_vec(), "delivery": inner.delivery_latency.histogram(),
            "ack": inner.ack_latency.histogram()},
        "series": {"deliveries_per_s": inner.deliveries.counts(length), "acks_per_s": inner.acks.counts(length),
            "errors_per_s": inner.errors_series.counts(length)},
        "signaling": {"sent": inner.signals.len(), "acked": signals_acked, "relayed": signals_relayed,
            "lost": signals_acked - signals_relayed, "lost_near_fault": signals_lost_in_fault,
            "lost_examples": lost_signal_examples, "misaddressed": inner.misaddressed_signals,
            "duplicated": counter("signals_duplicated")},
        "meetings": {"created": counter("meetings_created"), "joins": counter("meeting_joins"),
            "rejoins": counter("meeting_rejoins"), "state_changes": counter("meeting_state_changes"),
            "events_received": counter("meeting_event_frames"), "invites_received": counter("meeting_invite_frames"),
            "rejoined_frames": counter("meeting_rejoined_frames")},
        "pushes": pushes,
        "ephemeral": {"typing_sent": counter("typing_starts"), "typing_frames": counter("typing_frames"),
            "read_sent": counter("read_receipts"), "read_frames": counter("read_receipt_frames"),
            "presence_sets": counter("presence_sets"), "presence_frames": counter("presence_frames"),
            "notifications_expected": notifications_expected, "notification_frames": counter("notification_frames")},
        "reconnects": {"count": counter("reconnects"), "resumed": inner.resumes.len(),
            "resume_ms": latency(&resume_ms),
            "episodes": inner.resumes.iter().map(|r| json!({"user": r.user, "lost_at_s": (r.lost_at_s * 100.0).round() / 100.0,
                "resume_ms": r.resume_ms.round(), "reason": r.reason})).collect::<Vec<_>>()},
        "errors": inner.errors,
        "actions": actions.iter().map(|(t, label)| json!({"t_s": (t * 100.0).round() / 100.0, "label": label})).collect::<Vec<_>>(),
    })
}

/// The human summary.
pub fn summary(result: &Value) -> String {
    let r = result;
    let mut lines = vec![
        format!("simulation: {} users ({} online) on {} nodes for {} s: {}", r["users"], r["online_users"],
            r["nodes"], r["seconds"], r["verdict"].as_str().unwrap_or("?")),
        format!("  messages: sent {} acked {} unacked {} (threads {}, mentions {}, DMs {}, files {}, edits {}, reactions {})",
            r["messages"]["sent"], r["messages"]["acked"], r["messages"]["unacked"], r["messages"]["thread_replies"],
            r["messages"]["with_mentions"], r["messages"]["dm"], r["messages"]["files"], r["messages"]["edits"],
            r["messages"]["reactions"]),
        format!("  deliveries: expected {} delivered {} lost {} dup {} order {} holes {} behind {}",
            r["deliveries"]["expected"], r["deliveries"]["delivered"], r["deliveries"]["lost"],
            r["deliveries"]["duplicates"], r["deliveries"]["out_of_order"], r["deliveries"]["holes"],
            r["deliveries"]["behind"]),
        format!("  latency ms: ack p50 {} p99 {} max {}; delivery p50 {} p99 {} max {}",
            r["latency_ms"]["ack"]["p50"], r["latency_ms"]["ack"]["p99"], r["latency_ms"]["ack"]["max"],
            r["latency_ms"]["delivery"]["p50"], r["latency_ms"]["delivery"]["p99"], r["latency_ms"]["delivery"]["max"]),
        format!("  signaling: acked {} relayed {} lost {} (near a fault {}) misaddressed {}", r["signaling"]["acked"],
            r["signaling"]["relayed"], r["signaling"]["lost"], r["signaling"]["lost_near_fault"], r["signaling"]["misaddressed"]),
        format!("  meetings: created {} joins {} rejoins {} state changes {} invites received {}",
            r["meetings"]["created"], r["meetings"]["joins"], r["meetings"]["rejoins"],
            r["meetings"]["state_changes"], r["meetings"]["invites_received"]),
        format!("  pushes: expected {} received {} missing {} duplicates {}", r["pushes"]["expected"],
            r["pushes"]["received"], r["pushes"]["missing"], r["pushes"]["duplicates"]),
        format!("  reconnects: {} (resume p50 {} ms, max {} ms)", r["reconnects"]["count"],
            r["reconnects"]["resume_ms"]["p50"], r["reconnects"]["resume_ms"]["max"]),
        format!("  errors by code: {}", r["errors"]),
    ];
    for problem in r["problems"].as_array().into_iter().flatten() {
        lines.push(format!("  PROBLEM: {}", problem.as_str().unwrap_or("?")));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_matched_by_token_and_id_and_deduplicated() {
        let push = |at_s| ExpectedPush { kind: "mention", to: "u01".into(), at_s };
        let expected: HashMap<PushKey, ExpectedPush> =
            [(("t1".to_owned(), "m1".to_owned()), push(1.0)), (("t1".to_owned(), "m2".to_owned()), push(2.0))]
                .into_iter()
                .collect();
        let ours: HashSet<String> = ["t1".to_owned()].into_iter().collect();
        let received = vec![
            json!({"token": "t1", "data": {"kind": "mention", "message_id": "m1"}}),
            json!({"token": "t1", "data": {"kind": "mention", "message_id": "m1"}}),
            json!({"token": "other", "data": {"kind": "mention", "message_id": "m2"}}),
            json!({"token": "t1", "data": {"kind": "meeting_invite", "meeting_id": "x"}}),
        ];
        let counted = count_pushes(&expected, &received, &ours);
        assert_eq!(counted["expected"], 2);
        assert_eq!(counted["received"], 1);
        assert_eq!(counted["missing"], 1);
        assert_eq!(counted["duplicates"], 1);
        assert_eq!(counted["unexpected"], 1);
        assert_eq!(counted["missing_examples"][0]["at_s"], 2.0);
    }
}
