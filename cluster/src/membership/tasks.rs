//! The background tasks of a [`Membership`] (see the module documentation for what each
//! does). Each ends when shutdown is requested or the `Membership` is dropped; none holds a
//! strong reference across its wait, so dropping the `Membership` is enough to end them.

use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use openraft::{BasicNode, RaftMetrics};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::{sleep, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::Membership;
use crate::{ClusterView, NodeId};

/// The longest pause between join attempts.
const MAX_JOIN_BACKOFF: Duration = Duration::from_secs(2);

pub(super) fn spawn(membership: &Arc<Membership>, join_at_start: bool) {
    let weak = Arc::downgrade(membership);
    let handles = vec![
        tokio::spawn(watch_leader(
            membership.info.id,
            membership.raft.metrics(),
            Arc::clone(&membership.view),
            membership.stop.subscribe(),
        )),
        tokio::spawn(probe_and_lead(weak.clone(), membership.stop.subscribe())),
        tokio::spawn(join(weak, membership.stop.subscribe(), join_at_start)),
    ];
    membership.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend(handles);
}

/// Resolves once shutdown is requested or the `Membership` (the sender) is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        debug!("membership dropped without a shutdown");
    }
}

/// Publishes raft's leader on the view channel whenever it changes.
async fn watch_leader(
    node_id: NodeId,
    mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    view: Arc<watch::Sender<ClusterView>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (leader, term) = {
            let metrics = metrics.borrow_and_update();
            (metrics.current_leader, metrics.current_term)
        };
        let changed = view.send_if_modified(|view| {
            let changed = view.leader != leader;
            view.leader = leader;
            changed
        });
        if changed {
            info!(node_id, ?leader, term, "leader changed");
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() {
                return; // raft stopped
            },
            () = stopped(&mut stop) => return,
        }
    }
}

/// Every heartbeat: one probe round, then, while this node leads, one round of leader duties.
async fn probe_and_lead(membership: Weak<Membership>, mut stop: watch::Receiver<bool>) {
    let Some(period) = membership.upgrade().map(|membership| membership.config.heartbeat) else {
        return;
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut warned = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let Some(membership) = membership.upgrade() else {
            return;
        };
        tokio::select! {
            () = membership.probe_round() => {}
            () = stopped(&mut stop) => return,
        }
        if !membership.is_leader() || membership.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        tokio::select! {
            () = membership.lead_round(&mut warned) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Joins through the seeds at start (when asked to), then rejoins whenever
/// [`Membership::needs_join`] says so; retries with a jittered exponential backoff.
async fn join(membership: Weak<Membership>, mut stop: watch::Receiver<bool>, join_at_start: bool) {
    let Some((node_id, check_every, first_backoff)) = membership
        .upgrade()
        .map(|membership| (membership.info.id, membership.config.dead_after, membership.config.heartbeat * 2))
    else {
        return;
    };
    let mut pending = join_at_start;
    let mut wait = if pending { Duration::ZERO } else { check_every };
    let mut backoff = first_backoff;
    loop {
        tokio::select! {
            () = sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
        let Some(membership) = membership.upgrade() else {
            return;
        };
        let needed = membership.needs_join(Instant::now());
        if membership.leaving.load(std::sync::atomic::Ordering::SeqCst) || !(pending || needed) {
            pending = false;
            wait = check_every;
            backoff = first_backoff;
            continue;
        }
        let attempt = tokio::select! {
            attempt = membership.join_once() => attempt,
            () = stopped(&mut stop) => return,
        };
        match attempt {
            Ok((leader, epoch)) => {
                info!(node_id, leader, epoch, "joined the cluster");
                pending = false;
                wait = check_every;
                backoff = first_backoff;
                // A fresh grace period for the new leader's pings to arrive.
                membership.pinged();
            }
            Err(error) => {
                wait = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
                backoff = (backoff * 2).min(MAX_JOIN_BACKOFF);
                if error.is_fatal() {
                    warn!(node_id, %error, "cannot join, raft stopped");
                    return;
                }
                info!(node_id, %error, retry_in = ?wait, "join attempt failed");
            }
        }
    }
}
