//! In-memory implementations of the ports: presence for the single-node default (no Redis),
//! and a whole store for actor unit tests.
//!
//! Over 400 lines on purpose: it mirrors every port of [`crate::ports`] in one place (one
//! `impl` per port, with the test controls beside the data they act on), so that a change to
//! a port and its in-memory twin are read and reviewed together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uuid::Uuid;

use crate::event_log::EventRecord;
use crate::model::{ChannelEvent, ChannelSeq, MessageView, ReactionView, ReadCursor};
use crate::ports::{
    AppendOutcome, ChannelKind, ChannelSnapshot, ChannelStore, Fence, MeetingInfo, MeetingStore, Member, Mutation,
    NewMessage, Ports, PresenceRecord, PresenceStore, PushNotice, PushQueue, ReplayedEvent, RoomStore, StoreError,
    StoreResult, UserDirectory,
};

#[derive(Default)]
pub struct MemoryPresence {
    records: Mutex<HashMap<Uuid, PresenceRecord>>,
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn load(&self, user_id: Uuid) -> StoreResult<Option<PresenceRecord>> {
        Ok(self.records.lock().unwrap().get(&user_id).copied())
    }
    async fn save(&self, user_id: Uuid, record: PresenceRecord) -> StoreResult<()> {
        self.records.lock().unwrap().insert(user_id, record);
        Ok(())
    }
}

struct MemoryChannel {
    company_id: Uuid,
    kind: ChannelKind,
    members: Vec<Uuid>,
    /// The event log as stored: records, not wire events (see [`crate::event_log`]).
    events: BTreeMap<ChannelSeq, String>,
    fence: Fence,
    messages: BTreeMap<Uuid, MessageView>,
    cursors: HashMap<Uuid, ChannelSeq>,
    attachments: HashSet<Uuid>,
}

#[derive(Default)]
struct MemoryData {
    users: HashMap<Uuid, (Uuid, String)>,
    channels: HashMap<Uuid, MemoryChannel>,
    meetings: HashMap<Uuid, MeetingInfo>,
    rooms: HashMap<Uuid, String>,
}

/// A complete in-memory store. `fail_writes` makes every write fail with the given error,
/// to test how actors handle an unavailable or uncertain store.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<MemoryData>,
    fail_writes: Mutex<Option<StoreError>>,
    /// How long each append of a batch takes, to let later sends gather behind it.
    append_delay: Mutex<Option<std::time::Duration>>,
    /// The size of each batch appended, in order.
    append_batches: Mutex<Vec<usize>>,
    pub pushes: Arc<MemoryPush>,
}

/// Records queued push notices.
#[derive(Default)]
pub struct MemoryPush {
    pub queued: Mutex<Vec<PushNotice>>,
}

#[async_trait]
impl PushQueue for MemoryPush {
    async fn enqueue(&self, notice: PushNotice) -> StoreResult<()> {
        self.queued.lock().unwrap().push(notice);
        Ok(())
    }
}

impl MemoryStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn ports(self: &Arc<Self>) -> Ports {
        Ports {
            channels: self.clone(),
            presence: Arc::new(MemoryPresence::default()),
            users: self.clone(),
            push: self.pushes.clone(),
            meetings: self.clone(),
            rooms: self.clone(),
            ice: Arc::new(crate::ports::NoIce),
        }
    }

    pub fn add_user(&self, company_id: Uuid, username: &str) -> Uuid {
        let user_id = Uuid::new_v4();
        self.data.lock().unwrap().users.insert(user_id, (company_id, username.to_owned()));
        user_id
    }

    pub fn add_channel(&self, company_id: Uuid, kind: ChannelKind, members: &[Uuid]) -> Uuid {
        let channel_id = Uuid::new_v4();
        let channel = MemoryChannel {
            company_id,
            kind,
            members: members.to_vec(),
            events: BTreeMap::new(),
            fence: 0,
            messages: BTreeMap::new(),
            cursors: HashMap::new(),
            attachments: HashSet::new(),
        };
        self.data.lock().unwrap().channels.insert(channel_id, channel);
        channel_id
    }

    pub fn add_attachment(&self, channel_id: Uuid) -> Uuid {
        let attachment_id = Uuid::new_v4();
        if let Some(channel) = self.data.lock().unwrap().channels.get_mut(&channel_id) {
            channel.attachments.insert(attachment_id);
        }
        attachment_id
    }

    pub fn add_meeting(&self, company_id: Uuid, host_id: Uuid, invitees: &[Uuid], lobby: bool) -> Uuid {
        let meeting_id = Uuid::new_v4();
        let info = MeetingInfo { meeting_id, company_id, host_id, invitees: invitees.to_vec(), lobby, ended: false };
        self.data.lock().unwrap().meetings.insert(meeting_id, info);
        meeting_id
    }

    /// Makes every message append take `delay`, like a slow disk.
    pub fn slow_appends(&self, delay: std::time::Duration) {
        *self.append_delay.lock().unwrap() = Some(delay);
    }

    /// The size of each batch of messages appended so far.
    pub fn append_batches(&self) -> Vec<usize> {
        self.append_batches.lock().unwrap().clone()
    }

    pub fn fail_writes(&self, error: Option<StoreError>) {
        *self.fail_writes.lock().unwrap() = error;
    }

    /// The stored event log of a channel, in order, as replay renders it.
    pub fn events(&self, channel_id: Uuid) -> Vec<(ChannelSeq, ChannelEvent)> {
        let data = self.data.lock().unwrap();
        data.channels
            .get(&channel_id)
            .map(|c| render(c, c.events.iter()).into_iter().map(|e| (e.seq, e.event)).collect())
            .unwrap_or_default()
    }

    /// The raw stored payloads of a channel's event log.
    pub fn raw_events(&self, channel_id: Uuid) -> Vec<(ChannelSeq, String)> {
        let data = self.data.lock().unwrap();
        data.channels
            .get(&channel_id)
            .map(|c| c.events.iter().map(|(s, p)| (*s, p.clone())).collect())
            .unwrap_or_default()
    }

    /// The fence a channel's writers must hold.
    pub fn fence(&self, channel_id: Uuid) -> Fence {
        self.data.lock().unwrap().channels.get(&channel_id).map_or(0, |c| c.fence)
    }

    pub fn members(&self, channel_id: Uuid) -> Vec<Uuid> {
        self.data.lock().unwrap().channels.get(&channel_id).map(|c| c.members.clone()).unwrap_or_default()
    }

    fn check_write(&self) -> StoreResult<()> {
        match self.fail_writes.lock().unwrap().clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn claim_seq(channel: &MemoryChannel, fence: Fence, seq: ChannelSeq) -> StoreResult<()> {
    if fence < channel.fence {
        return Err(StoreError::Fenced);
    }
    if channel.events.contains_key(&seq) {
        return Err(StoreError::Conflict(format!("seq {seq} already taken")));
    }
    Ok(())
}

fn missing_channel() -> StoreError {
    StoreError::Unknown("no such channel".to_owned())
}

#[async_trait]
impl ChannelStore for MemoryStore {
    async fn load_channel(&self, channel_id: Uuid, fence: Fence) -> StoreResult<Option<ChannelSnapshot>> {
        let mut data = self.data.lock().unwrap();
        if let Some(channel) = data.channels.get_mut(&channel_id) {
            if fence < channel.fence {
                return Err(StoreError::Fenced);
            }
            channel.fence = fence;
        }
        Ok(data.channels.get(&channel_id).map(|channel| ChannelSnapshot {
            channel_id,
            company_id: channel.company_id,
            kind: channel.kind,
            head_seq: channel.events.keys().next_back().copied().unwrap_or(0),
            members: channel
                .members
                .iter()
                .filter_map(|id| data.users.get(id).map(|(_, name)| Member { user_id: *id, username: name.clone() }))
                .collect(),
            read_cursors: channel
                .cursors
                .iter()
                .map(|(user_id, seq)| ReadCursor { user_id: *user_id, seq: *seq })
                .collect(),
        }))
    }

    async fn append_messages(
        &self,
        fence: Fence,
        channel_id: Uuid,
        head: ChannelSeq,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<AppendOutcome>> {
        let delay = *self.append_delay.lock().unwrap();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.check_write()?;
        self.append_batches.lock().unwrap().push(batch.len());
        let mut data = self.data.lock().unwrap();
        let channel = data.channels.get_mut(&channel_id).ok_or_else(missing_channel)?;
        if fence < channel.fence {
            return Err(StoreError::Fenced);
        }
        // All or nothing, like a transaction: check the seqs before changing anything.
        let mut next = head;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut stored: Vec<MessageView> = Vec::new();
        for new in batch {
            let earlier = channel
                .messages
                .values()
                .chain(stored.iter())
                .find(|m| m.client_msg_id == new.message.client_msg_id)
                .cloned();
            if let Some(earlier) = earlier {
                outcomes.push(AppendOutcome::Duplicate(Box::new(earlier)));
                continue;
            }
            next += 1;
            claim_seq(channel, fence, next)?;
            let mut message = new.message.clone();
            message.seq = next;
            stored.push(message);
            outcomes.push(AppendOutcome::Stored { seq: next });
        }
        for message in stored {
            let event = ChannelEvent::MessageNew { message: message.clone() };
            channel.events.insert(message.seq, EventRecord::of(&event).encode());
            channel.messages.insert(message.id, message);
        }
        Ok(outcomes)
    }

    async fn apply(
        &self,
        fence: Fence,
        channel_id: Uuid,
        seq: ChannelSeq,
        mutation: &Mutation,
        event: &ChannelEvent,
    ) -> StoreResult<bool> {
        self.check_write()?;
        let mut data = self.data.lock().unwrap();
        let channel = data.channels.get_mut(&channel_id).ok_or_else(missing_channel)?;
        claim_seq(channel, fence, seq)?;
        let changed = match mutation {
            Mutation::EditMessage { message_id, body, mentions, at } => match channel.messages.get_mut(message_id) {
                Some(message) => {
                    message.body = body.clone();
                    message.mentions = mentions.clone();
                    message.edited_at = Some(*at);
                    true
                }
                None => false,
            },
            Mutation::DeleteMessage { message_id, .. } => match channel.messages.get_mut(message_id) {
                Some(message) if !message.deleted => {
                    message.deleted = true;
                    message.body.clear();
                    message.mentions.clear();
                    message.attachment_ids.clear();
                    true
                }
                _ => false,
            },
            Mutation::AddReaction { message_id, user_id, emoji } => {
                let Some(message) = channel.messages.get_mut(message_id) else { return Ok(false) };
                match message.reactions.iter_mut().find(|r| &r.emoji == emoji) {
                    Some(reaction) if reaction.user_ids.contains(user_id) => false,
                    Some(reaction) => {
                        reaction.user_ids.push(*user_id);
                        true
                    }
                    None => {
                        message.reactions.push(ReactionView { emoji: emoji.clone(), user_ids: vec![*user_id] });
                        true
                    }
                }
            }
            Mutation::RemoveReaction { message_id, user_id, emoji } => {
                let Some(message) = channel.messages.get_mut(message_id) else { return Ok(false) };
                let before = message.reactions.iter().map(|r| r.user_ids.len()).sum::<usize>();
                for reaction in &mut message.reactions {
                    if &reaction.emoji == emoji {
                        reaction.user_ids.retain(|u| u != user_id);
                    }
                }
                message.reactions.retain(|r| !r.user_ids.is_empty());
                before != message.reactions.iter().map(|r| r.user_ids.len()).sum::<usize>()
            }
            Mutation::AddMember { user_id } => {
                if channel.members.contains(user_id) {
                    false
                } else {
                    channel.members.push(*user_id);
                    true
                }
            }
            Mutation::RemoveMember { user_id } => {
                let before = channel.members.len();
                channel.members.retain(|member| member != user_id);
                before != channel.members.len()
            }
        };
        if changed {
            channel.events.insert(seq, EventRecord::of(event).encode());
        }
        Ok(changed)
    }

    async fn message(&self, channel_id: Uuid, message_id: Uuid) -> StoreResult<Option<MessageView>> {
        let data = self.data.lock().unwrap();
        Ok(data.channels.get(&channel_id).and_then(|c| c.messages.get(&message_id).cloned()))
    }

    async fn set_read_cursor(&self, channel_id: Uuid, user_id: Uuid, seq: ChannelSeq) -> StoreResult<()> {
        self.check_write()?;
        let mut data = self.data.lock().unwrap();
        let channel = data.channels.get_mut(&channel_id).ok_or_else(missing_channel)?;
        let cursor = channel.cursors.entry(user_id).or_default();
        *cursor = (*cursor).max(seq);
        Ok(())
    }

    async fn events_after(&self, channel_id: Uuid, after: ChannelSeq, limit: u32) -> StoreResult<Vec<ReplayedEvent>> {
        let data = self.data.lock().unwrap();
        Ok(data
            .channels
            .get(&channel_id)
            .map(|channel| render(channel, channel.events.range(after + 1..).take(limit as usize)))
            .unwrap_or_default())
    }

    async fn member_candidate(&self, company_id: Uuid, user_id: Uuid) -> StoreResult<Option<Member>> {
        let data = self.data.lock().unwrap();
        Ok(data
            .users
            .get(&user_id)
            .filter(|(company, _)| *company == company_id)
            .map(|(_, username)| Member { user_id, username: username.clone() }))
    }

    async fn attachments_belong(&self, channel_id: Uuid, attachment_ids: &[Uuid]) -> StoreResult<bool> {
        let data = self.data.lock().unwrap();
        Ok(data
            .channels
            .get(&channel_id)
            .is_some_and(|channel| attachment_ids.iter().all(|id| channel.attachments.contains(id))))
    }
}

/// Renders stored records for replay from the messages as they are now.
fn render<'a>(
    channel: &MemoryChannel,
    records: impl Iterator<Item = (&'a ChannelSeq, &'a String)>,
) -> Vec<ReplayedEvent> {
    let messages: std::collections::HashMap<Uuid, MessageView> =
        channel.messages.iter().map(|(id, message)| (*id, message.clone())).collect();
    records
        .filter_map(|(seq, payload)| {
            let record = EventRecord::decode(payload).ok()?;
            Some(ReplayedEvent { seq: *seq, event: record.render(&messages) })
        })
        .collect()
}

#[async_trait]
impl MeetingStore for MemoryStore {
    async fn load_meeting(&self, meeting_id: Uuid) -> StoreResult<Option<MeetingInfo>> {
        Ok(self.data.lock().unwrap().meetings.get(&meeting_id).cloned())
    }
    async fn mark_ended(&self, meeting_id: Uuid) -> StoreResult<()> {
        if let Some(meeting) = self.data.lock().unwrap().meetings.get_mut(&meeting_id) {
            meeting.ended = true;
        }
        Ok(())
    }
}

#[async_trait]
impl RoomStore for MemoryStore {
    async fn load_room(&self, meeting_id: Uuid) -> StoreResult<Option<String>> {
        Ok(self.data.lock().unwrap().rooms.get(&meeting_id).cloned())
    }
    async fn save_room(&self, meeting_id: Uuid, record: &str) -> StoreResult<()> {
        self.check_write()?;
        self.data.lock().unwrap().rooms.insert(meeting_id, record.to_owned());
        Ok(())
    }
    async fn delete_room(&self, meeting_id: Uuid) -> StoreResult<()> {
        self.data.lock().unwrap().rooms.remove(&meeting_id);
        Ok(())
    }
}

#[async_trait]
impl UserDirectory for MemoryStore {
    async fn company_of(&self, user_id: Uuid) -> StoreResult<Option<Uuid>> {
        Ok(self.data.lock().unwrap().users.get(&user_id).map(|(company, _)| *company))
    }
}
