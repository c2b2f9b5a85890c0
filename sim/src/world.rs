//! The company the simulation runs: its users (most online, a few offline with a phone
//! registered for pushes), channels (public ones, one private, DMs) and planned meetings.
//! Built once over HTTP before the working day starts; fixed afterwards.

use std::collections::HashMap;

use anyhow::Context;
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::json;

use crate::api::{text_at, Api, PASSWORD};

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub id: String,
    pub token: String,
    /// Offline users never open a socket: what concerns them goes to their phone.
    pub online: bool,
    /// The push token registered for an offline user.
    pub device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Public,
    Private,
    Dm,
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// User indexes.
    pub members: Vec<usize>,
}

/// A meeting the host starts `start_after_s` into the day.
#[derive(Debug, Clone)]
pub struct MeetingPlan {
    pub host: usize,
    /// Online participants besides the host (they join).
    pub guests: Vec<usize>,
    /// Offline invitees (they get a push).
    pub offline_invitees: Vec<usize>,
    pub start_after_s: u64,
}

pub struct World {
    pub slug: String,
    pub users: Vec<User>,
    pub channels: Vec<Channel>,
    pub channel_index: HashMap<String, usize>,
    pub user_index: HashMap<String, usize>,
    pub meetings: Vec<MeetingPlan>,
}

impl World {
    /// Channels a user is a member of.
    pub fn channels_of(&self, user: usize) -> Vec<usize> {
        (0..self.channels.len()).filter(|&c| self.channels[c].members.contains(&user)).collect()
    }

    pub fn online_members(&self, channel: usize) -> impl Iterator<Item = usize> + '_ {
        self.channels[channel].members.iter().copied().filter(|&u| self.users[u].online)
    }
}

/// How many of `users` stay offline (with a device): a sixth, at least 2.
pub fn offline_count(users: usize) -> usize {
    (users / 6).max(2).min(users.saturating_sub(2))
}

/// Members of the public channels besides `general` (everyone): by index pattern, so every
/// channel has online and offline members.
pub fn public_plan(users: usize) -> Vec<(&'static str, Vec<usize>)> {
    let all: Vec<usize> = (0..users).collect();
    vec![
        ("general", all.clone()),
        ("random", all.iter().copied().filter(|u| u % 2 == 0).collect()),
        ("engineering", all.iter().copied().filter(|u| u % 3 == 0 || *u == users - 1).collect()),
        ("product", all.iter().copied().filter(|u| u % 3 == 1 || *u == 0).collect()),
    ]
}

/// DM pairs: neighbouring online users, and two online users per offline user.
pub fn dm_plan(users: usize, offline: usize) -> Vec<(usize, usize)> {
    let online = users - offline;
    let mut pairs: Vec<(usize, usize)> = (0..online.saturating_sub(1)).step_by(2).map(|u| (u, u + 1)).collect();
    for (k, off) in (online..users).enumerate() {
        pairs.push((k % online, off));
        pairs.push(((k + online / 2) % online, off));
    }
    pairs
}

pub fn meeting_plan(users: usize, offline: usize) -> Vec<MeetingPlan> {
    let online = users - offline;
    let sizes = [2usize, 3, 4];
    let mut next = 1;
    let mut plans = Vec::new();
    for (k, size) in sizes.into_iter().enumerate() {
        if next + size > online {
            break;
        }
        plans.push(MeetingPlan {
            host: next,
            guests: (next + 1..next + size).collect(),
            offline_invitees: vec![online + k % offline.max(1)],
            start_after_s: 3 + 4 * k as u64,
        });
        next += size;
    }
    plans
}

/// Creates the company, users, devices, channels and DMs.
pub async fn build(api: &Api, user_count: usize) -> anyhow::Result<World> {
    let nodes = api.urls().len();
    let slug = format!("sim-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let company = json!({"name": "Simulated Inc", "slug": slug,
        "admin": {"username": "u00", "password": PASSWORD, "display_name": "User 0"}});
    let answer = api.post(0, "/v1/companies", None, company).await.context("creating the company")?;
    let admin_token = text_at(&answer, "/tokens/access_token")?;
    let admin_id = text_at(&answer, "/user/id")?;
    let offline = offline_count(user_count);
    let mut users: Vec<User> = stream::iter(1..user_count)
        .map(|index| {
            let (api, slug, admin_token) = (api.clone(), slug.clone(), admin_token.clone());
            async move {
                let username = format!("u{index:02}");
                let body = json!({"username": username, "password": PASSWORD});
                api.post(index % nodes, "/v1/users", Some(&admin_token), body).await.context("adding a user")?;
                let (token, id) = api.login(index % nodes, &slug, &username).await?;
                anyhow::Ok(User { username, id, token, online: true, device: None })
            }
        })
        .buffered(6)
        .try_collect()
        .await?;
    users.insert(
        0,
        User { username: "u00".into(), id: admin_id, token: admin_token.clone(), online: true, device: None },
    );
    for (index, user) in users.iter_mut().enumerate().skip(user_count - offline) {
        user.online = false;
        let device = format!("sim-{slug}-{}", user.username);
        let body = json!({"token": device, "platform": "android"});
        api.post(index % nodes, "/v1/devices", Some(&user.token), body).await.context("registering a device")?;
        user.device = Some(device);
    }

    let mut channels = Vec::new();
    for (name, members) in public_plan(user_count) {
        let answer = api.post(0, "/v1/channels", Some(&admin_token), json!({"name": name})).await?;
        let id = text_at(&answer, "/channel/id")?;
        let path = format!("/v1/channels/{id}/join");
        stream::iter(members.iter().copied().filter(|&u| u != 0))
            .map(|u| api.post(u % nodes, &path, Some(&users[u].token), json!({})))
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await
            .with_context(|| format!("joining #{name}"))?;
        channels.push(Channel { id, name: name.into(), kind: Kind::Public, members });
    }
    let leads: Vec<usize> = (0..6.min(user_count - offline)).chain([user_count - 1]).collect();
    let answer = api.post(0, "/v1/channels", Some(&admin_token), json!({"name": "leads", "private": true})).await?;
    let id = text_at(&answer, "/channel/id")?;
    for &u in leads.iter().filter(|&&u| u != 0) {
        api.post(0, &format!("/v1/channels/{id}/members"), Some(&admin_token), json!({"user_id": users[u].id}))
            .await
            .context("adding to #leads")?;
    }
    channels.push(Channel { id, name: "leads".into(), kind: Kind::Private, members: leads });
    for (a, b) in dm_plan(user_count, offline) {
        let answer = api.post(a % nodes, "/v1/dms", Some(&users[a].token), json!({"user_id": users[b].id})).await?;
        let id = text_at(&answer, "/channel/id")?;
        let name = format!("dm {}-{}", users[a].username, users[b].username);
        channels.push(Channel { id, name, kind: Kind::Dm, members: vec![a, b] });
    }
    let channel_index = channels.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
    let user_index = users.iter().enumerate().map(|(i, u)| (u.id.clone(), i)).collect();
    let meetings = meeting_plan(user_count, offline);
    Ok(World { slug, users, channels, channel_index, user_index, meetings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_online_and_offline_users() {
        let users = 50;
        let offline = offline_count(users);
        assert_eq!(offline, 8);
        for (name, members) in public_plan(users) {
            assert!(members.iter().any(|&u| u < users - offline), "{name} has online members");
            assert!(members.iter().any(|&u| u >= users - offline), "{name} has offline members");
        }
        let dms = dm_plan(users, offline);
        assert!(dms.iter().all(|&(a, b)| a != b && a < users - offline && b < users));
        for off in users - offline..users {
            assert_eq!(dms.iter().filter(|&&(_, b)| b == off).count(), 2);
        }
        let meetings = meeting_plan(users, offline);
        assert_eq!(meetings.len(), 3);
        assert!(meetings.iter().all(|m| m.offline_invitees.iter().all(|&u| u >= users - offline)));
        assert_eq!(meetings[2].guests.len(), 3, "the largest meeting has 4 people");
    }

    #[test]
    fn small_companies_still_have_online_users() {
        assert_eq!(offline_count(4), 2);
        assert_eq!(meeting_plan(4, 2).len(), 0);
        assert_eq!(dm_plan(4, 2).len(), 1 + 4);
    }
}
