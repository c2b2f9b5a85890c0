// One meeting as this browser takes part in it: local media, the roster (roster.ts, where
// the ordering and failover rules live) and one PeerLink (peer.ts) per other participant,
// keyed by participant id (ids never change, also when the room is rebuilt on another node).
// A link is closed on `left`, or when a snapshot no longer lists its participant; never
// because of a status (`disconnected`, `reconnecting`): media flows peer to peer meanwhile.

import { get, post } from "../net/api";
import { isTransient, RequestFailed, socket, type Frame } from "../net/socket";
import type {
  MediaState,
  Meeting,
  MeetingEventFrame,
  MeetingRejoinFailedFrame,
  MeetingSnapshot,
  Participant,
  SignalFrame,
} from "../chat/types";
import { LocalMedia } from "./media";
import { PeerLink, type SignalKind } from "./peer";
import { Roster } from "./roster";

export type CallPhase = "loading" | "preview" | "joining" | "lobby" | "in_call" | "left" | "ended" | "error";

/** After another participant is back, wait this long for its own offer (a restarted app
 *  offers on new connections) before the impolite side re-offers a pair not connected. */
const REOFFER_AFTER_RETURN_MS = 1_000;

/** What the browser tests read: every snapshot and accepted event, with the roster after it. */
interface HistoryEntry {
  at: number;
  what: string;
  incarnation: number | null;
  version: number;
  remotes: { participant_id: string; status: string }[];
}

export class MeetingCall {
  phase: CallPhase = "loading";
  meeting: Meeting | null = null;
  error = "";
  notice = "";
  readonly roster: Roster;
  /** By participant id. */
  readonly peers = new Map<string, PeerLink>();
  readonly local = new LocalMedia();
  media: MediaState = { audio: true, video: true, screen: false, hand: false };
  version = 0;
  joinClickedAt: number | null = null;
  firstConnectedAt: number | null = null;
  /** Peer links closed, with why (the browser tests check none is closed by a failover). */
  readonly closedLinks: { at: number; participant_id: string; why: string }[] = [];
  readonly history: HistoryEntry[] = [];
  ignoredEvents = 0;
  private listeners = new Set<() => void>();
  private offs: (() => void)[] = [];
  /** Participants that left: a late signal from them must not bring a link back. */
  private departed = new Set<string>();
  private resyncing: Promise<void> | null = null;
  private destroyed = false;
  private iceTimer: number | undefined;
  private reofferTimers = new Map<string, number>();

  constructor(
    readonly meetingId: string,
    private readonly me: string,
  ) {
    this.roster = new Roster(meetingId);
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private changed(): void {
    this.version++;
    this.listeners.forEach((listener) => listener());
  }

  get inRoom(): boolean {
    return this.phase === "in_call" || this.phase === "lobby";
  }

  async load(): Promise<void> {
    try {
      this.meeting = (await get<{ meeting: Meeting }>(`/v1/meetings/${this.meetingId}`)).meeting;
    } catch (error) {
      return this.fail((error as Error).message);
    }
    if (this.meeting.status === "ended") {
      this.phase = "ended";
      return this.changed();
    }
    await this.local.start();
    if (this.destroyed) return this.local.stop();
    this.media.video = !!this.local.cameraTrack;
    this.media.audio = !!this.local.audioTrack;
    this.phase = "preview";
    this.changed();
  }

  async join(): Promise<void> {
    this.joinClickedAt = performance.now();
    this.phase = "joining";
    this.changed();
    const ours = (f: Frame) => f.meeting_id === this.meetingId;
    this.offs = [
      socket.on("meeting_event", (f) => ours(f) && this.onMeetingEvent(f as unknown as MeetingEventFrame)),
      socket.on("signal", (f) => ours(f) && this.onSignal(f as unknown as SignalFrame)),
      // The session rejoined by itself (the room moved, or the membership changed).
      socket.on("meeting_rejoined", (f) => ours(f) && this.applySnapshot(f as unknown as MeetingSnapshot, "meeting_rejoined")),
      socket.on("meeting_rejoin_failed", (f) => ours(f) && this.onRejoinFailed(f as unknown as MeetingRejoinFailedFrame)),
      // A new connection (our node died, the token was renewed): back into the room within
      // the grace period, on the new connection before it takes over, so no room frame is
      // lost in between. A join during a room's move waits for its new owner; one that still
      // does not answer is retried in the background.
      socket.onResume(async (request) => {
        if (!this.inRoom) return;
        const lost = socket.state !== "open"; // else a renewal: the old connection still serves
        try {
          const snapshot = await request<MeetingSnapshot>({ type: "meeting_join", meeting_id: this.meetingId }, 8_000);
          this.applySnapshot(snapshot, lost ? "rejoin" : "renewal");
        } catch (error) {
          if ((error as RequestFailed).code === "conflict") return this.onEnded();
          window.setTimeout(() => void this.resync(), 0);
        }
      }),
    ];
    await this.resync();
  }

  /** `meeting_join` (first join, after admission, or after a failed rejoin), retried while transient. */
  resync(): Promise<void> {
    if (this.resyncing) return this.resyncing;
    this.resyncing = (async () => {
      for (let attempt = 0; !this.destroyed; attempt++) {
        try {
          await socket.whenOpen(60_000);
          const snapshot = await socket.request<MeetingSnapshot>({ type: "meeting_join", meeting_id: this.meetingId });
          this.applySnapshot(snapshot, this.roster.snapshots === 0 ? "join" : "rejoin"); // after admission or a failure: re-check
          return;
        } catch (error) {
          const code = (error as RequestFailed).code;
          if (code === "conflict") return this.onEnded();
          if (!isTransient(error) || attempt >= 30) return this.fail((error as Error).message);
          await new Promise((r) => window.setTimeout(r, Math.min(3_000, 250 * 2 ** attempt)));
        }
      }
    })().finally(() => {
      this.resyncing = null;
    });
    return this.resyncing;
  }

  private record(what: string): void {
    this.history.push({
      at: Math.round(performance.now()),
      what,
      incarnation: this.roster.incarnation,
      version: this.roster.version,
      remotes: this.roster.remotes().map((p) => ({ participant_id: p.participant_id, status: p.status })),
    });
    if (this.history.length > 500) this.history.shift();
  }

  /** `via`: our first `meeting_join`, a rejoin after a lost connection (or a failure), a
   *  socket renewal, or the session's own rejoin (`meeting_rejoined`). */
  private applySnapshot(snapshot: MeetingSnapshot, via: "join" | "rejoin" | "renewal" | "meeting_rejoined"): void {
    if (this.destroyed || this.phase === "ended" || this.phase === "left") return;
    const { rebuilt, dropped } = this.roster.applySnapshot(snapshot, via === "rejoin");
    this.record(`${via}${rebuilt ? " (rebuilt room)" : ""}`);
    if (snapshot.me.status === "lobby") {
      this.phase = "lobby";
      return this.changed();
    }
    this.phase = "in_call";
    for (const link of this.peers.values()) link.setIceServers(this.roster.iceServers);
    this.scheduleIceRefresh();
    // Keep every connection to a participant the roster lists, whatever its status; close
    // only those it no longer lists.
    for (const id of dropped) this.closeLink(id, "not in the snapshot");
    for (const id of [...this.peers.keys()]) if (!this.roster.participants.has(id)) this.closeLink(id, "not in the snapshot");
    // The re-offer rule on the connections we kept, then new ones (they offer by themselves)
    // for joined participants we hold no connection with (we are new, or lost ours).
    this.reoffer(false);
    for (const participant of this.roster.remotes()) {
      if (participant.status === "joined" && !this.peers.has(participant.participant_id)) this.createLink(participant, true);
    }
    // Announce our media again only where the room's view of it differs (a rebuilt room keeps it).
    const held = snapshot.me.state;
    if (held.audio !== this.media.audio || held.video !== this.media.video || held.screen !== this.media.screen || held.hand !== this.media.hand) {
      void this.announceState();
    }
    this.changed();
  }

  /** The roster's re-offer rule, on the pairs it says are due (see roster.ts). */
  private reoffer(afterReturn: boolean): void {
    // "Connected" for the rule: connected, or a negotiation under way that may still connect.
    const due = this.roster.takeReoffers((id) => {
      const link = this.peers.get(id);
      return link ? !link.needsRestart() : undefined;
    });
    for (const id of due) {
      const restart = () => {
        this.reofferTimers.delete(id);
        const link = this.peers.get(id);
        if (!link || !link.needsRestart()) return;
        if (afterReturn && performance.now() - link.lastOfferReceivedAt < REOFFER_AFTER_RETURN_MS + 500) return; // it offered itself
        link.restartIce("rejoin");
      };
      window.clearTimeout(this.reofferTimers.get(id));
      if (afterReturn) this.reofferTimers.set(id, window.setTimeout(restart, REOFFER_AFTER_RETURN_MS));
      else restart();
    }
  }

  /** TURN credentials expire (`ttl`, seconds): fetch fresh ones at 80% of their life, so a
   *  later ICE restart can still allocate a relay. */
  private scheduleIceRefresh(): void {
    window.clearTimeout(this.iceTimer);
    const ttls = this.roster.iceServers.map((s) => (s as { ttl?: number }).ttl).filter((t): t is number => !!t);
    if (ttls.length === 0) return;
    this.iceTimer = window.setTimeout(async () => {
      try {
        const answer = await get<{ ice_servers: RTCIceServer[] }>("/v1/ice");
        this.roster.iceServers = answer.ice_servers;
        for (const link of this.peers.values()) link.setIceServers(answer.ice_servers);
      } finally {
        if (!this.destroyed) this.scheduleIceRefresh();
      }
    }, Math.min(...ttls) * 800);
  }

  private createLink(participant: Pick<Participant, "participant_id" | "user_id">, initiator: boolean, polite?: boolean): PeerLink {
    const known = this.roster.participants.get(participant.participant_id);
    const link: PeerLink = new PeerLink(
      participant.user_id,
      participant.participant_id,
      polite ?? (known ? this.roster.politeTowards(known) : true),
      initiator,
      this.roster.iceServers,
      () => this.localTracks(),
      {
        sendSignal: (kind, payload) => this.sendSignal(link, kind, payload),
        onChange: () => {
          if (link.connectionState === "connected" && this.firstConnectedAt === null) {
            this.firstConnectedAt = performance.now();
          }
          this.changed();
        },
      },
    );
    this.peers.set(participant.participant_id, link);
    return link;
  }

  private localTracks() {
    const stream = this.local.stream;
    if (!stream) return [];
    const tracks = [];
    if (this.local.audioTrack) tracks.push({ track: this.local.audioTrack, stream });
    const video = this.local.outgoingVideo;
    if (video) tracks.push({ track: video, stream });
    return tracks;
  }

  private closeLink(participantId: string, why: string): void {
    const link = this.peers.get(participantId);
    if (!link) return;
    link.close();
    this.peers.delete(participantId);
    this.closedLinks.push({ at: Math.round(performance.now()), participant_id: participantId, why });
    window.clearTimeout(this.reofferTimers.get(participantId));
    this.reofferTimers.delete(participantId);
    this.changed();
  }

  private sendSignal(link: PeerLink, kind: SignalKind, payload: unknown, attempt = 0): void {
    const send = () =>
      socket
        .request({ type: "signal", meeting_id: this.meetingId, to: link.remoteParticipantId, kind, payload })
        .catch((error: RequestFailed) => {
          // Frames are limited per user: try again shortly (candidates may then arrive out
          // of order, which ICE does not mind). `not_found`: the other is not joined right
          // now; the re-offer rule takes over when it is back.
          if (error.code === "rate_limited" && attempt < 5) {
            window.setTimeout(() => this.sendSignal(link, kind, payload, attempt + 1), 300 + Math.random() * 400);
          }
        });
    if (socket.state === "open") void send();
    // Reconnecting: hold it (in order) until the new connection is open; lost if that takes
    // long, and the rejoin's re-offer rule covers pairs that need it.
    else socket.whenOpen(10_000).then(send, () => undefined);
  }

  private onSignal(frame: SignalFrame): void {
    if (this.phase !== "in_call" || this.departed.has(frame.from)) return;
    let link = this.peers.get(frame.from);
    // A participant we hold no connection with (it restarted, or its `joined` is on its way):
    // take its offer on a new connection. Its user id and our role come with the frame.
    if (!link) link = this.createLink({ participant_id: frame.from, user_id: frame.from_user }, false, frame.polite);
    void link.handleSignal(frame.kind, frame.payload, frame.polite);
  }

  private onMeetingEvent(frame: MeetingEventFrame): void {
    if (!this.inRoom) return;
    const event = frame.event;
    const outcome = this.roster.applyEvent(frame.incarnation, frame.version, event);
    if (outcome === "ignored") {
      this.ignoredEvents += 1;
      return;
    }
    this.record(event.kind);
    switch (outcome) {
      case "ended":
        return this.onEnded();
      case "removed_me":
        this.closeAll();
        this.phase = "left";
        if (this.roster.leftReason === "removed") this.notice = "The host removed you from the meeting.";
        if (this.roster.leftReason === "denied") this.notice = "The host did not let you in.";
        return this.changed();
      case "mute_requested":
        this.setAudio(false);
        this.notice = "The host muted you.";
        return this.changed();
      case "admitted":
        void this.resync(); // our lobby snapshot is stale: a current roster
        return;
      case "changed":
        if (this.phase !== "in_call") return this.changed();
        if (event.kind === "left") {
          this.departed.add(event.participant_id);
          this.closeLink(event.participant_id, `left (${event.reason})`);
        } else if (event.kind === "joined" || event.kind === "updated") {
          const p = event.participant;
          if (p.participant_id !== this.roster.myParticipantId && p.status === "joined" && !this.peers.has(p.participant_id)) {
            // A newcomer offers to us; one we had no connection with comes back: the impolite side offers.
            this.createLink(p, event.kind === "updated" && !this.roster.politeTowards(p));
          }
        }
        this.reoffer(true);
        return this.changed();
    }
  }

  private onRejoinFailed(frame: MeetingRejoinFailedFrame): void {
    if (!this.inRoom) return;
    this.record(`meeting_rejoin_failed (${frame.code})`);
    if (frame.code === "conflict") return this.onEnded();
    // The session stopped following the room (no node could host it for a while): try once
    // more ourselves; a meeting that ended answers `conflict`.
    this.notice = `Lost the meeting's room (${frame.message}); joining again…`;
    this.changed();
    void this.resync().then(() => {
      if (this.phase === "in_call") this.notice = "";
      this.changed();
    });
  }

  private onEnded(): void {
    this.closeAll();
    this.phase = "ended";
    this.changed();
  }

  private fail(message: string): void {
    this.error = message;
    this.phase = "error";
    this.changed();
  }

  // ---- controls ----

  private async announceState(): Promise<void> {
    if (this.phase !== "in_call" && this.phase !== "lobby") return;
    await socket.whenOpen(30_000).catch(() => undefined);
    await socket.request({ type: "meeting_state", meeting_id: this.meetingId, ...this.media }).catch(() => undefined);
  }

  setAudio(on: boolean): void {
    this.media = { ...this.media, audio: on && !!this.local.audioTrack };
    this.local.setAudio(this.media.audio);
    void this.announceState();
    this.changed();
  }

  setVideo(on: boolean): void {
    this.media = { ...this.media, video: on && !!this.local.cameraTrack };
    this.local.setVideo(this.media.video);
    void this.announceState();
    this.changed();
  }

  setHand(up: boolean): void {
    this.media = { ...this.media, hand: up };
    void this.announceState();
    this.changed();
  }

  async setScreen(on: boolean): Promise<void> {
    if (on) {
      const track = await this.local.startScreen(() => void this.setScreen(false)).catch(() => null);
      if (!track) return;
      this.peers.forEach((link) => link.replaceVideo(track));
    } else {
      this.local.stopScreen();
      this.peers.forEach((link) => link.replaceVideo(this.local.cameraTrack ?? null));
    }
    this.media = { ...this.media, screen: on };
    void this.announceState();
    this.changed();
  }

  host(type: "host_mute" | "host_remove" | "host_transfer" | "lobby_admit" | "lobby_deny", participantId: string): void {
    socket.request({ type, meeting_id: this.meetingId, participant_id: participantId }).catch((error: Error) => {
      this.notice = `${type.replace("_", " ")} failed: ${error.message}`;
      this.changed();
    });
  }

  async endForAll(): Promise<void> {
    if (this.roster.isHost()) await socket.request({ type: "meeting_end", meeting_id: this.meetingId });
    else await post(`/v1/meetings/${this.meetingId}/end`);
  }

  leave(): void {
    if (this.inRoom) socket.request({ type: "meeting_leave", meeting_id: this.meetingId }).catch(() => undefined);
    this.closeAll();
    this.phase = "left";
    this.changed();
  }

  private closeAll(): void {
    window.clearTimeout(this.iceTimer);
    this.peers.forEach((link) => link.close());
    this.peers.clear();
    this.reofferTimers.forEach((timer) => window.clearTimeout(timer));
    this.reofferTimers.clear();
    this.local.stop();
    this.offs.forEach((off) => off());
    this.offs = [];
  }

  destroy(): void {
    if (this.inRoom) this.leave();
    this.destroyed = true;
    this.closeAll();
  }

  dismissNotice(): void {
    this.notice = "";
    this.changed();
  }

  isCreator(): boolean {
    return this.meeting?.host_id === this.me;
  }

  /** For the browser tests and debugging. */
  summary() {
    const me = this.roster.me;
    return {
      phase: this.phase,
      me: this.roster.myParticipantId,
      order: me?.order ?? null,
      incarnation: this.roster.incarnation,
      version: this.roster.version,
      snapshots: this.roster.snapshots,
      rebuilds: this.roster.rebuilds,
      ignored_events: this.ignoredEvents,
      roster: this.roster.remotes().map((p) => ({
        participant_id: p.participant_id,
        user_id: p.user_id,
        status: p.status,
        state: p.state,
        order: p.order,
      })),
      peers: [...this.peers.values()].map((link) => ({
        user_id: link.userId,
        participant_id: link.remoteParticipantId,
        polite: link.polite,
        connection: link.connectionState,
        ice: link.pc.iceConnectionState,
        frames_decoded: link.framesDecoded,
        bytes_received: link.bytesReceived,
        restarts: link.restarts,
        reoffers: link.reoffers,
        offers_sent: link.offersSent,
        replacements: link.replacements,
        log: link.log,
      })),
      closed_links: this.closedLinks,
      history: this.history,
      join_to_connected_ms:
        this.joinClickedAt !== null && this.firstConnectedAt !== null ? this.firstConnectedAt - this.joinClickedAt : null,
    };
  }
}
