// The chat state of the signed-in user, wired to the HTTP API and the socket: users, channels,
// presence, one ChannelCache per channel, and the resume that runs on every (re)connection.
// React reads it through `useStore` (a version number bumps on every change).

import { get } from "../net/api";
import { learnNodes } from "../net/nodes";
import { currentSession } from "../net/auth";
import { isTransient, RequestFailed, socket, type Frame, type Requester } from "../net/socket";
import { ChannelCache, type PendingSend } from "./channelCache";
import { uuid } from "./ids";
import type {
  Channel,
  ChannelEvent,
  ChannelListing,
  Message,
  MeetingWithLinks,
  PresenceStatus,
  SubscribeResult,
  User,
} from "./types";

export interface ChannelEntry {
  channel: Channel;
  isMember: boolean;
  /** For DMs: the other member. */
  peerId?: string;
}

export interface Toast {
  id: number;
  text: string;
  href?: string;
  action?: string;
}

const TYPING_REFRESH_MS = 3_000;

export class ChatStore {
  version = 0;
  users = new Map<string, User>();
  channels = new Map<string, ChannelEntry>();
  caches = new Map<string, ChannelCache>();
  presence = new Map<string, PresenceStatus>();
  toasts: Toast[] = [];
  activeChannelId: string | null = null;
  ready = false;
  /** performance.now() when the first message list was shown (for the page-load figure). */
  firstMessagesShownAt: number | null = null;
  private listeners = new Set<() => void>();
  private typingSentAt = new Map<string, number>();
  private toastSeq = 0;
  private unsubscribers: (() => void)[] = [];

  get me(): string {
    return currentSession()?.user.id ?? "";
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  changed(): void {
    this.version++;
    this.listeners.forEach((listener) => listener());
  }

  cache(channelId: string): ChannelCache {
    let cache = this.caches.get(channelId);
    if (!cache) this.caches.set(channelId, (cache = new ChannelCache()));
    return cache;
  }

  // ---- start and stop ----

  async start(): Promise<void> {
    this.unsubscribers = [
      socket.onResume((request, hello) => this.resume(request, hello)),
      socket.on("event", (f) => this.onEvent(f)),
      socket.on("typing", (f) => this.onTyping(f)),
      socket.on("read", (f) => this.onRead(f)),
      socket.on("presence", (f) => this.onPresence(f)),
      socket.on("notification", (f) => this.onNotification(f)),
      socket.on("meeting_invite", (f) => this.onInvite(f)),
      socket.on("channel_added", (f) => this.onChannelAdded(f)),
      socket.onStateChange(() => {
        if (socket.state === "open") this.resendPending(); // unacknowledged sends, same client_msg_id
        this.changed();
      }),
    ];
    await this.loadDirectory();
    socket.start();
  }

  stop(): void {
    this.unsubscribers.forEach((off) => off());
    socket.stop();
  }

  /** Users, and channels with their unread counts (from the listing: no history fetched);
   *  channels we are added to later announce themselves with `channel_added`. */
  private async loadDirectory(): Promise<void> {
    const [users, channels] = await Promise.all([
      get<{ users: User[] }>("/v1/users"),
      get<{ channels: ChannelListing[] }>("/v1/channels"),
    ]);
    for (const user of users.users) this.users.set(user.id, user);
    for (const listing of channels.channels) this.addListing(listing);
    await Promise.all(
      [...this.channels.values()].filter((e) => e.channel.kind === "dm").map((e) => this.loadMembers(e.channel.id)),
    );
    this.ready = true;
    this.changed();
    void this.refreshNodes();
  }

  /** The nodes' client URLs (GET /v1/nodes), to move to another node when ours goes away. */
  async refreshNodes(): Promise<void> {
    try {
      learnNodes((await get<{ nodes: string[] }>("/v1/nodes")).nodes);
    } catch {
      // keep what we know
    }
  }

  addChannel(channel: Channel, isMember: boolean): ChannelEntry {
    const previous = this.channels.get(channel.id);
    const entry: ChannelEntry = { channel, isMember, peerId: previous?.peerId };
    this.channels.set(channel.id, entry);
    return entry;
  }

  private addListing(listing: ChannelListing): ChannelEntry {
    if (listing.is_member) this.cache(listing.channel.id).setListedUnread(listing.unread ?? 0, listing.head_seq);
    return this.addChannel(listing.channel, listing.is_member);
  }

  async loadMembers(channelId: string): Promise<void> {
    const answer = await get<{ members: { user_id: string }[] }>(`/v1/channels/${channelId}/members`);
    const cache = this.cache(channelId);
    cache.members = answer.members.map((m) => m.user_id);
    const entry = this.channels.get(channelId);
    if (entry?.channel.kind === "dm") entry.peerId = cache.members.find((id) => id !== this.me) ?? this.me;
    this.changed();
  }

  // ---- resume: runs on every new connection before it counts as open ----

  private async resume(request: Requester, hello: Frame): Promise<void> {
    void hello;
    // A channel or user whose owner just died answers `unavailable` until the membership
    // changes: retry those in the background rather than holding the whole connection.
    const members = [...this.channels.values()].filter((e) => e.isMember).map((e) => e.channel.id);
    await Promise.all(members.map((id) => this.subscribeWithRetry(request, id)));
    await this.watchPresence(request, [...this.users.keys()]);
    if (socket.connections > 0) void this.refreshNodes(); // a reconnect: the membership may have changed
    if (document.visibilityState === "hidden") await request({ type: "presence_set", status: "away" }).catch(() => undefined);
    this.changed();
  }

  private async subscribeWithRetry(request: Requester, channelId: string, attempt = 0): Promise<void> {
    try {
      await this.subscribeChannel(request, channelId);
    } catch (error) {
      if (!isTransient(error) || attempt > 20) return;
      window.setTimeout(() => {
        socket.whenOpen(60_000).then(
          () => this.subscribeWithRetry((f, t) => socket.request(f, t), channelId, attempt + 1),
          () => undefined, // still offline: the next resume subscribes it
        );
      }, Math.min(5_000, 300 * 2 ** attempt));
    }
  }

  private async watchPresence(request: Requester, userIds: string[], attempt = 0): Promise<void> {
    try {
      for (let i = 0; i < userIds.length; i += 500) {
        const answer = await request<{ user_id: string; status: PresenceStatus }[]>({
          type: "presence_watch",
          user_ids: userIds.slice(i, i + 500),
        });
        for (const view of answer) this.presence.set(view.user_id, view.status);
      }
      this.changed();
    } catch (error) {
      if (!isTransient(error) || attempt > 20) return;
      window.setTimeout(() => {
        if (socket.state === "open") void this.watchPresence((f, t) => socket.request(f, t), userIds, attempt + 1);
      }, Math.min(5_000, 300 * 2 ** attempt));
    }
  }

  /** Subscribes on the live connection now (a channel we just joined or created). */
  async subscribeNow(channelId: string): Promise<void> {
    // Not open yet: a resume may be running with the channel list it read before this one
    // was added, so subscribe once the socket is open (subscribing twice is harmless).
    await socket.whenOpen(60_000).catch(() => undefined);
    if (socket.state === "open") await this.subscribeWithRetry((f, t) => socket.request(f, t), channelId);
    this.changed();
  }

  /** A channel we did not know we are in (a new DM, someone added us): list and subscribe. */
  async discoverChannel(channelId: string): Promise<void> {
    const known = this.channels.get(channelId);
    if (known?.isMember) return;
    const answer = await get<ChannelListing>(`/v1/channels/${channelId}`);
    this.addListing(answer);
    if (answer.channel.kind === "dm") await this.loadMembers(channelId);
    if (answer.is_member) await this.subscribeNow(channelId);
  }

  private async subscribeChannel(request: Requester, channelId: string): Promise<void> {
    const cache = this.cache(channelId);
    const frame: Frame = { type: "subscribe", channel_id: channelId };
    const resuming = cache.subscribed; // after the first subscription, always from our last seq
    if (resuming) frame.last_seq = cache.lastSeq;
    // First time: replay what came after the listing counted the unread messages.
    else if (cache.listedHead !== null && cache.listedHead > 0) frame.last_seq = cache.listedHead;
    let result: SubscribeResult;
    try {
      result = await request<SubscribeResult>(frame, 30_000);
    } catch (error) {
      if (isTransient(error)) throw error;
      const code = (error as RequestFailed).code;
      if (code === "invalid" && resuming) {
        cache.reset(); // our seqs are ahead of the channel: another database; load it again
        return this.subscribeChannel(request, channelId);
      }
      if (code === "not_member" || code === "not_found") {
        const entry = this.channels.get(channelId);
        if (entry) entry.isMember = false;
      }
      return;
    }
    if (!resuming) {
      cache.lastSeq = Math.max(cache.lastSeq, result.head_seq);
      cache.anchorListed(result.head_seq); // the listing's unread count covers up to here
    }
    cache.subscribed = true;
    for (const cursor of result.read_cursors) cache.moveCursor(cursor.user_id, cursor.seq);
    cache.typing.clear();
    for (const userId of result.typing) cache.typing.set(userId, Date.now());
  }

  // ---- frames ----

  private onEvent(frame: Frame): void {
    const channelId = frame.channel_id as string;
    const seq = frame.seq as number;
    const cache = this.cache(channelId);
    if (seq > cache.lastSeq + 1 && cache.lastSeq > 0) {
      // The server never leaves a gap on a connection: we lost frames. Resume on a new one.
      console.warn("gap in channel", channelId, cache.lastSeq, seq);
      socket.dropConnection();
      return;
    }
    const event = frame.event as ChannelEvent;
    if (!cache.applyEvent(seq, event)) return;
    if (event.kind === "message_new") cache.typing.delete(event.message.sender_id);
    if ((event.kind === "member_joined" || event.kind === "member_left") && event.user_id === this.me) {
      const entry = this.channels.get(channelId);
      if (entry) entry.isMember = event.kind === "member_joined";
    }
    this.changed();
  }

  private onTyping(frame: Frame): void {
    const cache = this.cache(frame.channel_id as string);
    if (frame.active) cache.typing.set(frame.user_id as string, Date.now());
    else cache.typing.delete(frame.user_id as string);
    this.changed();
  }

  private onRead(frame: Frame): void {
    this.cache(frame.channel_id as string).moveCursor(frame.user_id as string, frame.seq as number);
    this.changed();
  }

  private onPresence(frame: Frame): void {
    this.presence.set(frame.user_id as string, frame.status as PresenceStatus);
    this.changed();
  }

  private onNotification(frame: Frame): void {
    const channelId = frame.channel_id as string;
    if (!this.channels.get(channelId)?.isMember) void this.discoverChannel(channelId).catch(() => undefined);
    if (channelId === this.activeChannelId && document.visibilityState === "visible") return;
    const message = frame.message as Message;
    const who = this.userName(message.sender_id);
    const text = frame.reason === "mention" ? `${who} mentioned you: ${message.body}` : `${who}: ${message.body}`;
    this.toast({ text: text.slice(0, 140), href: `/channels/${channelId}` });
  }

  /** We became a member of a channel (joined it, were added, a DM was opened with us). */
  private onChannelAdded(frame: Frame): void {
    void this.discoverChannel(frame.channel_id as string).catch(() => undefined);
  }

  private onInvite(frame: Frame): void {
    const meeting = frame.meeting as MeetingWithLinks["meeting"];
    if (location.pathname === `/meetings/${meeting.id}`) return; // already on its page
    this.toast({
      text: `${this.userName(frame.inviter as string)} invited you to “${meeting.title}”`,
      href: `/meetings/${meeting.id}`,
      action: "Join",
    });
  }

  toast(toast: Omit<Toast, "id">): void {
    const entry = { ...toast, id: ++this.toastSeq };
    this.toasts = [...this.toasts.slice(-3), entry];
    window.setTimeout(() => this.dismissToast(entry.id), 12_000);
    this.changed();
  }

  dismissToast(id: number): void {
    this.toasts = this.toasts.filter((t) => t.id !== id);
    this.changed();
  }

  // ---- reading ----

  userName(userId: string): string {
    const user = this.users.get(userId);
    return user ? user.display_name || user.username : "someone";
  }

  channelTitle(entry: ChannelEntry): string {
    if (entry.channel.kind === "dm") return entry.peerId ? this.userName(entry.peerId) : "Direct message";
    return entry.channel.name;
  }

  async openChannel(channelId: string): Promise<void> {
    this.activeChannelId = channelId;
    const cache = this.cache(channelId);
    this.changed();
    const tasks: Promise<unknown>[] = [];
    if (!cache.members) tasks.push(this.loadMembers(channelId));
    if (!cache.hasNewest || cache.roots().length < 30) tasks.push(this.loadPage(channelId, null));
    await Promise.all(tasks);
  }

  /** The newest page (`before` null) or the page below `before`. */
  async loadPage(channelId: string, before: number | null): Promise<void> {
    const cache = this.cache(channelId);
    const query = before === null ? "limit=50" : `before=${before}&limit=50`;
    const page = await get<{ messages: Message[]; has_more: boolean }>(`/v1/channels/${channelId}/messages?${query}`);
    cache.merge(page.messages);
    if (before === null) cache.hasNewest = true;
    const oldest = cache.oldestSeq();
    if (before !== null || oldest === null || page.messages[0]?.seq === oldest) cache.hasMoreBefore = page.has_more;
    this.changed();
  }

  async loadOlder(channelId: string): Promise<void> {
    const cache = this.cache(channelId);
    const oldest = cache.oldestSeq();
    if (!cache.hasMoreBefore || oldest === null) return;
    await this.loadPage(channelId, oldest);
  }

  async loadThread(channelId: string, rootId: string): Promise<void> {
    const answer = await get<{ root: Message; replies: Message[] }>(
      `/v1/channels/${channelId}/messages/${rootId}/thread`,
    );
    this.cache(channelId).merge([answer.root, ...answer.replies]);
    this.changed();
  }

  /** Moves our read cursor to the newest seq we applied, if it is ahead. */
  markRead(channelId: string): void {
    const cache = this.cache(channelId);
    const target = cache.lastSeq;
    if (target <= cache.readSeq(this.me) || socket.state !== "open") return;
    cache.moveCursor(this.me, target);
    this.changed();
    socket.request({ type: "read", channel_id: channelId, seq: target }).catch(() => undefined);
  }

  // ---- writing ----

  send(channelId: string, body: string, parentId: string | null = null, attachmentIds: string[] = []): void {
    const pending: PendingSend = {
      clientMsgId: uuid(),
      body: withoutNul(body),
      parentId,
      attachmentIds,
      createdAt: Date.now(),
      status: "sending",
    };
    const cache = this.cache(channelId);
    cache.pending = [...cache.pending, pending];
    this.typingSentAt.delete(channelId);
    this.changed();
    void this.deliver(channelId, pending);
  }

  private async deliver(channelId: string, pending: PendingSend): Promise<void> {
    if (socket.state !== "open") return; // the resume sends it
    try {
      const message = await socket.request<Message>({
        type: "send",
        channel_id: channelId,
        client_msg_id: pending.clientMsgId,
        body: pending.body,
        parent_id: pending.parentId,
        attachment_ids: pending.attachmentIds,
      });
      this.cache(channelId).merge([message]);
    } catch (error) {
      if (isTransient(error)) {
        if ((error as RequestFailed).code !== "disconnected") {
          window.setTimeout(() => this.deliver(channelId, pending), 1_000);
        }
        return; // else the resume after reconnecting sends it again
      }
      pending.status = "failed";
      pending.error = (error as Error).message;
    }
    this.changed();
  }

  private resendPending(): void {
    for (const [channelId, cache] of this.caches) {
      for (const pending of cache.pending) if (pending.status === "sending") void this.deliver(channelId, pending);
    }
  }

  retry(channelId: string, clientMsgId: string): void {
    const pending = this.cache(channelId).pending.find((p) => p.clientMsgId === clientMsgId);
    if (!pending) return;
    pending.status = "sending";
    pending.error = undefined;
    this.changed();
    void this.deliver(channelId, pending);
  }

  discard(channelId: string, clientMsgId: string): void {
    const cache = this.cache(channelId);
    cache.pending = cache.pending.filter((p) => p.clientMsgId !== clientMsgId);
    this.changed();
  }

  request<T = unknown>(frame: Frame): Promise<T> {
    return socket.request<T>(frame).catch((error: Error) => {
      this.toast({ text: `Could not ${frame.type}: ${error.message}` });
      throw error;
    });
  }

  edit = (channelId: string, messageId: string, body: string) =>
    this.request({ type: "edit", channel_id: channelId, message_id: messageId, body: withoutNul(body) });
  remove = (channelId: string, messageId: string) =>
    this.request({ type: "delete", channel_id: channelId, message_id: messageId });

  toggleReaction(channelId: string, message: Message, emoji: string): void {
    const mine = message.reactions.some((r) => r.emoji === emoji && r.user_ids.includes(this.me));
    void this.request({ type: mine ? "unreact" : "react", channel_id: channelId, message_id: message.id, emoji });
  }

  /** Called on every keystroke; sends `typing_start` at most every few seconds. */
  typing(channelId: string): void {
    const now = Date.now();
    if (now - (this.typingSentAt.get(channelId) ?? 0) < TYPING_REFRESH_MS || socket.state !== "open") return;
    this.typingSentAt.set(channelId, now);
    socket.request({ type: "typing_start", channel_id: channelId }).catch(() => undefined);
  }

  stopTyping(channelId: string): void {
    if (!this.typingSentAt.delete(channelId) || socket.state !== "open") return;
    socket.request({ type: "typing_stop", channel_id: channelId }).catch(() => undefined);
  }

  /** Lists channels we did not know (the channel browser), and subscribes those we are in. */
  async refreshChannels(): Promise<void> {
    const answer = await get<{ channels: ChannelListing[] }>("/v1/channels");
    for (const listing of answer.channels) {
      const known = this.channels.get(listing.channel.id);
      if (known && (known.isMember || !listing.is_member)) continue;
      if (listing.is_member) await this.discoverChannel(listing.channel.id);
      else if (!known) this.addChannel(listing.channel, false);
    }
    this.changed();
  }

}

/** The server refuses text with NUL characters (`400 invalid`); they carry nothing anyway. */
export function withoutNul(text: string): string {
  return text.includes("\u0000") ? text.replace(/\u0000/g, "") : text;
}

export const store = new ChatStore();
