// One RTCPeerConnection to one other participant, with WebRTC's perfect negotiation as
// docs/PROTOCOL.md §6 describes it: the `polite` flag of each relayed signal tells our role,
// candidates that arrive before their description are queued, a failed or stuck ICE
// connection is restarted, and an offer that cannot be applied replaces the connection.

export type SignalKind = "offer" | "answer" | "ice" | "rollback";

export interface PeerHooks {
  sendSignal(kind: SignalKind, payload: unknown): void;
  onChange(): void;
}

export interface LocalTrack {
  track: MediaStreamTrack;
  stream: MediaStream;
}

/** A non-initiator offers anyway if the initiator's offer has not come by then. */
const OFFER_FALLBACK_MS = 4_000;
/** How long ICE may stay `disconnected` before we restart it. */
const DISCONNECTED_RESTART_MS = 3_000;
const MIN_RESTART_GAP_MS = 4_000;

export class PeerLink {
  pc!: RTCPeerConnection;
  readonly remoteStream = new MediaStream();
  polite: boolean;
  framesDecoded = 0;
  bytesReceived = 0;
  connectedAt: number | null = null;
  restarts = 0;
  private makingOffer = false;
  private ignoreOffer = false;
  private queue: RTCIceCandidateInit[] = [];
  private everNegotiated = false;
  private disconnectedTimer: number | undefined;
  private fallbackTimer: number | undefined;
  private statsTimer: number | undefined;
  private lastRestart = 0;
  private closed = false;
  private framesBase = 0;
  private bytesBase = 0;

  constructor(
    readonly userId: string,
    public remoteParticipantId: string,
    polite: boolean,
    private initiator: boolean,
    private iceServers: RTCIceServer[],
    private localTracks: () => LocalTrack[],
    private hooks: PeerHooks,
  ) {
    this.polite = polite;
    this.create();
    this.statsTimer = window.setInterval(() => void this.readStats(), 1_000);
  }

  get connectionState(): RTCPeerConnectionState {
    return this.pc.connectionState;
  }

  private create(): void {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.makingOffer = this.ignoreOffer = false;
    this.queue = [];
    for (const { track, stream } of this.localTracks()) pc.addTrack(track, stream);
    pc.onnegotiationneeded = () => void this.offer();
    pc.onicecandidate = ({ candidate }) => this.hooks.sendSignal("ice", candidate ? candidate.toJSON() : null);
    pc.ontrack = ({ track }) => {
      if (this.pc !== pc) return;
      for (const old of this.remoteStream.getTracks()) if (old.kind === track.kind) this.remoteStream.removeTrack(old);
      this.remoteStream.addTrack(track);
      this.hooks.onChange();
    };
    pc.oniceconnectionstatechange = () => this.onIceState(pc);
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === "connected" && this.connectedAt === null) this.connectedAt = performance.now();
      if (pc.connectionState === "failed") this.restartIce();
      this.hooks.onChange();
    };
    if (!this.initiator) {
      window.clearTimeout(this.fallbackTimer);
      this.fallbackTimer = window.setTimeout(() => {
        if (!this.everNegotiated && !this.closed) {
          this.initiator = true;
          void this.offer();
        }
      }, OFFER_FALLBACK_MS);
    }
  }

  private async offer(): Promise<void> {
    // The later arrival offers first; the other waits for its offer (glare would be resolved
    // anyway, this only saves a round) unless it never comes.
    if (!this.initiator && !this.everNegotiated) return;
    const pc = this.pc;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (pc === this.pc && pc.localDescription) this.hooks.sendSignal("offer", pc.localDescription.toJSON());
    } catch (error) {
      console.warn("offer failed", error);
    } finally {
      this.makingOffer = false;
    }
  }

  async handleSignal(kind: SignalKind, payload: unknown, polite: boolean | undefined): Promise<void> {
    if (this.closed) return;
    if (typeof polite === "boolean") this.polite = polite;
    const pc = this.pc;
    try {
      if (kind === "offer" || kind === "answer") {
        const description = payload as RTCSessionDescriptionInit;
        const collision = kind === "offer" && (this.makingOffer || pc.signalingState !== "stable");
        this.ignoreOffer = !this.polite && collision;
        if (this.ignoreOffer) return;
        if (kind === "answer" && pc.signalingState !== "have-local-offer") return; // a stale answer
        try {
          await pc.setRemoteDescription(description);
        } catch (error) {
          if (kind !== "offer") throw error;
          // Cannot apply it to this connection (e.g. the other side started afresh): replace it.
          console.warn("replacing the peer connection", error);
          this.replace();
          await this.pc.setRemoteDescription(description);
        }
        this.everNegotiated = true;
        window.clearTimeout(this.fallbackTimer);
        for (const candidate of this.queue.splice(0)) await this.addCandidate(candidate);
        if (kind === "offer") {
          await this.pc.setLocalDescription();
          if (this.pc.localDescription) this.hooks.sendSignal("answer", this.pc.localDescription.toJSON());
        }
      } else if (kind === "ice") {
        if (payload === null) return; // end of candidates
        const candidate = payload as RTCIceCandidateInit;
        if (!this.pc.remoteDescription) this.queue.push(candidate);
        else await this.addCandidate(candidate);
      }
    } catch (error) {
      console.warn("signal failed", kind, error);
    }
  }

  private async addCandidate(candidate: RTCIceCandidateInit): Promise<void> {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (error) {
      if (!this.ignoreOffer) console.debug("candidate refused", error); // expected after an ignored offer
    }
  }

  private onIceState(pc: RTCPeerConnection): void {
    if (this.pc !== pc) return;
    window.clearTimeout(this.disconnectedTimer);
    if (pc.iceConnectionState === "failed") this.restartIce();
    else if (pc.iceConnectionState === "disconnected") {
      this.disconnectedTimer = window.setTimeout(() => {
        if (pc.iceConnectionState === "disconnected") this.restartIce();
      }, DISCONNECTED_RESTART_MS);
    }
    this.hooks.onChange();
  }

  /** A new offer with new ICE credentials (rate limited). */
  restartIce(): void {
    if (this.closed) return;
    const now = performance.now();
    if (now - this.lastRestart < MIN_RESTART_GAP_MS) return;
    this.lastRestart = now;
    this.restarts += 1;
    this.initiator = true;
    if (!this.everNegotiated && this.pc.signalingState === "stable" && !this.pc.localDescription) {
      void this.offer(); // nothing negotiated yet: a plain first offer
      return;
    }
    this.pc.restartIce();
  }

  /** Makes sure a negotiation happens soon (after a rebuild, for a pair that is not connected). */
  ensureNegotiating(): void {
    if (this.pc.connectionState !== "connected") this.restartIce();
  }

  private replace(): void {
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = null;
    this.pc.oniceconnectionstatechange = this.pc.onconnectionstatechange = null;
    this.pc.close();
    this.everNegotiated = false;
    this.framesBase = this.framesDecoded;
    this.bytesBase = this.bytesReceived;
    this.create();
  }

  replaceVideo(track: MediaStreamTrack | null): void {
    for (const sender of this.pc.getSenders()) {
      if (sender.track?.kind === "video" || (sender.track === null && track?.kind === "video")) {
        void sender.replaceTrack(track).catch((error) => console.warn("replaceTrack", error));
      }
    }
  }

  setIceServers(iceServers: RTCIceServer[]): void {
    this.iceServers = iceServers;
    try {
      this.pc.setConfiguration({ iceServers });
    } catch (error) {
      console.warn("setConfiguration", error);
    }
  }

  private async readStats(): Promise<void> {
    const stats = await this.pc.getStats().catch(() => null);
    if (!stats) return;
    let frames = 0;
    let bytes = 0;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp") {
        bytes += report.bytesReceived ?? 0;
        if (report.kind === "video") frames += report.framesDecoded ?? 0;
      }
    });
    // A replaced connection starts its counters again; keep the figures monotonic.
    this.framesDecoded = this.framesBase + frames;
    this.bytesReceived = this.bytesBase + bytes;
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.disconnectedTimer);
    window.clearTimeout(this.fallbackTimer);
    window.clearInterval(this.statsTimer);
    this.pc.close();
  }
}
