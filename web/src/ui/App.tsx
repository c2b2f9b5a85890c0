import { useEffect, useState } from "react";
import { currentSession, onSessionChange, refreshCount, type Session } from "../net/auth";
import { socket } from "../net/socket";
import { knownNodes } from "../net/nodes";
import { store } from "../chat/store";
import { AuthScreen } from "./Auth";
import { ChannelView } from "./ChannelView";
import { MeetingPage } from "./Meeting";
import { Sidebar } from "./Sidebar";
import { navigate, useObservable, usePath } from "./hooks";

declare global {
  interface Window {
    larkDebug?: unknown;
  }
}

window.larkDebug = {
  store,
  socket,
  refreshes: () => refreshCount,
  call: () => window.larkCall?.summary() ?? null,
  firstMessagesShownAt: () => store.firstMessagesShownAt,
  nodes: knownNodes,
};

function ConnectionBanner() {
  const state = socket.state;
  if (state === "open" || state === "closed") return null;
  const text = state === "connecting" ? "Connecting…" : "Connection lost. Reconnecting…";
  return (
    <div className={`banner ${state}`} role="status" data-connection={state}>
      {text}
    </div>
  );
}

function Toasts() {
  return (
    <div className="toasts" aria-live="polite">
      {store.toasts.map((toast) => (
        <div key={toast.id} className="toast" role="status">
          <span>{toast.text}</span>
          {toast.href && (
            <button className="primary small" onClick={() => (store.dismissToast(toast.id), navigate(toast.href!))}>
              {toast.action ?? "Open"}
            </button>
          )}
          <button className="icon" aria-label="Dismiss" onClick={() => store.dismissToast(toast.id)}>
            ✕
          </button>
        </div>
      ))}
    </div>
  );
}

function Workspace() {
  useObservable(store);
  const path = usePath();
  const [drawer, setDrawer] = useState(false);
  const meeting = /^\/meetings\/([0-9a-f-]{36})/.exec(path)?.[1];
  const channel = /^\/channels\/([0-9a-f-]{36})/.exec(path)?.[1];

  useEffect(() => {
    if (meeting || channel || !store.ready) return;
    const first = [...store.channels.values()].find((e) => e.isMember);
    if (first) navigate(`/channels/${first.channel.id}`, true);
  }, [meeting, channel, store.ready]);

  useEffect(() => {
    const update = () => {
      if (socket.state === "open") socket.request({ type: "presence_set", status: document.visibilityState === "hidden" ? "away" : "online" }).catch(() => undefined);
    };
    document.addEventListener("visibilitychange", update);
    return () => document.removeEventListener("visibilitychange", update);
  }, []);

  if (meeting) {
    return (
      <>
        <ConnectionBanner />
        <MeetingPage meetingId={meeting} />
        <Toasts />
      </>
    );
  }
  return (
    <div className={`workspace-layout${drawer ? " drawer-open" : ""}`}>
      <ConnectionBanner />
      <Sidebar onNavigate={() => setDrawer(false)} />
      {drawer && <div className="scrim" onClick={() => setDrawer(false)} aria-hidden="true" />}
      <main className="main">
        {channel ? (
          <ChannelView channelId={channel} onMenu={() => setDrawer(true)} />
        ) : (
          <section className="channel empty">
            <button className="icon menu-button" aria-label="Open the channel list" onClick={() => setDrawer(true)}>
              ☰
            </button>
            <p>{store.ready ? "Create a channel (+ next to Channels) to start talking." : "Loading…"}</p>
          </section>
        )}
      </main>
      <Toasts />
    </div>
  );
}

export function App() {
  const [session, setSession] = useState<Session | null>(currentSession());
  const [error, setError] = useState("");
  useEffect(
    () =>
      onSessionChange((next, reason) => {
        if (reason === "refresh") socket.renew(); // a socket dies with the token it was opened with
        else if (reason === "signout") location.assign("/"); // start clean: no state of the last user
        else setSession(next);
      }),
    [],
  );
  useEffect(() => {
    if (!session) return;
    setError("");
    store.start().catch((caught) => setError((caught as Error).message));
    return () => store.stop();
  }, [session?.user.id]);

  if (!session) return <AuthScreen />;
  if (error) {
    return (
      <main className="center-box">
        <p className="error" role="alert">Could not load your workspace: {error}</p>
        <button className="primary" onClick={() => location.reload()}>Retry</button>
      </main>
    );
  }
  return <Workspace />;
}
