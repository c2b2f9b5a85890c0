//! The FCM HTTP v1 message for one device, fitted into FCM's 4096-byte payload limit.
//!
//! Too big a notice is shortened, never refused: first the body (cut on a character
//! boundary, with an ellipsis), then the title, then the largest `data` values, keeping
//! `deep_link` and `kind` — what the app needs to open the right screen — for last. The
//! limit is checked against the whole request body, which is a little stricter than FCM.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::PushNotice;

/// FCM's limit on a message's payload.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
const ELLIPSIS: char = '…';
/// Data keys dropped only when nothing else is left to drop.
const ESSENTIAL_KEYS: [&str; 2] = ["deep_link", "kind"];

/// The request body of `messages:send` for `device_token`, at most [`MAX_PAYLOAD_BYTES`]
/// whenever the token alone leaves room for it.
pub fn message(device_token: &str, notice: &PushNotice) -> Value {
    let mut parts = Parts { title: notice.title.clone(), body: notice.body.clone(), data: notice.data.clone() };
    if fits(device_token, &parts) {
        return parts.render(device_token);
    }
    parts.body = longest_fitting(&notice.body, |body| fits(device_token, &Parts { body, ..parts.clone() }));
    if fits(device_token, &parts) {
        return parts.render(device_token);
    }
    parts.title = longest_fitting(&notice.title, |title| fits(device_token, &Parts { title, ..parts.clone() }));
    while !fits(device_token, &parts) {
        let Some(key) = largest_droppable(&parts.data) else { break };
        parts.data.remove(&key);
    }
    parts.render(device_token)
}

#[derive(Clone)]
struct Parts {
    title: String,
    body: String,
    data: BTreeMap<String, String>,
}

impl Parts {
    fn render(&self, device_token: &str) -> Value {
        json!({
            "message": {
                "token": device_token,
                "notification": {"title": self.title, "body": self.body},
                "data": self.data,
                "android": {"priority": "high", "ttl": "60s"},
                "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}},
            }
        })
    }
}

fn size(device_token: &str, parts: &Parts) -> usize {
    parts.render(device_token).to_string().len()
}

fn fits(device_token: &str, parts: &Parts) -> bool {
    size(device_token, parts) <= MAX_PAYLOAD_BYTES
}

/// The longest prefix of `text` (plus an ellipsis when cut) for which `fits` holds; empty if none.
fn longest_fitting(text: &str, fits: impl Fn(String) -> bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let cut = |count: usize| -> String {
        if count >= chars.len() {
            text.to_owned()
        } else if count == 0 {
            String::new()
        } else {
            chars[..count].iter().chain(std::iter::once(&ELLIPSIS)).collect()
        }
    };
    // Every character takes at least one byte, so no longer prefix can fit.
    let (mut fitting, mut too_long) = (0, chars.len().min(MAX_PAYLOAD_BYTES) + 1);
    while too_long - fitting > 1 {
        let middle = fitting + (too_long - fitting) / 2;
        if fits(cut(middle)) {
            fitting = middle;
        } else {
            too_long = middle;
        }
    }
    cut(fitting)
}

fn largest_droppable(data: &BTreeMap<String, String>) -> Option<String> {
    let optional = data.iter().filter(|(key, _)| !ESSENTIAL_KEYS.contains(&key.as_str()));
    let biggest = optional.max_by_key(|(key, value)| key.len() + value.len()).map(|(key, _)| key.clone());
    biggest.or_else(|| data.iter().max_by_key(|(key, value)| key.len() + value.len()).map(|(key, _)| key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn notice(title: &str, body: &str, data: &[(&str, &str)]) -> PushNotice {
        let data = data.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
        PushNotice { user_id: Uuid::nil(), title: title.to_owned(), body: body.to_owned(), data }
    }

    #[test]
    fn small_notice_is_sent_as_is_in_fcm_shape() {
        let message = message("tok", &notice("Hi", "there", &[("deep_link", "lark://channel/1")]));
        let inner = &message["message"];
        assert_eq!(inner["token"], "tok");
        assert_eq!(inner["notification"], json!({"title": "Hi", "body": "there"}));
        assert_eq!(inner["data"]["deep_link"], "lark://channel/1");
        assert_eq!(inner["android"], json!({"priority": "high", "ttl": "60s"}));
        assert_eq!(inner["apns"]["headers"]["apns-priority"], "10");
    }

    #[test]
    fn long_multibyte_body_is_cut_on_a_char_boundary_to_the_limit() {
        let body = "é🙂".repeat(3000);
        let message = message("tok", &notice("Title", &body, &[("deep_link", "lark://x")]));
        let size = message.to_string().len();
        assert!(size <= MAX_PAYLOAD_BYTES && size > MAX_PAYLOAD_BYTES - 8, "size {size}");
        let cut = message["message"]["notification"]["body"].as_str().unwrap();
        assert!(cut.ends_with(ELLIPSIS) && body.starts_with(cut.trim_end_matches(ELLIPSIS)));
        assert_eq!(message["message"]["notification"]["title"], "Title");
        assert_eq!(message["message"]["data"]["deep_link"], "lark://x");
    }

    #[test]
    fn huge_data_is_dropped_largest_first_keeping_the_deep_link() {
        let big = "x".repeat(5000);
        let message = message("tok", &notice("T", "B", &[("deep_link", "lark://y"), ("extra", &big), ("seq", "7")]));
        assert!(message.to_string().len() <= MAX_PAYLOAD_BYTES);
        let data = &message["message"]["data"];
        assert_eq!((data["deep_link"].as_str(), data["seq"].as_str()), (Some("lark://y"), Some("7")));
        assert!(data.get("extra").is_none());
    }

    #[test]
    fn huge_title_and_body_both_shrink() {
        let message = message("tok", &notice(&"t".repeat(5000), &"b".repeat(5000), &[]));
        assert!(message.to_string().len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(message["message"]["notification"]["body"], "");
        assert!(message["message"]["notification"]["title"].as_str().unwrap().len() > 3000);
    }
}
