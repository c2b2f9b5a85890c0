// Shapes of docs/PROTOCOL.md, only the fields the client reads.

export interface User {
  id: string;
  company_id: string;
  username: string;
  display_name: string;
  is_admin: boolean;
  created_at: number;
}

export interface Company {
  id: string;
  name: string;
  slug: string;
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export type ChannelKind = "public" | "private" | "dm";

export interface Channel {
  id: string;
  kind: ChannelKind;
  name: string;
  created_by: string;
  created_at: number;
}

export interface Reaction {
  emoji: string;
  user_ids: string[];
}

export interface Message {
  id: string;
  channel_id: string;
  seq: number;
  sender_id: string;
  client_msg_id: string;
  parent_id: string | null;
  body: string;
  mentions: string[];
  attachment_ids: string[];
  created_at: number;
  edited_at: number | null;
  deleted: boolean;
  reactions: Reaction[];
}

export interface FileInfo {
  id: string;
  channel_id: string;
  filename: string;
  content_type: string;
  size: number;
}

export type ChannelEvent =
  | { kind: "message_new"; message: Message }
  | { kind: "message_edited"; message_id: string; body: string; mentions: string[]; edited_at: number }
  | { kind: "message_deleted"; message_id: string; deleted_at: number }
  | { kind: "reaction_added"; message_id: string; user_id: string; emoji: string }
  | { kind: "reaction_removed"; message_id: string; user_id: string; emoji: string }
  | { kind: "member_joined"; user_id: string }
  | { kind: "member_left"; user_id: string };

export type PresenceStatus = "online" | "away" | "offline";

export interface SubscribeResult {
  channel_id: string;
  head_seq: number;
  read_cursors: { user_id: string; seq: number }[];
  typing: string[];
}

export interface MediaState {
  audio: boolean;
  video: boolean;
  screen: boolean;
  hand: boolean;
}

export interface Participant {
  participant_id: string;
  user_id: string;
  role: "host" | "participant";
  status: string; // "lobby" | "joined" | "disconnected" (and whatever the server adds later)
  state: MediaState;
  joined_at: number;
}

export interface Meeting {
  id: string;
  channel_id: string | null;
  title: string;
  host_id: string;
  lobby: boolean;
  status: "scheduled" | "ended";
  invitees: string[];
}

export interface MeetingWithLinks {
  meeting: Meeting;
  links: { deep_link: string; web: string };
}

export interface MeetingSnapshot {
  meeting_id: string;
  participant_id: string;
  me: Participant;
  version: number;
  participants: Participant[];
  max_participants: number;
  grace_ms: number;
  ice_servers: RTCIceServer[];
}

export type MeetingEventBody =
  | { kind: "joined"; participant: Participant }
  | { kind: "updated"; participant: Participant }
  | { kind: "left"; participant_id: string; reason: string }
  | { kind: "lobby"; participant: Participant }
  | { kind: "mute_requested"; participant_id: string; by: string }
  | { kind: "ended"; by: string };

export interface SignalFrame {
  meeting_id: string;
  from: string;
  to: string;
  kind: "offer" | "answer" | "ice" | "rollback";
  payload: unknown;
  polite: boolean;
  /** Announced by the server work in progress: the sender's user id. */
  from_user_id?: string;
}
