//! What a simulated user is and keeps, shared by `user.rs` (the socket and what arrives),
//! `actions.rs` and `meeting.rs` (what the user does): plain data, so those three import it
//! and not each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use crate::api::Api;
use crate::record::Recorder;
use crate::stats::Rng;
use crate::world::{MeetingPlan, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Users act.
    Run,
    /// No new actions: resends, answers and deliveries only.
    Drain,
    Stop,
}

/// A recently seen message, for reactions, replies and edits.
#[derive(Debug, Clone)]
pub struct Recent {
    pub message_id: String,
    pub is_root: bool,
}

/// An offer received, to be answered.
#[derive(Debug, Clone)]
pub struct Offer {
    pub meeting_id: String,
    pub from_participant: String,
    pub from_user: usize,
}

pub struct UserCtx {
    pub index: usize,
    pub world: Arc<World>,
    pub rec: Arc<Recorder>,
    pub api: Api,
    pub board: Arc<Board>,
    pub phase: watch::Receiver<Phase>,
    pub offers: Mutex<Vec<Offer>>,
    pub recent: Mutex<HashMap<usize, Vec<Recent>>>,
}

/// What the user keeps across connections.
pub struct Session {
    pub url: usize,
    pub rng: Rng,
    pub unacked: Vec<Outgoing>,
    /// Meeting slots this user has joined.
    pub meetings: Vec<usize>,
    pub own_messages: Vec<(usize, String)>,
    pub away: bool,
    pub sent: u64,
}

/// A message composed and not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub client_msg_id: String,
    pub channel: usize,
    pub frame: Value,
}

pub struct Slot {
    pub plan: MeetingPlan,
    pub id: Option<String>,
    /// Participant ids by user, once joined.
    pub participants: HashMap<usize, String>,
}

/// The planned meetings and who is in them, shared by all users.
pub struct Board {
    slots: Mutex<Vec<Slot>>,
}

impl Board {
    pub fn new(plans: &[MeetingPlan]) -> Self {
        let slots = plans.iter().map(|plan| Slot { plan: plan.clone(), id: None, participants: HashMap::new() });
        Self { slots: Mutex::new(slots.collect()) }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().expect("meeting board")
    }
}
