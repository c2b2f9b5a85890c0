//! Test harness for actor tests: an in-memory store, a directory, probe sinks and sessions
//! whose socket side the test reads.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use actors::cluster::SingleNode;
use actors::delivery::{SessionInbox, SessionSink};
use actors::directory::{LocalSession, SessionControl};
use actors::memory::MemoryStore;
use actors::model::{
    Caller, ChannelSeq, Delivery, DeliveryKind, MessageDraft, MessageView, RequestError, SubscribeAnswer,
};
use actors::ports::ChannelKind;
use actors::routing::{ChannelAnswer, ChannelRequest};
use actors::session::{session_io, SessionActor, SessionArgs, SessionConfig, SessionMsg, SocketIo};
use actors::{Directory, DirectoryConfig};
use ractor::{Actor, ActorRef};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub directory: Directory,
    pub company: Uuid,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_config(DirectoryConfig::default()).await
    }

    pub async fn with_config(config: DirectoryConfig) -> Self {
        let store = MemoryStore::new();
        let directory = Directory::start(store.ports(), config, SingleNode::new()).await.unwrap();
        Self { store, directory, company: Uuid::new_v4() }
    }

    pub fn user(&self, name: &str) -> Caller {
        Caller { user_id: self.store.add_user(self.company, name), company_id: self.company }
    }

    pub fn channel(&self, kind: ChannelKind, members: &[Caller]) -> Uuid {
        let ids: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
        self.store.add_channel(self.company, kind, &ids)
    }

    pub async fn ask(&self, channel_id: Uuid, request: ChannelRequest) -> Result<ChannelAnswer, RequestError> {
        self.directory.ask_channel(channel_id, request, WAIT).await
    }

    pub async fn send(
        &self,
        channel_id: Uuid,
        caller: Caller,
        draft: MessageDraft,
    ) -> Result<MessageView, RequestError> {
        match self.ask(channel_id, ChannelRequest::Send { caller, draft }).await? {
            ChannelAnswer::Message(message) => Ok(*message),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    pub async fn subscribe(
        &self,
        channel_id: Uuid,
        caller: Caller,
        probe: &Probe,
    ) -> Result<SubscribeAnswer, RequestError> {
        let request = ChannelRequest::Subscribe { caller, session: probe.sink.addr };
        match self.ask(channel_id, request).await? {
            ChannelAnswer::Subscribed(answer) => Ok(answer),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// The seq a request answered with, `None` for `MaybeSeq(None)`.
    pub async fn seq(&self, channel_id: Uuid, request: ChannelRequest) -> Result<Option<ChannelSeq>, RequestError> {
        match self.ask(channel_id, request).await? {
            ChannelAnswer::Seq(seq) => Ok(Some(seq)),
            ChannelAnswer::MaybeSeq(seq) => Ok(seq),
            ChannelAnswer::Done => Ok(None),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// A probe registered as a session of `user_id` on this node.
    pub async fn probe(&self, user_id: Uuid) -> Probe {
        Probe::register(&self.directory, user_id)
    }

    pub async fn connect(&self, caller: Caller) -> TestSession {
        self.connect_with(caller, 256, SessionConfig::default()).await
    }

    pub async fn connect_with(&self, caller: Caller, queue: usize, config: SessionConfig) -> TestSession {
        connect_to(&self.directory, caller, queue, config).await
    }
}

/// A session of `caller` on the node of `directory`, whose socket side the test reads.
pub async fn connect_to(directory: &Directory, caller: Caller, queue: usize, config: SessionConfig) -> TestSession {
    let (io, socket) = session_io(queue);
    let args = SessionArgs {
        session_id: Uuid::new_v4(),
        caller,
        node_id: format!("node-{}", directory.this_node()),
        directory: directory.clone(),
        io,
        config,
        limiter: None,
    };
    let (actor, _) = Actor::spawn(None, SessionActor, args).await.unwrap();
    let mut session = TestSession { actor, socket };
    let hello = session.next().await;
    assert_eq!(hello["type"], "hello");
    session
}

pub struct TestSession {
    pub actor: ActorRef<SessionMsg>,
    pub socket: SocketIo,
}

impl TestSession {
    pub fn send(&self, frame: Value) {
        self.actor.cast(SessionMsg::Inbound(frame.to_string())).unwrap();
    }

    pub fn send_text(&self, text: &str) {
        self.actor.cast(SessionMsg::Inbound(text.to_owned())).unwrap();
    }

    pub async fn next(&mut self) -> Value {
        let text = tokio::time::timeout(WAIT, self.socket.outbound.recv())
            .await
            .expect("a frame within the wait")
            .expect("session still open");
        serde_json::from_str(text.as_str()).unwrap()
    }

    /// Sends a request with id `rid` and returns its `ok`/`error` answer, collecting what came before.
    pub async fn request(&mut self, rid: &str, mut frame: Value) -> (Value, Vec<Value>) {
        frame["id"] = Value::from(rid);
        self.send(frame);
        let mut before = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["id"] == rid {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// The next frame for which `matches` holds, skipping others.
    pub async fn next_where(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let text = tokio::time::timeout(left, self.socket.outbound.recv())
                .await
                .unwrap_or_else(|_| panic!("no frame where {what} within {WAIT:?}"))
                .expect("session still open");
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if matches(&frame) {
                return frame;
            }
        }
    }

    /// The next frame of the given type, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    pub fn stop(&self) {
        self.actor.stop(None);
    }
}

/// A stand-in for a session that records what it is sent.
struct ProbeInbox(mpsc::UnboundedSender<Delivery>);

impl SessionInbox for ProbeInbox {
    fn deliver(&self, delivery: &Delivery) -> bool {
        if matches!(delivery.kind, DeliveryKind::Resubscribe { .. }) {
            return true;
        }
        self.0.send(delivery.clone()).is_ok()
    }
}

impl LocalSession for ProbeInbox {
    fn control(&self, _control: SessionControl) {}
}

pub struct Probe {
    pub sink: SessionSink,
    rx: mpsc::UnboundedReceiver<Delivery>,
}

impl Probe {
    /// A probe registered in `directory` as a session of `user_id`.
    pub fn register(directory: &Directory, user_id: Uuid) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let inbox = Arc::new(ProbeInbox(tx));
        let addr = directory.session_addr(Uuid::new_v4(), user_id);
        directory.register_session(addr.session_id, inbox.clone());
        Self { sink: SessionSink::local(addr, inbox), rx }
    }

    pub async fn next(&mut self) -> (Option<i64>, Value) {
        let delivery = tokio::time::timeout(WAIT, self.rx.recv()).await.expect("a delivery").expect("probe open");
        (delivery.seq(), serde_json::from_str(delivery.text.as_str()).unwrap())
    }

    pub fn try_next(&mut self) -> Option<Value> {
        self.rx.try_recv().ok().map(|d| serde_json::from_str(d.text.as_str()).unwrap())
    }
}
