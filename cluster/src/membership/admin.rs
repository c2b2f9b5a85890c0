//! Membership changes. The leader admits joining nodes, removes members that left or went
//! silent, finishes interrupted removals and promotes learners; any node bootstraps, joins and
//! leaves through these.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::raft::ClientWriteResponse;
use openraft::{BasicNode, ChangeMembers};
use tokio::sync::MutexGuard;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::liveness::{plan_promotion, plan_removal, RemovalPlan};
use super::protocol::{PeerRequest, PeerResponse};
use super::state::{Command, CommandOutcome, TypeConfig};
use super::{Membership, MembershipError};
use crate::{codec, MemberInfo, NodeId, TransportError};

type ChangeResult = Result<ClientWriteResponse<TypeConfig>, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

impl Membership {
    /// Initialises a cluster whose only voter is this node, and adds it to the member set.
    pub(super) async fn bootstrap(&self) -> Result<(), MembershipError> {
        let node_id = self.info.id;
        let nodes = BTreeMap::from([(node_id, BasicNode::new(&self.info.cluster_addr))]);
        match self.raft.initialize(nodes).await {
            Ok(()) => {}
            // Already initialised by an earlier run that stopped before adding itself.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(RaftError::APIError(error)) => return Err(MembershipError::Rejected(error.to_string())),
            Err(RaftError::Fatal(fatal)) => return Err(MembershipError::Stopped(fatal.to_string())),
        }
        let limit = self.config.request_timeout();
        match self.raft.wait(Some(limit)).current_leader(node_id, "bootstrap").await {
            Ok(_) => {}
            Err(WaitError::Timeout(..)) => return Err(MembershipError::Timeout(limit)),
            Err(error) => return Err(MembershipError::Stopped(error.to_string())),
        }
        let epoch = self.admit(self.info.clone()).await?;
        info!(node_id, epoch, "bootstrapped a new cluster");
        Ok(())
    }

    pub(super) async fn on_join(&self, member: MemberInfo, forwarded: bool) -> PeerResponse {
        if !self.is_leader() {
            return self.forward_to_leader(PeerRequest::Join { member, forwarded: true }, forwarded).await;
        }
        let member_id = member.id;
        match self.admit(member).await {
            Ok(epoch) => PeerResponse::Joined { leader: self.info.id, epoch },
            Err(MembershipError::NotLeader { leader }) => PeerResponse::NotLeader { leader },
            Err(error) => {
                warn!(node_id = self.info.id, member_id, %error, "cannot admit member");
                PeerResponse::Failed(error.to_string())
            }
        }
    }

    pub(super) async fn on_leave(&self, id: NodeId, forwarded: bool) -> PeerResponse {
        if !self.is_leader() {
            return self.forward_to_leader(PeerRequest::Leave { id, forwarded: true }, forwarded).await;
        }
        let change = self.admin_lock.lock().await;
        match self.remove_members_locked(&change, &BTreeSet::from([id]), "left").await {
            Ok(epoch) => PeerResponse::Left { epoch },
            Err(MembershipError::NotLeader { leader }) => PeerResponse::NotLeader { leader },
            Err(error) => {
                warn!(node_id = self.info.id, member_id = id, %error, "cannot remove leaving member");
                PeerResponse::Failed(error.to_string())
            }
        }
    }

    /// Forwards a request once; a forwarded request that reaches a non-leader is answered
    /// `NotLeader`, so that the sender retries instead of nodes bouncing it around.
    async fn forward_to_leader(&self, request: PeerRequest, already_forwarded: bool) -> PeerResponse {
        let leader = self.current_leader();
        let target = self.leader_addr().filter(|(id, _)| !already_forwarded && *id != self.info.id);
        let Some((_, addr)) = target else {
            return PeerResponse::NotLeader { leader };
        };
        match self.call(&addr, &request).await {
            Ok(response) => response,
            Err(error) => PeerResponse::Failed(format!("cannot reach the leader: {error}")),
        }
    }

    /// Adds `member` to raft as learner, then to the member set, then promotes it while there
    /// is room for voters. Every step is skipped when already done: joining again is harmless.
    async fn admit(&self, member: MemberInfo) -> Result<u64, MembershipError> {
        let _change = self.admin_lock.lock().await;
        let node_id = self.info.id;
        let node = BasicNode::new(&member.cluster_addr);
        match self.raft_members().addrs.get(&member.id) {
            None => {
                self.bounded(self.raft.add_learner(member.id, node, true)).await?;
                info!(node_id, member_id = member.id, cluster_addr = %member.cluster_addr, "learner added");
            }
            Some(addr) if *addr != member.cluster_addr => {
                let change = ChangeMembers::SetNodes(BTreeMap::from([(member.id, node)]));
                self.bounded(self.raft.change_membership(change, true)).await?;
                info!(node_id, member_id = member.id, cluster_addr = %member.cluster_addr, "member address changed");
            }
            Some(_) => {}
        }
        let (mut epoch, known) = {
            let view = self.view.borrow();
            (view.epoch, view.members.get(&member.id) == Some(&member))
        };
        if !known {
            epoch = self.write(Command::AddMember(member.clone())).await?.epoch;
        }
        let voters = self.raft_members().voters;
        if !voters.contains(&member.id) && voters.len() < self.config.max_voters {
            let change = ChangeMembers::AddVoterIds(BTreeSet::from([member.id]));
            self.bounded(self.raft.change_membership(change, true)).await?;
            info!(node_id, member_id = member.id, voters = voters.len() + 1, "member promoted to voter");
        }
        Ok(epoch)
    }

    /// Removes `ids` from raft, then from the member set. A leader removing itself updates the
    /// member set first, since it stops leading once raft no longer counts it.
    async fn remove_members_locked(
        &self,
        _change: &MutexGuard<'_, ()>,
        ids: &BTreeSet<NodeId>,
        reason: &'static str,
    ) -> Result<u64, MembershipError> {
        let node_id = self.info.id;
        let raft = self.raft_members();
        let removes_self = ids.contains(&node_id);
        if raft.voters.iter().all(|voter| ids.contains(voter)) {
            return Err(MembershipError::Rejected("cannot remove every voter".to_owned()));
        }
        if removes_self {
            self.remove_from_set(ids, reason).await?;
        }
        let voters: BTreeSet<NodeId> = raft.voters.intersection(ids).copied().collect();
        let learners: BTreeSet<NodeId> = raft.learners.intersection(ids).copied().collect();
        if !voters.is_empty() {
            self.bounded(self.raft.change_membership(ChangeMembers::RemoveVoters(voters.clone()), false)).await?;
        }
        if !learners.is_empty() {
            self.bounded(self.raft.change_membership(ChangeMembers::RemoveNodes(learners.clone()), false)).await?;
        }
        if !voters.is_empty() || !learners.is_empty() {
            info!(node_id, ?voters, ?learners, reason, "removed from raft");
        }
        if removes_self {
            Ok(self.view.borrow().epoch)
        } else {
            self.remove_from_set(ids, reason).await
        }
    }

    async fn remove_from_set(&self, ids: &BTreeSet<NodeId>, reason: &'static str) -> Result<u64, MembershipError> {
        let mut epoch = self.view.borrow().epoch;
        for id in ids {
            if self.view.borrow().members.contains_key(id) {
                epoch = self.write(Command::RemoveMember(*id)).await?.epoch;
                info!(node_id = self.info.id, member_id = *id, epoch, reason, "member removed from the set");
            }
        }
        Ok(epoch)
    }

    /// One probe round, on every node: ping every other member and record who answered.
    pub(super) async fn probe_round(&self) {
        let node_id = self.info.id;
        let mut targets: BTreeMap<NodeId, String> =
            self.view.borrow().members.values().map(|member| (member.id, member.cluster_addr.clone())).collect();
        targets.extend(self.raft_members().addrs);
        targets.remove(&node_id);
        self.liveness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .track(&targets.keys().copied().collect(), Instant::now());
        let answers = self.ping_all(&targets).await;
        let now = Instant::now();
        let mut liveness = self.liveness.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, epoch) in answers {
            liveness.answered(id, epoch, now);
        }
    }

    /// One round of the leader's duties, from the probes' table: (under the change lock)
    /// remove the silent, finish interrupted removals, promote learners. `warned` keeps the
    /// no-quorum warning from repeating every round.
    pub(super) async fn lead_round(&self, warned: &mut Option<BTreeSet<NodeId>>) {
        let node_id = self.info.id;
        let change = self.admin_lock.lock().await;
        if !self.is_leader() {
            return;
        }
        let (now, dead_after) = (Instant::now(), self.config.dead_after);
        let raft = self.raft_members();
        let (dead, alive): (BTreeSet<NodeId>, BTreeSet<NodeId>) = {
            let liveness = self.liveness.lock().unwrap_or_else(PoisonError::into_inner);
            let dead = liveness.dead(now, dead_after);
            let alive = raft.learners.iter().copied().filter(|id| liveness.is_alive(*id, now, dead_after)).collect();
            (dead, alive)
        };
        let result = match plan_removal(&raft.voters, &dead, node_id) {
            RemovalPlan::NoQuorum { alive_voters, voters } => {
                if warned.as_ref() != Some(&dead) {
                    warn!(node_id, silent = ?dead, alive_voters, voters, "cannot remove silent members without a quorum");
                    *warned = Some(dead);
                }
                return;
            }
            RemovalPlan::Remove(silent) => {
                info!(node_id, members = ?silent, ?dead_after, "removing silent members");
                self.remove_members_locked(&change, &silent, "silent").await
            }
            RemovalPlan::Nothing => {
                *warned = None;
                let set_members: BTreeSet<NodeId> = self.view.borrow().members.keys().copied().collect();
                let leftovers: BTreeSet<NodeId> =
                    set_members.iter().filter(|id| **id != node_id && !raft.addrs.contains_key(id)).copied().collect();
                let promotable: BTreeSet<NodeId> =
                    alive.iter().filter(|id| set_members.contains(id)).copied().collect();
                let promote = plan_promotion(&raft.voters, &promotable, self.config.max_voters);
                if !leftovers.is_empty() {
                    self.remove_members_locked(&change, &leftovers, "not in raft").await
                } else if !promote.is_empty() {
                    info!(node_id, learners = ?promote, "promoting learners to voters");
                    let promotion = ChangeMembers::AddVoterIds(promote);
                    self.bounded(self.raft.change_membership(promotion, true)).await.map(|_| self.view.borrow().epoch)
                } else {
                    Ok(self.view.borrow().epoch)
                }
            }
        };
        if let Err(error) = result {
            warn!(node_id, %error, "membership change failed, retrying next round");
        }
    }

    /// Pings `targets` concurrently; returns the ids that answered as themselves, with the
    /// epoch each is at.
    async fn ping_all(&self, targets: &BTreeMap<NodeId, String>) -> Vec<(NodeId, u64)> {
        let node_id = self.info.id;
        let ping = PeerRequest::Ping { from: node_id, epoch: self.view.borrow().epoch, leader: self.is_leader() };
        let payload = match codec::encode(&ping) {
            Ok(payload) => payload,
            Err(error) => {
                warn!(node_id, %error, "cannot encode ping");
                return Vec::new();
            }
        };
        let timeout = self.config.ping_timeout();
        let mut pings = JoinSet::new();
        for (id, addr) in targets {
            let (rpc, id, addr, payload) = (Arc::clone(&self.rpc), *id, addr.clone(), payload.clone());
            pings.spawn(async move { (id, tokio::time::timeout(timeout, rpc.call(&addr, payload, timeout)).await) });
        }
        let mut answered = Vec::new();
        while let Some(joined) = pings.join_next().await {
            let (member_id, answer) = match joined {
                Ok(joined) => joined,
                Err(error) => {
                    warn!(node_id, %error, "ping task failed");
                    continue;
                }
            };
            match answer.map(|answer| answer.map(|bytes| codec::decode::<PeerResponse>(&bytes))) {
                Ok(Ok(Ok(PeerResponse::Pong { id, epoch, .. }))) if id == member_id => {
                    answered.push((member_id, epoch))
                }
                Ok(Ok(Ok(PeerResponse::Pong { id, .. }))) => {
                    warn!(node_id, member_id, answered_as = id, "a member's address answers as another node");
                }
                Ok(Ok(Ok(other))) => debug!(node_id, member_id, answer = ?other, "unexpected ping answer"),
                Ok(Ok(Err(error))) => debug!(node_id, member_id, %error, "undecodable ping answer"),
                Ok(Err(error)) => debug!(node_id, member_id, %error, "ping failed"),
                Err(_) => debug!(node_id, member_id, ?timeout, "ping timed out"),
            }
        }
        answered
    }

    /// Joins (or rejoins) through the leader, else the seeds, else the known members; one
    /// attempt each. Returns the leader and the epoch after the join.
    pub(super) async fn join_once(&self) -> Result<(NodeId, u64), MembershipError> {
        let mut last_error = MembershipError::NotLeader { leader: None };
        if self.is_leader() {
            match self.admit(self.info.clone()).await {
                Ok(epoch) => return Ok((self.info.id, epoch)),
                // A leadership restored from disk after a restart may be stale (this node
                // may even have left): ask the others instead of retrying itself forever.
                Err(error) => {
                    debug!(node_id = self.info.id, error = %error, "admitting itself failed, asking peers");
                    last_error = error;
                }
            }
        }
        for addr in self.join_targets() {
            let request = PeerRequest::Join { member: self.info.clone(), forwarded: false };
            last_error = match self.call(&addr, &request).await {
                Ok(PeerResponse::Joined { leader, epoch }) => return Ok((leader, epoch)),
                Ok(PeerResponse::NotLeader { leader }) => MembershipError::NotLeader { leader },
                Ok(PeerResponse::Failed(reason)) => MembershipError::Rejected(reason),
                Ok(other) => MembershipError::Rejected(format!("unexpected answer {other:?}")),
                Err(error) => error,
            };
            debug!(node_id = self.info.id, addr = %addr, error = %last_error, "join through peer failed");
        }
        Err(last_error)
    }

    fn join_targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.leader_addr().map(|(_, addr)| addr).into_iter().collect();
        targets.extend(self.seeds());
        targets.extend(self.view.borrow().members.values().map(|member| member.cluster_addr.clone()));
        let mut seen = BTreeSet::new();
        targets.retain(|addr| *addr != self.info.cluster_addr && seen.insert(addr.clone()));
        targets
    }

    /// Whether this node should join again: no leader has pinged it for `2 × dead_after` (it
    /// was removed while cut off, or there is no leader), or the member set lacks it as it is
    /// now (its addresses changed).
    pub(super) fn needs_join(&self, now: Instant) -> bool {
        if self.leaving.load(Ordering::SeqCst) {
            return false;
        }
        let outdated =
            self.current_leader().is_some() && self.view.borrow().members.get(&self.info.id) != Some(&self.info);
        if self.is_leader() {
            return outdated;
        }
        let unpinged = now.duration_since(self.last_pinged()) >= self.config.dead_after * 2;
        outdated || (unpinged && !self.join_targets().is_empty())
    }

    pub(super) async fn leave_cluster(&self) -> Result<(), MembershipError> {
        self.leaving.store(true, Ordering::SeqCst);
        let limit = self.config.request_timeout();
        tokio::time::timeout(limit, self.request_leave()).await.map_err(|_| MembershipError::Timeout(limit))?
    }

    async fn request_leave(&self) -> Result<(), MembershipError> {
        let node_id = self.info.id;
        if self.is_leader() {
            let change = self.admin_lock.lock().await;
            if self.raft_members().voters == BTreeSet::from([node_id]) {
                info!(node_id, "the last voter leaves nothing to hand over");
                return Ok(());
            }
            let epoch = self.remove_members_locked(&change, &BTreeSet::from([node_id]), "left").await?;
            info!(node_id, epoch, "left the cluster");
            return Ok(());
        }
        let (_, addr) = self.leader_addr().ok_or(MembershipError::NotLeader { leader: None })?;
        match self.call(&addr, &PeerRequest::Leave { id: node_id, forwarded: false }).await? {
            PeerResponse::Left { epoch } => {
                info!(node_id, epoch, "left the cluster");
                Ok(())
            }
            PeerResponse::NotLeader { leader } => Err(MembershipError::NotLeader { leader }),
            PeerResponse::Failed(reason) => Err(MembershipError::Rejected(reason)),
            other => Err(MembershipError::Rejected(format!("unexpected answer {other:?}"))),
        }
    }

    /// Sends one request to the node at `addr`.
    pub(super) async fn call(&self, addr: &str, request: &PeerRequest) -> Result<PeerResponse, MembershipError> {
        let payload = codec::encode(request).map_err(|error| TransportError::Protocol(error.to_string()))?;
        let answer = self.rpc.call(addr, payload, self.config.request_timeout()).await?;
        Ok(codec::decode(&answer).map_err(|error| TransportError::Protocol(error.to_string()))?)
    }

    async fn write(&self, command: Command) -> Result<CommandOutcome, MembershipError> {
        Ok(self.bounded(self.raft.client_write(command)).await?.data)
    }

    /// Bounds a raft write: past the limit the caller gets an error (the change may still
    /// commit; every change here is idempotent, so retrying is safe).
    async fn bounded(
        &self,
        change: impl Future<Output = ChangeResult>,
    ) -> Result<ClientWriteResponse<TypeConfig>, MembershipError> {
        let limit = self.config.request_timeout();
        Ok(tokio::time::timeout(limit, change).await.map_err(|_| MembershipError::Timeout(limit))??)
    }
}
