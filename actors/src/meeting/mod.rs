//! MeetingRoomActor: one per live meeting. It owns the roster (participants and their
//! audio/video/screen/hand state and role), host controls and the lobby, and relays WebRTC
//! signaling (offer/answer/ICE) between participants of this meeting only.
//!
//! # Layout
//! - [`state`]: the room's rules as plain data ([`MeetingRoom`]), tested without a runtime;
//! - [`actor`]: the actor shell that reaches sessions and the store.
//!
//! **Invariants:** the room is rebuilt only from clients that (re)join — never from a cache —
//! so a node crash leaves no ghost participants; a participant whose socket dropped is
//! `disconnected` for a grace period, then removed; signals are relayed in the order the
//! room receives them, so each sender→receiver pair stays ordered.

pub mod actor;
pub mod state;

pub use actor::{MeetingArgs, MeetingMsg, MeetingRoomActor};
pub use state::{MeetingConfig, MeetingRoom};
