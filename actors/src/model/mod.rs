//! The domain types every layer shares: ids, errors, messages, presence, participants and
//! deliveries. This is the leaf of the crate: it imports nothing from it.

mod channel;
mod delivery;
mod error;
mod ids;
mod meeting;
mod presence;

pub use channel::{
    parse_mentions, ChannelEvent, MessageDraft, MessageView, NotificationReason, ReactionView, ReadCursor,
    SubscribeAnswer, MAX_ATTACHMENTS, MAX_BODY_BYTES, MAX_EMOJI_BYTES,
};
pub use delivery::{Delivery, DeliveryKind, FrameText};
pub use error::{ErrorCode, RequestError};
pub use ids::{now_millis, ActorKey, Caller, ChannelSeq, Incarnation, NodeId, SessionAddr, UnixMillis};
pub use meeting::{MediaState, ParticipantStatus, ParticipantView, Role, SignalKind, StateChange, MAX_SIGNAL_BYTES};
pub use presence::{PresenceStatus, PresenceView};
