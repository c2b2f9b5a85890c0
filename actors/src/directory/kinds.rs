//! The kinds of virtual actor: how each is keyed, spawned, asked and told about departed
//! nodes. The directory's routing is written once, generically over [`Kind`].

use std::future::Future;

use ractor::{Actor, ActorRef};
use tracing::{error, warn};
use uuid::Uuid;

use super::{slots::Slots, Directory, Inner};
use crate::channel::{ChannelActor, ChannelArgs, ChannelMsg, Reply};
use crate::delivery::Gone;
use crate::meeting::{MeetingArgs, MeetingMsg, MeetingRoomActor};
use crate::model::{ActorKey, RequestError};
use crate::ports::StoreError;
use crate::routing::{
    ChannelAnswer, ChannelRequest, MeetingAnswer, MeetingRequest, RemoteAnswer, RemoteRequest, RouteError, UserAnswer,
    UserRequest,
};
use crate::user::{UserActor, UserArgs, UserMsg};

pub(crate) trait Kind: Sized + Send + Sync + 'static {
    type Msg: ractor::Message;
    type Request: Clone + Send + 'static;
    type Answer: Send + 'static;

    fn key(id: Uuid) -> ActorKey;
    fn remote(id: Uuid, request: Self::Request) -> RemoteRequest;
    fn answer(answer: RemoteAnswer) -> Option<Self::Answer>;
    fn message(request: Self::Request, reply: Reply<Self::Answer>) -> Self::Msg;
    /// Tells a running actor these sessions are gone.
    fn forget(gone: Vec<Gone>) -> Self::Msg;
    fn slots(inner: &Inner) -> &Slots<Self::Msg>;
    /// Loads the actor's state and spawns it under the directory's supervisor.
    fn spawn(directory: &Directory, id: Uuid) -> impl Future<Output = Result<ActorRef<Self::Msg>, RouteError>> + Send;
}

pub(crate) struct Channels;
pub(crate) struct Users;
pub(crate) struct Meetings;

fn start_failed(kind: &str, id: Uuid, err: ractor::SpawnErr) -> RouteError {
    error!(kind, %id, error = %err, "actor failed to start");
    RouteError::Request(RequestError::unavailable())
}

/// A load failure: a newer owner holds the key, or the store cannot be read now.
fn load_failed(kind: &str, id: Uuid, err: StoreError) -> RouteError {
    match err {
        StoreError::Fenced => {
            warn!(kind, %id, "a newer owner holds it, not loading");
            RouteError::NotOwner
        }
        err => {
            warn!(kind, %id, error = %err, "store failed while loading an actor");
            RouteError::Request(RequestError::unavailable())
        }
    }
}

impl Kind for Channels {
    type Msg = ChannelMsg;
    type Request = ChannelRequest;
    type Answer = ChannelAnswer;

    fn key(id: Uuid) -> ActorKey {
        ActorKey::Channel(id)
    }
    fn remote(channel_id: Uuid, request: ChannelRequest) -> RemoteRequest {
        RemoteRequest::Channel { channel_id, request }
    }
    fn answer(answer: RemoteAnswer) -> Option<ChannelAnswer> {
        match answer {
            RemoteAnswer::Channel(answer) => Some(answer),
            _ => None,
        }
    }
    fn message(request: ChannelRequest, reply: Reply<ChannelAnswer>) -> ChannelMsg {
        ChannelMsg::Request { request, reply }
    }
    fn forget(gone: Vec<Gone>) -> ChannelMsg {
        ChannelMsg::Forget(gone)
    }
    fn slots(inner: &Inner) -> &Slots<ChannelMsg> {
        &inner.channels
    }
    async fn spawn(directory: &Directory, channel_id: Uuid) -> Result<ActorRef<ChannelMsg>, RouteError> {
        let inner = &directory.inner;
        // The epoch this node is at is the fence: loading raises the channel's stored fence
        // to it, so an owner of an earlier epoch can no longer write.
        let fence = inner.cluster.epoch();
        let snapshot = inner
            .ports
            .channels
            .load_channel(channel_id, fence)
            .await
            .map_err(|err| load_failed("channel", channel_id, err))?
            .ok_or_else(|| RequestError::not_found("channel"))?;
        let args = ChannelArgs { snapshot, fence, context: directory.room_context(), config: inner.config.channel };
        let supervisor = directory.supervisor()?;
        let (actor, _) = Actor::spawn_linked(None, ChannelActor, args, supervisor)
            .await
            .map_err(|err| start_failed("channel", channel_id, err))?;
        Ok(actor)
    }
}

impl Kind for Users {
    type Msg = UserMsg;
    type Request = UserRequest;
    type Answer = UserAnswer;

    fn key(id: Uuid) -> ActorKey {
        ActorKey::User(id)
    }
    fn remote(user_id: Uuid, request: UserRequest) -> RemoteRequest {
        RemoteRequest::User { user_id, request }
    }
    fn answer(answer: RemoteAnswer) -> Option<UserAnswer> {
        match answer {
            RemoteAnswer::User(answer) => Some(answer),
            _ => None,
        }
    }
    fn message(request: UserRequest, reply: Reply<UserAnswer>) -> UserMsg {
        UserMsg::Request { request, reply }
    }
    fn forget(gone: Vec<Gone>) -> UserMsg {
        UserMsg::Forget(gone)
    }
    fn slots(inner: &Inner) -> &Slots<UserMsg> {
        &inner.users
    }
    async fn spawn(directory: &Directory, user_id: Uuid) -> Result<ActorRef<UserMsg>, RouteError> {
        let inner = &directory.inner;
        let company_id = inner
            .ports
            .users
            .company_of(user_id)
            .await
            .map_err(|err| load_failed("user", user_id, err))?
            .ok_or_else(|| RequestError::not_found("user"))?;
        let last = inner.ports.presence.load(user_id).await.unwrap_or_else(|err| {
            warn!(%user_id, error = %err, "last presence not loaded");
            None
        });
        let args = UserArgs { context: directory.room_context(), user_id, company_id, last, config: inner.config.user };
        let supervisor = directory.supervisor()?;
        let (actor, _) = Actor::spawn_linked(None, UserActor, args, supervisor)
            .await
            .map_err(|err| start_failed("user", user_id, err))?;
        Ok(actor)
    }
}

impl Kind for Meetings {
    type Msg = MeetingMsg;
    type Request = MeetingRequest;
    type Answer = MeetingAnswer;

    fn key(id: Uuid) -> ActorKey {
        ActorKey::Meeting(id)
    }
    fn remote(meeting_id: Uuid, request: MeetingRequest) -> RemoteRequest {
        RemoteRequest::Meeting { meeting_id, request }
    }
    fn answer(answer: RemoteAnswer) -> Option<MeetingAnswer> {
        match answer {
            RemoteAnswer::Meeting(answer) => Some(answer),
            _ => None,
        }
    }
    fn message(request: MeetingRequest, reply: Reply<MeetingAnswer>) -> MeetingMsg {
        MeetingMsg::Request { request, reply }
    }
    fn forget(gone: Vec<Gone>) -> MeetingMsg {
        MeetingMsg::Forget(gone)
    }
    fn slots(inner: &Inner) -> &Slots<MeetingMsg> {
        &inner.meetings
    }
    async fn spawn(directory: &Directory, meeting_id: Uuid) -> Result<ActorRef<MeetingMsg>, RouteError> {
        let inner = &directory.inner;
        let info = inner
            .ports
            .meetings
            .load_meeting(meeting_id)
            .await
            .map_err(|err| load_failed("meeting", meeting_id, err))?
            .ok_or_else(|| RequestError::not_found("meeting"))?;
        let args = MeetingArgs { info, context: directory.room_context(), config: inner.config.meeting };
        let supervisor = directory.supervisor()?;
        let (actor, _) = Actor::spawn_linked(None, MeetingRoomActor, args, supervisor)
            .await
            .map_err(|err| start_failed("meeting", meeting_id, err))?;
        Ok(actor)
    }
}
