//! One online user: a socket to one node at a time, subscribed to every channel it is in.
//! When the socket drops it reconnects to the next node, subscribes again with each
//! channel's last seq (protocol §4), watches presence again, rejoins its meeting and resends
//! what was not acknowledged; the time from the loss to the last subscription's answer is
//! its resume time. Incoming frames are checked and recorded here; what the user *does* is
//! in `actions.rs` and `meeting.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::actions;
use crate::conn::{Conn, ReqError};
use crate::meeting;
use crate::state::{Offer, Phase, Recent, Session, UserCtx};
use crate::stats::{Arrival, Rng};

const RECENT_KEPT: usize = 30;
const PING_EVERY: Duration = Duration::from_secs(3);

impl UserCtx {
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Checks and records one frame that is not an answer.
    pub fn on_frame(&self, frame: Value) {
        let rec = &self.rec;
        match frame["type"].as_str().unwrap_or("") {
            "event" => self.on_event(&frame),
            "typing" => rec.count("typing_frames"),
            "read" => rec.count("read_receipt_frames"),
            "presence" => rec.count("presence_frames"),
            "notification" => rec.count("notification_frames"),
            "channel_added" => rec.count("channel_added_frames"),
            "meeting_invite" => rec.count("meeting_invite_frames"),
            "meeting_event" => rec.count("meeting_event_frames"),
            "meeting_rejoined" => rec.count("meeting_rejoined_frames"),
            "meeting_rejoin_failed" => rec.error("meeting_rejoin_failed", frame["code"].as_str().unwrap_or("?")),
            "signal" => self.on_signal(&frame),
            "error" => rec.error("ws_unsolicited", frame["code"].as_str().unwrap_or("?")),
            "hello" | "pong" | "ok" => {}
            other => rec.error("unknown_frame", other),
        }
    }

    fn on_event(&self, frame: &Value) {
        let Some(&channel) = frame["channel_id"].as_str().and_then(|id| self.world.channel_index.get(id)) else {
            self.rec.error("event", "unknown_channel");
            return;
        };
        let seq = frame["seq"].as_i64().unwrap_or(-1);
        let event = &frame["event"];
        let message = &event["message"];
        let is_new = event["kind"] == "message_new";
        let client_msg_id = if is_new { message["client_msg_id"].as_str() } else { None };
        let arrival = self.rec.event(self.index, channel, seq, client_msg_id);
        if arrival != Arrival::New {
            return;
        }
        if is_new {
            if let Some(id) = message["id"].as_str() {
                let mut recent = self.recent.lock().expect("recent");
                let list = recent.entry(channel).or_default();
                list.push(Recent { message_id: id.to_owned(), is_root: message["parent_id"].is_null() });
                if list.len() > RECENT_KEPT {
                    list.remove(0);
                }
            }
        }
    }

    fn on_signal(&self, frame: &Value) {
        let nonce = frame["payload"]["sim_nonce"].as_str().unwrap_or("");
        self.rec.signal_received(nonce, self.index);
        if frame["kind"] == "offer" {
            let from_user = frame["from_user"].as_str().and_then(|id| self.world.user_index.get(id)).copied();
            if let (Some(meeting_id), Some(from), Some(from_user)) =
                (frame["meeting_id"].as_str(), frame["from"].as_str(), from_user)
            {
                self.offers.lock().expect("offers").push(Offer {
                    meeting_id: meeting_id.to_owned(),
                    from_participant: from.to_owned(),
                    from_user,
                });
            }
        }
    }
}

/// Runs the user until the phase is `Stop`.
pub async fn run(ctx: Arc<UserCtx>, seed: u64) {
    let nodes = ctx.api.urls().len();
    let mut session = Session {
        url: ctx.index % nodes,
        rng: Rng::new(seed ^ ((ctx.index as u64 + 1) * 7919)),
        unacked: Vec::new(),
        meetings: Vec::new(),
        own_messages: Vec::new(),
        away: false,
        sent: 0,
    };
    let mut lost: Option<(Instant, String)> = None;
    while ctx.phase() != Phase::Stop {
        let Some(conn) = connect(&ctx, &mut session).await else { break };
        if !prepare(&ctx, &conn, &mut session).await {
            conn.close();
            session.url = (session.url + 1) % nodes;
            continue;
        }
        if let Some((at, reason)) = lost.take() {
            ctx.rec.resumed(ctx.index, at, reason);
        }
        let mut last_ping = Instant::now();
        loop {
            let wait = match ctx.phase() {
                Phase::Run => Duration::from_millis(700 + session.rng.below(2300) as u64),
                _ => Duration::from_millis(300),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = conn.wait_closed() => {}
            }
            if ctx.phase() == Phase::Stop {
                conn.close();
                return;
            }
            if !conn.is_closed() && last_ping.elapsed() >= PING_EVERY {
                last_ping = Instant::now();
                if let Err(ReqError::Timeout) =
                    conn.request_within(json!({"type": "ping"}), Duration::from_secs(5)).await
                {
                    ctx.rec.error("ping", "timeout");
                    conn.close();
                    break;
                }
            }
            if conn.is_closed() {
                break;
            }
            meeting::answer_offers(&ctx, &conn, &mut session).await;
            actions::resend(&ctx, &conn, &mut session).await;
            if ctx.phase() == Phase::Run {
                actions::act(&ctx, &conn, &mut session).await;
            }
        }
        let reason = conn.end_reason.lock().expect("end reason").clone().unwrap_or_else(|| "ping timeout".into());
        ctx.rec.count("reconnects");
        ctx.rec.error("socket_lost", &short(&reason));
        lost = Some((Instant::now(), reason));
        session.url = (session.url + 1) % nodes;
    }
}

fn short(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().replace(' ', "_")
}

/// Tries the nodes in turn from `session.url` until one accepts (or the day is over).
async fn connect(ctx: &Arc<UserCtx>, session: &mut Session) -> Option<Conn> {
    let nodes = ctx.api.urls().len();
    for attempt in 0u32.. {
        if ctx.phase() == Phase::Stop {
            return None;
        }
        let url = &ctx.api.urls()[session.url];
        let token = &ctx.world.users[ctx.index].token;
        let handler = ctx.clone();
        match Conn::open(url, token, move |frame| handler.on_frame(frame)).await {
            Ok(conn) => return Some(conn),
            Err(_) => {
                ctx.rec.error("connect", "failed");
                session.url = (session.url + 1) % nodes;
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
    }
    None
}

/// Subscribes every channel (with its last seq), watches presence, rejoins meetings.
async fn prepare(ctx: &Arc<UserCtx>, conn: &Conn, session: &mut Session) -> bool {
    for channel in ctx.world.channels_of(ctx.index) {
        let mut frame = json!({"type": "subscribe", "channel_id": ctx.world.channels[channel].id});
        if let Some(last_seq) = ctx.rec.last_seq(ctx.index, channel) {
            frame["last_seq"] = json!(last_seq);
        }
        let mut tries = 0;
        loop {
            match conn.request(frame.clone()).await {
                Ok(result) => {
                    ctx.rec.subscribed(ctx.index, channel, result["head_seq"].as_i64().unwrap_or(0));
                    break;
                }
                Err(err) => {
                    ctx.rec.error("subscribe", &err.code());
                    tries += 1;
                    if err == ReqError::Closed || tries >= 5 {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
            }
        }
    }
    let users = ctx.world.users.len();
    let watched: Vec<&str> = (1..=5).map(|k| ctx.world.users[(ctx.index + k * 7) % users].id.as_str()).collect();
    if let Err(err) = conn.request(json!({"type": "presence_watch", "user_ids": watched})).await {
        ctx.rec.error("presence_watch", &err.code());
    }
    if session.away {
        if let Err(err) = conn.request(json!({"type": "presence_set", "status": "away"})).await {
            ctx.rec.error("presence_set", &err.code());
        }
    }
    meeting::rejoin(ctx, conn, session).await;
    true
}
