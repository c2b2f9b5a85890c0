//! Requests to actors as data, so they can be served by a local actor or sent to the node
//! that owns it. Every channel and user actor is addressed by key; sessions by
//! [`SessionAddr`]. The cluster supplies a [`Cluster`] that knows owners and carries bytes;
//! a single node uses [`SingleNode`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::channel::{MessageDraft, SubscribeAnswer};
use crate::meeting::{ParticipantView, SignalKind, StateChange};
use crate::ports::Caller;
use crate::protocol::{ChannelSeq, MessageView, PresenceStatus, RequestError};
use crate::session::Delivery;
use crate::user::PresenceView;

/// A node's id in the cluster.
pub type NodeId = u64;

/// Where a session lives: its node and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionAddr {
    pub node: NodeId,
    pub session_id: Uuid,
    pub user_id: Uuid,
}

/// The key an actor is placed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActorKey {
    Channel(Uuid),
    User(Uuid),
    Meeting(Uuid),
}

impl ActorKey {
    /// The text hashed for placement: `channel:<uuid>`, `user:<uuid>`.
    pub fn placement_key(&self) -> String {
        match self {
            ActorKey::Channel(id) => format!("channel:{id}"),
            ActorKey::User(id) => format!("user:{id}"),
            ActorKey::Meeting(id) => format!("meeting:{id}"),
        }
    }
}

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
        push: Option<crate::ports::PushNotice>,
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
        version: u64,
        participants: Vec<ParticipantView>,
        max_participants: usize,
        grace_ms: u64,
    },
    Participant(ParticipantView),
    Roster {
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

pub type AnswerReceiver = oneshot::Receiver<Result<RemoteAnswer, RequestError>>;

/// What the actors need from the cluster. Calls that send are synchronous enqueues, so
/// requests from one sender reach the owner in the order they were made.
pub trait Cluster: Send + Sync + 'static {
    fn this_node(&self) -> NodeId;
    /// The owner of `key` in the current epoch; `None` while no member is known.
    fn owner(&self, key: ActorKey) -> Option<NodeId>;
    /// Sends a request to `node`; the receiver yields its answer (or a transport error).
    fn request(&self, node: NodeId, request: RemoteRequest) -> Result<AnswerReceiver, RequestError>;
    /// Delivers one frame to several sessions of `node` in one message; `false` if the node
    /// cannot be reached (its sessions are then dropped by the sender).
    fn deliver(&self, node: NodeId, session_ids: Vec<Uuid>, delivery: Delivery) -> bool;
    /// Bumped on every membership change.
    fn epochs(&self) -> watch::Receiver<u64>;
    /// Members of the current epoch.
    fn members(&self) -> Vec<NodeId>;
}

/// The whole cluster is this node.
pub struct SingleNode {
    epochs: watch::Sender<u64>,
}

impl SingleNode {
    pub const NODE: NodeId = 1;

    pub fn new() -> Arc<Self> {
        Arc::new(Self { epochs: watch::channel(1).0 })
    }
}

impl Cluster for SingleNode {
    fn this_node(&self) -> NodeId {
        Self::NODE
    }
    fn owner(&self, _key: ActorKey) -> Option<NodeId> {
        Some(Self::NODE)
    }
    fn request(&self, _node: NodeId, _request: RemoteRequest) -> Result<AnswerReceiver, RequestError> {
        Err(RequestError::unavailable())
    }
    fn deliver(&self, _node: NodeId, _session_ids: Vec<Uuid>, _delivery: Delivery) -> bool {
        false
    }
    fn epochs(&self) -> watch::Receiver<u64> {
        self.epochs.subscribe()
    }
    fn members(&self) -> Vec<NodeId> {
        vec![Self::NODE]
    }
}
