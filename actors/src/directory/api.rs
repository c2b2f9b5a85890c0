//! Asking and telling each kind of actor, for sessions and HTTP handlers.

use std::time::Duration;

use ractor::ActorRef;
use tracing::warn;
use uuid::Uuid;

use super::kinds::{Channels, Meetings, Users};
use super::{Directory, Pending};
use crate::channel::ChannelMsg;
use crate::model::{NodeId, RequestError};
use crate::ports::PushNotice;
use crate::routing::{ChannelAnswer, ChannelRequest, MeetingAnswer, MeetingRequest, UserAnswer, UserRequest};
use crate::user::UserMsg;

impl Directory {
    /// Hands a request to the channel's owner in order; the answer comes later.
    pub async fn send_channel(
        &self,
        id: Uuid,
        request: ChannelRequest,
    ) -> Result<Pending<ChannelAnswer>, RequestError> {
        self.send::<Channels>(id, request).await.map(|(_, pending)| pending).map_err(RequestError::from)
    }
    pub async fn ask_channel(
        &self,
        id: Uuid,
        request: ChannelRequest,
        timeout: Duration,
    ) -> Result<ChannelAnswer, RequestError> {
        self.ask::<Channels>(id, request, timeout).await.map(|(_, answer)| answer)
    }
    /// Like [`Self::ask_channel`], with the node that answered.
    pub async fn ask_channel_at(
        &self,
        id: Uuid,
        request: ChannelRequest,
        timeout: Duration,
    ) -> Result<(NodeId, ChannelAnswer), RequestError> {
        self.ask::<Channels>(id, request, timeout).await
    }
    pub fn tell_channel(&self, id: Uuid, request: ChannelRequest) {
        self.tell::<Channels>(id, request);
    }
    pub fn find_channel(&self, id: Uuid) -> Option<ActorRef<ChannelMsg>> {
        self.inner.channels.find(id)
    }

    pub async fn ask_user(
        &self,
        id: Uuid,
        request: UserRequest,
        timeout: Duration,
    ) -> Result<UserAnswer, RequestError> {
        self.ask::<Users>(id, request, timeout).await.map(|(_, answer)| answer)
    }
    /// Like [`Self::ask_user`], with the node that answered.
    pub async fn ask_user_at(
        &self,
        id: Uuid,
        request: UserRequest,
        timeout: Duration,
    ) -> Result<(NodeId, UserAnswer), RequestError> {
        self.ask::<Users>(id, request, timeout).await
    }
    pub fn tell_user(&self, id: Uuid, request: UserRequest) {
        self.tell::<Users>(id, request);
    }
    pub fn find_user(&self, id: Uuid) -> Option<ActorRef<UserMsg>> {
        self.inner.users.find(id)
    }

    pub async fn send_meeting(
        &self,
        id: Uuid,
        request: MeetingRequest,
    ) -> Result<Pending<MeetingAnswer>, RequestError> {
        self.send::<Meetings>(id, request).await.map(|(_, pending)| pending).map_err(RequestError::from)
    }
    pub async fn ask_meeting(
        &self,
        id: Uuid,
        request: MeetingRequest,
        timeout: Duration,
    ) -> Result<MeetingAnswer, RequestError> {
        self.ask::<Meetings>(id, request, timeout).await.map(|(_, answer)| answer)
    }
    /// Like [`Self::ask_meeting`], with the node that answered.
    pub async fn ask_meeting_at(
        &self,
        id: Uuid,
        request: MeetingRequest,
        timeout: Duration,
    ) -> Result<(NodeId, MeetingAnswer), RequestError> {
        self.ask::<Meetings>(id, request, timeout).await
    }
    pub fn tell_meeting(&self, id: Uuid, request: MeetingRequest) {
        self.tell::<Meetings>(id, request);
    }

    /// Delivers `text` to every live session of the user, or queues `push` when none is
    /// live; returns how many sessions took it.
    pub async fn notify_user(
        &self,
        user_id: Uuid,
        text: &str,
        push: Option<PushNotice>,
    ) -> Result<usize, RequestError> {
        let request = UserRequest::Notify { text: text.to_owned(), push };
        match self.ask_user(user_id, request, Duration::from_secs(10)).await? {
            UserAnswer::Delivered(count) => Ok(count),
            other => {
                warn!(?other, "unexpected answer to a notification");
                Err(RequestError::internal())
            }
        }
    }
}
