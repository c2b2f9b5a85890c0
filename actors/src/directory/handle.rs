//! What room actors get of the directory: a way to reach sessions and to notify users. It
//! holds the directory weakly, so actors do not keep it alive.

use std::sync::{Arc, Weak};

use tracing::warn;
use uuid::Uuid;

use super::{Directory, Inner};
use crate::context::{Notifier, RoomContext, Sinks};
use crate::delivery::SessionSink;
use crate::model::FrameText;
use crate::model::SessionAddr;
use crate::ports::PushNotice;

pub(super) struct DirectoryHandle(pub(super) Weak<Inner>);

impl DirectoryHandle {
    fn directory(&self) -> Option<Directory> {
        self.0.upgrade().map(|inner| Directory { inner })
    }
}

impl Sinks for DirectoryHandle {
    fn sink(&self, addr: SessionAddr) -> Option<SessionSink> {
        self.directory()?.sink(addr)
    }
}

impl Notifier for DirectoryHandle {
    fn notify_user_later(&self, user_id: Uuid, text: FrameText, push: Option<PushNotice>) {
        let Some(directory) = self.directory() else { return };
        tokio::spawn(async move {
            if let Err(err) = directory.notify_user(user_id, text.as_str(), push).await {
                warn!(%user_id, error = %err, "notification not delivered");
            }
        });
    }
}

impl Directory {
    /// Like [`Directory::notify_user`] without waiting for the user's actor.
    pub fn notify_user_later(&self, user_id: Uuid, text: FrameText, push: Option<PushNotice>) {
        DirectoryHandle(Arc::downgrade(&self.inner)).notify_user_later(user_id, text, push);
    }

    /// The context a room actor spawned here works with.
    pub(super) fn room_context(&self) -> RoomContext {
        let handle = Arc::new(DirectoryHandle(Arc::downgrade(&self.inner)));
        RoomContext { ports: self.inner.ports.clone(), node: self.this_node(), sinks: handle.clone(), notifier: handle }
    }
}
