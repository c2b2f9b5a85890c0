//! Joining, inviting and leaving.

use uuid::Uuid;

use super::{AdmitPlan, ChangePlan, ChannelRoom, Effect};
use crate::model::{Caller, ChannelEvent, RequestError};
use crate::ports::{ChannelKind, Member, Mutation};

impl ChannelRoom {
    pub fn plan_join(&self, caller: &Caller) -> Result<AdmitPlan, RequestError> {
        self.check_tenant(caller)?;
        if self.member(caller.user_id).is_some() {
            return Ok(AdmitPlan::AlreadyMember);
        }
        if self.snapshot.kind != ChannelKind::Public {
            // Private channels and DMs do not exist for outsiders: joining them is by invitation.
            return Err(RequestError::not_found("channel"));
        }
        Ok(AdmitPlan::Admit(caller.user_id))
    }

    pub fn plan_add_member(&self, caller: &Caller, user_id: Uuid) -> Result<AdmitPlan, RequestError> {
        self.check_member(caller)?;
        if self.snapshot.kind == ChannelKind::Direct {
            return Err(RequestError::forbidden("direct messages have fixed members"));
        }
        if self.member(user_id).is_some() {
            return Ok(AdmitPlan::AlreadyMember);
        }
        Ok(AdmitPlan::Admit(user_id))
    }

    /// The user exists in the company (`candidate`): store the membership.
    pub fn plan_admit(&self, caller: &Caller, candidate: Option<&Member>) -> Result<ChangePlan, RequestError> {
        let user_id = candidate.ok_or_else(|| RequestError::not_found("user"))?.user_id;
        Ok(self.change(caller, Mutation::AddMember { user_id }, ChannelEvent::MemberJoined { user_id }))
    }

    /// The membership is stored (`seq: None` when it was there already).
    pub fn member_admitted(&mut self, candidate: Member) {
        if self.member(candidate.user_id).is_none() {
            self.snapshot.members.push(candidate);
        }
    }

    pub fn plan_leave(&self, caller: &Caller) -> Result<ChangePlan, RequestError> {
        self.check_member(caller)?;
        if self.snapshot.kind == ChannelKind::Direct {
            return Err(RequestError::forbidden("direct messages have fixed members"));
        }
        let user_id = caller.user_id;
        Ok(self.change(caller, Mutation::RemoveMember { user_id }, ChannelEvent::MemberLeft { user_id }))
    }

    /// A leave that changed nothing in the store (the member was gone already).
    pub fn member_gone(&mut self, user_id: Uuid) -> Vec<Effect> {
        self.snapshot.members.retain(|member| member.user_id != user_id);
        let mut effects = vec![Effect::DropSubscriber { user_id }];
        effects.extend(self.set_typing_effects(user_id, false));
        effects
    }
}
