//! The actors of the messenger and the messages they take. No I/O but through [`ports`].
//!
//! # Layout
//! - [`protocol`]: client frames and server frames (the WebSocket JSON protocol).
//! - [`ports`]: the traits through which actors reach storage and shared state.
//! - [`directory`]: virtual actors: get-or-spawn by key, the supervisor, idle stop.
//! - [`channel`]: `ChannelActor`: sequencing, persistence before ack, typing, receipts, fan-out.
//! - [`user`]: `UserActor`: presence across a user's sessions, notifications to all devices.
//! - [`meeting`]: `MeetingRoomActor`: roster, media state, host controls, lobby, signaling relay.
//! - [`session`]: `SessionActor`: one per socket; subscriptions, resume, bounded outbound queue.
//! - [`routing`]: requests as data, actor keys, the `Cluster` seam to other nodes.
//! - [`memory`]: in-memory ports for tests and the single-node default.
//!
//! **Architecture invariant:** this crate never imports axum, sqlx or redis.

pub mod channel;
pub mod directory;
pub mod meeting;
pub mod memory;
pub mod ports;
pub mod protocol;
pub mod routing;
pub mod session;
pub mod user;

pub use directory::{Directory, DirectoryConfig};
pub use ports::{Caller, Ports};
