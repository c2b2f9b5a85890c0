// The local camera and microphone (and the screen while shared). Tracks stay in the peer
// connections when muted: `enabled = false` sends silence and black frames, so muting needs
// no renegotiation.

export class LocalMedia {
  stream: MediaStream | null = null;
  screen: MediaStream | null = null;
  error = "";

  async start(): Promise<void> {
    if (this.stream) return;
    if (!navigator.mediaDevices?.getUserMedia) {
      this.error = "Camera and microphone need https (or localhost).";
      this.stream = new MediaStream();
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: 640 }, height: { ideal: 360 } },
      });
    } catch {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        this.error = "No camera: joining with audio only.";
      } catch (error) {
        this.error = `No camera or microphone (${(error as Error).name}).`;
        this.stream = new MediaStream();
      }
    }
  }

  get audioTrack(): MediaStreamTrack | undefined {
    return this.stream?.getAudioTracks()[0];
  }

  get cameraTrack(): MediaStreamTrack | undefined {
    return this.stream?.getVideoTracks()[0];
  }

  /** What goes out on the video sender: the screen while shared, else the camera. */
  get outgoingVideo(): MediaStreamTrack | undefined {
    return this.screen?.getVideoTracks()[0] ?? this.cameraTrack;
  }

  setAudio(on: boolean): void {
    if (this.audioTrack) this.audioTrack.enabled = on;
  }

  setVideo(on: boolean): void {
    if (this.cameraTrack) this.cameraTrack.enabled = on;
  }

  async startScreen(onEnded: () => void): Promise<MediaStreamTrack | null> {
    if (!navigator.mediaDevices?.getDisplayMedia) return null;
    this.screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
    const track = this.screen.getVideoTracks()[0];
    track.onended = onEnded;
    return track;
  }

  stopScreen(): void {
    this.screen?.getTracks().forEach((t) => t.stop());
    this.screen = null;
  }

  stop(): void {
    this.stopScreen();
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
  }
}
