//! The rules of a channel as plain data: who may do what, which seq comes next, who is
//! typing, where read cursors stand. Every decision is a pure function of the state and the
//! command; what must happen afterwards is returned as [`Effect`]s, which the actor performs.
//! Storage happens between a `plan_*` and the matching `*_stored` call, in the actor.
//!
//! **Invariant:** `head_seq` only moves by one, and only in a `*_stored` call, i.e. after the
//! store confirmed the event: refusals, duplicates and failed writes consume no seq.

use std::collections::HashMap;

use uuid::Uuid;

use crate::model::{
    now_millis, parse_mentions, Caller, ChannelEvent, ChannelSeq, DeliveryKind, ErrorCode, MessageDraft, MessageView,
    NotificationReason, RequestError, SessionAddr, SubscribeAnswer, MAX_ATTACHMENTS, MAX_BODY_BYTES, MAX_EMOJI_BYTES,
};
use crate::ports::{ChannelKind, ChannelSnapshot, Member, Mutation, PushNotice};
use crate::protocol::ServerFrame;

use super::push::message_push;

mod activity;
mod members;

/// A frame for every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub kind: DeliveryKind,
    pub frame: ServerFrame,
}

/// What the actor does after a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Broadcast(Outbound),
    /// Tell a user on every device, or on their phone when no session is live.
    Notify {
        user_id: Uuid,
        frame: ServerFrame,
        push: Option<PushNotice>,
    },
    /// End the typing indicator after the TTL unless `generation` was refreshed.
    ExpireTypingLater {
        user_id: Uuid,
        generation: u64,
    },
    /// The user left: their sessions stop listening.
    DropSubscriber {
        user_id: Uuid,
    },
}

/// A message that passed the rules, to be stored at `message.seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagePlan {
    pub message: MessageView,
}

/// A change of durable state, to be stored with its event at the next seq.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePlan {
    pub seq: ChannelSeq,
    pub mutation: Mutation,
    pub event: ChannelEvent,
    /// Who asked for it.
    pub by: Uuid,
}

/// What a `read` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPlan {
    /// The cursor is already there or further: nothing to store.
    AlreadyAt(ChannelSeq),
    Advance(ChannelSeq),
}

/// What a join or an invitation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitPlan {
    AlreadyMember,
    /// Look the user up in the company, then store the membership.
    Admit(Uuid),
}

pub struct ChannelRoom {
    snapshot: ChannelSnapshot,
    /// Who is typing, with the generation of their last refresh.
    typing: HashMap<Uuid, u64>,
    typing_generation: u64,
}

impl ChannelRoom {
    pub fn new(snapshot: ChannelSnapshot) -> Self {
        Self { snapshot, typing: HashMap::new(), typing_generation: 0 }
    }

    pub fn channel_id(&self) -> Uuid {
        self.snapshot.channel_id
    }

    pub fn head_seq(&self) -> ChannelSeq {
        self.snapshot.head_seq
    }

    pub fn company_id(&self) -> Uuid {
        self.snapshot.company_id
    }

    pub fn kind(&self) -> ChannelKind {
        self.snapshot.kind
    }

    pub fn members(&self) -> &[Member] {
        &self.snapshot.members
    }

    pub fn is_typing_idle(&self) -> bool {
        self.typing.is_empty()
    }

    /// Refuses callers of another company as if the channel did not exist.
    pub fn check_tenant(&self, caller: &Caller) -> Result<(), RequestError> {
        if caller.company_id == self.snapshot.company_id {
            Ok(())
        } else {
            Err(RequestError::not_found("channel"))
        }
    }

    pub(super) fn member(&self, user_id: Uuid) -> Option<&Member> {
        self.snapshot.members.iter().find(|member| member.user_id == user_id)
    }

    pub fn check_member(&self, caller: &Caller) -> Result<(), RequestError> {
        self.check_tenant(caller)?;
        match self.member(caller.user_id) {
            Some(_) => Ok(()),
            // A private channel or DM does not exist for outsiders.
            None if self.snapshot.kind != ChannelKind::Public => Err(RequestError::not_found("channel")),
            None => Err(RequestError::new(ErrorCode::NotMember, "not a member of this channel")),
        }
    }

    fn mentioned_members(&self, body: &str) -> Vec<Uuid> {
        parse_mentions(body)
            .into_iter()
            .filter_map(|name| self.snapshot.members.iter().find(|m| m.username == name))
            .map(|member| member.user_id)
            .collect()
    }

    pub(super) fn cursor(&self, user_id: Uuid) -> ChannelSeq {
        self.snapshot.read_cursors.iter().find(|c| c.user_id == user_id).map(|c| c.seq).unwrap_or(0)
    }

    // --- subscriptions -------------------------------------------------------------------

    /// Whether `session` may listen to this channel for `caller`.
    pub fn authorize_subscribe(&self, caller: &Caller, session: &SessionAddr) -> Result<(), RequestError> {
        self.check_member(caller)?;
        if session.user_id != caller.user_id {
            return Err(RequestError::forbidden("a session subscribes for its own user"));
        }
        Ok(())
    }

    pub fn subscribe_answer(&self) -> SubscribeAnswer {
        let mut typing: Vec<Uuid> = self.typing.keys().copied().collect();
        typing.sort();
        SubscribeAnswer {
            channel_id: self.channel_id(),
            head_seq: self.snapshot.head_seq,
            read_cursors: self.snapshot.read_cursors.clone(),
            typing,
        }
    }

    // --- messages ------------------------------------------------------------------------

    /// Checks a new message and gives it the next seq.
    pub fn plan_message(&self, caller: &Caller, draft: MessageDraft) -> Result<MessagePlan, RequestError> {
        self.check_member(caller)?;
        validate_draft(&draft)?;
        let message = MessageView {
            id: Uuid::now_v7(),
            channel_id: self.channel_id(),
            seq: self.snapshot.head_seq + 1,
            sender_id: caller.user_id,
            mentions: self.mentioned_members(&draft.body),
            client_msg_id: draft.client_msg_id,
            parent_id: draft.parent_id,
            body: draft.body,
            attachment_ids: draft.attachment_ids,
            created_at: now_millis(),
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
        };
        Ok(MessagePlan { message })
    }

    /// Replies nest one level: the parent must exist here and be a thread's root.
    pub fn check_parent(parent: Option<&MessageView>) -> Result<(), RequestError> {
        match parent {
            Some(parent) if parent.parent_id.is_none() => Ok(()),
            Some(_) => Err(RequestError::invalid("replies nest one level: reply to the thread's root")),
            None => Err(RequestError::not_found("parent message")),
        }
    }

    /// An earlier message with the same `client_msg_id`: the sender's resend gets it back.
    pub fn duplicate(caller: &Caller, earlier: MessageView) -> Result<MessageView, RequestError> {
        if earlier.sender_id == caller.user_id {
            Ok(earlier)
        } else {
            Err(RequestError::new(ErrorCode::Conflict, "client_msg_id already used by another sender"))
        }
    }

    /// The message is stored: it becomes the head, ends its sender's typing, is broadcast,
    /// and mentioned members (and the other side of a DM) are notified.
    pub fn message_stored(&mut self, message: &MessageView) -> Vec<Effect> {
        debug_assert_eq!(message.seq, self.snapshot.head_seq + 1);
        self.snapshot.head_seq = message.seq;
        let mut effects = self.set_typing_effects(message.sender_id, false);
        effects.push(self.event_effect(message.seq, ChannelEvent::MessageNew { message: message.clone() }));
        effects.extend(self.notifications(message));
        effects
    }

    fn notifications(&self, message: &MessageView) -> Vec<Effect> {
        let mut targets: Vec<(Uuid, NotificationReason)> =
            message.mentions.iter().map(|user| (*user, NotificationReason::Mention)).collect();
        if self.snapshot.kind == ChannelKind::Direct {
            for member in &self.snapshot.members {
                if member.user_id != message.sender_id && !message.mentions.contains(&member.user_id) {
                    targets.push((member.user_id, NotificationReason::DirectMessage));
                }
            }
        }
        targets.retain(|(user, _)| *user != message.sender_id);
        let sender = self.member(message.sender_id).map_or("someone", |member| member.username.as_str());
        targets
            .into_iter()
            .map(|(user_id, reason)| Effect::Notify {
                user_id,
                frame: ServerFrame::Notification {
                    reason,
                    channel_id: message.channel_id,
                    seq: message.seq,
                    message: message.clone(),
                },
                push: Some(message_push(user_id, reason, sender, message)),
            })
            .collect()
    }

    pub(super) fn change(&self, by: &Caller, mutation: Mutation, event: ChannelEvent) -> ChangePlan {
        ChangePlan { seq: self.snapshot.head_seq + 1, mutation, event, by: by.user_id }
    }

    /// `current` is the message as stored (`None` if it is not in this channel).
    pub fn plan_edit(
        &self,
        caller: &Caller,
        current: Option<&MessageView>,
        body: String,
    ) -> Result<ChangePlan, RequestError> {
        self.check_member(caller)?;
        validate_body(&body)?;
        let message = live(current)?;
        if message.sender_id != caller.user_id {
            return Err(RequestError::forbidden("only the author can edit a message"));
        }
        let (message_id, at) = (message.id, now_millis());
        let mentions = self.mentioned_members(&body);
        let mutation = Mutation::EditMessage { message_id, body: body.clone(), mentions: mentions.clone(), at };
        Ok(self.change(caller, mutation, ChannelEvent::MessageEdited { message_id, body, mentions, edited_at: at }))
    }

    pub fn plan_delete(&self, caller: &Caller, current: Option<&MessageView>) -> Result<ChangePlan, RequestError> {
        self.check_member(caller)?;
        let message = live(current)?;
        if message.sender_id != caller.user_id {
            return Err(RequestError::forbidden("only the author can delete a message"));
        }
        let (message_id, at) = (message.id, now_millis());
        Ok(self.change(
            caller,
            Mutation::DeleteMessage { message_id, at },
            ChannelEvent::MessageDeleted { message_id, deleted_at: at },
        ))
    }

    pub fn plan_reaction(
        &self,
        caller: &Caller,
        current: Option<&MessageView>,
        emoji: String,
        add: bool,
    ) -> Result<ChangePlan, RequestError> {
        self.check_member(caller)?;
        validate_emoji(&emoji)?;
        let message_id = live(current)?.id;
        let user_id = caller.user_id;
        Ok(if add {
            self.change(
                caller,
                Mutation::AddReaction { message_id, user_id, emoji: emoji.clone() },
                ChannelEvent::ReactionAdded { message_id, user_id, emoji },
            )
        } else {
            self.change(
                caller,
                Mutation::RemoveReaction { message_id, user_id, emoji: emoji.clone() },
                ChannelEvent::ReactionRemoved { message_id, user_id, emoji },
            )
        })
    }

    /// A planned change is stored: it becomes the head and is broadcast.
    pub fn change_stored(&mut self, plan: &ChangePlan) -> Vec<Effect> {
        debug_assert_eq!(plan.seq, self.snapshot.head_seq + 1);
        self.snapshot.head_seq = plan.seq;
        let mut effects = vec![self.event_effect(plan.seq, plan.event.clone())];
        match &plan.mutation {
            Mutation::RemoveMember { user_id } => {
                self.snapshot.members.retain(|member| member.user_id != *user_id);
                effects.push(Effect::DropSubscriber { user_id: *user_id });
                effects.extend(self.set_typing_effects(*user_id, false));
            }
            Mutation::AddMember { user_id } => {
                // The member itself learns it on every device (the roster grows in
                // `member_admitted`).
                let frame = ServerFrame::ChannelAdded { channel_id: self.channel_id(), by: plan.by };
                effects.push(Effect::Notify { user_id: *user_id, frame, push: None });
            }
            _ => {}
        }
        effects
    }

    fn event_effect(&self, seq: ChannelSeq, event: ChannelEvent) -> Effect {
        let channel_id = self.channel_id();
        Effect::Broadcast(Outbound {
            kind: DeliveryKind::Event { channel_id, seq },
            frame: ServerFrame::Event { channel_id, seq, event },
        })
    }
}

fn live(current: Option<&MessageView>) -> Result<&MessageView, RequestError> {
    current.filter(|message| !message.deleted).ok_or_else(|| RequestError::not_found("message"))
}

fn validate_draft(draft: &MessageDraft) -> Result<(), RequestError> {
    if draft.client_msg_id.is_empty() || draft.client_msg_id.len() > 128 {
        return Err(RequestError::invalid("client_msg_id must be 1 to 128 bytes"));
    }
    if draft.body.trim().is_empty() && draft.attachment_ids.is_empty() {
        return Err(RequestError::invalid("a message needs a body or an attachment"));
    }
    if draft.body.len() > MAX_BODY_BYTES {
        return Err(RequestError::new(ErrorCode::PayloadTooLarge, format!("body exceeds {MAX_BODY_BYTES} bytes")));
    }
    if draft.attachment_ids.len() > MAX_ATTACHMENTS {
        return Err(RequestError::invalid(format!("at most {MAX_ATTACHMENTS} attachments")));
    }
    Ok(())
}

fn validate_body(body: &str) -> Result<(), RequestError> {
    if body.trim().is_empty() {
        return Err(RequestError::invalid("body must not be empty"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::new(ErrorCode::PayloadTooLarge, format!("body exceeds {MAX_BODY_BYTES} bytes")));
    }
    Ok(())
}

fn validate_emoji(emoji: &str) -> Result<(), RequestError> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES || emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RequestError::invalid("emoji must be 1 to 64 bytes without spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
