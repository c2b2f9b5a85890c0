import { useEffect, useState, type ReactNode } from "react";
import { downloadFile, fileInfo } from "../chat/files";
import { store } from "../chat/store";
import type { FileInfo, Message } from "../chat/types";
import { formatSize, formatTime, initials, navigate } from "./hooks";

const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "👀", "✅"];

/** Body text with @mentions and links marked up (no HTML from the server is ever trusted). */
export function renderBody(body: string): ReactNode[] {
  const parts: ReactNode[] = [];
  const pattern = /(https?:\/\/[^\s<]+)|(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]+)/g;
  let last = 0;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(body))) {
    if (match[1]) {
      parts.push(body.slice(last, match.index));
      const url = match[1];
      // Links to this app's pages open in place: meeting links name any node of the
      // deployment (or its public address), so match them by path, not by origin.
      const path = /^https?:\/\/[^/]+(\/(?:meetings|channels)\/[0-9a-f-]{36})\/?$/.exec(url)?.[1];
      const local = path ?? (url.startsWith(location.origin + "/") ? url.slice(location.origin.length) : null);
      parts.push(
        <a
          key={match.index}
          href={url}
          target={local ? undefined : "_blank"}
          rel="noreferrer"
          onClick={(event) => {
            if (!local) return;
            event.preventDefault();
            navigate(local);
          }}
        >
          {local?.startsWith("/meetings/") ? "Join the meeting" : url}
        </a>,
      );
      last = match.index + url.length;
    } else {
      const name = match[3].replace(/\.+$/, "");
      const start = match.index + match[2].length;
      parts.push(body.slice(last, start));
      parts.push(
        <span key={start} className="mention">
          @{name}
        </span>,
      );
      last = start + 1 + name.length;
      pattern.lastIndex = last;
    }
  }
  parts.push(body.slice(last));
  return parts;
}

function Attachment({ fileId }: { fileId: string }) {
  const [info, setInfo] = useState<FileInfo | null>(null);
  const [preview, setPreview] = useState<string | null>(null);
  useEffect(() => {
    let cancelled = false;
    let url: string | null = null;
    fileInfo(fileId).then(async (file) => {
      if (cancelled) return;
      setInfo(file);
      if (file.content_type.startsWith("image/") && file.size < 3 * 1024 * 1024) {
        url = URL.createObjectURL(await downloadFile(fileId));
        if (!cancelled) setPreview(url);
      }
    }, () => undefined);
    return () => {
      cancelled = true;
      if (url) URL.revokeObjectURL(url);
    };
  }, [fileId]);

  async function download() {
    const blob = await downloadFile(fileId);
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = info?.filename ?? "file";
    link.click();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  return (
    <div className="attachment">
      {preview && <img src={preview} alt={info?.filename ?? "image"} />}
      <button className="ghost small" onClick={download} aria-label={`Download ${info?.filename ?? "attachment"}`}>
        📎 {info ? `${info.filename} (${formatSize(info.size)})` : "attachment"}
      </button>
    </div>
  );
}

interface Props {
  message: Message;
  channelId: string;
  onThread?: (rootId: string) => void;
  replyCount?: number;
  seenBy?: string[];
}

export function MessageItem({ message, channelId, onThread, replyCount, seenBy }: Props) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(message.body);
  const [picking, setPicking] = useState(false);
  const mine = message.sender_id === store.me;
  const name = store.userName(message.sender_id);

  async function saveEdit() {
    if (draft.trim() && draft !== message.body) await store.edit(channelId, message.id, draft).catch(() => undefined);
    setEditing(false);
  }

  return (
    <li className={`message${mine ? " mine" : ""}`} data-seq={message.seq} data-message-id={message.id}>
      <div className="avatar" aria-hidden="true">
        {initials(name)}
      </div>
      <div className="message-main">
        <div className="message-head">
          <strong>{name}</strong> <time dateTime={new Date(message.created_at).toISOString()}>{formatTime(message.created_at)}</time>
          {message.edited_at && !message.deleted && <span className="hint"> (edited)</span>}
        </div>
        {message.deleted ? (
          <p className="body deleted">This message was deleted.</p>
        ) : editing ? (
          <div className="edit">
            <textarea
              aria-label="Edit message"
              value={draft}
              autoFocus
              onChange={(e) => setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && !e.shiftKey) {
                  e.preventDefault();
                  void saveEdit();
                }
                if (e.key === "Escape") setEditing(false);
              }}
            />
            <button className="primary small" onClick={saveEdit}>
              Save
            </button>
            <button className="ghost small" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        ) : (
          <p className="body">{renderBody(message.body)}</p>
        )}
        {!message.deleted && message.attachment_ids.map((id) => <Attachment key={id} fileId={id} />)}
        {message.reactions.length > 0 && (
          <div className="reactions">
            {message.reactions.map((reaction) => {
              const reacted = reaction.user_ids.includes(store.me);
              const who = reaction.user_ids.map((id) => store.userName(id)).join(", ");
              return (
                <button
                  key={reaction.emoji}
                  className={`reaction${reacted ? " reacted" : ""}`}
                  aria-pressed={reacted}
                  aria-label={`${reaction.emoji} ${reaction.user_ids.length}: ${who}`}
                  title={who}
                  onClick={() => store.toggleReaction(channelId, message, reaction.emoji)}
                >
                  {reaction.emoji} {reaction.user_ids.length}
                </button>
              );
            })}
          </div>
        )}
        {onThread && (replyCount ?? 0) > 0 && (
          <button className="link small" onClick={() => onThread(message.id)}>
            {replyCount} {replyCount === 1 ? "reply" : "replies"}
          </button>
        )}
        {seenBy && seenBy.length > 0 && (
          <p className="seen" aria-live="polite">
            Seen by {seenBy.map((id) => store.userName(id)).join(", ")}
          </p>
        )}
      </div>
      {!message.deleted && (
        <div className="message-actions">
          <button className="icon" aria-label="Add reaction" title="Add reaction" aria-expanded={picking} onClick={() => setPicking(!picking)}>
            ☺
          </button>
          {onThread && (
            <button className="icon" aria-label="Reply in thread" title="Reply in thread" onClick={() => onThread(message.id)}>
              ↩
            </button>
          )}
          {mine && (
            <>
              <button className="icon" aria-label="Edit message" title="Edit" onClick={() => (setDraft(message.body), setEditing(true))}>
                ✎
              </button>
              <button
                className="icon"
                aria-label="Delete message"
                title="Delete"
                onClick={() => confirm("Delete this message?") && void store.remove(channelId, message.id).catch(() => undefined)}
              >
                🗑
              </button>
            </>
          )}
          {picking && (
            <div className="emoji-picker" role="menu">
              {QUICK_EMOJI.map((emoji) => (
                <button
                  key={emoji}
                  role="menuitem"
                  aria-label={`React with ${emoji}`}
                  onClick={() => {
                    setPicking(false);
                    store.toggleReaction(channelId, message, emoji);
                  }}
                >
                  {emoji}
                </button>
              ))}
            </div>
          )}
        </div>
      )}
    </li>
  );
}
