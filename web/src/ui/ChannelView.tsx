import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { joinChannel, leaveChannel, startMeeting } from "../chat/actions";
import { store } from "../chat/store";
import type { PendingSend } from "../chat/channelCache";
import { Composer } from "./Composer";
import { MessageItem } from "./Message";
import { ThreadPanel } from "./Thread";
import { navigate, useTick } from "./hooks";

export function typingText(userIds: string[]): string {
  const names = userIds.map((id) => store.userName(id));
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "Several people are typing…";
}

export function PendingItem({ pending, channelId }: { pending: PendingSend; channelId: string }) {
  return (
    <li className={`message mine pending ${pending.status}`} data-client-msg-id={pending.clientMsgId}>
      <div className="avatar" aria-hidden="true" />
      <div className="message-main">
        <p className="body">{pending.body || "📎"}</p>
        {pending.status === "sending" ? (
          <span className="hint">Sending…</span>
        ) : (
          <span className="error">
            Not sent: {pending.error}{" "}
            <button className="link small" onClick={() => store.retry(channelId, pending.clientMsgId)}>
              Retry
            </button>{" "}
            <button className="link small" onClick={() => store.discard(channelId, pending.clientMsgId)}>
              Discard
            </button>
          </span>
        )}
      </div>
    </li>
  );
}

export function ChannelView({ channelId, onMenu }: { channelId: string; onMenu: () => void }) {
  const [thread, setThread] = useState<string | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [starting, setStarting] = useState(false);
  const list = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const paging = useRef(false);
  const shown = useRef({ height: 0, channel: "" });
  const anchor = useRef<{ height: number; top: number } | null>(null);
  useTick(2_000);
  const entry = store.channels.get(channelId);
  const cache = store.cache(channelId);
  const roots = cache.roots();
  const me = store.me;

  useEffect(() => {
    stick.current = true;
    setThread(null);
    store.openChannel(channelId).catch(() => undefined);
    return () => {
      if (store.activeChannelId === channelId) store.activeChannelId = null;
      store.stopTyping(channelId);
    };
  }, [channelId]);

  useLayoutEffect(() => {
    const el = list.current;
    if (!el) return;
    if (anchor.current) {
      // Older messages arrived above: keep what was on screen where it was.
      if (el.scrollHeight !== anchor.current.height) {
        el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
        anchor.current = null;
      }
    } else if (stick.current && (el.scrollHeight !== shown.current.height || shown.current.channel !== channelId)) {
      // Follow new content only when there is some: a re-render between a user's scroll and
      // its scroll event must not pull the view back down.
      el.scrollTop = el.scrollHeight;
    }
    shown.current = { height: el.scrollHeight, channel: channelId };
    if (roots.length > 0 && store.firstMessagesShownAt === null) store.firstMessagesShownAt = performance.now();
  });

  // Read up to the newest event while the newest messages are in view.
  useEffect(() => {
    const mark = () => {
      if (stick.current && document.visibilityState === "visible" && entry?.isMember) store.markRead(channelId);
    };
    mark();
    document.addEventListener("visibilitychange", mark);
    return () => document.removeEventListener("visibilitychange", mark);
  });

  async function onScroll() {
    const el = list.current!;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (stick.current) store.markRead(channelId);
    if (el.scrollTop < 80 && cache.hasMoreBefore && !paging.current && roots.length > 0) {
      paging.current = true;
      setLoadingOlder(true);
      anchor.current = { height: el.scrollHeight, top: el.scrollTop };
      await store.loadOlder(channelId).catch(() => undefined);
      paging.current = false;
      if (anchor.current && anchor.current.height === el.scrollHeight) anchor.current = null; // nothing came
      setLoadingOlder(false);
    }
  }

  async function onStartMeeting() {
    setStarting(true);
    try {
      navigate(`/meetings/${await startMeeting(channelId)}`);
    } catch (error) {
      store.toast({ text: `Could not start a meeting: ${(error as Error).message}` });
    } finally {
      setStarting(false);
    }
  }

  if (!entry) return <section className="channel empty">Loading…</section>;
  const title = store.channelTitle(entry);
  const lastMine = [...roots].reverse().find((m) => m.sender_id === me && !m.deleted);
  const typing = typingText(cache.typingUsers(me));
  const replyCounts = new Map<string, number>();
  for (const message of cache.all()) {
    if (message.parent_id && !message.deleted) replyCounts.set(message.parent_id, (replyCounts.get(message.parent_id) ?? 0) + 1);
  }

  return (
    <div className={`channel-area${thread ? " with-thread" : ""}`}>
      <section className="channel" aria-label={title}>
        <header className="channel-header">
          <button className="icon menu-button" aria-label="Open the channel list" onClick={onMenu}>
            ☰
          </button>
          <h1>
            {entry.channel.kind === "dm" ? "" : entry.channel.kind === "private" ? "🔒 " : "# "}
            {title}
          </h1>
          <span className="hint members">{cache.members ? `${cache.members.length} ${cache.members.length === 1 ? "member" : "members"}` : ""}</span>
          <span className="spacer" />
          {entry.isMember && (
            <button className="primary small" onClick={onStartMeeting} disabled={starting}>
              📞 Start meeting
            </button>
          )}
          {entry.isMember && entry.channel.kind !== "dm" && (
            <button className="ghost small" onClick={() => confirm(`Leave #${title}?`) && void leaveChannel(channelId).then(() => navigate("/"))}>
              Leave
            </button>
          )}
        </header>
        <div className="messages" ref={list} onScroll={onScroll} role="log" aria-label={`Messages in ${title}`}>
          {cache.hasMoreBefore && roots.length > 0 && <p className="hint center">{loadingOlder ? "Loading older messages…" : "Scroll up for older messages"}</p>}
          {!cache.hasMoreBefore && <p className="hint center">This is the beginning of {title}.</p>}
          <ol>
            {roots.map((message) => (
              <MessageItem
                key={message.id}
                message={message}
                channelId={channelId}
                onThread={(id) => {
                  setThread(id);
                  void store.loadThread(channelId, id).catch(() => undefined);
                }}
                replyCount={replyCounts.get(message.id)}
                seenBy={message === lastMine ? cache.seenBy(message.seq, me) : undefined}
              />
            ))}
            {cache.pending.filter((p) => !p.parentId).map((pending) => (
              <PendingItem key={pending.clientMsgId} pending={pending} channelId={channelId} />
            ))}
          </ol>
        </div>
        <p className="typing" aria-live="polite">
          {typing}
        </p>
        {entry.isMember ? (
          <Composer channelId={channelId} placeholder={`Message ${entry.channel.kind === "dm" ? title : "#" + title}`} />
        ) : (
          <div className="join-bar">
            <button className="primary" onClick={() => void joinChannel(channelId)}>
              Join #{title}
            </button>
          </div>
        )}
      </section>
      {thread && <ThreadPanel channelId={channelId} rootId={thread} onClose={() => setThread(null)} />}
    </div>
  );
}
