//! ChannelActor: one per active channel. It owns the channel's sequence, persists every
//! durable event **before** acknowledging or fanning it out, and keeps the ephemeral state:
//! live subscribers and who is typing.
//!
//! **Invariant:** `head_seq` is the seq of the last event known to be stored; a store error
//! whose outcome is unknown stops the actor so the next message reloads `head_seq`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::directory::Directory;
use crate::ports::{
    AppendOutcome, Caller, ChannelKind, ChannelSnapshot, Member, Mutation, NewMessage, PushNotice, StoreError,
};
use crate::protocol::{
    now_millis, parse_mentions, ChannelEvent, ChannelSeq, ErrorCode, MessageView, NotificationReason, ReadCursor,
    RequestError, ServerFrame, MAX_ATTACHMENTS, MAX_BODY_BYTES, MAX_EMOJI_BYTES,
};
use crate::routing::{ChannelAnswer, ChannelRequest, NodeId, SessionAddr};
use crate::session::{fan_out, Delivery, SessionSink};

pub type Reply<T> = RpcReplyPort<Result<T, RequestError>>;

/// What a new message carries from the client.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MessageDraft {
    pub client_msg_id: String,
    pub body: String,
    pub parent_id: Option<Uuid>,
    pub attachment_ids: Vec<Uuid>,
}

/// The answer to a subscription: where the channel stands now.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubscribeAnswer {
    pub channel_id: Uuid,
    pub head_seq: ChannelSeq,
    pub read_cursors: Vec<ReadCursor>,
    pub typing: Vec<Uuid>,
}

pub enum ChannelMsg {
    /// A request from a session or an HTTP handler, local or from another node.
    Request {
        request: ChannelRequest,
        reply: Reply<ChannelAnswer>,
    },
    /// These nodes left the cluster: forget their sessions.
    DropNodes(Vec<NodeId>),
    /// Ends a typing indicator nobody refreshed; `generation` guards against a newer refresh.
    ExpireTyping {
        user_id: Uuid,
        generation: u64,
    },
    IdleCheck,
}

#[derive(Debug, Clone, Copy)]
pub struct ChannelConfig {
    pub typing_ttl: Duration,
    pub idle_timeout: Duration,
    pub max_subscribers: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self { typing_ttl: Duration::from_secs(5), idle_timeout: Duration::from_secs(60), max_subscribers: 100_000 }
    }
}

pub struct ChannelArgs {
    pub snapshot: ChannelSnapshot,
    pub directory: Directory,
    pub config: ChannelConfig,
}

/// The channel's state. Plain data with plain methods; the actor only sequences the I/O.
pub struct ChannelState {
    pub snapshot: ChannelSnapshot,
    subscribers: HashMap<Uuid, SessionSink>,
    typing: HashMap<Uuid, u64>,
    typing_generation: u64,
    last_activity: Instant,
    directory: Directory,
    config: ChannelConfig,
    idle_timer: Option<ractor::concurrency::JoinHandle<()>>,
}

impl ChannelState {
    fn channel_id(&self) -> Uuid {
        self.snapshot.channel_id
    }

    /// Refuses callers of another company as if the channel did not exist.
    fn check_tenant(&self, caller: &Caller) -> Result<(), RequestError> {
        if caller.company_id == self.snapshot.company_id {
            Ok(())
        } else {
            Err(RequestError::not_found("channel"))
        }
    }

    fn member(&self, user_id: Uuid) -> Option<&Member> {
        self.snapshot.members.iter().find(|member| member.user_id == user_id)
    }

    fn check_member(&self, caller: &Caller) -> Result<(), RequestError> {
        self.check_tenant(caller)?;
        match self.member(caller.user_id) {
            Some(_) => Ok(()),
            // A private channel or DM does not exist for outsiders.
            None if self.snapshot.kind != ChannelKind::Public => Err(RequestError::not_found("channel")),
            None => Err(RequestError::new(ErrorCode::NotMember, "not a member of this channel")),
        }
    }

    fn mentioned_members(&self, body: &str) -> Vec<Uuid> {
        parse_mentions(body)
            .into_iter()
            .filter_map(|name| self.snapshot.members.iter().find(|m| m.username == name))
            .map(|member| member.user_id)
            .collect()
    }

    fn cursor(&self, user_id: Uuid) -> ChannelSeq {
        self.snapshot.read_cursors.iter().find(|c| c.user_id == user_id).map(|c| c.seq).unwrap_or(0)
    }

    /// Sends one frame to every subscriber; subscribers whose session is gone are dropped.
    fn broadcast(&mut self, seq: Option<ChannelSeq>, frame: &ServerFrame) {
        let delivery = Delivery::frame(Some(self.snapshot.channel_id), seq, Arc::from(frame.to_text()));
        fan_out(&mut self.subscribers, &delivery);
    }

    fn broadcast_event(&mut self, seq: ChannelSeq, event: ChannelEvent) {
        let frame = ServerFrame::Event { channel_id: self.snapshot.channel_id, seq, event };
        self.broadcast(Some(seq), &frame);
    }

    fn set_typing(&mut self, user_id: Uuid, active: bool) -> Option<u64> {
        let changed = if active {
            self.typing_generation += 1;
            self.typing.insert(user_id, self.typing_generation).is_none()
        } else {
            self.typing.remove(&user_id).is_some()
        };
        if changed {
            let frame = ServerFrame::Typing { channel_id: self.snapshot.channel_id, user_id, active };
            self.broadcast(None, &frame);
        }
        active.then_some(self.typing_generation)
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty()
            && self.typing.is_empty()
            && self.last_activity.elapsed() >= self.config.idle_timeout
    }
}

/// Turns a store failure into the client's answer, and says whether the actor must reload.
fn store_failure(channel_id: Uuid, err: StoreError) -> (RequestError, bool) {
    match err {
        StoreError::Unavailable(detail) => {
            warn!(%channel_id, %detail, "channel store unavailable, write aborted");
            (RequestError::unavailable(), false)
        }
        StoreError::Unknown(detail) | StoreError::Conflict(detail) => {
            warn!(%channel_id, %detail, "channel write outcome unknown, actor restarts to reload");
            (RequestError::unavailable(), true)
        }
    }
}

fn validate_draft(draft: &MessageDraft) -> Result<(), RequestError> {
    if draft.client_msg_id.is_empty() || draft.client_msg_id.len() > 128 {
        return Err(RequestError::invalid("client_msg_id must be 1 to 128 bytes"));
    }
    if draft.body.trim().is_empty() && draft.attachment_ids.is_empty() {
        return Err(RequestError::invalid("a message needs a body or an attachment"));
    }
    if draft.body.len() > MAX_BODY_BYTES {
        return Err(RequestError::new(ErrorCode::PayloadTooLarge, format!("body exceeds {MAX_BODY_BYTES} bytes")));
    }
    if draft.attachment_ids.len() > MAX_ATTACHMENTS {
        return Err(RequestError::invalid(format!("at most {MAX_ATTACHMENTS} attachments")));
    }
    Ok(())
}

fn validate_body(body: &str) -> Result<(), RequestError> {
    if body.trim().is_empty() {
        return Err(RequestError::invalid("body must not be empty"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::new(ErrorCode::PayloadTooLarge, format!("body exceeds {MAX_BODY_BYTES} bytes")));
    }
    Ok(())
}

fn validate_emoji(emoji: &str) -> Result<(), RequestError> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES || emoji.chars().any(char::is_whitespace) {
        return Err(RequestError::invalid("emoji must be 1 to 64 bytes without spaces"));
    }
    Ok(())
}

pub struct ChannelActor;

/// What a handler wants the actor to do once it has replied.
enum After {
    Continue,
    Reload,
}

impl Actor for ChannelActor {
    type Msg = ChannelMsg;
    type State = ChannelState;
    type Arguments = ChannelArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ChannelMsg>,
        args: ChannelArgs,
    ) -> Result<ChannelState, ActorProcessingErr> {
        let check_every = (args.config.idle_timeout / 2).max(Duration::from_millis(50));
        let idle_timer = myself.send_interval(check_every, || ChannelMsg::IdleCheck);
        debug!(channel_id = %args.snapshot.channel_id, head_seq = args.snapshot.head_seq, "channel actor started");
        Ok(ChannelState {
            snapshot: args.snapshot,
            subscribers: HashMap::new(),
            typing: HashMap::new(),
            typing_generation: 0,
            last_activity: Instant::now(),
            directory: args.directory,
            config: args.config,
            idle_timer: Some(idle_timer),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ChannelMsg>,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        // Whoever still listens must subscribe again (to this channel's next actor, here or
        // on its new owner), or it would silently stop receiving.
        fan_out(&mut state.subscribers, &Delivery::resubscribe(state.snapshot.channel_id));
        debug!(channel_id = %state.channel_id(), "channel actor stopped");
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ChannelMsg>,
        msg: ChannelMsg,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(msg, ChannelMsg::Request { .. }) {
            state.last_activity = Instant::now();
        }
        let after = match msg {
            ChannelMsg::Request { request, reply } => self.serve(&myself, state, request, reply).await,
            ChannelMsg::DropNodes(nodes) => {
                state.subscribers.retain(|_, sink| !nodes.contains(&sink.addr.node));
                After::Continue
            }
            ChannelMsg::ExpireTyping { user_id, generation } => {
                if state.typing.get(&user_id) == Some(&generation) {
                    state.set_typing(user_id, false);
                }
                After::Continue
            }
            ChannelMsg::IdleCheck => {
                if state.is_idle() {
                    debug!(channel_id = %state.channel_id(), "channel idle, stopping");
                    myself.stop(Some("idle".to_owned()));
                }
                After::Continue
            }
        };
        if let After::Reload = after {
            myself.stop(Some("reload after uncertain write".to_owned()));
        }
        Ok(())
    }
}

impl ChannelActor {
    async fn serve(
        &self,
        myself: &ActorRef<ChannelMsg>,
        state: &mut ChannelState,
        request: ChannelRequest,
        reply: Reply<ChannelAnswer>,
    ) -> After {
        match request {
            ChannelRequest::Subscribe { caller, session } => {
                reply_to(reply, subscribe(state, caller, session).map(ChannelAnswer::Subscribed));
                After::Continue
            }
            ChannelRequest::Unsubscribe { session_id } => {
                state.subscribers.remove(&session_id);
                reply_to(reply, Ok(ChannelAnswer::Done));
                After::Continue
            }
            ChannelRequest::Send { caller, draft } => {
                let outcome = send_message(state, caller, draft).await;
                respond(reply, outcome.map(|message| ChannelAnswer::Message(Box::new(message))))
            }
            ChannelRequest::Edit { caller, message_id, body } => {
                respond(reply, edit_message(state, caller, message_id, body).await.map(ChannelAnswer::Seq))
            }
            ChannelRequest::Delete { caller, message_id } => {
                respond(reply, delete_message(state, caller, message_id).await.map(ChannelAnswer::Seq))
            }
            ChannelRequest::React { caller, message_id, emoji, add } => {
                respond(reply, react(state, caller, message_id, emoji, add).await.map(ChannelAnswer::MaybeSeq))
            }
            ChannelRequest::Read { caller, seq } => {
                respond(reply, mark_read(state, caller, seq).await.map(ChannelAnswer::Seq))
            }
            ChannelRequest::Typing { caller, active } => {
                let outcome = state.check_member(&caller).map(|()| state.set_typing(caller.user_id, active));
                if let Ok(Some(generation)) = outcome {
                    let user_id = caller.user_id;
                    myself
                        .send_after(state.config.typing_ttl, move || ChannelMsg::ExpireTyping { user_id, generation });
                }
                reply_to(reply, outcome.map(|_| ChannelAnswer::Done));
                After::Continue
            }
            ChannelRequest::Join { caller } => respond(reply, join(state, caller).await.map(ChannelAnswer::MaybeSeq)),
            ChannelRequest::AddMember { caller, user_id } => {
                respond(reply, add_member(state, caller, user_id).await.map(ChannelAnswer::MaybeSeq))
            }
            ChannelRequest::Leave { caller } => respond(reply, leave(state, caller).await.map(ChannelAnswer::MaybeSeq)),
        }
    }
}

type Outcome<T> = Result<T, (RequestError, bool)>;

fn reply_to<T>(reply: Reply<T>, result: Result<T, RequestError>) {
    if reply.send(result).is_err() {
        debug!("requester went away before the channel replied");
    }
}

fn respond<T>(reply: Reply<T>, outcome: Outcome<T>) -> After {
    match outcome {
        Ok(value) => {
            reply_to(reply, Ok(value));
            After::Continue
        }
        Err((err, reload)) => {
            reply_to(reply, Err(err));
            if reload {
                After::Reload
            } else {
                After::Continue
            }
        }
    }
}

fn refuse<T>(err: RequestError) -> Outcome<T> {
    Err((err, false))
}

fn subscribe(state: &mut ChannelState, caller: Caller, session: SessionAddr) -> Result<SubscribeAnswer, RequestError> {
    state.check_member(&caller)?;
    if session.user_id != caller.user_id {
        return Err(RequestError::new(ErrorCode::Forbidden, "a session subscribes for its own user"));
    }
    if state.subscribers.len() >= state.config.max_subscribers && !state.subscribers.contains_key(&session.session_id) {
        return Err(RequestError::new(ErrorCode::Unavailable, "channel has too many live subscribers"));
    }
    let sink: SessionSink = state.directory.sink(session).ok_or_else(|| RequestError::not_found("session"))?;
    state.subscribers.insert(session.session_id, sink);
    Ok(SubscribeAnswer {
        channel_id: state.channel_id(),
        head_seq: state.snapshot.head_seq,
        read_cursors: state.snapshot.read_cursors.clone(),
        typing: state.typing.keys().copied().collect(),
    })
}

async fn send_message(state: &mut ChannelState, caller: Caller, draft: MessageDraft) -> Outcome<MessageView> {
    if let Err(err) = state.check_member(&caller).and_then(|()| validate_draft(&draft)) {
        return refuse(err);
    }
    let channel_id = state.channel_id();
    let store = state.directory.ports().channels.clone();
    if let Some(parent_id) = draft.parent_id {
        match store.message(channel_id, parent_id).await {
            Ok(Some(parent)) if parent.parent_id.is_none() => {}
            Ok(Some(_)) => return refuse(RequestError::invalid("replies nest one level: reply to the thread's root")),
            Ok(None) => return refuse(RequestError::not_found("parent message")),
            Err(err) => return Err(store_failure(channel_id, err)),
        }
    }
    if !draft.attachment_ids.is_empty() {
        match store.attachments_belong(channel_id, &draft.attachment_ids).await {
            Ok(true) => {}
            Ok(false) => return refuse(RequestError::not_found("attachment")),
            Err(err) => return Err(store_failure(channel_id, err)),
        }
    }
    let seq = state.snapshot.head_seq + 1;
    let message = MessageView {
        id: Uuid::now_v7(),
        channel_id,
        seq,
        sender_id: caller.user_id,
        mentions: state.mentioned_members(&draft.body),
        client_msg_id: draft.client_msg_id,
        parent_id: draft.parent_id,
        body: draft.body,
        attachment_ids: draft.attachment_ids,
        created_at: now_millis(),
        edited_at: None,
        deleted: false,
        reactions: Vec::new(),
    };
    let new = NewMessage { message, company_id: state.snapshot.company_id };
    match store.append_message(seq, &new).await {
        Ok(AppendOutcome::Stored) => {}
        Ok(AppendOutcome::Duplicate(earlier)) if earlier.sender_id == caller.user_id => return Ok(*earlier),
        Ok(AppendOutcome::Duplicate(_)) => {
            return refuse(RequestError::new(ErrorCode::Conflict, "client_msg_id already used by another sender"))
        }
        Err(err) => return Err(store_failure(channel_id, err)),
    }
    state.snapshot.head_seq = seq;
    let message = new.message;
    state.set_typing(caller.user_id, false);
    state.broadcast_event(seq, ChannelEvent::MessageNew { message: message.clone() });
    notify_people(state, &message);
    Ok(message)
}

/// Mentioned members, and the other side of a direct message, hear about it on every
/// device; with no live session, on their phones.
fn notify_people(state: &ChannelState, message: &MessageView) {
    let mut targets: Vec<(Uuid, NotificationReason)> =
        message.mentions.iter().map(|user| (*user, NotificationReason::Mention)).collect();
    if state.snapshot.kind == ChannelKind::Direct {
        for member in &state.snapshot.members {
            if member.user_id != message.sender_id && !message.mentions.contains(&member.user_id) {
                targets.push((member.user_id, NotificationReason::DirectMessage));
            }
        }
    }
    targets.retain(|(user, _)| *user != message.sender_id);
    let sender = state.member(message.sender_id).map_or("someone", |member| member.username.as_str());
    for (user_id, reason) in targets {
        let frame = ServerFrame::Notification {
            reason,
            channel_id: message.channel_id,
            seq: message.seq,
            message: message.clone(),
        };
        let push = message_push(user_id, reason, sender, message);
        state.directory.notify_user_later(user_id, Arc::from(frame.to_text()), Some(push));
    }
}

/// The phone notification for a mention or a direct message, with a deep link to it.
fn message_push(user_id: Uuid, reason: NotificationReason, sender: &str, message: &MessageView) -> PushNotice {
    let title = match reason {
        NotificationReason::Mention => format!("{sender} mentioned you"),
        NotificationReason::DirectMessage => format!("Message from {sender}"),
    };
    let body: String = message.body.chars().take(140).collect();
    let kind = match reason {
        NotificationReason::Mention => "mention",
        NotificationReason::DirectMessage => "direct_message",
    };
    let data = [
        ("kind", kind.to_owned()),
        ("channel_id", message.channel_id.to_string()),
        ("message_id", message.id.to_string()),
        ("seq", message.seq.to_string()),
        ("deep_link", format!("lark://channel/{}/message/{}", message.channel_id, message.id)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    PushNotice { user_id, title, body, data }
}

/// Stores `mutation` with its event at the next seq and broadcasts it. `None` when nothing changed.
async fn record(state: &mut ChannelState, mutation: Mutation, event: ChannelEvent) -> Outcome<Option<ChannelSeq>> {
    let channel_id = state.channel_id();
    let seq = state.snapshot.head_seq + 1;
    let store = state.directory.ports().channels.clone();
    match store.apply(channel_id, seq, &mutation, &event).await {
        Ok(true) => {
            state.snapshot.head_seq = seq;
            state.broadcast_event(seq, event);
            Ok(Some(seq))
        }
        Ok(false) => Ok(None),
        Err(err) => Err(store_failure(channel_id, err)),
    }
}

/// Loads a live (not deleted) message of this channel.
async fn live_message(state: &ChannelState, message_id: Uuid) -> Outcome<MessageView> {
    let channel_id = state.channel_id();
    match state.directory.ports().channels.message(channel_id, message_id).await {
        Ok(Some(message)) if !message.deleted => Ok(message),
        Ok(_) => refuse(RequestError::not_found("message")),
        Err(err) => Err(store_failure(channel_id, err)),
    }
}

async fn edit_message(state: &mut ChannelState, caller: Caller, message_id: Uuid, body: String) -> Outcome<ChannelSeq> {
    if let Err(err) = state.check_member(&caller).and_then(|()| validate_body(&body)) {
        return refuse(err);
    }
    let message = live_message(state, message_id).await?;
    if message.sender_id != caller.user_id {
        return refuse(RequestError::new(ErrorCode::Forbidden, "only the author can edit a message"));
    }
    let at = now_millis();
    let mentions = state.mentioned_members(&body);
    let mutation = Mutation::EditMessage { message_id, body: body.clone(), mentions: mentions.clone(), at };
    let event = ChannelEvent::MessageEdited { message_id, body, mentions, edited_at: at };
    record(state, mutation, event).await.map(|seq| seq.unwrap_or(state.snapshot.head_seq))
}

async fn delete_message(state: &mut ChannelState, caller: Caller, message_id: Uuid) -> Outcome<ChannelSeq> {
    if let Err(err) = state.check_member(&caller) {
        return refuse(err);
    }
    let message = live_message(state, message_id).await?;
    if message.sender_id != caller.user_id {
        return refuse(RequestError::new(ErrorCode::Forbidden, "only the author can delete a message"));
    }
    let at = now_millis();
    let mutation = Mutation::DeleteMessage { message_id, at };
    let event = ChannelEvent::MessageDeleted { message_id, deleted_at: at };
    record(state, mutation, event).await.map(|seq| seq.unwrap_or(state.snapshot.head_seq))
}

async fn react(
    state: &mut ChannelState,
    caller: Caller,
    message_id: Uuid,
    emoji: String,
    add: bool,
) -> Outcome<Option<ChannelSeq>> {
    if let Err(err) = state.check_member(&caller).and_then(|()| validate_emoji(&emoji)) {
        return refuse(err);
    }
    live_message(state, message_id).await?;
    let user_id = caller.user_id;
    let (mutation, event) = if add {
        (
            Mutation::AddReaction { message_id, user_id, emoji: emoji.clone() },
            ChannelEvent::ReactionAdded { message_id, user_id, emoji },
        )
    } else {
        (
            Mutation::RemoveReaction { message_id, user_id, emoji: emoji.clone() },
            ChannelEvent::ReactionRemoved { message_id, user_id, emoji },
        )
    };
    record(state, mutation, event).await
}

async fn mark_read(state: &mut ChannelState, caller: Caller, seq: ChannelSeq) -> Outcome<ChannelSeq> {
    if let Err(err) = state.check_member(&caller) {
        return refuse(err);
    }
    if seq < 0 || seq > state.snapshot.head_seq {
        return refuse(RequestError::invalid(format!(
            "read seq must be between 0 and the channel head {}",
            state.snapshot.head_seq
        )));
    }
    let current = state.cursor(caller.user_id);
    if seq <= current {
        return Ok(current);
    }
    let channel_id = state.channel_id();
    let store = state.directory.ports().channels.clone();
    if let Err(err) = store.set_read_cursor(channel_id, caller.user_id, seq).await {
        // A cursor write is idempotent and monotonic: retrying is safe, no reload needed.
        return Err((store_failure(channel_id, err).0, false));
    }
    match state.snapshot.read_cursors.iter_mut().find(|c| c.user_id == caller.user_id) {
        Some(cursor) => cursor.seq = seq,
        None => state.snapshot.read_cursors.push(ReadCursor { user_id: caller.user_id, seq }),
    }
    state.broadcast(None, &ServerFrame::Read { channel_id, user_id: caller.user_id, seq });
    Ok(seq)
}

async fn join(state: &mut ChannelState, caller: Caller) -> Outcome<Option<ChannelSeq>> {
    if let Err(err) = state.check_tenant(&caller) {
        return refuse(err);
    }
    if state.member(caller.user_id).is_some() {
        return Ok(None);
    }
    if state.snapshot.kind != ChannelKind::Public {
        // Private channels and DMs do not exist for outsiders: joining them is by invitation.
        return refuse(RequestError::not_found("channel"));
    }
    admit(state, caller.company_id, caller.user_id).await
}

async fn add_member(state: &mut ChannelState, caller: Caller, user_id: Uuid) -> Outcome<Option<ChannelSeq>> {
    if let Err(err) = state.check_member(&caller) {
        return refuse(err);
    }
    if state.snapshot.kind == ChannelKind::Direct {
        return refuse(RequestError::new(ErrorCode::Forbidden, "direct messages have fixed members"));
    }
    if state.member(user_id).is_some() {
        return Ok(None);
    }
    admit(state, caller.company_id, user_id).await
}

async fn admit(state: &mut ChannelState, company_id: Uuid, user_id: Uuid) -> Outcome<Option<ChannelSeq>> {
    let channel_id = state.channel_id();
    let candidate = match state.directory.ports().channels.member_candidate(company_id, user_id).await {
        Ok(Some(candidate)) => candidate,
        Ok(None) => return refuse(RequestError::not_found("user")),
        Err(err) => return Err(store_failure(channel_id, err)),
    };
    let seq = record(state, Mutation::AddMember { user_id }, ChannelEvent::MemberJoined { user_id }).await?;
    state.snapshot.members.push(candidate);
    Ok(seq)
}

async fn leave(state: &mut ChannelState, caller: Caller) -> Outcome<Option<ChannelSeq>> {
    if let Err(err) = state.check_member(&caller) {
        return refuse(err);
    }
    if state.snapshot.kind == ChannelKind::Direct {
        return refuse(RequestError::new(ErrorCode::Forbidden, "direct messages have fixed members"));
    }
    let user_id = caller.user_id;
    let seq = record(state, Mutation::RemoveMember { user_id }, ChannelEvent::MemberLeft { user_id }).await?;
    state.snapshot.members.retain(|member| member.user_id != user_id);
    state.subscribers.retain(|_, sink| sink.addr.user_id != user_id);
    state.set_typing(user_id, false);
    Ok(seq)
}
