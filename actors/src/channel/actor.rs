//! The ChannelActor: the ractor shell around [`ChannelState`]: it starts from a snapshot,
//! dispatches its mailbox and, when it stops, tells the live subscribers to subscribe again.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::debug;

use super::shell::{ChannelArgs, ChannelMsg, ChannelState, Writes};
use super::state::ChannelRoom;
use crate::delivery::{fan_out, Gone};
use crate::lifecycle::IdleTimer;
use crate::model::Delivery;

pub struct ChannelActor;

impl Actor for ChannelActor {
    type Msg = ChannelMsg;
    type State = ChannelState;
    type Arguments = ChannelArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ChannelMsg>,
        args: ChannelArgs,
    ) -> Result<ChannelState, ActorProcessingErr> {
        debug!(channel_id = %args.snapshot.channel_id, head_seq = args.snapshot.head_seq, fence = args.fence, "channel actor started");
        Ok(ChannelState {
            room: ChannelRoom::new(args.snapshot),
            fence: args.fence,
            subscribers: HashMap::new(),
            idle: IdleTimer::start(&myself, args.config.idle_timeout, || ChannelMsg::IdleCheck),
            context: args.context,
            config: args.config,
            writes: Writes::default(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ChannelMsg>,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        state.idle.cancel();
        // Whoever still listens must subscribe again (to this channel's next actor, here or
        // on its new owner), or it would silently stop receiving.
        let resubscribe = Delivery::resubscribe(state.channel_id(), state.context.node);
        fan_out(&mut state.subscribers, &resubscribe);
        debug!(channel_id = %state.channel_id(), "channel actor stopped");
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ChannelMsg>,
        msg: ChannelMsg,
        state: &mut ChannelState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChannelMsg::Request { request, reply } => {
                state.idle.touch();
                state.receive(&myself, request, reply).await;
            }
            ChannelMsg::Appended { result } => state.appended(&myself, result).await,
            ChannelMsg::Forget(gone) => state.subscribers.retain(|_, sink| !Gone::any_covers(&gone, &sink.addr)),
            ChannelMsg::ExpireTyping { user_id, generation } => {
                let effects = state.room.expire_typing(user_id, generation);
                state.perform(&myself, effects);
            }
            ChannelMsg::IdleCheck => {
                if state.is_idle() {
                    debug!(channel_id = %state.channel_id(), "channel idle, stopping");
                    myself.stop(Some("idle".to_owned()));
                }
            }
        }
        Ok(())
    }
}
