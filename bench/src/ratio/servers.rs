//! The two servers under comparison, and how the bench connects a socket to a room on each.
//!
//! On lark a room is a public channel: sockets log in with a few shared tokens (argon2 makes
//! every login expensive, and one user may hold many sessions) and subscribe to the channel.
//! On the baseline a room is `?room=<name>` in the URL.

use std::sync::Arc;

use anyhow::Context;
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::json;

use super::load::{FrameFn, Socket};
use crate::api::{Account, Api};
use crate::client::{self, Ws};
use crate::net;

/// Sockets connected (and subscribed) at once while setting up.
const CONNECT_CONCURRENCY: usize = 64;
/// Channel creations and joins in flight at once.
const SETUP_CONCURRENCY: usize = 16;

#[derive(Clone)]
pub enum Target {
    Lark {
        ws_base: String,
        /// Member `m` of a room connects with `tokens[m % len]`.
        tokens: Arc<Vec<String>>,
        /// Room index → channel id.
        channels: Arc<Vec<String>>,
    },
    Baseline {
        ws_base: String,
        /// Room names are `<prefix><index>`, fresh per setup.
        prefix: String,
    },
}

impl Target {
    pub fn baseline(ws_base: &str) -> Self {
        let prefix = format!("r{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Target::Baseline { ws_base: ws_base.to_owned(), prefix }
    }

    /// Connects member `member` of room `room`, subscribed and ready to receive.
    pub async fn connect(&self, room: usize, member: usize) -> anyhow::Result<Ws> {
        match self {
            Target::Lark { ws_base, tokens, channels } => {
                let token = &tokens[member % tokens.len()];
                let mut ws = net::connect(&format!("{ws_base}/ws?token={token}"))
                    .await
                    .map_err(|err| anyhow::anyhow!(err.describe()))?;
                let frame = json!({ "type": "subscribe", "channel_id": channels[room] });
                client::request(&mut ws, "s", frame).await.context("subscribing")?;
                Ok(ws)
            }
            Target::Baseline { ws_base, prefix } => net::connect(&format!("{ws_base}/ws?room={prefix}{room}"))
                .await
                .map_err(|err| anyhow::anyhow!(err.describe())),
        }
    }

    /// `rooms × room_size` sockets, room-major: socket `room * room_size + member`.
    pub async fn connect_rooms(&self, rooms: usize, room_size: usize) -> anyhow::Result<Vec<Socket>> {
        stream::iter(0..rooms * room_size)
            .map(|index| async move {
                let room = index / room_size;
                let ws = self.connect(room, index % room_size).await?;
                anyhow::Ok(Socket { room, ws })
            })
            .buffered(CONNECT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The server's send frame for a room.
    pub fn frame_fn(&self) -> FrameFn {
        match self {
            Target::Lark { channels, .. } => {
                let channels = channels.clone();
                Arc::new(move |room, id, body| {
                    json!({ "id": id, "type": "send", "channel_id": channels[room], "client_msg_id": id, "body": body })
                        .to_string()
                })
            }
            Target::Baseline { .. } => {
                Arc::new(|_, id, body| json!({ "type": "send", "id": id, "body": body }).to_string())
            }
        }
    }
}

/// A company with `users` accounts (the admin first), each logged in once.
pub async fn lark_accounts(api: &Api, users: usize) -> anyhow::Result<Vec<Account>> {
    let (slug, admin) = api.create_company().await?;
    let mut accounts = vec![admin.clone()];
    accounts.extend(api.create_users(&admin, &slug, users.saturating_sub(1)).await.context("creating users")?);
    Ok(accounts)
}

/// `rooms` public channels created by the first account and joined by all the others.
pub async fn lark_rooms(api: &Api, accounts: &[Account], rooms: usize) -> anyhow::Result<Target> {
    let creator = &accounts[0];
    let prefix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let channels: Vec<String> = stream::iter(0..rooms)
        .map(|index| async move { api.create_channel(&creator.token, &format!("room-{prefix}-{index}")).await })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
        .context("creating channels")?;
    let joins = channels.iter().flat_map(|channel| accounts[1..].iter().map(move |account| (account, channel)));
    stream::iter(joins)
        .map(|(account, channel)| api.join(account, channel))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await
        .context("joining channels")?;
    Ok(Target::Lark {
        ws_base: api.base().replacen("http://", "ws://", 1),
        tokens: Arc::new(accounts.iter().map(|account| account.token.clone()).collect()),
        channels: Arc::new(channels),
    })
}

/// One server under test: how to reach it and its pid (for CPU time).
pub struct Side {
    pub target: Target,
    pub pid: u32,
}

impl Side {
    /// The target for a new measured run: on the baseline fresh room names (no leftover
    /// members), on lark the same channels (their sockets are new anyway).
    pub fn fresh(&self) -> Target {
        match &self.target {
            Target::Baseline { ws_base, .. } => Target::baseline(ws_base),
            lark => lark.clone(),
        }
    }
}
