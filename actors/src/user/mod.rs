//! UserActor: one per user who is online or watched. It knows the user's live sessions,
//! derives presence from them (online if any session is active, away if all are away,
//! offline when none is left), tells watchers when it changes, and delivers notifications
//! to every device of the user.
//!
//! # Layout
//! - [`presence`]: presence derived from sessions, plain data;
//! - [`actor`]: the actor shell with the session and watcher sinks.

pub mod actor;
pub mod presence;

pub use actor::{UserActor, UserArgs, UserConfig, UserMsg};
pub use presence::Presence;
