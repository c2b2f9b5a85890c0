//! The phone notification for a mention or a direct message, with a deep link to it.

use uuid::Uuid;

use crate::model::{MessageView, NotificationReason};
use crate::ports::PushNotice;

/// Characters of the body a push shows.
const PUSH_BODY_CHARS: usize = 140;

pub fn message_push(user_id: Uuid, reason: NotificationReason, sender: &str, message: &MessageView) -> PushNotice {
    let (title, kind) = match reason {
        NotificationReason::Mention => (format!("{sender} mentioned you"), "mention"),
        NotificationReason::DirectMessage => (format!("Message from {sender}"), "direct_message"),
    };
    let body: String = message.body.chars().take(PUSH_BODY_CHARS).collect();
    let data = [
        ("kind", kind.to_owned()),
        ("channel_id", message.channel_id.to_string()),
        ("message_id", message.id.to_string()),
        ("seq", message.seq.to_string()),
        ("deep_link", format!("lark://channel/{}/message/{}", message.channel_id, message.id)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    PushNotice { user_id, title, body, data }
}
