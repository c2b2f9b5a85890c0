//! ChannelActor: one per active channel. It owns the channel's sequence, persists every
//! durable event **before** acknowledging or fanning it out, and keeps the ephemeral state:
//! live subscribers and who is typing.
//!
//! # Layout
//! - [`state`]: the channel's rules as plain data ([`ChannelRoom`]), tested without a runtime;
//! - [`actor`]: the actor shell that stores, fans out and keeps the subscribers;
//! - `writes`: pipelined message writes (a batch in flight, the next one filling);
//! - `push`: the phone notification of a mention or a direct message.

pub mod actor;
mod push;
pub mod state;
mod writes;

pub use actor::{ChannelActor, ChannelArgs, ChannelConfig, ChannelMsg, Reply};
pub use state::ChannelRoom;
