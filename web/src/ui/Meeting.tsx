import { useEffect, useRef, useState } from "react";
import { store } from "../chat/store";
import type { Participant } from "../chat/types";
import { MeetingCall } from "../meeting/call";
import type { PeerLink } from "../meeting/peer";
import { initials, navigate, useObservable } from "./hooks";

declare global {
  interface Window {
    larkCall?: MeetingCall;
  }
}

function Video({ stream, muted, mirrored }: { stream: MediaStream | null; muted: boolean; mirrored?: boolean }) {
  const ref = useRef<HTMLVideoElement>(null);
  const trackCount = stream?.getTracks().length ?? 0;
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.srcObject = stream;
    if (stream) el.play().catch(() => undefined);
  }, [stream, trackCount]);
  return <video ref={ref} autoPlay playsInline muted={muted} className={mirrored ? "mirrored" : undefined} />;
}

function Tile({
  userId,
  name,
  participant,
  stream,
  local,
  link,
  call,
}: {
  userId: string;
  name: string;
  participant: Participant | undefined;
  stream: MediaStream | null;
  local: boolean;
  link?: PeerLink;
  call: MeetingCall;
}) {
  const state = local ? call.media : participant?.state;
  const status = participant?.status ?? (local ? "joined" : "reconnecting");
  const connection = local ? "local" : link?.connectionState ?? "new";
  const flags = [
    state && !state.audio ? "microphone off" : "microphone on",
    state && !state.video ? "camera off" : "camera on",
    state?.screen ? "sharing the screen" : "",
    state?.hand ? "hand raised" : "",
    participant?.role === "host" ? "host" : "",
    status !== "joined" ? status : "",
  ].filter(Boolean);
  const isHost = call.roster.isHost();
  return (
    <figure
      className={`tile${state?.hand ? " hand" : ""}`}
      aria-label={`${name}${local ? " (you)" : ""}: ${flags.join(", ")}`}
      data-user-id={userId}
      data-audio={state?.audio ? "on" : "off"}
      data-video={state?.video ? "on" : "off"}
      data-status={status}
      data-connection={connection}
    >
      <Video stream={stream} muted={local} mirrored={local && !call.media.screen} />
      {(!state?.video || !stream) && (
        <div className="tile-avatar" aria-hidden="true">
          {initials(name)}
        </div>
      )}
      <figcaption>
        {state?.hand && <span aria-hidden="true">✋ </span>}
        {participant?.role === "host" && <span aria-hidden="true">★ </span>}
        {name}
        {local && " (you)"}
        {state && !state.audio && <span className="muted-icon" aria-hidden="true"> 🔇</span>}
        {state?.screen && <span aria-hidden="true"> 🖥</span>}
        {status !== "joined" && <span className="hint"> · {status}</span>}
        {!local && connection !== "connected" && <span className="hint"> · {connection}</span>}
      </figcaption>
      {isHost && !local && participant && (
        <div className="tile-actions">
          <button className="small" aria-label={`Mute ${name}`} onClick={() => call.host("host_mute", participant.participant_id)}>
            Mute
          </button>
          <button className="small" aria-label={`Make ${name} the host`} onClick={() => call.host("host_transfer", participant.participant_id)}>
            Make host
          </button>
          <button className="small danger" aria-label={`Remove ${name}`} onClick={() => call.host("host_remove", participant.participant_id)}>
            Remove
          </button>
        </div>
      )}
    </figure>
  );
}

function Controls({ call }: { call: MeetingCall }) {
  const media = call.media;
  return (
    <div className="controls" role="toolbar" aria-label="Call controls">
      <button aria-pressed={!media.audio} aria-label={media.audio ? "Mute microphone" : "Unmute microphone"} onClick={() => call.setAudio(!media.audio)}>
        {media.audio ? "🎙 Mute" : "🔇 Unmute"}
      </button>
      <button aria-pressed={!media.video} aria-label={media.video ? "Turn camera off" : "Turn camera on"} onClick={() => call.setVideo(!media.video)}>
        {media.video ? "📷 Camera off" : "📷 Camera on"}
      </button>
      {call.phase === "in_call" && (
        <>
          <button aria-pressed={media.hand} aria-label={media.hand ? "Lower hand" : "Raise hand"} onClick={() => call.setHand(!media.hand)}>
            ✋ {media.hand ? "Lower" : "Raise"}
          </button>
          {"getDisplayMedia" in (navigator.mediaDevices ?? {}) && (
            <button aria-pressed={media.screen} aria-label={media.screen ? "Stop sharing the screen" : "Share the screen"} onClick={() => void call.setScreen(!media.screen)}>
              🖥 {media.screen ? "Stop sharing" : "Share"}
            </button>
          )}
        </>
      )}
      <button className="danger" aria-label="Leave the meeting" onClick={() => call.leave()}>
        Leave
      </button>
      {call.phase === "in_call" && (call.roster.isHost() || call.isCreator()) && (
        <button className="danger" aria-label="End the meeting for everyone" onClick={() => void call.endForAll().catch(() => undefined)}>
          End for all
        </button>
      )}
    </div>
  );
}

export function MeetingPage({ meetingId }: { meetingId: string }) {
  const [call, setCall] = useState<MeetingCall | null>(null);
  useEffect(() => {
    // An invitation to this meeting is moot on its own page.
    store.toasts.filter((t) => t.href === `/meetings/${meetingId}`).forEach((t) => store.dismissToast(t.id));
    const created = new MeetingCall(meetingId, store.me);
    window.larkCall = created;
    setCall(created);
    void created.load();
    return () => created.destroy();
  }, [meetingId]);
  if (!call) return null;
  return <MeetingView call={call} />;
}

function MeetingView({ call }: { call: MeetingCall }) {
  useObservable(call);
  const title = call.meeting?.title ?? "Meeting";
  const back = () => navigate(call.meeting?.channel_id ? `/channels/${call.meeting.channel_id}` : "/");
  const myName = store.userName(store.me);

  if (call.phase === "loading" || call.phase === "joining") {
    return <main className="meeting center-box"><p role="status">{call.phase === "loading" ? "Loading…" : "Joining…"}</p></main>;
  }
  if (call.phase === "ended" || call.phase === "left" || call.phase === "error") {
    const text = call.phase === "ended" ? "This meeting has ended." : call.phase === "left" ? call.notice || "You left the meeting." : `Could not join: ${call.error}`;
    return (
      <main className="meeting center-box">
        <h1>{title}</h1>
        <p role="status" data-phase={call.phase}>{text}</p>
        <button className="primary" onClick={back}>Back to chat</button>
      </main>
    );
  }
  if (call.phase === "preview") {
    return (
      <main className="meeting preview">
        <h1>{title}</h1>
        <div className="grid single">
          <Tile userId={store.me} name={myName} participant={undefined} stream={call.local.stream} local call={call} />
        </div>
        {call.local.error && <p className="error" role="alert">{call.local.error}</p>}
        <Controls call={call} />
        <div className="join-row">
          <button className="primary big" onClick={() => void call.join()}>Join meeting</button>
          <button className="ghost" onClick={back}>Cancel</button>
        </div>
      </main>
    );
  }
  if (call.phase === "lobby") {
    return (
      <main className="meeting center-box">
        <h1>{title}</h1>
        <p role="status">Waiting for the host to let you in…</p>
        <button className="ghost" onClick={() => call.leave()}>Leave</button>
      </main>
    );
  }
  const remotes = call.roster.remotes();
  const shown = new Set(remotes.map((p) => p.participant_id));
  // A connection whose participant the roster does not list yet (its offer came first).
  const orphans = [...call.peers.values()].filter((link) => !shown.has(link.remoteParticipantId));
  const lobby = call.roster.isHost() ? call.roster.lobby() : [];
  const count = remotes.length + orphans.length + 1;
  return (
    <main className="meeting in-call" data-phase={call.phase}>
      <header className="meeting-header">
        <h1>{title}</h1>
        <span className="hint">{count} in the call</span>
        <span className="spacer" />
        <button className="ghost small" onClick={back}>Back to chat</button>
      </header>
      {call.notice && (
        <p className="notice" role="status">
          {call.notice} <button className="link small" onClick={() => call.dismissNotice()}>Dismiss</button>
        </p>
      )}
      {lobby.length > 0 && (
        <section className="lobby" aria-label="Waiting in the lobby">
          {lobby.map((p) => (
            <div key={p.participant_id} className="lobby-entry">
              {store.userName(p.user_id)} is waiting
              <button className="primary small" aria-label={`Admit ${store.userName(p.user_id)}`} onClick={() => call.host("lobby_admit", p.participant_id)}>Admit</button>
              <button className="ghost small" aria-label={`Deny ${store.userName(p.user_id)}`} onClick={() => call.host("lobby_deny", p.participant_id)}>Deny</button>
            </div>
          ))}
        </section>
      )}
      <div className={`grid n${Math.min(count, 6)}`}>
        <Tile userId={store.me} name={myName} participant={call.roster.me} stream={call.local.screen ?? call.local.stream} local call={call} />
        {remotes.map((p) => (
          <Tile key={p.participant_id} userId={p.user_id} name={store.userName(p.user_id)} participant={p} stream={call.peers.get(p.participant_id)?.remoteStream ?? null} local={false} link={call.peers.get(p.participant_id)} call={call} />
        ))}
        {orphans.map((link) => (
          <Tile key={link.remoteParticipantId} userId={link.userId} name={store.userName(link.userId)} participant={undefined} stream={link.remoteStream} local={false} link={link} call={call} />
        ))}
      </div>
      <Controls call={call} />
    </main>
  );
}
