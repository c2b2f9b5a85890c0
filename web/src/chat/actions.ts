// What the user does to channels, people and meetings over HTTP; the store learns the result
// (and subscribes to channels we now belong to).

import { post } from "../net/api";
import { socket } from "../net/socket";
import { store } from "./store";
import type { Channel, MeetingWithLinks, User } from "./types";

/** A channel we now belong to: list it and subscribe on the live connection. */
async function adopt(channel: Channel): Promise<string> {
  store.addChannel(channel, true);
  store.changed();
  await store.subscribeNow(channel.id);
  return channel.id;
}

export async function createChannel(name: string, isPrivate: boolean): Promise<string> {
  const answer = await post<{ channel: Channel }>("/v1/channels", { name, private: isPrivate });
  return adopt(answer.channel);
}

export async function joinChannel(channelId: string): Promise<void> {
  await post(`/v1/channels/${channelId}/join`);
  await adopt(store.channels.get(channelId)!.channel);
}

export async function leaveChannel(channelId: string): Promise<void> {
  await post(`/v1/channels/${channelId}/leave`);
  const entry = store.channels.get(channelId);
  if (entry) entry.isMember = false;
  store.changed();
}

export async function openDm(userId: string): Promise<string> {
  const answer = await post<{ channel: Channel }>("/v1/dms", { user_id: userId });
  const id = await adopt(answer.channel);
  await store.loadMembers(id);
  return id;
}

export async function addUser(username: string, password: string, displayName: string): Promise<User> {
  const body: Record<string, string> = { username, password };
  if (displayName.trim()) body.display_name = displayName.trim();
  const answer = await post<{ user: User }>("/v1/users", body);
  store.users.set(answer.user.id, answer.user);
  socket.request({ type: "presence_watch", user_ids: [answer.user.id] }).catch(() => undefined);
  store.changed();
  return answer.user;
}

/** Creates a meeting for the channel's members and posts its link there; returns its id. */
export async function startMeeting(channelId: string): Promise<string> {
  const entry = store.channels.get(channelId);
  const cache = store.cache(channelId);
  if (!cache.members) await store.loadMembers(channelId);
  const title = entry ? (entry.channel.kind === "dm" ? "Call" : `#${entry.channel.name} meeting`) : "Meeting";
  const answer = await post<MeetingWithLinks>("/v1/meetings", {
    title,
    channel_id: channelId,
    invitees: (cache.members ?? []).filter((id) => id !== store.me).slice(0, 100), // the server's limit
  });
  store.send(channelId, `📞 ${title}: ${location.origin}/meetings/${answer.meeting.id}`);
  return answer.meeting.id;
}
