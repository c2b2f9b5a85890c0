//! What a session tracks per subscribed channel and per watched user, as plain data: the last
//! seq it delivered (duplicates dropped, gaps filled from the store, never moving back), the
//! node whose actor answered, who it told the client is typing, the last presence it sent.
//!
//! **Invariants:** `delivered` never decreases, so no seq reaches the client twice; typing and
//! presence are taken only from the node the session subscribed or watched at, so a stale
//! owner cannot contradict the current one; after every (re)subscription the client's typing
//! and presence are reconciled with the owner's answer, so state held by a dead owner ends.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use crate::model::{ChannelSeq, NodeId, PresenceStatus, PresenceView, RequestError, SubscribeAnswer};

/// One subscribed channel.
#[derive(Debug, Clone, Default)]
struct Subscription {
    /// The last seq the client got; `None` until the first answer arrives.
    delivered: Option<ChannelSeq>,
    /// The highest seq any live delivery announced while `delivered` was unknown.
    seen: ChannelSeq,
    /// The node whose actor answered the last subscribe.
    owner: Option<NodeId>,
    /// Who the client was last told is typing.
    typing: BTreeSet<Uuid>,
    /// The `last_seq` of the client's subscribe, until its first answer.
    requested: Option<ChannelSeq>,
    /// The cluster changed while the first answer was on its way: subscribe again after it.
    again: bool,
}

/// What to do with a durable event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Drop,
    Push,
    /// Send the stored events in `(after, up_to]` first, then this one.
    FillThenPush {
        after: ChannelSeq,
        up_to: ChannelSeq,
    },
}

/// What an answered subscribe asks of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// Stored events in `(after, up_to]` to replay before anything else.
    pub replay: Option<(ChannelSeq, ChannelSeq)>,
    /// Typing frames that bring the client in line with the owner: `(user, active)`.
    pub typing: Vec<(Uuid, bool)>,
    /// The `head_seq` to tell the client: the owner's head, or the last seq the client will
    /// have got before the answer if that is higher (live events that overtook the answer, or
    /// an owner answering with an older head than one already delivered). The client never
    /// sees an `ok` whose head is below a seq it already has.
    pub head: ChannelSeq,
    /// Subscribe again now: the owners may have moved while this answer was on its way.
    pub again: bool,
}

#[derive(Debug, Default)]
pub struct Subscriptions {
    channels: HashMap<Uuid, Subscription>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    pub fn contains(&self, channel_id: Uuid) -> bool {
        self.channels.contains_key(&channel_id)
    }

    pub fn channels(&self) -> Vec<Uuid> {
        self.channels.keys().copied().collect()
    }

    /// Channels whose actor answered from `node`.
    pub fn owned_by(&self, node: NodeId) -> Vec<Uuid> {
        self.channels.iter().filter(|(_, sub)| sub.owner == Some(node)).map(|(id, _)| *id).collect()
    }

    pub fn owner(&self, channel_id: Uuid) -> Option<NodeId> {
        self.channels.get(&channel_id).and_then(|sub| sub.owner)
    }

    pub fn delivered(&self, channel_id: Uuid) -> Option<ChannelSeq> {
        self.channels.get(&channel_id).and_then(|sub| sub.delivered)
    }

    /// A subscription the client asked for with `last_seq`, before the answer.
    pub fn begin(&mut self, channel_id: Uuid, last_seq: Option<ChannelSeq>) {
        let sub = self.channels.entry(channel_id).or_default();
        if sub.delivered.is_none() {
            sub.requested = last_seq;
        }
    }

    /// The owners may have moved: the subscriptions to establish again. One still waiting for
    /// its first answer is not among them — a second subscribe racing the first could answer
    /// first and skip what the client asked to be replayed — but subscribes again once that
    /// answer is in (see [`Subscribed::again`]).
    pub fn rehome(&mut self) -> Vec<Uuid> {
        let mut now = Vec::new();
        for (channel_id, sub) in &mut self.channels {
            if sub.delivered.is_some() {
                now.push(*channel_id);
            } else {
                sub.again = true;
            }
        }
        now
    }

    pub fn remove(&mut self, channel_id: Uuid) -> bool {
        self.channels.remove(&channel_id).is_some()
    }

    /// The owner answered `answer` from `owner`. `last_seq` is what the client said it saw
    /// (only for a subscription that has delivered nothing yet; else the one `begin` kept).
    pub fn answered(
        &mut self,
        channel_id: Uuid,
        owner: NodeId,
        answer: &SubscribeAnswer,
        last_seq: Option<ChannelSeq>,
    ) -> Result<Subscribed, RequestError> {
        let head = answer.head_seq;
        let sub = self.channels.entry(channel_id).or_default();
        let last_seq = last_seq.or(if sub.delivered.is_none() { sub.requested } else { None });
        if let Some(seen) = last_seq.filter(|seen| *seen > head) {
            return Err(RequestError::invalid(format!("last_seq {seen} is ahead of the channel head {head}")));
        }
        let start = match sub.delivered {
            // Subscribed already: go on from what was delivered, never back.
            Some(delivered) => delivered,
            None => last_seq.unwrap_or(head).max(0),
        };
        sub.requested = None;
        let target = head.max(sub.seen);
        let replay = (start < target).then_some((start, target));
        let told = target.max(start);
        sub.delivered = Some(start);
        sub.owner = Some(owner);
        let now: BTreeSet<Uuid> = answer.typing.iter().copied().collect();
        let mut typing: Vec<(Uuid, bool)> = sub.typing.difference(&now).map(|user| (*user, false)).collect();
        typing.extend(now.difference(&sub.typing).map(|user| (*user, true)));
        sub.typing = now;
        Ok(Subscribed { replay, typing, head: told, again: std::mem::take(&mut sub.again) })
    }

    /// A live durable event at `seq`.
    pub fn on_event(&mut self, channel_id: Uuid, seq: ChannelSeq) -> EventAction {
        let Some(sub) = self.channels.get_mut(&channel_id) else { return EventAction::Drop };
        match sub.delivered {
            None => {
                sub.seen = sub.seen.max(seq);
                EventAction::Drop
            }
            Some(delivered) if seq <= delivered => EventAction::Drop,
            Some(delivered) if seq == delivered + 1 => EventAction::Push,
            Some(delivered) => EventAction::FillThenPush { after: delivered, up_to: seq - 1 },
        }
    }

    /// Events up to `seq` reached the client.
    pub fn advance(&mut self, channel_id: Uuid, seq: ChannelSeq) {
        if let Some(sub) = self.channels.get_mut(&channel_id) {
            sub.delivered = Some(sub.delivered.map_or(seq, |delivered| delivered.max(seq)));
        }
    }

    /// A typing frame from `from`: whether to pass it on.
    pub fn on_typing(&mut self, channel_id: Uuid, user_id: Uuid, active: bool, from: NodeId) -> bool {
        let Some(sub) = self.channels.get_mut(&channel_id) else { return false };
        if sub.owner != Some(from) {
            return false;
        }
        if active {
            sub.typing.insert(user_id)
        } else {
            sub.typing.remove(&user_id)
        }
    }

    /// Typing indicators the client shows in `channel_id` that must end (the owner is gone
    /// and its successor does not know them).
    pub fn clear_typing(&mut self, channel_id: Uuid) -> Vec<Uuid> {
        self.channels
            .get_mut(&channel_id)
            .map(|sub| std::mem::take(&mut sub.typing).into_iter().collect())
            .unwrap_or_default()
    }
}

/// One watched user.
#[derive(Debug, Clone, Copy)]
struct Watch {
    owner: Option<NodeId>,
    /// What the client was last told.
    status: Option<PresenceStatus>,
}

#[derive(Debug, Default)]
pub struct Watches {
    users: HashMap<Uuid, Watch>,
}

impl Watches {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn contains(&self, user_id: Uuid) -> bool {
        self.users.contains_key(&user_id)
    }

    pub fn users(&self) -> Vec<Uuid> {
        self.users.keys().copied().collect()
    }

    pub fn owned_by(&self, node: NodeId) -> Vec<Uuid> {
        self.users.iter().filter(|(_, watch)| watch.owner == Some(node)).map(|(id, _)| *id).collect()
    }

    pub fn remove(&mut self, user_id: Uuid) -> bool {
        self.users.remove(&user_id).is_some()
    }

    /// The user's actor on `owner` answered `view`. Returns the view to send the client if it
    /// differs from what the client was last told (a change lost while the actor moved).
    pub fn answered(&mut self, owner: NodeId, view: PresenceView, fresh: bool) -> Option<PresenceView> {
        let watch = self.users.entry(view.user_id).or_insert(Watch { owner: None, status: None });
        let changed = watch.status.is_some_and(|status| status != view.status);
        watch.owner = Some(owner);
        watch.status = Some(view.status);
        (changed && !fresh).then_some(view)
    }

    /// A presence frame from `from`: whether to pass it on.
    pub fn on_presence(&mut self, user_id: Uuid, status: PresenceStatus, from: NodeId) -> bool {
        let Some(watch) = self.users.get_mut(&user_id) else { return false };
        if watch.owner != Some(from) || watch.status == Some(status) {
            return false;
        }
        watch.status = Some(status);
        true
    }
}

#[cfg(test)]
#[path = "subscriptions_tests.rs"]
mod tests;
