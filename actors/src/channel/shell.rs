//! The channel actor's state and what it does besides writing messages: it sequences the
//! store calls a decision of [`ChannelRoom`] needs, performs the room's effects (broadcasts,
//! notifications, timers) and keeps the live subscribers. Message sends go through
//! `writes` (batched); everything else is served here.
//!
//! **Invariant:** the actor persists every durable event **before** it acknowledges or fans it
//! out; a write whose outcome is unknown stops the actor (the next message reloads `head_seq`),
//! and a fenced write (a newer owner loaded the channel) stops it for good on this node.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use tracing::{debug, warn};
use uuid::Uuid;

use super::state::{AdmitPlan, ChangePlan, ChannelRoom, Effect, ReadPlan};
use crate::context::RoomContext;
use crate::delivery::{fan_out, Gone, SessionSink};
use crate::lifecycle::IdleTimer;
use crate::model::FrameText;
use crate::model::{Caller, ChannelSeq, Delivery, MessageView, RequestError};
use crate::ports::{AppendOutcome, ChannelSnapshot, Fence, StoreError};
use crate::routing::{ChannelAnswer, ChannelRequest, RouteError};

pub type Reply<T> = RpcReplyPort<Result<T, RouteError>>;

pub enum ChannelMsg {
    /// A request from a session or an HTTP handler, local or from another node.
    Request {
        request: ChannelRequest,
        reply: Reply<ChannelAnswer>,
    },
    /// These sessions are gone (their node left or restarted): forget them.
    Forget(Vec<Gone>),
    /// Ends a typing indicator nobody refreshed; `generation` guards against a newer refresh.
    ExpireTyping {
        user_id: Uuid,
        generation: u64,
    },
    /// The batch of messages in flight reached the store (or did not).
    Appended {
        result: Result<Vec<AppendOutcome>, StoreError>,
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
    /// The ownership token this actor writes with.
    pub fence: Fence,
    pub context: RoomContext,
    pub config: ChannelConfig,
}

pub struct ChannelState {
    pub(super) room: ChannelRoom,
    pub(super) fence: Fence,
    pub(super) subscribers: HashMap<Uuid, SessionSink>,
    pub(super) context: RoomContext,
    pub(super) config: ChannelConfig,
    pub(super) idle: IdleTimer,
    pub(super) writes: Writes,
}

/// Why a request failed, and what that means for the actor.
pub(super) enum Failure {
    /// Certainly not applied: the requester is told, the actor goes on.
    Refused(RequestError),
    /// Maybe applied: the requester is told, the actor stops so its successor reloads.
    Reload(RequestError),
    /// A newer owner holds the channel: the requester retries there, the actor stops.
    Fenced,
}

impl From<RequestError> for Failure {
    fn from(err: RequestError) -> Self {
        Failure::Refused(err)
    }
}

pub(super) fn store_failure(channel_id: Uuid, err: StoreError) -> Failure {
    match err {
        StoreError::Unavailable(detail) => {
            warn!(%channel_id, %detail, "channel store unavailable, write aborted");
            Failure::Refused(RequestError::unavailable())
        }
        StoreError::Unknown(detail) | StoreError::Conflict(detail) => {
            warn!(%channel_id, %detail, "channel write outcome unknown, actor restarts to reload");
            Failure::Reload(RequestError::unavailable())
        }
        StoreError::Fenced => {
            warn!(%channel_id, "a newer owner holds the channel, stopping");
            Failure::Fenced
        }
        StoreError::Rejected(detail) => {
            warn!(%channel_id, %detail, "the store refused the data, write aborted");
            Failure::Refused(RequestError::invalid("the request refers to something that no longer exists"))
        }
    }
}

impl ChannelState {
    pub(super) fn channel_id(&self) -> Uuid {
        self.room.channel_id()
    }

    pub(super) fn perform(&mut self, myself: &ActorRef<ChannelMsg>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Broadcast(outbound) => {
                    let delivery =
                        Delivery::new(outbound.kind, FrameText::from(outbound.frame.to_text()), self.context.node);
                    fan_out(&mut self.subscribers, &delivery);
                }
                Effect::Notify { user_id, frame, push } => {
                    self.context.notifier.notify_user_later(user_id, FrameText::from(frame.to_text()), push);
                }
                Effect::ExpireTypingLater { user_id, generation } => {
                    myself.send_after(self.config.typing_ttl, move || ChannelMsg::ExpireTyping { user_id, generation });
                }
                Effect::DropSubscriber { user_id } => self.subscribers.retain(|_, sink| sink.addr.user_id != user_id),
            }
        }
    }

    pub(super) async fn message(&self, message_id: Uuid) -> Result<Option<MessageView>, Failure> {
        let channel_id = self.channel_id();
        self.context.ports.channels.message(channel_id, message_id).await.map_err(|err| store_failure(channel_id, err))
    }

    fn subscribe(&mut self, caller: Caller, session: crate::model::SessionAddr) -> Result<ChannelAnswer, Failure> {
        self.room.authorize_subscribe(&caller, &session)?;
        if self.subscribers.len() >= self.config.max_subscribers && !self.subscribers.contains_key(&session.session_id)
        {
            return Err(RequestError::new(
                crate::model::ErrorCode::Unavailable,
                "channel has too many live subscribers",
            )
            .into());
        }
        let sink = self.context.sinks.sink(session).ok_or_else(|| RequestError::not_found("session"))?;
        self.subscribers.insert(session.session_id, sink);
        Ok(ChannelAnswer::Subscribed(self.room.subscribe_answer()))
    }

    /// Stores a planned change; `None` when it changed nothing.
    async fn store_change(
        &mut self,
        myself: &ActorRef<ChannelMsg>,
        plan: ChangePlan,
    ) -> Result<Option<ChannelSeq>, Failure> {
        let channel_id = self.channel_id();
        let store = self.context.ports.channels.clone();
        match store.apply(self.fence, channel_id, plan.seq, &plan.mutation, &plan.event).await {
            Ok(true) => {
                let effects = self.room.change_stored(&plan);
                self.perform(myself, effects);
                Ok(Some(plan.seq))
            }
            Ok(false) => Ok(None),
            Err(err) => Err(store_failure(channel_id, err)),
        }
    }

    async fn admit(
        &mut self,
        myself: &ActorRef<ChannelMsg>,
        caller: Caller,
        plan: AdmitPlan,
    ) -> Result<ChannelAnswer, Failure> {
        let AdmitPlan::Admit(user_id) = plan else {
            return Ok(ChannelAnswer::MaybeSeq(None));
        };
        let channel_id = self.channel_id();
        let candidate = self
            .context
            .ports
            .channels
            .member_candidate(caller.company_id, user_id)
            .await
            .map_err(|err| store_failure(channel_id, err))?;
        let change = self.room.plan_admit(&caller, candidate.as_ref())?;
        let seq = self.store_change(myself, change).await?;
        if let Some(candidate) = candidate {
            self.room.member_admitted(candidate);
        }
        Ok(ChannelAnswer::MaybeSeq(seq))
    }

    pub(super) async fn serve(
        &mut self,
        myself: &ActorRef<ChannelMsg>,
        request: ChannelRequest,
    ) -> Result<ChannelAnswer, Failure> {
        match request {
            ChannelRequest::Subscribe { caller, session } => self.subscribe(caller, session),
            ChannelRequest::Unsubscribe { session_id } => {
                self.subscribers.remove(&session_id);
                Ok(ChannelAnswer::Done)
            }
            // Sends are batched before they get here (see `writes`).
            ChannelRequest::Send { .. } => Err(RequestError::internal().into()),
            ChannelRequest::Edit { caller, message_id, body } => {
                let current = self.message(message_id).await?;
                let plan = self.room.plan_edit(&caller, current.as_ref(), body)?;
                let seq = self.store_change(myself, plan).await?;
                Ok(ChannelAnswer::Seq(seq.unwrap_or(self.room.head_seq())))
            }
            ChannelRequest::Delete { caller, message_id } => {
                let current = self.message(message_id).await?;
                let plan = self.room.plan_delete(&caller, current.as_ref())?;
                let seq = self.store_change(myself, plan).await?;
                Ok(ChannelAnswer::Seq(seq.unwrap_or(self.room.head_seq())))
            }
            ChannelRequest::React { caller, message_id, emoji, add } => {
                let current = self.message(message_id).await?;
                let plan = self.room.plan_reaction(&caller, current.as_ref(), emoji, add)?;
                Ok(ChannelAnswer::MaybeSeq(self.store_change(myself, plan).await?))
            }
            ChannelRequest::Read { caller, seq } => match self.room.plan_read(&caller, seq)? {
                ReadPlan::AlreadyAt(current) => Ok(ChannelAnswer::Seq(current)),
                ReadPlan::Advance(seq) => {
                    let channel_id = self.channel_id();
                    if let Err(err) = self.context.ports.channels.set_read_cursor(channel_id, caller.user_id, seq).await
                    {
                        // A cursor write is idempotent and monotonic: retrying is safe, no reload.
                        return Err(match store_failure(channel_id, err) {
                            Failure::Reload(err) => Failure::Refused(err),
                            other => other,
                        });
                    }
                    let effects = self.room.cursor_stored(caller.user_id, seq);
                    self.perform(myself, effects);
                    Ok(ChannelAnswer::Seq(seq))
                }
            },
            ChannelRequest::Typing { caller, active } => {
                let effects = self.room.typing(&caller, active)?;
                self.perform(myself, effects);
                Ok(ChannelAnswer::Done)
            }
            ChannelRequest::Join { caller } => {
                let plan = self.room.plan_join(&caller)?;
                self.admit(myself, caller, plan).await
            }
            ChannelRequest::AddMember { caller, user_id } => {
                let plan = self.room.plan_add_member(&caller, user_id)?;
                self.admit(myself, caller, plan).await
            }
            ChannelRequest::Leave { caller } => {
                let plan = self.room.plan_leave(&caller)?;
                let user_id = caller.user_id;
                let seq = self.store_change(myself, plan).await?;
                if seq.is_none() {
                    let effects = self.room.member_gone(user_id);
                    self.perform(myself, effects);
                }
                Ok(ChannelAnswer::MaybeSeq(seq))
            }
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.room.is_typing_idle() && self.writes.idle() && self.idle.expired()
    }
}

/// A message that passed the rules and waits for its batch.
pub(super) struct PendingSend {
    pub(super) caller: Caller,
    pub(super) message: MessageView,
    pub(super) reply: Reply<ChannelAnswer>,
}

#[derive(Default)]
pub(super) struct Writes {
    /// The batch being stored, if any.
    pub(super) writing: Option<Vec<PendingSend>>,
    /// Sends for the next batch.
    pub(super) next: Vec<PendingSend>,
    /// Requests waiting for the writes before them, in arrival order.
    pub(super) deferred: VecDeque<(ChannelRequest, Reply<ChannelAnswer>)>,
}

impl Writes {
    pub(super) fn idle(&self) -> bool {
        self.writing.is_none() && self.next.is_empty() && self.deferred.is_empty()
    }

    pub(super) fn busy(&self) -> bool {
        self.writing.is_some() || !self.next.is_empty()
    }
}

/// Whether a request takes a seq of its own (and so must follow the sends before it).
pub(super) fn takes_a_seq(request: &ChannelRequest) -> bool {
    matches!(
        request,
        ChannelRequest::Edit { .. }
            | ChannelRequest::Delete { .. }
            | ChannelRequest::React { .. }
            | ChannelRequest::Join { .. }
            | ChannelRequest::AddMember { .. }
            | ChannelRequest::Leave { .. }
    )
}

/// What a requester is told of a failure.
pub(super) fn route_error(failure: &Failure) -> RouteError {
    match failure {
        Failure::Refused(err) | Failure::Reload(err) => RouteError::Request(err.clone()),
        Failure::Fenced => RouteError::NotOwner,
    }
}

pub(super) fn reply_to(reply: Reply<ChannelAnswer>, answer: Result<ChannelAnswer, RouteError>) {
    if reply.send(answer).is_err() {
        debug!("requester went away before the channel replied");
    }
}
