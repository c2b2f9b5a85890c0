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
  uploader_id?: string;
  filename: string;
  content_type: string;
  size: number;
  created_at?: number;
}

/** An entry of `GET /v1/channels` (and the answer of `GET /v1/channels/{id}`). */
export interface ChannelListing {
  channel: Channel;
  is_member: boolean;
  /** Messages by others after our read cursor, not deleted (0 where we are not a member),
   *  counted as of `head_seq`. */
  unread: number;
  /** The channel's head when `unread` was counted (absent from older servers). */
  head_seq?: number;
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

export type ParticipantStatus = "lobby" | "joined" | "disconnected" | "reconnecting";

export interface Participant {
  participant_id: string;
  user_id: string;
  role: "host" | "participant";
  status: ParticipantStatus;
  state: MediaState;
  joined_at: number;
  /** Order of arrival (1, 2, …), kept across room rebuilds: the higher of a pair is polite. */
  order: number;
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

/** The `ok` of `meeting_join` and the body of `meeting_rejoined`. */
export interface MeetingSnapshot {
  meeting_id: string;
  participant_id: string;
  me: Participant;
  /** The room's run (new each time it is rebuilt on another node); with `version`, where the snapshot stands. */
  incarnation: number;
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
  /** `by`: the user id of whoever ended it. */
  | { kind: "ended"; by: string };

export interface MeetingEventFrame {
  meeting_id: string;
  incarnation: number;
  version: number;
  event: MeetingEventBody;
}

export interface SignalFrame {
  meeting_id: string;
  /** The room run that relayed it. */
  incarnation: number;
  from: string;
  /** The sender's user id. */
  from_user: string;
  to: string;
  kind: "offer" | "answer" | "ice" | "rollback";
  payload: unknown;
  /** Whether we (the receiver) are the polite peer of the pair. */
  polite: boolean;
}

export interface MeetingRejoinFailedFrame {
  meeting_id: string;
  code: string;
  message: string;
}
