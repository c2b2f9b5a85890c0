//! Read cursors and typing: durable per member, and ephemeral.

use uuid::Uuid;

use super::{ChannelRoom, Effect, Outbound, ReadPlan};
use crate::model::{Caller, ChannelSeq, DeliveryKind, ReadCursor, RequestError};
use crate::protocol::ServerFrame;

impl ChannelRoom {
    pub fn plan_read(&self, caller: &Caller, seq: ChannelSeq) -> Result<ReadPlan, RequestError> {
        self.check_member(caller)?;
        if seq < 0 || seq > self.snapshot.head_seq {
            return Err(RequestError::invalid(format!(
                "read seq must be between 0 and the channel head {}",
                self.snapshot.head_seq
            )));
        }
        let current = self.cursor(caller.user_id);
        Ok(if seq <= current { ReadPlan::AlreadyAt(current) } else { ReadPlan::Advance(seq) })
    }

    pub fn cursor_stored(&mut self, user_id: Uuid, seq: ChannelSeq) -> Vec<Effect> {
        match self.snapshot.read_cursors.iter_mut().find(|c| c.user_id == user_id) {
            Some(cursor) if cursor.seq >= seq => return Vec::new(),
            Some(cursor) => cursor.seq = seq,
            None => self.snapshot.read_cursors.push(ReadCursor { user_id, seq }),
        }
        let channel_id = self.channel_id();
        vec![Effect::Broadcast(Outbound {
            kind: DeliveryKind::Channel { channel_id },
            frame: ServerFrame::Read { channel_id, user_id, seq },
        })]
    }

    pub fn typing(&mut self, caller: &Caller, active: bool) -> Result<Vec<Effect>, RequestError> {
        self.check_member(caller)?;
        Ok(self.set_typing_effects(caller.user_id, active))
    }

    /// Ends a typing indicator nobody refreshed since `generation`.
    pub fn expire_typing(&mut self, user_id: Uuid, generation: u64) -> Vec<Effect> {
        if self.typing.get(&user_id) == Some(&generation) {
            self.set_typing_effects(user_id, false)
        } else {
            Vec::new()
        }
    }

    pub(super) fn set_typing_effects(&mut self, user_id: Uuid, active: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        let changed = if active {
            self.typing_generation += 1;
            effects.push(Effect::ExpireTypingLater { user_id, generation: self.typing_generation });
            self.typing.insert(user_id, self.typing_generation).is_none()
        } else {
            self.typing.remove(&user_id).is_some()
        };
        if changed {
            let channel_id = self.channel_id();
            effects.insert(
                0,
                Effect::Broadcast(Outbound {
                    kind: DeliveryKind::Typing { channel_id, user_id, active },
                    frame: ServerFrame::Typing { channel_id, user_id, active },
                }),
            );
        }
        effects
    }
}
