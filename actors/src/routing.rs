//! Requests to actors as data, so they can be served by a local actor or sent to the node
//! that owns it. Every channel, user and meeting actor is addressed by [`ActorKey`]; sessions
//! by [`SessionAddr`]. [`crate::cluster`] carries them between nodes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{
    Caller, ChannelSeq, MessageDraft, MessageView, ParticipantView, PresenceStatus, PresenceView, RequestError,
    SessionAddr, SignalKind, StateChange, SubscribeAnswer,
};
use crate::ports::PushNotice;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChannelRequest {
    Subscribe {
        caller: Caller,
        session: SessionAddr,
    },
    Send {
        caller: Caller,
        draft: MessageDraft,
    },
    Edit {
        caller: Caller,
        message_id: Uuid,
        body: String,
    },
    Delete {
        caller: Caller,
        message_id: Uuid,
    },
    React {
        caller: Caller,
        message_id: Uuid,
        emoji: String,
        add: bool,
    },
    Read {
        caller: Caller,
        seq: ChannelSeq,
    },
    Typing {
        caller: Caller,
        active: bool,
    },
    Join {
        caller: Caller,
    },
    AddMember {
        caller: Caller,
        user_id: Uuid,
    },
    Leave {
        caller: Caller,
    },
    /// Fire and forget: the session no longer listens.
    Unsubscribe {
        session_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChannelAnswer {
    Subscribed(SubscribeAnswer),
    Message(Box<MessageView>),
    /// The seq of the event a request produced (or the head when it produced none).
    Seq(ChannelSeq),
    /// `None` when the request changed nothing.
    MaybeSeq(Option<ChannelSeq>),
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum UserRequest {
    Attach {
        session: SessionAddr,
    },
    Detach {
        session_id: Uuid,
    },
    SetStatus {
        session_id: Uuid,
        status: PresenceStatus,
    },
    Watch {
        watcher: Caller,
        session: SessionAddr,
    },
    Unwatch {
        session_id: Uuid,
    },
    /// Deliver a frame (JSON text) to every session of the user; with `push`, and no live
    /// session, queue that push notification instead.
    Notify {
        text: String,
        push: Option<PushNotice>,
    },
    GetPresence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserAnswer {
    Done,
    Presence(PresenceView),
    /// How many sessions took a notification.
    Delivered(usize),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MeetingRequest {
    Join {
        caller: Caller,
        session: SessionAddr,
    },
    Leave {
        caller: Caller,
        session_id: Uuid,
    },
    /// The session's socket dropped: the participant gets a grace period to rejoin.
    Disconnected {
        caller: Caller,
        session_id: Uuid,
    },
    SetState {
        caller: Caller,
        session_id: Uuid,
        change: StateChange,
    },
    /// `payload` is the JSON text of the SDP or ICE candidate.
    Signal {
        caller: Caller,
        session_id: Uuid,
        to: Uuid,
        kind: SignalKind,
        payload: String,
    },
    HostMute {
        caller: Caller,
        session_id: Uuid,
        target: Uuid,
    },
    HostRemove {
        caller: Caller,
        session_id: Uuid,
        target: Uuid,
    },
    HostTransfer {
        caller: Caller,
        session_id: Uuid,
        target: Uuid,
    },
    LobbyDecision {
        caller: Caller,
        session_id: Uuid,
        target: Uuid,
        admit: bool,
    },
    /// End for all: from the host's session, or over HTTP (`session_id: None`) by the host user.
    End {
        caller: Caller,
        session_id: Option<Uuid>,
    },
    Roster {
        caller: Caller,
    },
}

impl MeetingRequest {
    pub fn caller(&self) -> Caller {
        match self {
            MeetingRequest::Join { caller, .. }
            | MeetingRequest::Leave { caller, .. }
            | MeetingRequest::Disconnected { caller, .. }
            | MeetingRequest::SetState { caller, .. }
            | MeetingRequest::Signal { caller, .. }
            | MeetingRequest::HostMute { caller, .. }
            | MeetingRequest::HostRemove { caller, .. }
            | MeetingRequest::HostTransfer { caller, .. }
            | MeetingRequest::LobbyDecision { caller, .. }
            | MeetingRequest::End { caller, .. }
            | MeetingRequest::Roster { caller } => *caller,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MeetingAnswer {
    Joined {
        meeting_id: Uuid,
        me: ParticipantView,
        /// The room's run: a new one after every rebuild.
        incarnation: u64,
        version: u64,
        participants: Vec<ParticipantView>,
        max_participants: usize,
        grace_ms: u64,
    },
    Participant(ParticipantView),
    Roster {
        incarnation: u64,
        version: u64,
        participants: Vec<ParticipantView>,
    },
    Done,
}

/// A request for an actor on another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteRequest {
    Channel { channel_id: Uuid, request: ChannelRequest },
    User { user_id: Uuid, request: UserRequest },
    Meeting { meeting_id: Uuid, request: MeetingRequest },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RemoteAnswer {
    Channel(ChannelAnswer),
    User(UserAnswer),
    Meeting(MeetingAnswer),
}

/// Why a request did not reach an actor, or what the actor refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum RouteError {
    /// The node asked does not own the actor (its view of the membership differs from the
    /// sender's, or it holds no ownership lease right now): the sender retries.
    #[error("this node does not own the actor (membership is changing)")]
    NotOwner,
    /// The owner could not be reached (its node is down or the link is cut): the sender
    /// retries once the membership settles.
    #[error("the owner could not be reached")]
    Unreachable,
    /// The actor answered with a refusal.
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl RouteError {
    /// What the client is told.
    pub fn into_request_error(self) -> RequestError {
        match self {
            RouteError::NotOwner | RouteError::Unreachable => RequestError::unavailable(),
            RouteError::Request(err) => err,
        }
    }
}

impl RouteError {
    /// Whether asking again (after the membership settles) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RouteError::NotOwner | RouteError::Unreachable)
    }
}

impl From<RouteError> for RequestError {
    fn from(err: RouteError) -> Self {
        err.into_request_error()
    }
}

impl RemoteRequest {
    /// The key of the actor the request is for.
    pub fn key(&self) -> crate::model::ActorKey {
        match self {
            RemoteRequest::Channel { channel_id, .. } => crate::model::ActorKey::Channel(*channel_id),
            RemoteRequest::User { user_id, .. } => crate::model::ActorKey::User(*user_id),
            RemoteRequest::Meeting { meeting_id, .. } => crate::model::ActorKey::Meeting(*meeting_id),
        }
    }
}
