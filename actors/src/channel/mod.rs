//! ChannelActor: one per active channel. It owns the channel's sequence, persists every
//! durable event **before** acknowledging or fanning it out, and keeps the ephemeral state:
//! live subscribers and who is typing.
//!
//! # Layout
//! - [`state`]: the channel's rules as plain data ([`ChannelRoom`]), tested without a runtime;
//! - `shell`: the actor's state: stores what the room decided, performs its effects, keeps
//!   the subscribers, serves every request but sends;
//! - `writes`: pipelined message writes (a batch in flight, the next one filling);
//! - [`actor`]: the ractor shell: start, mailbox, stop.
//!
//! Imports run one way: `actor` → `writes` → `shell` → `state`.
//! - `push`: the phone notification of a mention or a direct message.

pub mod actor;
mod push;
mod shell;
pub mod state;
mod writes;

pub use actor::ChannelActor;
pub use shell::{ChannelArgs, ChannelConfig, ChannelMsg, ChannelState, Reply};
pub use state::ChannelRoom;
