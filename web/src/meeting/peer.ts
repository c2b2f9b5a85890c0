// One RTCPeerConnection to one other participant, with WebRTC's perfect negotiation as
// docs/PROTOCOL.md §6 describes it: our role comes from the participants' `order` (the higher
// is polite) before any signal, and each relayed signal's `polite` flag confirms it;
// candidates that arrive before their description are queued; a failed or stuck ICE
// connection is restarted by the impolite side only (the polite side waits for its offer);
// a description that cannot be applied replaces the connection.

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
/** How long a negotiation (offer or answer) may take to connect before a re-offer is due. */
const NEGOTIATION_GRACE_MS = 5_000;

export type RestartReason = "ice_failed" | "ice_disconnected" | "rejoin";

/** Perfect negotiation: an incoming offer collides with ours if we are making one or are not
 *  `stable`; on a collision the impolite side ignores it (the other side answers ours). */
export function ignoresIncoming(kind: SignalKind, polite: boolean, makingOffer: boolean, signalingState: RTCSignalingState): boolean {
  const collision = kind === "offer" && (makingOffer || signalingState !== "stable");
  return !polite && collision;
}

/** Only the impolite side of a pair restarts ICE; the polite side waits for its offer. */
export function restartsIce(polite: boolean): boolean {
  return !polite;
}

export class PeerLink {
  pc!: RTCPeerConnection;
  readonly remoteStream = new MediaStream();
  polite: boolean;
  framesDecoded = 0;
  bytesReceived = 0;
  connectedAt: number | null = null;
  restarts = 0;
  /** Offers sent, ICE restarts after a rejoin (the re-offer rule), connections replaced. */
  offersSent = 0;
  reoffers = 0;
  replacements = 0;
  /** performance.now() of the last offer received (a newcomer's, or a re-offer). */
  lastOfferReceivedAt = 0;
  /** performance.now() of the last offer or answer sent or applied. */
  private lastNegotiationAt = 0;
  /** What happened, for the browser tests: `[ms, what]`. */
  readonly log: [number, string][] = [];
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
    readonly remoteParticipantId: string,
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
    this.lastNegotiationAt = performance.now(); // setting up
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
      this.note(`connection ${pc.connectionState}`);
      if (pc.connectionState === "failed") this.restartIce("ice_failed");
      this.hooks.onChange();
    };
    if (!this.initiator) {
      window.clearTimeout(this.fallbackTimer);
      this.fallbackTimer = window.setTimeout(() => {
        if (!this.everNegotiated && !this.closed) {
          this.initiator = true;
          this.note("no offer came: offering");
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
      if (pc === this.pc && pc.localDescription && pc.localDescription.type === "offer") {
        this.offersSent += 1;
        this.lastNegotiationAt = performance.now();
        this.note("offer sent");
        this.hooks.sendSignal("offer", pc.localDescription.toJSON());
      }
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
        if (kind === "offer") this.lastOfferReceivedAt = performance.now();
        this.ignoreOffer = ignoresIncoming(kind, this.polite, this.makingOffer, pc.signalingState);
        if (this.ignoreOffer) {
          this.note("colliding offer ignored");
          return;
        }
        if (kind === "answer" && pc.signalingState !== "have-local-offer") return; // a stale answer
        try {
          await pc.setRemoteDescription(description);
        } catch (error) {
          // Cannot apply it to this connection (the other side started afresh): replace it.
          console.warn(`replacing the peer connection (${kind})`, error);
          this.replace(`${kind} could not be applied`);
          if (kind === "answer") {
            // Our offer's connection is gone: offer again on the new one.
            this.initiator = true;
            void this.offer();
            return;
          }
          await this.pc.setRemoteDescription(description);
        }
        this.everNegotiated = true;
        this.lastNegotiationAt = performance.now();
        window.clearTimeout(this.fallbackTimer);
        for (const candidate of this.queue.splice(0)) await this.addCandidate(candidate);
        if (kind === "offer") {
          await this.pc.setLocalDescription();
          if (this.pc.localDescription) this.hooks.sendSignal("answer", this.pc.localDescription.toJSON());
          this.note("answered an offer");
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
    if (pc.iceConnectionState === "failed") this.restartIce("ice_failed");
    else if (pc.iceConnectionState === "disconnected") {
      this.disconnectedTimer = window.setTimeout(() => {
        if (pc.iceConnectionState === "disconnected") this.restartIce("ice_disconnected");
      }, DISCONNECTED_RESTART_MS);
    }
    this.hooks.onChange();
  }

  /**
   * A new offer with new ICE credentials. Only the impolite side restarts a pair (the polite
   * one waits for its offer); those of ICE trouble are rate limited, a re-offer after a rejoin
   * (`rejoin`, decided by the roster's rule) is not.
   */
  restartIce(reason: RestartReason): void {
    if (this.closed) return;
    if (!restartsIce(this.polite)) {
      this.note(`${reason}: waiting for the impolite side's offer`);
      return;
    }
    const now = performance.now();
    if (reason !== "rejoin" && now - this.lastRestart < MIN_RESTART_GAP_MS) return;
    this.lastRestart = now;
    this.restarts += 1;
    if (reason === "rejoin") this.reoffers += 1;
    this.note(`ICE restart (${reason})`);
    this.initiator = true;
    if (!this.everNegotiated && this.pc.signalingState === "stable" && !this.pc.localDescription) {
      void this.offer(); // nothing negotiated yet: a plain first offer
      return;
    }
    this.pc.restartIce();
  }

  /** Whether the re-offer rule should restart the pair: not connected, unless it is still
   *  setting up (`new` or `connecting` with a negotiation in flight or moments old). */
  needsRestart(now = performance.now()): boolean {
    const state = this.pc.connectionState;
    if (state === "connected") return false;
    if (state === "new" || state === "connecting") {
      return this.pc.signalingState === "stable" && now - this.lastNegotiationAt >= NEGOTIATION_GRACE_MS;
    }
    return true; // disconnected, failed
  }

  private note(what: string): void {
    this.log.push([Math.round(performance.now()), what]);
    if (this.log.length > 100) this.log.shift();
  }

  private replace(why: string): void {
    this.replacements += 1;
    this.note(`connection replaced: ${why}`);
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
    if (this.closed) return;
    this.closed = true;
    this.note("closed");
    window.clearTimeout(this.disconnectedTimer);
    window.clearTimeout(this.fallbackTimer);
    window.clearInterval(this.statsTimer);
    this.pc.close();
  }
}
