import { useLayoutEffect, useRef, useState, type KeyboardEvent } from "react";
import { uploadFile } from "../chat/files";
import { store } from "../chat/store";
import type { FileInfo, User } from "../chat/types";
import { formatSize } from "./hooks";

interface Props {
  channelId: string;
  parentId?: string | null;
  placeholder: string;
}

/** The `@word` being typed just before the caret, if any. */
function mentionQuery(text: string, caret: number): { start: number; query: string } | null {
  const match = /(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]*)$/.exec(text.slice(0, caret));
  return match ? { start: caret - match[2].length - 1, query: match[2] } : null;
}

export function Composer({ channelId, parentId = null, placeholder }: Props) {
  const [text, setText] = useState("");
  const [files, setFiles] = useState<FileInfo[]>([]);
  const [uploading, setUploading] = useState(0);
  const [error, setError] = useState("");
  const [suggest, setSuggest] = useState<{ start: number; users: User[]; index: number } | null>(null);
  const input = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  /** Where the caret goes once a picked mention is in the text. */
  const caretAfterPick = useRef<number | null>(null);

  // Placed in the same commit as the new text, before the next keystroke is handled: placed
  // a frame later, a key typed meanwhile landed after the caret ("ow are you?h").
  useLayoutEffect(() => {
    const position = caretAfterPick.current;
    if (position === null) return;
    caretAfterPick.current = null;
    input.current?.setSelectionRange(position, position);
  }, [text]);

  function updateSuggestions(value: string, caret: number) {
    const found = mentionQuery(value, caret);
    if (!found) return setSuggest(null);
    const members = store.cache(channelId).members ?? [];
    const users = members
      .map((id) => store.users.get(id))
      .filter((u): u is User => !!u && u.id !== store.me)
      .filter((u) => u.username.toLowerCase().startsWith(found.query.toLowerCase()) || u.display_name.toLowerCase().startsWith(found.query.toLowerCase()))
      .slice(0, 6);
    setSuggest(users.length ? { start: found.start, users, index: 0 } : null);
  }

  function pick(user: User) {
    const el = input.current!;
    const caret = el.selectionStart ?? text.length;
    const start = suggest?.start ?? caret;
    const next = `${text.slice(0, start)}@${user.username} ${text.slice(caret)}`;
    caretAfterPick.current = start + user.username.length + 2;
    el.focus();
    setText(next);
    setSuggest(null);
  }

  function send() {
    const body = text.trim();
    if (!body && files.length === 0) return;
    store.send(channelId, body, parentId, files.map((f) => f.id));
    setText("");
    setFiles([]);
    setSuggest(null);
    store.stopTyping(channelId);
  }

  function onKeyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (suggest) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        setSuggest({ ...suggest, index: (suggest.index + step + suggest.users.length) % suggest.users.length });
        return;
      }
      if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();
        pick(suggest.users[suggest.index]);
        return;
      }
      if (event.key === "Escape") return setSuggest(null);
    }
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  }

  async function upload(list: FileList | null) {
    if (!list) return;
    setError("");
    for (const file of Array.from(list)) {
      setUploading((n) => n + 1);
      try {
        const info = await uploadFile(channelId, file);
        setFiles((current) => [...current, info]);
      } catch (caught) {
        setError(`${file.name}: ${(caught as Error).message}`);
      } finally {
        setUploading((n) => n - 1);
      }
    }
    if (fileInput.current) fileInput.current.value = "";
  }

  return (
    <div className="composer">
      {suggest && (
        <ul className="suggestions" role="listbox" aria-label="People to mention">
          {suggest.users.map((user, index) => (
            <li key={user.id} role="option" aria-selected={index === suggest.index}>
              <button onMouseDown={(e) => (e.preventDefault(), pick(user))}>
                <strong>@{user.username}</strong> <span className="hint">{user.display_name}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
      {(files.length > 0 || uploading > 0) && (
        <div className="pending-files">
          {files.map((file) => (
            <span className="chip" key={file.id}>
              📎 {file.filename} ({formatSize(file.size)})
              <button className="icon" aria-label={`Remove ${file.filename}`} onClick={() => setFiles(files.filter((f) => f.id !== file.id))}>
                ✕
              </button>
            </span>
          ))}
          {uploading > 0 && <span className="hint">Uploading…</span>}
        </div>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <div className="composer-row">
        <button className="icon" aria-label="Attach a file" title="Attach a file" onClick={() => fileInput.current?.click()}>
          📎
        </button>
        <input ref={fileInput} type="file" multiple hidden onChange={(e) => upload(e.target.files)} data-testid="file-input" />
        <textarea
          ref={input}
          rows={1}
          value={text}
          placeholder={placeholder}
          aria-label={placeholder}
          onChange={(event) => {
            setText(event.target.value);
            updateSuggestions(event.target.value, event.target.selectionStart ?? event.target.value.length);
            if (event.target.value) store.typing(channelId);
            else store.stopTyping(channelId);
          }}
          onKeyDown={onKeyDown}
          onBlur={() => window.setTimeout(() => setSuggest(null), 150)}
        />
        <button className="primary send" aria-label="Send message" onClick={send} disabled={uploading > 0}>
          Send
        </button>
      </div>
    </div>
  );
}
