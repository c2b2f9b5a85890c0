//! The channel event log as it is stored: versioned records, separate from the events clients
//! receive. A record names what changed (a message id, a reaction, a member), never the text
//! of a message: replay renders message events from the message as it is *now*, so a deleted
//! message replays as a tombstone and an edited one only with its latest text.
//!
//! Version 0 is the legacy form (the wire event itself); [`EventRecord::decode`] reads both.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{ChannelEvent, MessageView, UnixMillis};

/// The version [`EventRecord::encode`] writes.
pub const CURRENT_VERSION: u16 = 1;

/// One stored event, as written to `channel_events.payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub v: u16,
    pub event: RecordedEvent,
}

/// What a stored event says happened (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedEvent {
    MessageNew { message_id: Uuid },
    MessageEdited { message_id: Uuid, edited_at: UnixMillis },
    MessageDeleted { message_id: Uuid, deleted_at: UnixMillis },
    ReactionAdded { message_id: Uuid, user_id: Uuid, emoji: String },
    ReactionRemoved { message_id: Uuid, user_id: Uuid, emoji: String },
    MemberJoined { user_id: Uuid },
    MemberLeft { user_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable event record: {0}")]
pub struct RecordError(String);

impl EventRecord {
    /// The record of an event that is about to be stored.
    pub fn of(event: &ChannelEvent) -> Self {
        let event = match event {
            ChannelEvent::MessageNew { message } => RecordedEvent::MessageNew { message_id: message.id },
            ChannelEvent::MessageEdited { message_id, edited_at, .. } => {
                RecordedEvent::MessageEdited { message_id: *message_id, edited_at: *edited_at }
            }
            ChannelEvent::MessageDeleted { message_id, deleted_at } => {
                RecordedEvent::MessageDeleted { message_id: *message_id, deleted_at: *deleted_at }
            }
            ChannelEvent::ReactionAdded { message_id, user_id, emoji } => {
                RecordedEvent::ReactionAdded { message_id: *message_id, user_id: *user_id, emoji: emoji.clone() }
            }
            ChannelEvent::ReactionRemoved { message_id, user_id, emoji } => {
                RecordedEvent::ReactionRemoved { message_id: *message_id, user_id: *user_id, emoji: emoji.clone() }
            }
            ChannelEvent::MemberJoined { user_id } => RecordedEvent::MemberJoined { user_id: *user_id },
            ChannelEvent::MemberLeft { user_id } => RecordedEvent::MemberLeft { user_id: *user_id },
        };
        Self { v: CURRENT_VERSION, event }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("event records always serialize")
    }

    /// Reads a stored payload of any version.
    pub fn decode(payload: &str) -> Result<Self, RecordError> {
        if let Ok(record) = serde_json::from_str::<EventRecord>(payload) {
            return Ok(record);
        }
        // Version 0 stored the wire event, text included; only its ids are kept.
        let legacy: ChannelEvent = serde_json::from_str(payload).map_err(|err| RecordError(err.to_string()))?;
        Ok(Self { v: 0, ..Self::of(&legacy) })
    }

    /// The message this record needs to be rendered, if any.
    pub fn message_id(&self) -> Option<Uuid> {
        match &self.event {
            RecordedEvent::MessageNew { message_id } | RecordedEvent::MessageEdited { message_id, .. } => {
                Some(*message_id)
            }
            _ => None,
        }
    }

    /// The event a client receives on replay, from the messages as they are now. A message
    /// that no longer exists replays as deleted.
    pub fn render(&self, messages: &HashMap<Uuid, MessageView>) -> ChannelEvent {
        match &self.event {
            RecordedEvent::MessageNew { message_id } => match messages.get(message_id) {
                Some(message) => ChannelEvent::MessageNew { message: replayed(message) },
                None => ChannelEvent::MessageDeleted { message_id: *message_id, deleted_at: 0 },
            },
            RecordedEvent::MessageEdited { message_id, edited_at } => {
                let current = messages.get(message_id).filter(|message| !message.deleted);
                ChannelEvent::MessageEdited {
                    message_id: *message_id,
                    body: current.map(|message| message.body.clone()).unwrap_or_default(),
                    mentions: current.map(|message| message.mentions.clone()).unwrap_or_default(),
                    edited_at: *edited_at,
                }
            }
            RecordedEvent::MessageDeleted { message_id, deleted_at } => {
                ChannelEvent::MessageDeleted { message_id: *message_id, deleted_at: *deleted_at }
            }
            RecordedEvent::ReactionAdded { message_id, user_id, emoji } => {
                ChannelEvent::ReactionAdded { message_id: *message_id, user_id: *user_id, emoji: emoji.clone() }
            }
            RecordedEvent::ReactionRemoved { message_id, user_id, emoji } => {
                ChannelEvent::ReactionRemoved { message_id: *message_id, user_id: *user_id, emoji: emoji.clone() }
            }
            RecordedEvent::MemberJoined { user_id } => ChannelEvent::MemberJoined { user_id: *user_id },
            RecordedEvent::MemberLeft { user_id } => ChannelEvent::MemberLeft { user_id: *user_id },
        }
    }
}

/// A message as its `message_new` event replays: its current text (empty once deleted) and
/// no reactions, which replay as their own events.
fn replayed(message: &MessageView) -> MessageView {
    let mut message = message.clone();
    message.reactions.clear();
    if message.deleted {
        message.body.clear();
        message.mentions.clear();
        message.attachment_ids.clear();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> MessageView {
        MessageView {
            id: Uuid::new_v4(),
            channel_id: Uuid::new_v4(),
            seq: 1,
            sender_id: Uuid::new_v4(),
            client_msg_id: "c1".into(),
            parent_id: None,
            body: body.into(),
            mentions: vec![Uuid::new_v4()],
            attachment_ids: vec![Uuid::new_v4()],
            created_at: 1,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
        }
    }

    #[test]
    fn records_keep_no_text_and_replay_the_current_message() {
        let original = message("secret first draft");
        let new = EventRecord::of(&ChannelEvent::MessageNew { message: original.clone() });
        let edit = EventRecord::of(&ChannelEvent::MessageEdited {
            message_id: original.id,
            body: "second draft".into(),
            mentions: vec![],
            edited_at: 5,
        });
        for record in [&new, &edit] {
            let text = record.encode();
            assert!(!text.contains("draft"), "no text in the stored record: {text}");
            assert_eq!(&EventRecord::decode(&text).unwrap(), record);
        }
        let mut now = original.clone();
        now.body = "second draft".into();
        now.edited_at = Some(5);
        let messages = HashMap::from([(now.id, now.clone())]);
        match new.render(&messages) {
            ChannelEvent::MessageNew { message } => assert_eq!(message.body, "second draft"),
            other => panic!("rendered {other:?}"),
        }

        now.deleted = true;
        now.body.clear();
        let messages = HashMap::from([(now.id, now.clone())]);
        match new.render(&messages) {
            ChannelEvent::MessageNew { message } => {
                assert!(message.deleted && message.body.is_empty() && message.attachment_ids.is_empty());
            }
            other => panic!("rendered {other:?}"),
        }
        assert!(matches!(edit.render(&messages), ChannelEvent::MessageEdited { body, .. } if body.is_empty()));
        assert!(matches!(new.render(&HashMap::new()), ChannelEvent::MessageDeleted { .. }));
    }

    #[test]
    fn legacy_payloads_are_read_without_their_text() {
        let original = message("old secret");
        let legacy = serde_json::to_string(&ChannelEvent::MessageNew { message: original.clone() }).unwrap();
        let record = EventRecord::decode(&legacy).unwrap();
        assert_eq!(record.v, 0);
        assert_eq!(record.event, RecordedEvent::MessageNew { message_id: original.id });
        assert!(EventRecord::decode("{\"nonsense\":1}").is_err());
    }
}
