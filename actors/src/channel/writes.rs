//! Pipelined message writes: sends that arrive while a batch is being stored wait in the next
//! batch, which is stored in one transaction as soon as the current one is done (group
//! commit). Requests that take a seq of their own (edits, deletes, reactions, members) wait
//! until no batch is in flight, and everything after them waits behind them, so the channel
//! still handles requests in arrival order.
//!
//! **Invariant:** a message is acknowledged and fanned out only after the batch holding it
//! is stored; at most one batch is in flight per channel.

use std::sync::Arc;

use ractor::ActorRef;
use tracing::debug;

use super::shell::{
    reply_to, route_error, store_failure, takes_a_seq, ChannelMsg, ChannelState, Failure, PendingSend, Reply,
};
use super::state::ChannelRoom;
use crate::model::{Caller, MessageDraft, MessageView, RequestError};
use crate::ports::{AppendOutcome, NewMessage, StoreError};
use crate::routing::{ChannelAnswer, ChannelRequest, RouteError};

impl ChannelState {
    /// Takes a request in arrival order.
    pub(super) async fn receive(
        &mut self,
        myself: &ActorRef<ChannelMsg>,
        request: ChannelRequest,
        reply: Reply<ChannelAnswer>,
    ) {
        if self.writes.deferred.is_empty() {
            self.accept(myself, request, reply).await;
        } else {
            self.writes.deferred.push_back((request, reply));
        }
    }

    async fn accept(&mut self, myself: &ActorRef<ChannelMsg>, request: ChannelRequest, reply: Reply<ChannelAnswer>) {
        match request {
            ChannelRequest::Send { caller, draft } => match self.prepare_send(&caller, draft).await {
                Ok(message) => {
                    self.writes.next.push(PendingSend { caller, message, reply });
                    self.start_batch(myself);
                }
                Err(failure) => self.answer(myself, reply, Err(failure)),
            },
            request if takes_a_seq(&request) && self.writes.busy() => self.writes.deferred.push_back((request, reply)),
            request => {
                let result = self.serve(myself, request).await;
                self.answer(myself, reply, result);
            }
        }
    }

    /// Replies, and stops the actor when the failure says so.
    pub(super) fn answer(
        &mut self,
        myself: &ActorRef<ChannelMsg>,
        reply: Reply<ChannelAnswer>,
        result: Result<ChannelAnswer, Failure>,
    ) {
        let stop = match &result {
            Err(Failure::Reload(_)) => Some("reload after uncertain write"),
            Err(Failure::Fenced) => Some("fenced by a newer owner"),
            _ => None,
        };
        reply_to(reply, result.map_err(|failure| route_error(&failure)));
        if let Some(reason) = stop {
            myself.stop(Some(reason.to_owned()));
        }
    }

    /// Checks a new message against the rules and what it refers to.
    async fn prepare_send(&self, caller: &Caller, draft: MessageDraft) -> Result<MessageView, Failure> {
        let plan = self.room.plan_message(caller, draft)?;
        let channel_id = self.channel_id();
        if let Some(parent_id) = plan.message.parent_id {
            let parent = self.message(parent_id).await?;
            ChannelRoom::check_parent(parent.as_ref())?;
        }
        if !plan.message.attachment_ids.is_empty() {
            let store = self.context.ports.channels.clone();
            match store.attachments_belong(channel_id, &plan.message.attachment_ids).await {
                Ok(true) => {}
                Ok(false) => return Err(RequestError::not_found("attachment").into()),
                Err(err) => return Err(store_failure(channel_id, err)),
            }
        }
        Ok(plan.message)
    }

    /// Stores the next batch, unless one is in flight.
    fn start_batch(&mut self, myself: &ActorRef<ChannelMsg>) {
        if self.writes.writing.is_some() || self.writes.next.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.writes.next);
        let company_id = self.room.company_id();
        let news: Vec<NewMessage> =
            batch.iter().map(|pending| NewMessage { message: pending.message.clone(), company_id }).collect();
        self.writes.writing = Some(batch);
        let (store, fence, channel_id, head) =
            (Arc::clone(&self.context.ports.channels), self.fence, self.channel_id(), self.room.head_seq());
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = store.append_messages(fence, channel_id, head, &news).await;
            if myself.cast(ChannelMsg::Appended { result }).is_err() {
                debug!(%channel_id, "channel stopped before its batch was stored");
            }
        });
    }

    /// The batch in flight was stored (or not): acknowledge and fan out in seq order, then
    /// go on with what waited.
    pub(super) async fn appended(
        &mut self,
        myself: &ActorRef<ChannelMsg>,
        result: Result<Vec<AppendOutcome>, StoreError>,
    ) {
        let batch = self.writes.writing.take().unwrap_or_default();
        match result {
            Ok(outcomes) => {
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    let PendingSend { caller, mut message, reply } = pending;
                    let answer = match outcome {
                        AppendOutcome::Stored { seq } => {
                            message.seq = seq;
                            let effects = self.room.message_stored(&message);
                            self.perform(myself, effects);
                            Ok(ChannelAnswer::Message(Box::new(message)))
                        }
                        AppendOutcome::Duplicate(earlier) => ChannelRoom::duplicate(&caller, *earlier)
                            .map(|earlier| ChannelAnswer::Message(Box::new(earlier)))
                            .map_err(RouteError::Request),
                    };
                    reply_to(reply, answer);
                }
            }
            Err(err) => {
                let failure = store_failure(self.channel_id(), err);
                for pending in batch {
                    reply_to(pending.reply, Err(route_error(&failure)));
                }
                if !matches!(failure, Failure::Refused(_)) {
                    // What waits is answered by the next actor: requesters retry.
                    self.answer_stop(myself, failure);
                    return;
                }
            }
        }
        self.start_batch(myself);
        self.drain(myself).await;
    }

    fn answer_stop(&mut self, myself: &ActorRef<ChannelMsg>, failure: Failure) {
        let reason = match failure {
            Failure::Fenced => "fenced by a newer owner",
            _ => "reload after uncertain write",
        };
        myself.stop(Some(reason.to_owned()));
    }

    /// Handles the requests that waited, in order, until one must wait again.
    async fn drain(&mut self, myself: &ActorRef<ChannelMsg>) {
        while let Some((request, _)) = self.writes.deferred.front() {
            if takes_a_seq(request) && self.writes.busy() {
                return;
            }
            let Some((request, reply)) = self.writes.deferred.pop_front() else { return };
            self.accept(myself, request, reply).await;
        }
    }
}
