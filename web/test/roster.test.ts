import assert from "node:assert/strict";
import { test } from "node:test";
import { Roster } from "../src/meeting/roster";
import { ignoresIncoming, restartsIce } from "../src/meeting/peer";
import type { MeetingSnapshot, Participant, ParticipantStatus } from "../src/chat/types";

const off = { audio: false, video: false, screen: false, hand: false };
function participant(pid: string, user: string, order: number, status: ParticipantStatus = "joined"): Participant {
  return { participant_id: pid, user_id: user, role: "participant", status, state: off, joined_at: 1_000 + order, order };
}
function snapshot(me: Participant, others: Participant[], incarnation: number, version: number): MeetingSnapshot {
  return {
    meeting_id: "m", participant_id: me.participant_id, me, incarnation, version, participants: [me, ...others],
    max_participants: 6, grace_ms: 20_000, ice_servers: [],
  };
}

test("the ordering rule: same incarnation and a higher version, else ignored", () => {
  const roster = new Roster("m");
  // Before any snapshot, nothing applies.
  assert.equal(roster.applyEvent(7, 1, { kind: "joined", participant: participant("pb", "bob", 2) }), "ignored");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1), [participant("pb", "bob", 2)], 7, 2));
  assert.equal(roster.applyEvent(7, 2, { kind: "updated", participant: participant("pb", "bob", 2) }), "ignored");
  assert.equal(roster.applyEvent(7, 3, { kind: "joined", participant: participant("pc", "carol", 3) }), "changed");
  assert.equal(roster.version, 3);
  assert.deepEqual(roster.remotes().map((p) => p.user_id), ["bob", "carol"]);
  // Another run's events, whatever their version, are ignored (a new run comes as a snapshot).
  assert.equal(roster.applyEvent(8, 10, { kind: "left", participant_id: "pb", reason: "timed_out" }), "ignored");
  assert.equal(roster.applyEvent(6, 10, { kind: "ended", by: "u" }), "ignored");
  assert.equal(roster.applyEvent(7, 3, { kind: "left", participant_id: "pc", reason: "left" }), "ignored");
  assert.equal(roster.applyEvent(7, 4, { kind: "left", participant_id: "pc", reason: "left" }), "changed");
  assert.equal(roster.applyEvent(7, 6, { kind: "left", participant_id: "zz", reason: "denied" }), "ignored"); // unknown id
  assert.equal(roster.version, 6); // held anyway: a gap is no loss
  assert.equal(roster.applyEvent(7, 5, { kind: "joined", participant: participant("pd", "dan", 4) }), "ignored");
});

test("a rebuilt room: a new incarnation, the same ids, versions going on; nobody is dropped", () => {
  const roster = new Roster("m");
  const alice = participant("pa", "alice", 1);
  roster.applySnapshot(snapshot(alice, [participant("pb", "bob", 2), participant("pc", "carol", 3)], 7, 5));
  const first = roster.applySnapshot(
    snapshot(alice, [participant("pb", "bob", 2, "reconnecting"), participant("pc", "carol", 3, "joined")], 9, 5),
  );
  assert.deepEqual(first, { rebuilt: true, dropped: [] });
  assert.equal(roster.incarnation, 9);
  assert.equal(roster.rebuilds, 1);
  assert.deepEqual(roster.remotes().map((p) => [p.participant_id, p.status]), [["pb", "reconnecting"], ["pc", "joined"]]);
  // Events of the new run apply; those of the old one no more.
  assert.equal(roster.applyEvent(7, 6, { kind: "updated", participant: participant("pb", "bob", 2) }), "ignored");
  assert.equal(roster.applyEvent(9, 6, { kind: "updated", participant: participant("pb", "bob", 2) }), "changed");
  assert.equal(roster.participants.get("pb")!.status, "joined");
  // A snapshot of the same run is a plain rejoin; one that no longer lists someone drops them.
  const again = roster.applySnapshot(snapshot(alice, [participant("pb", "bob", 2)], 9, 8));
  assert.deepEqual(again, { rebuilt: false, dropped: ["pc"] });
});

test("roles come from order: the higher order is polite, whatever the arrival time", () => {
  const roster = new Roster("m");
  const me = { ...participant("pz", "zed", 2), joined_at: 1 }; // rejoined early, arrived second
  roster.applySnapshot(snapshot(me, [{ ...participant("pa", "alice", 1), joined_at: 99 }, participant("pc", "carol", 3)], 1, 3));
  assert.equal(roster.politeTowards(roster.participants.get("pa")!), true);
  assert.equal(roster.politeTowards(roster.participants.get("pc")!), false);
});

test("after a rebuild the impolite side re-offers pairs not connected, once the other is joined", () => {
  const roster = new Roster("m");
  const me = participant("pb", "bob", 2);
  const alice = participant("pa", "alice", 1); // we are polite towards her
  const carol = participant("pc", "carol", 3); // we are impolite towards her
  const dan = participant("pd", "dan", 4);
  roster.applySnapshot(snapshot(me, [alice, carol, dan], 1, 4));
  const connected: Record<string, boolean | undefined> = { pa: false, pc: true, pd: false };
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), []); // our first join: nothing to re-offer
  // Our connection was lost and we joined again in the same run: re-check every pair.
  roster.applySnapshot(snapshot(me, [alice, carol, dan], 1, 4), true);
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), ["pd"]);
  // The session's own rejoin into the same run (`meeting_rejoined`), a renewed socket: nothing to do.
  roster.applySnapshot(snapshot(me, [alice, carol, dan], 1, 4));
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), []);
  // The room is rebuilt; carol and dan have not rejoined yet.
  roster.applySnapshot(
    snapshot(me, [alice, { ...carol, status: "reconnecting" }, { ...dan, status: "reconnecting" }], 2, 4),
  );
  connected.pc = false;
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), []); // alice: she offers, we wait
  assert.equal(roster.awaitingReturn("pc"), true);
  roster.applyEvent(2, 5, { kind: "updated", participant: carol });
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), ["pc"]);
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), []); // once
  connected.pd = true; // dan's pair came back by itself: nothing to do
  roster.applyEvent(2, 6, { kind: "updated", participant: dan });
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), []);
  // Someone away and back in the same run: checked again.
  roster.applyEvent(2, 7, { kind: "updated", participant: { ...carol, status: "disconnected" } });
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), []);
  roster.applyEvent(2, 8, { kind: "updated", participant: carol });
  assert.deepEqual(roster.takeReoffers((id) => connected[id]), ["pc"]);
  // No connection at all: not a re-offer (a new connection offers by itself).
  roster.applySnapshot(snapshot(me, [alice, carol, dan], 2, 8), true);
  assert.deepEqual(roster.takeReoffers(() => undefined), []);
});

test("perfect negotiation: the impolite side ignores a colliding offer; only it restarts ICE", () => {
  assert.equal(ignoresIncoming("offer", false, true, "stable"), true);
  assert.equal(ignoresIncoming("offer", false, false, "have-local-offer"), true);
  assert.equal(ignoresIncoming("offer", true, true, "have-local-offer"), false);
  assert.equal(ignoresIncoming("offer", false, false, "stable"), false);
  assert.equal(ignoresIncoming("answer", false, false, "have-local-offer"), false);
  assert.equal(restartsIce(false), true);
  assert.equal(restartsIce(true), false);
});

test("our own left, the end, mute requests and admission are told apart", () => {
  const roster = new Roster("m");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1, "lobby"), [], 3, 1));
  assert.equal(roster.applyEvent(3, 2, { kind: "joined", participant: participant("pa", "alice", 1) }), "admitted");
  assert.equal(roster.applyEvent(3, 3, { kind: "mute_requested", participant_id: "pa", by: "ph" }), "mute_requested");
  assert.equal(roster.applyEvent(3, 4, { kind: "mute_requested", participant_id: "px", by: "ph" }), "ignored");
  assert.equal(roster.applyEvent(3, 5, { kind: "left", participant_id: "pa", reason: "removed" }), "removed_me");
  assert.equal(roster.leftReason, "removed");
  assert.equal(roster.applyEvent(3, 6, { kind: "ended", by: "u" }), "ended");
});

test("lobby entries are not peers", () => {
  const roster = new Roster("m");
  roster.applySnapshot(snapshot(participant("pa", "alice", 1), [participant("pl", "lee", 2, "lobby")], 1, 3));
  assert.deepEqual(roster.remotes(), []);
  assert.deepEqual(roster.lobby().map((p) => p.user_id), ["lee"]);
  assert.deepEqual(roster.takeReoffers(() => false), []);
});
