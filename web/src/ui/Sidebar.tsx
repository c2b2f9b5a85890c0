import { useState } from "react";
import { currentSession, signOut } from "../net/auth";
import { store, type ChannelEntry } from "../chat/store";
import { navigate } from "./hooks";
import { AddPersonDialog, BrowseChannelsDialog, CreateChannelDialog, NewDmDialog } from "./Dialogs";

type DialogName = "create" | "browse" | "dm" | "person" | null;

export function PresenceDot({ userId }: { userId: string }) {
  const status = store.presence.get(userId) ?? "offline";
  return <span className={`dot ${status}`} role="img" aria-label={status} title={status} data-presence={status} />;
}

export function Sidebar({ onNavigate }: { onNavigate: () => void }) {
  const [dialog, setDialog] = useState<DialogName>(null);
  const session = currentSession()!;
  const me = session.user.id;
  const member = [...store.channels.values()].filter((e) => e.isMember);
  const channels = member.filter((e) => e.channel.kind !== "dm").sort((a, b) => a.channel.name.localeCompare(b.channel.name));
  const dms = member.filter((e) => e.channel.kind === "dm").sort((a, b) => store.channelTitle(a).localeCompare(store.channelTitle(b)));

  function open(id: string) {
    navigate(`/channels/${id}`);
    onNavigate();
  }

  function item(entry: ChannelEntry) {
    const cache = store.cache(entry.channel.id);
    const active = store.activeChannelId === entry.channel.id;
    const unread = active ? 0 : cache.unreadCount(me);
    const title = store.channelTitle(entry);
    const label = unread > 0 ? `${title}, ${unread >= 100 ? "99+" : unread} unread` : title;
    return (
      <li key={entry.channel.id}>
        <button
          className={`channel-item${active ? " active" : ""}${unread ? " unread" : ""}`}
          aria-current={active ? "page" : undefined}
          aria-label={label}
          onClick={() => open(entry.channel.id)}
        >
          {entry.channel.kind === "dm" ? (
            <PresenceDot userId={entry.peerId ?? ""} />
          ) : (
            <span className="hash" aria-hidden="true">
              {entry.channel.kind === "private" ? "🔒" : "#"}
            </span>
          )}
          <span className="name">{title}</span>
          {unread > 0 && (
            <span className={`badge${cache.mentionsMe(me) ? " mention" : ""}`} data-unread={unread}>
              {unread >= 100 ? "99+" : unread}
            </span>
          )}
        </button>
      </li>
    );
  }

  return (
    <nav className="sidebar" aria-label="Channels and direct messages">
      <header className="workspace">
        <div>
          <strong>{session.company.name}</strong>
          <span className="me">
            <PresenceDot userId={me} /> {session.user.display_name || session.user.username}
          </span>
        </div>
        <button className="ghost small" onClick={signOut}>
          Sign out
        </button>
      </header>
      <section>
        <h2>
          Channels
          <span className="section-actions">
            <button className="icon" aria-label="Browse channels" title="Browse channels" onClick={() => setDialog("browse")}>
              ⌕
            </button>
            <button className="icon" aria-label="Create a channel" title="Create a channel" onClick={() => setDialog("create")}>
              +
            </button>
          </span>
        </h2>
        <ul>{channels.map(item)}</ul>
      </section>
      <section>
        <h2>
          Direct messages
          <span className="section-actions">
            <button className="icon" aria-label="New direct message" title="New direct message" onClick={() => setDialog("dm")}>
              +
            </button>
          </span>
        </h2>
        <ul>{dms.map(item)}</ul>
      </section>
      {session.user.is_admin && (
        <button className="ghost add-person" onClick={() => setDialog("person")}>
          + Add a person
        </button>
      )}
      {dialog === "create" && <CreateChannelDialog onClose={() => setDialog(null)} onDone={open} />}
      {dialog === "browse" && <BrowseChannelsDialog onClose={() => setDialog(null)} onDone={open} />}
      {dialog === "dm" && <NewDmDialog onClose={() => setDialog(null)} onDone={open} />}
      {dialog === "person" && <AddPersonDialog onClose={() => setDialog(null)} />}
    </nav>
  );
}
