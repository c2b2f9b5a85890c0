//! The actors of the messenger and the messages they take. No I/O but through [`ports`].
//!
//! # Layout (imports only point down this list)
//! - [`model`]: the shared domain types: ids, errors, messages, presence, participants,
//!   deliveries. The leaf: it imports nothing from the crate.
//! - [`protocol`]: client and server frames (the WebSocket JSON protocol).
//! - [`ports`]: the traits through which actors reach storage and shared state;
//!   [`event_log`]: the versioned records of the channel event log and their replay.
//! - [`routing`]: requests to actors as data, and the typed routing errors.
//! - [`cluster`]: the seam to other nodes (owners, leases, links); [`SingleNode`](cluster::SingleNode).
//! - [`delivery`]: session sinks and fan-out; [`context`]: what a room actor may use of its
//!   node; [`lifecycle`]: the idle timer.
//! - [`channel`], [`user`], [`meeting`]: each room's rules as plain data (`state`) under a thin
//!   actor shell (`actor`).
//! - [`directory`]: virtual actors: get-or-spawn by key, the supervisor, following the cluster.
//! - [`session`]: `SessionActor`: one per socket; subscriptions, resume, bounded outbound queue.
//! - [`memory`]: in-memory ports for tests and the single-node default; [`testing`]: several
//!   directories wired in one process, for fast multi-node tests.
//!
//! **Architecture invariant:** this crate never imports axum, sqlx or redis.

pub mod channel;
pub mod cluster;
pub mod context;
pub mod delivery;
pub mod directory;
pub mod event_log;
pub mod lifecycle;
pub mod meeting;
pub mod memory;
pub mod model;
pub mod ports;
pub mod protocol;
pub mod routing;
pub mod session;
pub mod testing;
pub mod user;

pub use directory::{Directory, DirectoryConfig};
pub use model::Caller;
pub use ports::Ports;
