// The room's roster as this client knows it, and every rule about versions and rebuilds, kept
// here so the failover rules of docs/PROTOCOL.md §6 can change in one place.
//
// Current rules: a snapshot (`meeting_join` answer or `meeting_rejoined`) replaces the roster;
// events at or below the held version are already reflected; a room rebuilt on another node
// shows as events with a lower version or as `joined` for a user we hold under another
// participant id, and the answer is to send `meeting_join` again for a fresh snapshot.
// Peers are matched by user id (a user is one participant), never by cached participant ids.

import type { MeetingEventBody, MeetingSnapshot, Participant } from "../chat/types";

export type RosterOutcome =
  | "ignored"
  | "changed"
  /** The room may have been rebuilt (or we missed something): send `meeting_join` again. */
  | "resync"
  | "admitted"
  | "removed_me"
  | "ended"
  | "mute_requested";

export class Roster {
  version = -1;
  myParticipantId = "";
  participants = new Map<string, Participant>();
  maxParticipants = 6;
  graceMs = 20_000;
  iceServers: RTCIceServer[] = [];
  /** Why we are out of the room, once we are. */
  leftReason = "";

  constructor(readonly meetingId: string) {}

  get me(): Participant | undefined {
    return this.participants.get(this.myParticipantId);
  }

  applySnapshot(snapshot: MeetingSnapshot): void {
    this.version = snapshot.version;
    this.myParticipantId = snapshot.participant_id;
    this.participants = new Map(snapshot.participants.map((p) => [p.participant_id, p]));
    this.participants.set(snapshot.me.participant_id, snapshot.me);
    this.maxParticipants = snapshot.max_participants;
    this.graceMs = snapshot.grace_ms;
    this.iceServers = snapshot.ice_servers ?? [];
  }

  applyEvent(version: number, event: MeetingEventBody): RosterOutcome {
    if (event.kind === "ended") return "ended";
    if (event.kind === "mute_requested") return event.participant_id === this.myParticipantId ? "mute_requested" : "ignored";
    const participant = "participant" in event ? event.participant : undefined;
    if (participant && this.heldUnderAnotherId(participant)) return "resync"; // a rebuilt room
    if (version <= this.version) {
      // Already reflected, unless it names someone we never saw (a room that started again).
      if (participant && !this.participants.has(participant.participant_id)) return "resync";
      return "ignored";
    }
    this.version = version;
    switch (event.kind) {
      case "joined":
      case "lobby":
        this.participants.set(participant!.participant_id, participant!);
        return participant!.participant_id === this.myParticipantId ? "admitted" : "changed";
      case "updated":
        if (!this.participants.has(participant!.participant_id)) {
          this.participants.set(participant!.participant_id, participant!);
          return "resync";
        }
        this.participants.set(participant!.participant_id, participant!);
        return "changed";
      case "left":
        if (event.participant_id === this.myParticipantId) {
          this.leftReason = event.reason;
          return "removed_me";
        }
        return this.participants.delete(event.participant_id) ? "changed" : "ignored";
    }
    return "ignored";
  }

  private heldUnderAnotherId(participant: Participant): boolean {
    const held = this.ofUser(participant.user_id);
    return held !== undefined && held.participant_id !== participant.participant_id && participant.status !== "lobby";
  }

  ofUser(userId: string): Participant | undefined {
    for (const p of this.participants.values()) if (p.user_id === userId) return p;
    return undefined;
  }

  userOf(participantId: string): string | undefined {
    return this.participants.get(participantId)?.user_id;
  }

  /** The others we hold a peer connection with: in the room (not the lobby), not us. */
  remotes(): Participant[] {
    return [...this.participants.values()]
      .filter((p) => p.participant_id !== this.myParticipantId && p.status !== "lobby")
      .sort((a, b) => a.joined_at - b.joined_at || a.participant_id.localeCompare(b.participant_id));
  }

  lobby(): Participant[] {
    return [...this.participants.values()].filter((p) => p.status === "lobby" && p.participant_id !== this.myParticipantId);
  }

  isHost(): boolean {
    return this.me?.role === "host" && this.me.status === "joined";
  }

  /** Our guess of our role with `other` before a signal tells: the later arrival is polite. */
  politeTowards(other: Participant): boolean {
    const me = this.me;
    if (!me) return true;
    return me.joined_at > other.joined_at || (me.joined_at === other.joined_at && me.participant_id > other.participant_id);
  }
}
