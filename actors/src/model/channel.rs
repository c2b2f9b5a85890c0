//! Messages, channel events and the answers about a channel.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::{ChannelSeq, UnixMillis};

/// Largest message body in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest emoji name in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReactionView {
    pub emoji: String,
    pub user_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MessageView {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub seq: ChannelSeq,
    pub sender_id: Uuid,
    pub client_msg_id: String,
    pub parent_id: Option<Uuid>,
    pub body: String,
    pub mentions: Vec<Uuid>,
    pub attachment_ids: Vec<Uuid>,
    pub created_at: UnixMillis,
    pub edited_at: Option<UnixMillis>,
    pub deleted: bool,
    #[serde(default)]
    pub reactions: Vec<ReactionView>,
}

/// A durable channel event as clients receive it (live, and replayed on resume).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelEvent {
    MessageNew { message: MessageView },
    MessageEdited { message_id: Uuid, body: String, mentions: Vec<Uuid>, edited_at: UnixMillis },
    MessageDeleted { message_id: Uuid, deleted_at: UnixMillis },
    ReactionAdded { message_id: Uuid, user_id: Uuid, emoji: String },
    ReactionRemoved { message_id: Uuid, user_id: Uuid, emoji: String },
    MemberJoined { user_id: Uuid },
    MemberLeft { user_id: Uuid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReadCursor {
    pub user_id: Uuid,
    pub seq: ChannelSeq,
}

/// What a new message carries from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDraft {
    pub client_msg_id: String,
    pub body: String,
    pub parent_id: Option<Uuid>,
    pub attachment_ids: Vec<Uuid>,
}

/// The answer to a subscription: where the channel stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeAnswer {
    pub channel_id: Uuid,
    pub head_seq: ChannelSeq,
    pub read_cursors: Vec<ReadCursor>,
    pub typing: Vec<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationReason {
    Mention,
    DirectMessage,
}

/// Extracts `@username` mentions from a message body, in order of first appearance.
pub fn parse_mentions(body: &str) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let bytes = body.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let at_word_start = index == 0 || !is_name_byte(bytes[index - 1]);
        if bytes[index] == b'@' && at_word_start {
            let start = index + 1;
            let mut end = start;
            while end < bytes.len() && is_name_byte(bytes[end]) {
                end += 1;
            }
            if end > start {
                let name = body[start..end].trim_end_matches('.');
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
            index = end.max(index + 1);
        } else {
            index += 1;
        }
    }
    names
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_words_starting_with_at() {
        let body = "hi @alice and @bob.smith, not mail@example.com @alice. @carol.";
        assert_eq!(parse_mentions(body), vec!["alice", "bob.smith", "carol"]);
        assert!(parse_mentions("@ alone").is_empty());
    }
}
