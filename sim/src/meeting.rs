//! Meetings: the host creates its planned meeting over HTTP (invitees online get
//! `meeting_invite`, offline ones a push), everyone planned joins, toggles audio/video/hand
//! and relays signaling: offers and ICE candidates to the other participants, answers to
//! every offer received. Each signal carries a nonce, so the receiver can tell it arrived
//! at its addressee. After a reconnect a participant sends `meeting_join` again (same
//! participant id within the grace period).

use serde_json::{json, Value};

use crate::conn::Conn;
use crate::state::{Session, UserCtx};

/// A meeting step if one is due (returns true when it took the turn).
pub async fn tick(ctx: &UserCtx, conn: &Conn, session: &mut Session) -> bool {
    let me = ctx.index;
    let elapsed = ctx.rec.start.elapsed().as_secs();
    let due = {
        let slots = ctx.board.lock();
        slots.iter().enumerate().find_map(|(index, slot)| {
            let planned = slot.plan.host == me || slot.plan.guests.contains(&me);
            if !planned {
                return None;
            }
            if slot.id.is_none() && slot.plan.host == me && elapsed >= slot.plan.start_after_s {
                return Some((index, Step::Create));
            }
            match &slot.id {
                Some(id) if !session.meetings.contains(&index) => Some((index, Step::Join(id.clone()))),
                Some(id) => Some((index, Step::Talk(id.clone()))),
                None => None,
            }
        })
    };
    match due {
        Some((index, Step::Create)) => create(ctx, session, index).await,
        Some((index, Step::Join(id))) => join(ctx, conn, session, index, &id).await,
        Some((index, Step::Talk(id))) if session.rng.chance(0.35) => talk(ctx, conn, session, index, &id).await,
        _ => return false,
    }
    true
}

enum Step {
    Create,
    Join(String),
    Talk(String),
}

async fn create(ctx: &UserCtx, session: &mut Session, index: usize) {
    let plan = ctx.board.lock()[index].plan.clone();
    let invitees: Vec<&str> =
        plan.guests.iter().chain(&plan.offline_invitees).map(|&u| ctx.world.users[u].id.as_str()).collect();
    let body = json!({"title": format!("sync {index}"), "invitees": invitees});
    let token = &ctx.world.users[ctx.index].token;
    match ctx.api.post(session.url, "/v1/meetings", Some(token), body).await {
        Ok(answer) => match answer["meeting"]["id"].as_str() {
            Some(id) => {
                ctx.board.lock()[index].id = Some(id.to_owned());
                let at = ctx.rec.since_start(std::time::Instant::now());
                ctx.rec.lock().meeting_ids.push((id.to_owned(), plan.offline_invitees.clone(), at));
                ctx.rec.count("meetings_created");
            }
            None => ctx.rec.error("meeting_create", "bad_answer"),
        },
        Err(err) => ctx.rec.error("meeting_create", &err.code),
    }
}

async fn join(ctx: &UserCtx, conn: &Conn, session: &mut Session, index: usize, id: &str) {
    match conn.request(json!({"type": "meeting_join", "meeting_id": id})).await {
        Ok(result) => {
            let Some(participant) = result["participant_id"].as_str() else {
                ctx.rec.error("meeting_join", "bad_answer");
                return;
            };
            ctx.board.lock()[index].participants.insert(ctx.index, participant.to_owned());
            if !session.meetings.contains(&index) {
                session.meetings.push(index);
                ctx.rec.count("meeting_joins");
            } else {
                ctx.rec.count("meeting_rejoins");
            }
        }
        Err(err) => ctx.rec.error("meeting_join", &err.code()),
    }
}

/// After a reconnect: `meeting_join` again for every meeting this user was in.
pub async fn rejoin(ctx: &UserCtx, conn: &Conn, session: &mut Session) {
    for index in session.meetings.clone() {
        let id = ctx.board.lock()[index].id.clone();
        if let Some(id) = id {
            join(ctx, conn, session, index, &id).await;
        }
    }
}

/// A media state change, or an offer and a candidate to another participant.
async fn talk(ctx: &UserCtx, conn: &Conn, session: &mut Session, index: usize, id: &str) {
    if session.rng.chance(0.4) {
        let field = ["audio", "video", "hand"][session.rng.below(3)];
        let mut frame = json!({"type": "meeting_state", "meeting_id": id});
        frame[field] = Value::Bool(session.rng.chance(0.5));
        match conn.request(frame).await {
            Ok(_) => ctx.rec.count("meeting_state_changes"),
            Err(err) => ctx.rec.error("meeting_state", &err.code()),
        }
        return;
    }
    let others: Vec<(usize, String)> = ctx.board.lock()[index]
        .participants
        .iter()
        .filter(|(&user, _)| user != ctx.index)
        .map(|(&user, participant)| (user, participant.clone()))
        .collect();
    let Some((to_user, to)) = session.rng.pick(&others).cloned() else { return };
    signal(ctx, conn, id, &to, to_user, "offer").await;
    signal(ctx, conn, id, &to, to_user, "ice").await;
}

/// Answers every offer received since the last turn (with an answer and a candidate).
pub async fn answer_offers(ctx: &UserCtx, conn: &Conn, _session: &mut Session) {
    let offers = std::mem::take(&mut *ctx.offers.lock().expect("offers"));
    for offer in offers {
        signal(ctx, conn, &offer.meeting_id, &offer.from_participant, offer.from_user, "answer").await;
        signal(ctx, conn, &offer.meeting_id, &offer.from_participant, offer.from_user, "ice").await;
    }
}

async fn signal(ctx: &UserCtx, conn: &Conn, meeting_id: &str, to: &str, to_user: usize, kind: &str) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let payload = if kind == "ice" {
        json!({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0",
               "sdpMLineIndex": 0, "sim_nonce": nonce})
    } else {
        json!({"type": kind, "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n", "sim_nonce": nonce})
    };
    ctx.rec.signal_sent(&nonce, ctx.index, to_user, kind);
    let frame = json!({"type": "signal", "meeting_id": meeting_id, "to": to, "kind": kind, "payload": payload});
    match conn.request(frame).await {
        Ok(_) => ctx.rec.signal_acked(&nonce),
        Err(err) => ctx.rec.error("signal", &err.code()),
    }
}
