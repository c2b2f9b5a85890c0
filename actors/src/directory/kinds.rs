//! The kinds of virtual actor: how each is keyed, spawned, asked and told about departed
//! nodes. The directory's routing is written once, generically over [`Kind`].

use std::future::Future;

use ractor::{Actor, ActorRef};
use tracing::{error, warn};
use uuid::Uuid;

use super::{slots::Slots, store_unavailable, Directory, Inner};
use crate::channel::{ChannelActor, ChannelArgs, ChannelMsg, Reply};
use crate::meeting::{MeetingArgs, MeetingMsg, MeetingRoomActor};
use crate::protocol::RequestError;
use crate::routing::{
    ActorKey, ChannelAnswer, ChannelRequest, MeetingAnswer, MeetingRequest, NodeId, RemoteAnswer, RemoteRequest,
    UserAnswer, UserRequest,
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
    fn drop_nodes(nodes: Vec<NodeId>) -> Self::Msg;
    fn slots(inner: &Inner) -> &Slots<Self::Msg>;
    /// Loads the actor's state and spawns it under the directory's supervisor.
    fn spawn(directory: &Directory, id: Uuid)
        -> impl Future<Output = Result<ActorRef<Self::Msg>, RequestError>> + Send;
}

pub(crate) struct Channels;
pub(crate) struct Users;
pub(crate) struct Meetings;

fn start_failed(kind: &str, id: Uuid, err: ractor::SpawnErr) -> RequestError {
    error!(kind, %id, error = %err, "actor failed to start");
    RequestError::unavailable()
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
    fn drop_nodes(nodes: Vec<NodeId>) -> ChannelMsg {
        ChannelMsg::DropNodes(nodes)
    }
    fn slots(inner: &Inner) -> &Slots<ChannelMsg> {
        &inner.channels
    }
    async fn spawn(directory: &Directory, channel_id: Uuid) -> Result<ActorRef<ChannelMsg>, RequestError> {
        let inner = &directory.inner;
        let snapshot = inner
            .ports
            .channels
            .load_channel(channel_id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| RequestError::not_found("channel"))?;
        let args = ChannelArgs { snapshot, directory: directory.clone(), config: inner.config.channel };
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
    fn drop_nodes(nodes: Vec<NodeId>) -> UserMsg {
        UserMsg::DropNodes(nodes)
    }
    fn slots(inner: &Inner) -> &Slots<UserMsg> {
        &inner.users
    }
    async fn spawn(directory: &Directory, user_id: Uuid) -> Result<ActorRef<UserMsg>, RequestError> {
        let inner = &directory.inner;
        let company_id = inner
            .ports
            .users
            .company_of(user_id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| RequestError::not_found("user"))?;
        let last = inner.ports.presence.load(user_id).await.unwrap_or_else(|err| {
            warn!(%user_id, error = %err, "last presence not loaded");
            None
        });
        let args = UserArgs {
            directory: directory.clone(),
            user_id,
            company_id,
            last,
            presence: inner.ports.presence.clone(),
            idle_timeout: inner.config.user_idle_timeout,
        };
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
    fn drop_nodes(nodes: Vec<NodeId>) -> MeetingMsg {
        MeetingMsg::DropNodes(nodes)
    }
    fn slots(inner: &Inner) -> &Slots<MeetingMsg> {
        &inner.meetings
    }
    async fn spawn(directory: &Directory, meeting_id: Uuid) -> Result<ActorRef<MeetingMsg>, RequestError> {
        let inner = &directory.inner;
        let info = inner
            .ports
            .meetings
            .load_meeting(meeting_id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| RequestError::not_found("meeting"))?;
        let args = MeetingArgs { info, directory: directory.clone(), config: inner.config.meeting };
        let supervisor = directory.supervisor()?;
        let (actor, _) = Actor::spawn_linked(None, MeetingRoomActor, args, supervisor)
            .await
            .map_err(|err| start_failed("meeting", meeting_id, err))?;
        Ok(actor)
    }
}
