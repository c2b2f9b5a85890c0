//! Prometheus metrics, served in the text exposition format on `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub sessions: Gauge,
    pub connections: Counter,
    pub frames_received: Counter,
    pub slow_consumers: Counter,
    pub channel_actors: Gauge,
    pub user_actors: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lark");
        let metrics = Self {
            sessions: Gauge::default(),
            connections: Counter::default(),
            frames_received: Counter::default(),
            slow_consumers: Counter::default(),
            channel_actors: Gauge::default(),
            user_actors: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("ws_sessions", "Open WebSocket sessions", metrics.sessions.clone());
        registry.register("ws_connections", "WebSocket connections accepted", metrics.connections.clone());
        registry.register("ws_frames_received", "Client frames received", metrics.frames_received.clone());
        registry.register("ws_slow_consumers", "Sessions cut off for not reading", metrics.slow_consumers.clone());
        registry.register("channel_actors", "Channel actors running on this node", metrics.channel_actors.clone());
        registry.register("user_actors", "User actors running on this node", metrics.user_actors.clone());
        Self { registry, ..metrics }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
