//! What a room actor (channel, user, meeting) may use of its node: the ports, a way to reach
//! sessions, and a way to notify users. Room actors hold this small context, never the whole
//! directory, so they cannot route, spawn or reach into other actors' state.

use std::sync::Arc;

use uuid::Uuid;

use crate::delivery::SessionSink;
use crate::model::FrameText;
use crate::model::{NodeId, SessionAddr};
use crate::ports::{Ports, PushNotice};

/// Resolves a session's address to a sink.
pub trait Sinks: Send + Sync + 'static {
    /// Directly if the session lives on this node (`None` if it is not known here), through
    /// the cluster otherwise.
    fn sink(&self, addr: SessionAddr) -> Option<SessionSink>;
}

/// Tells a user about something on all their devices.
pub trait Notifier: Send + Sync + 'static {
    /// Delivers `text` to every live session of the user, or queues `push` when none is
    /// live. Does not wait: an actor must never block on another.
    fn notify_user_later(&self, user_id: Uuid, text: FrameText, push: Option<PushNotice>);
}

#[derive(Clone)]
pub struct RoomContext {
    pub ports: Ports,
    /// This node: the `from` of every delivery the room sends.
    pub node: NodeId,
    pub sinks: Arc<dyn Sinks>,
    pub notifier: Arc<dyn Notifier>,
}
