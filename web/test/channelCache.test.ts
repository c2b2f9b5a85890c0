import assert from "node:assert/strict";
import { test } from "node:test";
import { ChannelCache } from "../src/chat/channelCache";
import type { Message } from "../src/chat/types";

function message(seq: number, id = `m${seq}`, sender = "bob", extra: Partial<Message> = {}): Message {
  return {
    id, channel_id: "c", seq, sender_id: sender, client_msg_id: `c-${id}`, parent_id: null, body: `hi ${seq}`,
    mentions: [], attachment_ids: [], created_at: seq, edited_at: null, deleted: false, reactions: [], ...extra,
  };
}

test("events apply once, in seq order", () => {
  const cache = new ChannelCache();
  assert.equal(cache.applyEvent(1, { kind: "message_new", message: message(1) }), true);
  assert.equal(cache.applyEvent(1, { kind: "message_new", message: message(1) }), false);
  assert.equal(cache.applyEvent(2, { kind: "reaction_added", message_id: "m1", user_id: "alice", emoji: "👍" }), true);
  assert.equal(cache.applyEvent(2, { kind: "reaction_added", message_id: "m1", user_id: "carol", emoji: "👍" }), false);
  assert.deepEqual(cache.messages.get("m1")!.reactions, [{ emoji: "👍", user_ids: ["alice"] }]);
  cache.applyEvent(3, { kind: "reaction_removed", message_id: "m1", user_id: "alice", emoji: "👍" });
  assert.deepEqual(cache.messages.get("m1")!.reactions, []);
  cache.applyEvent(4, { kind: "message_edited", message_id: "m1", body: "edited", mentions: [], edited_at: 9 });
  assert.equal(cache.messages.get("m1")!.body, "edited");
  cache.applyEvent(5, { kind: "message_deleted", message_id: "m1", deleted_at: 10 });
  assert.equal(cache.messages.get("m1")!.deleted, true);
  assert.equal(cache.lastSeq, 5);
});

test("a page merged later keeps what events already changed, and replays orphans", () => {
  const cache = new ChannelCache();
  cache.lastSeq = 3;
  // An edit for a message whose page is still in flight.
  cache.applyEvent(4, { kind: "message_edited", message_id: "m2", body: "new", mentions: [], edited_at: 5 });
  cache.merge([message(1), message(2)]);
  assert.equal(cache.messages.get("m2")!.body, "new");
  assert.deepEqual(cache.roots().map((m) => m.seq), [1, 2]);
  // A message already held is not overwritten by an older copy.
  cache.merge([{ ...message(2), body: "old" }]);
  assert.equal(cache.messages.get("m2")!.body, "new");
});

test("pending sends disappear when their message arrives by event or answer", () => {
  const cache = new ChannelCache();
  cache.pending = [
    { clientMsgId: "c-m1", body: "hi", parentId: null, attachmentIds: [], createdAt: 0, status: "sending" },
    { clientMsgId: "c-m2", body: "yo", parentId: null, attachmentIds: [], createdAt: 0, status: "sending" },
  ];
  cache.applyEvent(1, { kind: "message_new", message: message(1, "m1", "me") });
  cache.merge([message(2, "m2", "me")]);
  assert.equal(cache.pending.length, 0);
});

test("unread counts others' messages after our cursor; receipts name who read", () => {
  const cache = new ChannelCache();
  cache.merge([message(1, "m1", "me"), message(2, "m2", "bob"), message(3, "m3", "bob", { mentions: ["me"] })]);
  assert.equal(cache.unreadCount("me"), 2);
  assert.equal(cache.mentionsMe("me"), true);
  cache.moveCursor("me", 2);
  cache.moveCursor("me", 1); // cursors only move forward
  assert.equal(cache.unreadCount("me"), 1);
  cache.moveCursor("bob", 1);
  cache.moveCursor("carol", 3);
  assert.deepEqual(cache.seenBy(1, "me"), ["bob", "carol"]);
  assert.deepEqual(cache.seenBy(2, "me"), ["carol"]);
});

test("unread counts start from the listing, then live messages add to them, until read", () => {
  const cache = new ChannelCache();
  cache.setListedUnread(3, undefined); // an older server: no head with the count
  assert.equal(cache.unreadCount("me"), 3);
  // The first subscription anchors the listed count at its head seq; no history is fetched.
  cache.readCursors.set("me", 10);
  cache.lastSeq = 14;
  cache.anchorListed(14);
  cache.subscribed = true;
  assert.equal(cache.unreadCount("me"), 3);
  cache.applyEvent(15, { kind: "message_new", message: message(15) });
  cache.applyEvent(16, { kind: "message_new", message: message(16, "m16", "me") }); // ours: not unread
  assert.equal(cache.unreadCount("me"), 4);
  // Opening the channel loads the newest page (holding the listed ones): nothing counts twice.
  cache.merge([message(12), message(13), message(14)]);
  assert.equal(cache.unreadCount("me"), 4);
  // Reading past it (here or on another device) clears the listed part.
  cache.moveCursor("me", 16);
  assert.equal(cache.unreadCount("me"), 0);
  cache.applyEvent(17, { kind: "message_new", message: message(17) });
  assert.equal(cache.unreadCount("me"), 1);
  // A later listing does not override the live count.
  cache.setListedUnread(9, 17);
  assert.equal(cache.unreadCount("me"), 1);
});

test("a listed count anchors at the listing's head, and what the first subscription replays after it adds", () => {
  const cache = new ChannelCache();
  cache.setListedUnread(2, 12); // GET /v1/channels: 2 unread as of seq 12
  assert.equal(cache.listedHead, 12, "the first subscribe asks for the events after the listing");
  cache.readCursors.set("me", 10);
  // The subscription replays 13 and 14 (sent meanwhile), then answers with head 14.
  cache.applyEvent(13, { kind: "message_new", message: message(13) });
  cache.applyEvent(14, { kind: "message_new", message: message(14, "m14", "me") });
  cache.lastSeq = 14;
  cache.anchorListed(14);
  cache.subscribed = true;
  assert.equal(cache.listedHead, null);
  assert.equal(cache.unreadCount("me"), 3, "the listed two, plus 13 (14 is ours)");
});
