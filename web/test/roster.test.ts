import assert from "node:assert/strict";
import { test } from "node:test";
import { Roster } from "../src/meeting/roster";
import type { MeetingSnapshot, Participant } from "../src/chat/types";

const off = { audio: false, video: false, screen: false, hand: false };
function participant(pid: string, user: string, joined_at: number, status = "joined"): Participant {
  return { participant_id: pid, user_id: user, role: "participant", status, state: off, joined_at };
}
function snapshot(me: Participant, others: Participant[], version: number): MeetingSnapshot {
  return {
    meeting_id: "m", participant_id: me.participant_id, me, version, participants: [me, ...others],
    max_participants: 6, grace_ms: 20_000, ice_servers: [],
  };
}

test("events at or below the snapshot's version are already reflected", () => {
  const roster = new Roster("m");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1), [participant("pb", "bob", 2)], 2));
  assert.equal(roster.applyEvent(2, { kind: "updated", participant: participant("pb", "bob", 2) }), "ignored");
  assert.equal(roster.applyEvent(3, { kind: "joined", participant: participant("pc", "carol", 3) }), "changed");
  assert.deepEqual(roster.remotes().map((p) => p.user_id), ["bob", "carol"]);
  assert.equal(roster.applyEvent(4, { kind: "left", participant_id: "pc", reason: "left" }), "changed");
  assert.equal(roster.applyEvent(5, { kind: "left", participant_id: "zz", reason: "denied" }), "ignored");
});

test("a rebuilt room shows as a known user under a new id, or a lower version: resync", () => {
  const roster = new Roster("m");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1), [participant("pb", "bob", 2)], 7));
  assert.equal(roster.applyEvent(1, { kind: "joined", participant: participant("pb2", "bob", 9) }), "resync");
  assert.equal(roster.applyEvent(9, { kind: "joined", participant: participant("pb3", "bob", 9) }), "resync");
  assert.equal(roster.applyEvent(2, { kind: "updated", participant: participant("px", "carol", 9) }), "resync");
  // The new snapshot (from meeting_join or meeting_rejoined) replaces everything.
  roster.applySnapshot(snapshot(participant("pa2", "alice", 10), [participant("pb2", "bob", 9)], 2));
  assert.equal(roster.myParticipantId, "pa2");
  assert.equal(roster.ofUser("bob")!.participant_id, "pb2");
  assert.equal(roster.politeTowards(roster.ofUser("bob")!), true);
});

test("our own left, the end, mute requests and admission are told apart", () => {
  const roster = new Roster("m");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1, "lobby"), [], 1));
  assert.equal(roster.applyEvent(2, { kind: "joined", participant: participant("pa", "alice", 1) }), "admitted");
  assert.equal(roster.applyEvent(3, { kind: "mute_requested", participant_id: "pa", by: "ph" }), "mute_requested");
  assert.equal(roster.applyEvent(4, { kind: "left", participant_id: "pa", reason: "removed" }), "removed_me");
  assert.equal(roster.leftReason, "removed");
  assert.equal(roster.applyEvent(0, { kind: "ended", by: "u" }), "ended");
});

test("lobby entries are not peers", () => {
  const roster = new Roster("m");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1), [participant("pl", "lee", 2, "lobby")], 3));
  assert.deepEqual(roster.remotes(), []);
  assert.deepEqual(roster.lobby().map((p) => p.user_id), ["lee"]);
});
