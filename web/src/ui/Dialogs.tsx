import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import type { ApiError } from "../net/api";
import { currentSession } from "../net/auth";
import { addUser, createChannel, joinChannel, openDm } from "../chat/actions";
import { store } from "../chat/store";
import { PresenceDot } from "./Sidebar";

function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    ref.current?.querySelector<HTMLElement>("input, button.primary, li button")?.focus();
    const onKey = (event: KeyboardEvent) => event.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  return (
    <div className="backdrop" onClick={(event) => event.target === event.currentTarget && onClose()}>
      <div className="dialog" role="dialog" aria-modal="true" aria-label={title} ref={ref}>
        <header>
          <h2>{title}</h2>
          <button className="icon" aria-label="Close" onClick={onClose}>
            ✕
          </button>
        </header>
        {children}
      </div>
    </div>
  );
}

function useAction() {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError("");
    try {
      await action();
    } catch (caught) {
      const error = caught as ApiError;
      // Sign-ups (adding a person) are rate-limited per address: say when to try again.
      if (error.code === "rate_limited") {
        setError(`Too many sign-ups from this network; try again in ${Math.ceil((error.retryAfter ?? 60) / 60)} min.`);
      } else setError(error.message);
    } finally {
      setBusy(false);
    }
  }
  return { error, busy, run };
}

interface Props {
  onClose: () => void;
  onDone: (channelId: string) => void;
}

export function CreateChannelDialog({ onClose, onDone }: Props) {
  const { error, busy, run } = useAction();
  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    void run(async () => {
      const id = await createChannel(String(form.get("name")).trim(), form.get("private") === "on");
      onClose();
      onDone(id);
    });
  }
  return (
    <Dialog title="Create a channel" onClose={onClose}>
      <form onSubmit={submit}>
        <label>
          Name
          <input name="name" required maxLength={80} placeholder="e.g. general" />
        </label>
        <label className="inline">
          <input type="checkbox" name="private" /> Private (members join by invitation)
        </label>
        {error && <p className="error" role="alert">{error}</p>}
        <button className="primary" disabled={busy}>
          Create
        </button>
      </form>
    </Dialog>
  );
}

export function BrowseChannelsDialog({ onClose, onDone }: Props) {
  const { error, run } = useAction();
  useEffect(() => void store.refreshChannels().catch(() => undefined), []);
  const open = [...store.channels.values()].filter((e) => e.channel.kind === "public" && !e.isMember);
  return (
    <Dialog title="Browse channels" onClose={onClose}>
      {open.length === 0 && <p className="hint">You are in every public channel.</p>}
      <ul className="pick-list">
        {open.map((entry) => (
          <li key={entry.channel.id}>
            <span># {entry.channel.name}</span>
            <button
              className="primary small"
              aria-label={`Join ${entry.channel.name}`}
              onClick={() =>
                run(async () => {
                  await joinChannel(entry.channel.id);
                  onClose();
                  onDone(entry.channel.id);
                })
              }
            >
              Join
            </button>
          </li>
        ))}
      </ul>
      {error && <p className="error" role="alert">{error}</p>}
    </Dialog>
  );
}

export function NewDmDialog({ onClose, onDone }: Props) {
  const { error, run } = useAction();
  const [filter, setFilter] = useState("");
  const users = [...store.users.values()]
    .filter((u) => u.id !== store.me)
    .filter((u) => (u.username + " " + u.display_name).toLowerCase().includes(filter.toLowerCase()));
  return (
    <Dialog title="New direct message" onClose={onClose}>
      <input aria-label="Find a person" placeholder="Find a person" value={filter} onChange={(e) => setFilter(e.target.value)} />
      <ul className="pick-list">
        {users.map((user) => (
          <li key={user.id}>
            <button
              className="ghost wide"
              aria-label={`Message ${user.display_name || user.username}`}
              onClick={() =>
                run(async () => {
                  const id = await openDm(user.id);
                  onClose();
                  onDone(id);
                })
              }
            >
              <PresenceDot userId={user.id} /> {user.display_name || user.username} <span className="hint">@{user.username}</span>
            </button>
          </li>
        ))}
      </ul>
      {error && <p className="error" role="alert">{error}</p>}
    </Dialog>
  );
}

export function AddPersonDialog({ onClose }: { onClose: () => void }) {
  const { error, busy, run } = useAction();
  const [added, setAdded] = useState("");
  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    void run(async () => {
      const user = await addUser(String(form.get("username")).trim(), String(form.get("password")), String(form.get("display_name")));
      setAdded(`${user.username} can now sign in with company id “${currentSession()?.company.slug ?? ""}”.`);
      formElement.reset();
    });
  }
  return (
    <Dialog title="Add a person" onClose={onClose}>
      <form onSubmit={submit}>
        <label>
          Username
          <input name="username" required maxLength={40} autoCapitalize="none" />
        </label>
        <label>
          Display name <span className="hint">(optional)</span>
          <input name="display_name" maxLength={100} />
        </label>
        <label>
          Initial password
          <input name="password" type="password" required minLength={8} autoComplete="new-password" />
        </label>
        {error && <p className="error" role="alert">{error}</p>}
        {added && <p className="ok" role="status">{added}</p>}
        <button className="primary" disabled={busy}>
          Add
        </button>
      </form>
    </Dialog>
  );
}
