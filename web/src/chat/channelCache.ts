// One channel as the client knows it: the messages it holds (a contiguous run ending at the
// newest), the last applied seq, read cursors, who types, and the sends not yet acknowledged.
// Pure data and rules, no I/O: the store feeds it events and pages.

import type { ChannelEvent, Message } from "./types";

export interface PendingSend {
  clientMsgId: string;
  body: string;
  parentId: string | null;
  attachmentIds: string[];
  createdAt: number;
  status: "sending" | "failed";
  error?: string;
}

/** Events for messages the cache does not hold yet (a page in flight), re-applied on merge. */
const MAX_ORPHANS = 500;

export class ChannelCache {
  readonly messages = new Map<string, Message>();
  /** Highest seq of an `event` applied (or the `head_seq` a subscription started at). */
  lastSeq = 0;
  /** Subscribed at least once: later subscriptions resume from `lastSeq`. */
  subscribed = false;
  /** Whether the cache reaches the channel's newest message (a full page loaded or subscribed from 0). */
  hasNewest = false;
  /** Whether older messages exist below the oldest one held (unknown until a page says). */
  hasMoreBefore = true;
  readonly readCursors = new Map<string, number>();
  readonly typing = new Map<string, number>(); // user id → local time of the last "active"
  members: string[] | null = null;
  pending: PendingSend[] = [];
  /** The server's `unread` count from the channel listing, for the messages up to
   *  `listedUpTo` (the head seq when we first subscribed); 0 once we read past it. */
  listedUnread = 0;
  listedUpTo = 0;
  /** A listing's count waiting for the first subscription to anchor it. */
  private listedPending: number | null = null;
  /** The head the listing counted at: the first subscription replays what came after it. */
  listedHead: number | null = null;
  private orphans: { seq: number; event: ChannelEvent }[] = [];
  private sorted: Message[] | null = null;

  /** Applies one durable event; false when it was already applied (seq not above lastSeq). */
  applyEvent(seq: number, event: ChannelEvent): boolean {
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    this.applyToMessages(seq, event);
    return true;
  }

  private applyToMessages(seq: number, event: ChannelEvent): void {
    switch (event.kind) {
      case "message_new": {
        if (!this.messages.has(event.message.id)) this.put(event.message);
        this.pending = this.pending.filter((p) => p.clientMsgId !== event.message.client_msg_id);
        return;
      }
      case "member_joined":
        if (this.members && !this.members.includes(event.user_id)) this.members = [...this.members, event.user_id];
        return;
      case "member_left":
        if (this.members) this.members = this.members.filter((id) => id !== event.user_id);
        this.typing.delete(event.user_id);
        return;
    }
    const message = this.messages.get(event.message_id);
    if (!message) {
      this.orphans.push({ seq, event });
      if (this.orphans.length > MAX_ORPHANS) this.orphans.shift();
      return;
    }
    this.put(applyToMessage(message, event));
  }

  /** Adds messages from an HTTP page or a send answer; what the cache holds is at least as new. */
  merge(page: Message[]): void {
    let added = false;
    for (const message of page) {
      if (!this.messages.has(message.id)) {
        this.put(message);
        added = true;
      }
      this.pending = this.pending.filter((p) => p.clientMsgId !== message.client_msg_id);
    }
    if (!added || this.orphans.length === 0) return;
    const waiting = this.orphans;
    this.orphans = [];
    for (const { seq, event } of waiting) this.applyToMessages(seq, event); // idempotent
  }

  private put(message: Message): void {
    this.messages.set(message.id, message);
    this.sorted = null;
  }

  /** All held messages in seq order. */
  all(): Message[] {
    if (!this.sorted) this.sorted = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    return this.sorted;
  }

  roots(): Message[] {
    return this.all().filter((m) => m.parent_id === null);
  }

  replies(rootId: string): Message[] {
    return this.all().filter((m) => m.parent_id === rootId);
  }

  oldestSeq(): number | null {
    const all = this.all();
    return all.length ? all[0].seq : null;
  }

  readSeq(userId: string): number {
    return this.readCursors.get(userId) ?? 0;
  }

  moveCursor(userId: string, seq: number): void {
    if (seq > this.readSeq(userId)) this.readCursors.set(userId, seq);
  }

  /** The listing's `unread` (GET /v1/channels): counted by the server, no history needed. */
  setListedUnread(unread: number, headSeq: number | undefined): void {
    if (this.subscribed) return; // live events count from here on
    this.listedPending = unread;
    this.listedHead = headSeq ?? null;
  }

  /** The first subscription: the listed count covers the messages up to the listing's head
   *  (the subscription replayed those after it), or else up to the subscription's head. */
  anchorListed(headSeq: number): void {
    if (this.listedPending === null) return;
    this.listedUnread = this.listedPending;
    this.listedUpTo = this.listedHead ?? headSeq;
    this.listedPending = null;
    this.listedHead = null;
  }

  /** Messages by others after our read cursor, not deleted: the listed count for those up
   *  to `listedUpTo` (until we read past it), plus those we hold above it. */
  unreadCount(me: string): number {
    if (this.listedPending !== null) return this.listedPending; // not subscribed yet
    const cursor = this.readSeq(me);
    const floor = Math.max(cursor, this.listedUpTo);
    let count = cursor < this.listedUpTo ? this.listedUnread : 0;
    for (const message of this.messages.values()) {
      if (message.seq > floor && message.sender_id !== me && !message.deleted) count++;
    }
    return count;
  }

  mentionsMe(me: string): boolean {
    const cursor = this.readSeq(me);
    for (const message of this.messages.values()) {
      if (message.seq > cursor && message.mentions.includes(me)) return true;
    }
    return false;
  }

  /** Members (other than `me`) whose read cursor reached `seq`. */
  seenBy(seq: number, me: string): string[] {
    const readers: string[] = [];
    for (const [userId, cursor] of this.readCursors) if (userId !== me && cursor >= seq) readers.push(userId);
    return readers.sort();
  }

  typingUsers(me: string, now = Date.now()): string[] {
    const users: string[] = [];
    for (const [userId, since] of this.typing) {
      // The server ends an indicator after 5 s without refresh; forget ours a bit later in
      // case the `active: false` was lost with a node.
      if (now - since > 8_000) this.typing.delete(userId);
      else if (userId !== me) users.push(userId);
    }
    return users.sort();
  }

  /** Forget everything (the server says our seqs belong to another history). */
  reset(): void {
    this.messages.clear();
    this.sorted = null;
    this.orphans = [];
    this.lastSeq = 0;
    this.subscribed = false;
    this.hasNewest = false;
    this.hasMoreBefore = true;
    this.listedUnread = this.listedUpTo = 0;
  }
}

export function applyToMessage(message: Message, event: ChannelEvent): Message {
  switch (event.kind) {
    case "message_edited":
      return { ...message, body: event.body, mentions: event.mentions, edited_at: event.edited_at };
    case "message_deleted":
      return { ...message, deleted: true, body: "", reactions: [] };
    case "reaction_added": {
      const reactions = message.reactions.map((r) => ({ ...r, user_ids: [...r.user_ids] }));
      const group = reactions.find((r) => r.emoji === event.emoji);
      if (!group) reactions.push({ emoji: event.emoji, user_ids: [event.user_id] });
      else if (!group.user_ids.includes(event.user_id)) group.user_ids.push(event.user_id);
      return { ...message, reactions };
    }
    case "reaction_removed": {
      const reactions = message.reactions
        .map((r) => (r.emoji === event.emoji ? { ...r, user_ids: r.user_ids.filter((u) => u !== event.user_id) } : r))
        .filter((r) => r.user_ids.length > 0);
      return { ...message, reactions };
    }
    default:
      return message;
  }
}
