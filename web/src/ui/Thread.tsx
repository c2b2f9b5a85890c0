import { store } from "../chat/store";
import { Composer } from "./Composer";
import { MessageItem } from "./Message";
import { PendingItem } from "./ChannelView";

export function ThreadPanel({ channelId, rootId, onClose }: { channelId: string; rootId: string; onClose: () => void }) {
  const cache = store.cache(channelId);
  const root = cache.messages.get(rootId);
  const replies = cache.replies(rootId);
  return (
    <aside className="thread" aria-label="Thread">
      <header className="channel-header">
        <h2>Thread</h2>
        <span className="spacer" />
        <button className="icon" aria-label="Close the thread" onClick={onClose}>
          ✕
        </button>
      </header>
      <div className="messages">
        <ol>
          {root && <MessageItem message={root} channelId={channelId} />}
          <li className="divider" aria-hidden="true">
            {replies.length} {replies.length === 1 ? "reply" : "replies"}
          </li>
          {replies.map((message) => (
            <MessageItem key={message.id} message={message} channelId={channelId} />
          ))}
          {cache.pending.filter((p) => p.parentId === rootId).map((pending) => (
            <PendingItem key={pending.clientMsgId} pending={pending} channelId={channelId} />
          ))}
        </ol>
      </div>
      <Composer channelId={channelId} parentId={rootId} placeholder="Write a reply" />
    </aside>
  );
}
