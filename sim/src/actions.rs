//! What a user does during the day, one action per turn: messages (with mentions, in
//! threads, with a file), DMs, reactions, edits, typing, read receipts, presence, and its
//! meeting (`meeting.rs`). Sends keep their `client_msg_id` until acknowledged and are sent
//! again after errors that allow it (protocol §4, step 5).

use std::time::Instant;

use serde_json::json;

use crate::conn::{Conn, ReqError};
use crate::meeting;
use crate::record::SentMessage;
use crate::state::{Outgoing, Session, UserCtx};
use crate::world::Kind;

const EMOJI: [&str; 4] = ["👍", "🎉", "eyes", "heart"];

/// One turn: picks an action by weight.
pub async fn act(ctx: &UserCtx, conn: &Conn, session: &mut Session) {
    if meeting::tick(ctx, conn, session).await {
        return;
    }
    let roll = session.rng.below(100);
    let result = match roll {
        0..=39 => send_in_channel(ctx, conn, session, false).await,
        40..=51 => send_in_channel(ctx, conn, session, true).await,
        52..=61 => react(ctx, conn, session).await,
        62..=66 => edit(ctx, conn, session).await,
        67..=70 => send_file(ctx, conn, session).await,
        71..=82 => read(ctx, conn, session).await,
        83..=85 => toggle_presence(ctx, conn, session).await,
        _ => Ok(()),
    };
    if let Err(err) = result {
        ctx.rec.error("action", &err.code());
    }
}

/// Sends again, with the same client_msg_id, what was not acknowledged.
pub async fn resend(ctx: &UserCtx, conn: &Conn, session: &mut Session) {
    let waiting: Vec<Outgoing> = std::mem::take(&mut session.unacked);
    for outgoing in waiting {
        if conn.is_closed() {
            session.unacked.push(outgoing);
            continue;
        }
        ctx.rec.count("resends");
        send(ctx, conn, session, outgoing).await;
    }
}

/// Sends one message; keeps it for a resend unless it was acknowledged or refused for good.
async fn send(ctx: &UserCtx, conn: &Conn, session: &mut Session, outgoing: Outgoing) {
    match conn.request(outgoing.frame.clone()).await {
        Ok(result) => {
            let id = result["id"].as_str().unwrap_or_default().to_owned();
            let seq = result["seq"].as_i64().unwrap_or(-1);
            ctx.rec.acked(&outgoing.client_msg_id, id.clone(), seq);
            session.own_messages.push((outgoing.channel, id));
        }
        Err(err) => {
            ctx.rec.error("send", &err.code());
            match err {
                ReqError::Closed | ReqError::Timeout => session.unacked.push(outgoing),
                ReqError::Code(code) if code == "unavailable" || code == "rate_limited" => {
                    session.unacked.push(outgoing)
                }
                ReqError::Code(_) => ctx.rec.count("sends_refused"),
            }
        }
    }
}

/// Composes and sends a message to `channel`.
pub async fn compose(
    ctx: &UserCtx,
    conn: &Conn,
    session: &mut Session,
    channel: usize,
    parent_id: Option<String>,
    attachment: Option<String>,
) {
    let world = &ctx.world;
    let me = ctx.index;
    let others: Vec<usize> = world.channels[channel].members.iter().copied().filter(|&u| u != me).collect();
    let mut mentions = Vec::new();
    // A file may go without a text (and so without mentions).
    let text = attachment.is_none() || session.rng.chance(0.5);
    let mut body =
        if text { format!("note {} from {}", session.sent, world.users[me].username) } else { String::new() };
    if text && world.channels[channel].kind != Kind::Dm && session.rng.chance(0.3) {
        let offline: Vec<usize> = others.iter().copied().filter(|&u| !world.users[u].online).collect();
        let pool = if !offline.is_empty() && session.rng.chance(0.5) { &offline } else { &others };
        if let Some(&who) = session.rng.pick(pool) {
            body.push_str(&format!(" cc @{}", world.users[who].username));
            mentions.push(who);
        }
    }
    session.sent += 1;
    let client_msg_id = uuid::Uuid::new_v4().to_string();
    let frame = json!({
        "type": "send",
        "channel_id": world.channels[channel].id,
        "client_msg_id": client_msg_id,
        "body": body,
        "parent_id": parent_id,
        "attachment_ids": attachment.iter().collect::<Vec<_>>(),
    });
    if parent_id.is_some() {
        ctx.rec.count("thread_replies");
    }
    if !mentions.is_empty() {
        ctx.rec.count("messages_with_mentions");
    }
    if world.channels[channel].kind == Kind::Dm {
        ctx.rec.count("dm_messages");
    }
    let sent = SentMessage { sender: me, channel, first_sent: Instant::now(), acked: None, mentions };
    ctx.rec.composed(&client_msg_id, sent);
    send(ctx, conn, session, Outgoing { client_msg_id, channel, frame }).await;
}

async fn send_in_channel(ctx: &UserCtx, conn: &Conn, session: &mut Session, dm: bool) -> Result<(), ReqError> {
    let mine: Vec<usize> = ctx
        .world
        .channels_of(ctx.index)
        .into_iter()
        .filter(|&c| (ctx.world.channels[c].kind == Kind::Dm) == dm)
        .collect();
    let Some(&channel) = session.rng.pick(&mine) else { return Ok(()) };
    if session.rng.chance(0.3) {
        conn.request(json!({"type": "typing_start", "channel_id": ctx.world.channels[channel].id})).await?;
        ctx.rec.count("typing_starts");
    }
    let parent = if !dm && session.rng.chance(0.2) {
        let recent = ctx.recent.lock().expect("recent");
        let roots: Vec<String> = recent
            .get(&channel)
            .map(|list| list.iter().filter(|m| m.is_root).map(|m| m.message_id.clone()).collect())
            .unwrap_or_default();
        session.rng.pick(&roots).cloned()
    } else {
        None
    };
    compose(ctx, conn, session, channel, parent, None).await;
    Ok(())
}

async fn send_file(ctx: &UserCtx, conn: &Conn, session: &mut Session) -> Result<(), ReqError> {
    let mine = ctx.world.channels_of(ctx.index);
    let Some(&channel) = session.rng.pick(&mine) else { return Ok(()) };
    let name = format!("notes-{}.txt", session.sent);
    let bytes = format!("simulated file {name} from {}\n", ctx.world.users[ctx.index].username).repeat(40);
    let token = &ctx.world.users[ctx.index].token;
    let channel_id = &ctx.world.channels[channel].id;
    match ctx.api.upload(session.url, token, channel_id, &name, bytes.into_bytes()).await {
        Ok(file_id) => {
            ctx.rec.count("files_uploaded");
            compose(ctx, conn, session, channel, None, Some(file_id)).await;
        }
        Err(err) => ctx.rec.error("upload", &err.code),
    }
    Ok(())
}

async fn react(ctx: &UserCtx, conn: &Conn, session: &mut Session) -> Result<(), ReqError> {
    let mine = ctx.world.channels_of(ctx.index);
    let Some(&channel) = session.rng.pick(&mine) else { return Ok(()) };
    let target = {
        let recent = ctx.recent.lock().expect("recent");
        recent.get(&channel).and_then(|list| session.rng.pick(list).cloned())
    };
    let Some(target) = target else { return Ok(()) };
    let emoji = EMOJI[session.rng.below(EMOJI.len())];
    let kind = if session.rng.chance(0.8) { "react" } else { "unreact" };
    let frame = json!({"type": kind, "channel_id": ctx.world.channels[channel].id,
        "message_id": target.message_id, "emoji": emoji});
    conn.request(frame).await?;
    ctx.rec.count(if kind == "react" { "reactions" } else { "unreactions" });
    Ok(())
}

async fn edit(ctx: &UserCtx, conn: &Conn, session: &mut Session) -> Result<(), ReqError> {
    let Some((channel, message_id)) = session.rng.pick(&session.own_messages).cloned() else { return Ok(()) };
    let frame = json!({"type": "edit", "channel_id": ctx.world.channels[channel].id,
        "message_id": message_id, "body": format!("edited by {}", ctx.world.users[ctx.index].username)});
    conn.request(frame).await?;
    ctx.rec.count("edits");
    Ok(())
}

async fn read(ctx: &UserCtx, conn: &Conn, session: &mut Session) -> Result<(), ReqError> {
    let mine = ctx.world.channels_of(ctx.index);
    let Some(&channel) = session.rng.pick(&mine) else { return Ok(()) };
    let seq = ctx.rec.max_seq(ctx.index, channel);
    if seq <= 0 {
        return Ok(());
    }
    conn.request(json!({"type": "read", "channel_id": ctx.world.channels[channel].id, "seq": seq})).await?;
    ctx.rec.count("read_receipts");
    Ok(())
}

async fn toggle_presence(ctx: &UserCtx, conn: &Conn, session: &mut Session) -> Result<(), ReqError> {
    let status = if session.away { "online" } else { "away" };
    conn.request(json!({"type": "presence_set", "status": status})).await?;
    session.away = !session.away;
    ctx.rec.count("presence_sets");
    Ok(())
}
