//! Setting up a chaos run over HTTP (a company, its users, their ids, channels, memberships)
//! and downloading every channel's history at the end. Each step is retried on the next
//! node, a bounded number of times, since nodes may be down.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};

use super::check::Stored;
use super::Options;
use crate::api::{Account, Api};

/// Attempts per setup step (each on the next node).
const SETUP_ATTEMPTS: usize = 8;
/// History page size (the API's maximum).
const PAGE: usize = 200;

pub struct Setup {
    pub admin: Account,
    pub users: Vec<Account>,
    /// `user_ids[i]` is the id of `users[i]`: the sender every copy of their messages must name.
    pub user_ids: Vec<String>,
    pub channels: Vec<String>,
}

/// Runs `step` on one node after another until it succeeds, at most `SETUP_ATTEMPTS` times.
async fn retry<T, F, Fut>(apis: &[Api], what: &str, step: F) -> anyhow::Result<T>
where
    F: Fn(Api) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    for attempt in 0..SETUP_ATTEMPTS {
        match step(apis[attempt % apis.len()].clone()).await {
            Ok(value) => return Ok(value),
            Err(err) => {
                eprintln!(
                    "setup: {what} failed on {} (attempt {}): {err:#}",
                    apis[attempt % apis.len()].base(),
                    attempt + 1
                );
                last = Some(err);
                tokio::time::sleep(Duration::from_millis(300 * (attempt as u64 + 1))).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node to ask")).context(format!("{what}: giving up")))
}

pub async fn set_up(apis: &[Api], opts: &Options) -> anyhow::Result<Setup> {
    let (slug, admin) = retry(apis, "creating the company", |api| async move { api.create_company().await }).await?;
    let users = stream::iter(1..=opts.users)
        .map(|index| {
            let (admin, slug) = (&admin, &slug);
            async move {
                let username = format!("user{index}");
                retry(apis, "creating a user", |api| {
                    let username = username.clone();
                    async move { api.create_user(admin, &username).await }
                })
                .await?;
                let account = retry(apis, "logging in", |api| {
                    let username = username.clone();
                    async move { api.login(slug, &username).await }
                })
                .await?;
                let token = &account.token;
                let id = retry(apis, "asking who a user is", |api| async move { user_id(&api, token).await }).await?;
                anyhow::Ok((account, id))
            }
        })
        .buffered(4)
        .try_collect::<Vec<(Account, String)>>()
        .await?;
    let (users, user_ids): (Vec<Account>, Vec<String>) = users.into_iter().unzip();
    let mut channels = Vec::new();
    for index in 0..opts.channels {
        let name = format!("chaos-{index}");
        let admin = &admin;
        let id = retry(apis, "creating a channel", |api| {
            let name = name.clone();
            async move { api.create_channel(&admin.token, &name).await }
        })
        .await?;
        channels.push(id);
    }
    let joins: Vec<(&Account, &String)> = users.iter().flat_map(|u| channels.iter().map(move |c| (u, c))).collect();
    stream::iter(joins)
        .map(|(user, channel)| {
            retry(apis, "joining a channel", move |api| async move { api.join(user, channel).await })
        })
        .buffer_unordered(8)
        .try_for_each(|()| async { Ok(()) })
        .await?;
    Ok(Setup { admin, users, user_ids, channels })
}

/// Every channel's full message history, from the first node that serves it all.
pub async fn fetch_history(apis: &[Api], setup: &Setup) -> Option<Vec<Vec<Stored>>> {
    let mut history = Vec::new();
    for channel in &setup.channels {
        let mut fetched = None;
        for attempt in 0..apis.len() * 2 {
            let api = &apis[attempt % apis.len()];
            match fetch_channel(api, &setup.admin.token, channel).await {
                Ok(messages) => {
                    fetched = Some(messages);
                    break;
                }
                Err(err) => eprintln!("history of {channel} from {} failed: {err:#}", api.base()),
            }
        }
        history.push(fetched?);
    }
    Some(history)
}

async fn fetch_channel(api: &Api, token: &str, channel: &str) -> anyhow::Result<Vec<Stored>> {
    let mut messages = Vec::new();
    let mut after = 0;
    for _ in 0..100_000 {
        let page = api.get(&format!("/v1/channels/{channel}/messages?after={after}&limit={PAGE}"), token).await?;
        let items = page["messages"].as_array().with_context(|| format!("no messages in {page}"))?;
        for item in items {
            let seq = item["seq"].as_i64().with_context(|| format!("message without seq: {item}"))?;
            let text = |key: &str| item[key].as_str().unwrap_or_default().to_owned();
            messages.push(Stored {
                seq,
                client_msg_id: text("client_msg_id"),
                body: text("body"),
                sender_id: text("sender_id"),
            });
            after = after.max(seq);
        }
        if items.len() < PAGE {
            return Ok(messages);
        }
    }
    bail!("history of {channel} did not end")
}

/// The id of the token's user (`GET /v1/me`).
async fn user_id(api: &Api, token: &str) -> anyhow::Result<String> {
    let me = api.get("/v1/me", token).await?;
    me.pointer("/user/id").and_then(|id| id.as_str()).map(str::to_owned).with_context(|| format!("no user id in {me}"))
}
