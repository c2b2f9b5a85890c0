// The room's roster as this client knows it, and every rule about ordering and room rebuilds
// (docs/PROTOCOL.md §6), kept here so the failover rules can change in one place:
//
// - The ordering rule: hold the `(incarnation, version)` of the last snapshot (`meeting_join`
//   answer or `meeting_rejoined`); apply a `meeting_event` only if its incarnation is the held
//   one and its version is higher, then hold that version. Ignore every other event, and never
//   rejoin because of one (a new run of the room always arrives as a snapshot first).
// - A snapshot replaces the roster. Participant ids and `order` never change, also when the
//   room is rebuilt on another node: keep every peer connection to a participant the roster
//   lists, whatever its status; close only those it no longer lists.
// - Roles: of a pair, the higher `order` is the polite peer, known before any signal.
// - Who re-offers: after a snapshot of a new run (a rebuilt room) or our own rejoin after a
//   lost connection, and after another participant was away (`disconnected`,
//   `reconnecting`), the impolite side (lower `order`) ICE-restarts each pair that is not
//   `connected` once the other is `joined` again, once. The polite side waits for that offer.
//   A snapshot of the same run otherwise (a membership change that did not move the room, a
//   renewed socket) changes nothing.

import type { MeetingEventBody, MeetingSnapshot, Participant } from "../chat/types";

export type RosterOutcome = "ignored" | "changed" | "admitted" | "removed_me" | "ended" | "mute_requested";

export interface SnapshotResult {
  /** The room runs anew (rebuilt on another node) since the last snapshot we held. */
  rebuilt: boolean;
  /** Participants we held that the snapshot no longer lists: close their connections. */
  dropped: string[];
}

export class Roster {
  /** The room run we follow (`null` before the first snapshot). */
  incarnation: number | null = null;
  version = -1;
  myParticipantId = "";
  participants = new Map<string, Participant>();
  maxParticipants = 6;
  graceMs = 20_000;
  iceServers: RTCIceServer[] = [];
  /** Why we are out of the room, once we are. */
  leftReason = "";
  /** Snapshots taken, and how many of them started a new run of the room. */
  snapshots = 0;
  rebuilds = 0;
  /** Participants whose (return to) `joined` we wait for, to re-offer if the pair needs it. */
  private awaiting = new Set<string>();

  constructor(readonly meetingId: string) {}

  get me(): Participant | undefined {
    return this.participants.get(this.myParticipantId);
  }

  /** `reconnected`: the answer to our own `meeting_join` after our connection was lost. */
  applySnapshot(snapshot: MeetingSnapshot, reconnected = false): SnapshotResult {
    const rebuilt = this.incarnation !== null && this.incarnation !== snapshot.incarnation;
    const before = new Set(this.participants.keys());
    this.incarnation = snapshot.incarnation;
    this.version = snapshot.version;
    this.myParticipantId = snapshot.participant_id;
    this.participants = new Map(snapshot.participants.map((p) => [p.participant_id, p]));
    this.participants.set(snapshot.me.participant_id, snapshot.me);
    this.maxParticipants = snapshot.max_participants;
    this.graceMs = snapshot.grace_ms;
    this.iceServers = snapshot.ice_servers ?? [];
    this.snapshots += 1;
    if (rebuilt) this.rebuilds += 1;
    // Each pair may need a re-offer once its other side is joined in this run.
    if (rebuilt || reconnected) this.awaiting = new Set(this.remotes().map((p) => p.participant_id));
    else for (const id of [...this.awaiting]) if (!this.participants.has(id)) this.awaiting.delete(id);
    const dropped = [...before].filter((id) => !this.participants.has(id) && id !== this.myParticipantId);
    return { rebuilt, dropped };
  }

  /** The ordering rule. */
  accepts(incarnation: number, version: number): boolean {
    return this.incarnation !== null && incarnation === this.incarnation && version > this.version;
  }

  applyEvent(incarnation: number, version: number, event: MeetingEventBody): RosterOutcome {
    if (!this.accepts(incarnation, version)) return "ignored";
    this.version = version;
    switch (event.kind) {
      case "ended":
        return "ended";
      case "mute_requested":
        return event.participant_id === this.myParticipantId ? "mute_requested" : "ignored";
      case "joined":
      case "lobby":
      case "updated": {
        const participant = event.participant;
        this.participants.set(participant.participant_id, participant);
        // We were in the lobby: admitted (fetch a current roster with `meeting_join`).
        if (event.kind === "joined" && participant.participant_id === this.myParticipantId) return "admitted";
        if (participant.status === "disconnected" || participant.status === "reconnecting") {
          this.awaiting.add(participant.participant_id); // away: re-check the pair when it is back
        }
        return "changed";
      }
      case "left":
        this.awaiting.delete(event.participant_id);
        if (event.participant_id === this.myParticipantId) {
          this.leftReason = event.reason;
          return "removed_me";
        }
        return this.participants.delete(event.participant_id) ? "changed" : "ignored";
    }
    return "ignored";
  }

  userOf(participantId: string): string | undefined {
    return this.participants.get(participantId)?.user_id;
  }

  /** The others in the room (not the lobby, not us), in order of arrival. */
  remotes(): Participant[] {
    return [...this.participants.values()]
      .filter((p) => p.participant_id !== this.myParticipantId && p.status !== "lobby")
      .sort((a, b) => a.order - b.order || a.participant_id.localeCompare(b.participant_id));
  }

  lobby(): Participant[] {
    return [...this.participants.values()].filter((p) => p.status === "lobby" && p.participant_id !== this.myParticipantId);
  }

  isHost(): boolean {
    return this.me?.role === "host" && this.me.status === "joined";
  }

  /** Our role with `other` in perfect negotiation: the higher `order` is polite. */
  politeTowards(other: Participant): boolean {
    const me = this.me;
    if (!me) return true; // not in the room: wait for offers
    return me.order > other.order;
  }

  /**
   * The pairs to ICE-restart now. Every awaited participant that is `joined` is settled
   * (once); of those, we restart the pairs where we are the impolite side and our connection
   * (`connected(id)`: true, false, or undefined when we hold none) exists and is not connected.
   */
  takeReoffers(connected: (participantId: string) => boolean | undefined): string[] {
    const due: string[] = [];
    for (const id of [...this.awaiting]) {
      const other = this.participants.get(id);
      if (!other) {
        this.awaiting.delete(id);
        continue;
      }
      if (other.status !== "joined" || this.me?.status !== "joined") continue;
      this.awaiting.delete(id);
      if (this.politeTowards(other)) continue; // the other side offers
      if (connected(id) === false) due.push(id);
    }
    return due;
  }

  /** Whether a re-offer to `participantId` is still waiting for it to be joined. */
  awaitingReturn(participantId: string): boolean {
    return this.awaiting.has(participantId);
  }
}
