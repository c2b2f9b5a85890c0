// One meeting as this browser takes part in it: local media, the roster (roster.ts) and one
// PeerLink (peer.ts) per other user. Peers are keyed by user id, so a room rebuilt with new
// participant ids keeps its media flowing; a link is closed on `left`, or when its user has
// been missing from the roster for the grace period, never at once on a snapshot without it.

import { get, post } from "../net/api";
import { isTransient, RequestFailed, socket, type Frame } from "../net/socket";
import type { MediaState, Meeting, MeetingEventBody, MeetingSnapshot, SignalFrame } from "../chat/types";
import { LocalMedia } from "./media";
import { PeerLink, type SignalKind } from "./peer";
import { Roster } from "./roster";

export type CallPhase = "loading" | "preview" | "joining" | "lobby" | "in_call" | "left" | "ended" | "error";

const MAX_BUFFERED_SIGNALS = 200;

export class MeetingCall {
  phase: CallPhase = "loading";
  meeting: Meeting | null = null;
  error = "";
  notice = "";
  readonly roster: Roster;
  readonly peers = new Map<string, PeerLink>();
  readonly local = new LocalMedia();
  media: MediaState = { audio: true, video: true, screen: false, hand: false };
  version = 0;
  joinClickedAt: number | null = null;
  firstConnectedAt: number | null = null;
  snapshots = 0;
  private listeners = new Set<() => void>();
  private offs: (() => void)[] = [];
  private buffered = new Map<string, SignalFrame[]>();
  private missingTimers = new Map<string, number>();
  private resyncing: Promise<void> | null = null;
  private destroyed = false;
  private iceTimer: number | undefined;

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
    this.offs = [
      socket.on("meeting_event", (f) => this.onMeetingEvent(f)),
      socket.on("signal", (f) => this.onSignal(f as unknown as SignalFrame)),
      socket.on("meeting_rejoined", (f) => {
        if (f.meeting_id === this.meetingId) this.applySnapshot(f as unknown as MeetingSnapshot);
      }),
      // A new connection (node died, token renewed): back into the room within the grace
      // period. Tried once on the new connection before it takes over, so no room frame is
      // lost in between; a room that does not answer yet (its node just died) is retried later.
      socket.onResume(async (request) => {
        if (!this.inRoom) return;
        try {
          this.applySnapshot(await request<MeetingSnapshot>({ type: "meeting_join", meeting_id: this.meetingId }, 4_000));
        } catch (error) {
          if ((error as RequestFailed).code === "conflict") return this.onEnded();
          window.setTimeout(() => void this.resync(), 0);
        }
      }),
    ];
    await this.resync();
  }

  /** `meeting_join` (first join, rejoin, or re-reading the roster), retried while transient. */
  resync(): Promise<void> {
    if (this.resyncing) return this.resyncing;
    this.resyncing = (async () => {
      for (let attempt = 0; !this.destroyed; attempt++) {
        try {
          await socket.whenOpen(60_000);
          const snapshot = await socket.request<MeetingSnapshot>({ type: "meeting_join", meeting_id: this.meetingId });
          this.applySnapshot(snapshot);
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

  private applySnapshot(snapshot: MeetingSnapshot): void {
    if (this.destroyed || this.phase === "ended" || this.phase === "left") return;
    const first = this.snapshots === 0;
    this.snapshots++;
    this.roster.applySnapshot(snapshot);
    if (snapshot.me.status === "lobby") {
      this.phase = "lobby";
      return this.changed();
    }
    this.phase = "in_call";
    for (const link of this.peers.values()) link.setIceServers(this.roster.iceServers);
    this.scheduleIceRefresh();
    this.reconcile(true);
    void this.announceState(); // a rebuilt room starts with every media state false
    if (!first) for (const link of this.peers.values()) link.ensureNegotiating();
    this.flushBuffered();
    this.changed();
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

  /** Matches peer links to the roster by user id. `newcomer`: we offer to those we find. */
  private reconcile(newcomer: boolean): void {
    const present = new Set<string>();
    for (const participant of this.roster.remotes()) {
      present.add(participant.user_id);
      window.clearTimeout(this.missingTimers.get(participant.user_id));
      this.missingTimers.delete(participant.user_id);
      const link = this.peers.get(participant.user_id);
      if (link) {
        link.remoteParticipantId = participant.participant_id;
        continue;
      }
      this.createLink(participant.user_id, participant.participant_id, this.roster.politeTowards(participant), newcomer);
    }
    for (const userId of this.peers.keys()) {
      if (present.has(userId) || this.missingTimers.has(userId)) continue;
      // Not in this roster: maybe not rejoined yet after a rebuild. Keep the media flowing
      // for the grace period, then let go.
      this.missingTimers.set(
        userId,
        window.setTimeout(() => {
          this.missingTimers.delete(userId);
          if (!this.roster.ofUser(userId)) this.closeLink(userId);
        }, this.roster.graceMs),
      );
    }
  }

  private createLink(userId: string, participantId: string, polite: boolean, initiator: boolean): PeerLink {
    const link: PeerLink = new PeerLink(
      userId,
      participantId,
      polite,
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
    this.peers.set(userId, link);
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

  private closeLink(userId: string): void {
    this.peers.get(userId)?.close();
    this.peers.delete(userId);
    this.changed();
  }

  private sendSignal(link: PeerLink, kind: SignalKind, payload: unknown): void {
    const send = () =>
      socket
        .request({ type: "signal", meeting_id: this.meetingId, to: link.remoteParticipantId, kind, payload })
        .catch((error: RequestFailed) => {
          if (error.code === "not_found") void this.resync(); // the id moved on: re-read the roster
        });
    if (socket.state === "open") void send();
    // Reconnecting: hold it (in order) until the new connection is open; lost if that takes
    // long, and the rejoin restarts ICE on pairs that need it.
    else socket.whenOpen(10_000).then(send, () => undefined);
  }

  private onSignal(frame: SignalFrame): void {
    if (frame.meeting_id !== this.meetingId || this.phase !== "in_call") return;
    const userId = frame.from_user_id ?? this.roster.userOf(frame.from);
    if (!userId) {
      // From a participant id we do not know yet (a rebuilt room): keep it until the roster does.
      const queue = this.buffered.get(frame.from) ?? [];
      if (queue.length < MAX_BUFFERED_SIGNALS) queue.push(frame);
      this.buffered.set(frame.from, queue);
      void this.resync();
      return;
    }
    let link = this.peers.get(userId);
    if (!link) link = this.createLink(userId, frame.from, frame.polite, false);
    link.remoteParticipantId = frame.from;
    void link.handleSignal(frame.kind, frame.payload, frame.polite);
  }

  private flushBuffered(): void {
    for (const [participantId, frames] of this.buffered) {
      if (!this.roster.userOf(participantId)) continue;
      this.buffered.delete(participantId);
      frames.forEach((frame) => this.onSignal(frame));
    }
    if (this.buffered.size > 20) this.buffered.clear();
  }

  private onMeetingEvent(frame: Frame): void {
    if (frame.meeting_id !== this.meetingId || !this.inRoom) return;
    const event = frame.event as MeetingEventBody;
    const leaving = event.kind === "left" ? this.roster.userOf(event.participant_id) : undefined;
    const outcome = this.roster.applyEvent(frame.version as number, event);
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
      case "resync":
        void this.resync(); // a fresh roster (we were admitted, or the room was rebuilt)
        return;
      case "changed":
        if (leaving && leaving !== this.me && !this.roster.ofUser(leaving)) {
          window.clearTimeout(this.missingTimers.get(leaving));
          this.missingTimers.delete(leaving);
          this.closeLink(leaving); // a `left` event: gone for good
        }
        if (this.phase === "in_call") this.reconcile(false);
        return this.changed();
    }
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
    this.missingTimers.forEach((timer) => window.clearTimeout(timer));
    this.missingTimers.clear();
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
    return {
      phase: this.phase,
      me: this.roster.myParticipantId,
      version: this.roster.version,
      snapshots: this.snapshots,
      roster: this.roster.remotes().map((p) => ({ user_id: p.user_id, status: p.status, state: p.state })),
      peers: [...this.peers.values()].map((link) => ({
        user_id: link.userId,
        participant_id: link.remoteParticipantId,
        connection: link.connectionState,
        ice: link.pc.iceConnectionState,
        frames_decoded: link.framesDecoded,
        bytes_received: link.bytesReceived,
        restarts: link.restarts,
      })),
      join_to_connected_ms:
        this.joinClickedAt !== null && this.firstConnectedAt !== null ? this.firstConnectedAt - this.joinClickedAt : null,
    };
  }
}
