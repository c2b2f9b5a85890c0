//! ICE servers for WebRTC: STUN URLs, and TURN credentials in coturn's REST scheme
//! (`use-auth-secret`): username `<expiry-unix>:<user-id>`, password
//! `base64(HMAC-SHA1(secret, username))` with standard padding, valid for `ttl`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::ports::{IceServer, IceServers};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// `stun:` URLs handed out as they are (`STUN_URLS`).
    pub stun_urls: Vec<String>,
    /// `turn:`/`turns:` URLs (`TURN_URLS`); with `secret`, they get credentials.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret` (`TURN_SECRET`).
    pub secret: Option<String>,
    /// How long a credential stays valid (`TURN_TTL_SECS`, default 24 h).
    pub ttl: Duration,
}

/// The password of a TURN username in coturn's REST scheme.
pub fn turn_password(secret: &str, username: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac takes keys of any size");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Username and password valid until `expiry` (Unix seconds) for `user_id`.
pub fn turn_credentials(secret: &str, user_id: Uuid, expiry: u64) -> (String, String) {
    let username = format!("{expiry}:{user_id}");
    let password = turn_password(secret, &username);
    (username, password)
}

impl IceServers for TurnConfig {
    fn for_user(&self, user_id: Uuid) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer { urls: self.stun_urls.clone(), username: None, credential: None, ttl: None });
        }
        if let (Some(secret), false) = (&self.secret, self.turn_urls.is_empty()) {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
            let (username, credential) = turn_credentials(secret, user_id, now + self.ttl.as_secs());
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
                ttl: Some(self.ttl.as_secs()),
            });
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed independently (Python's hmac/hashlib/base64).
    #[test]
    fn passwords_match_known_vectors() {
        assert_eq!(turn_password("north", "1433895918:johndoe"), "n7CGfip9sz/2oYa2W3USyeX9rCk=");
        let user: Uuid = "0191d6a0-0000-7000-8000-000000000001".parse().unwrap();
        let (username, password) = turn_credentials("s3cr3t", user, 1_700_000_000);
        assert_eq!(username, "1700000000:0191d6a0-0000-7000-8000-000000000001");
        assert_eq!(password, "7B9JikzYX7HcnL14ugc3+V6uTCg=");
    }

    #[test]
    fn ice_servers_carry_fresh_credentials_only_with_a_secret() {
        let mut config = TurnConfig {
            stun_urls: vec!["stun:stun.example.com:3478".into()],
            turn_urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            secret: Some("s3cr3t".into()),
            ttl: Duration::from_secs(600),
        };
        let user = Uuid::new_v4();
        let servers = config.for_user(user);
        assert_eq!(servers.len(), 2);
        let turn = &servers[1];
        let username = turn.username.clone().unwrap();
        let (expiry, who) = username.split_once(':').unwrap();
        assert_eq!(who, user.to_string());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((now + 590..=now + 610).contains(&expiry.parse::<u64>().unwrap()));
        assert_eq!(turn.credential.clone().unwrap(), turn_password("s3cr3t", &username));
        config.secret = None;
        assert_eq!(config.for_user(user).len(), 1, "no TURN without a secret");
    }
}
