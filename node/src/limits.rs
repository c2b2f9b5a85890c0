//! Rate limits and the password-hashing budget.
//!
//! - Login and sign-up (both run argon2, deliberately slow) are limited per client address:
//!   in memory on each node (governor), and across the cluster through a Redis counter per
//!   address and minute when `REDIS_URL` is set. Over the limit: `429 rate_limited` with
//!   `Retry-After`.
//! - Password hashing runs at most one per core at a time (and at most
//!   [`password::MAX_PARALLEL`], each holding 19 MiB); a request that cannot get a slot
//!   within a few seconds gets `503 unavailable` instead of queueing CPU work without bound.
//! - WebSocket frames are limited per user across all of the user's sockets on a node.
//!
//! The client address is the TCP peer, or — when the peer is a trusted proxy
//! (`TRUSTED_PROXIES`) — the last address in its `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actors::model::{ErrorCode, RequestError};
use actors::session::rate::FrameLimiter;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::password;
use crate::serve::Peer;

/// How long a request may wait for a password-hashing slot.
const HASH_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// Logins per client address and minute (`LOGIN_RATE_PER_MIN`).
    pub login_per_min: u32,
    /// Sign-ups (new companies, new users) per client address and hour (`SIGNUP_RATE_PER_HOUR`).
    pub signup_per_hour: u32,
    /// WebSocket frames per user and second, and burst (`WS_RATE_PER_SEC`, `WS_RATE_BURST`).
    pub frames_per_sec: f64,
    pub frames_burst: f64,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`: addresses or CIDRs).
    pub trusted_proxies: Vec<(IpAddr, u8)>,
}

/// What an over-limit request is told.
struct Limited {
    what: &'static str,
    retry_after: Duration,
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let seconds = self.retry_after.as_secs().max(1);
        let err = RequestError::new(
            ErrorCode::RateLimited,
            format!("too many {} from this address, retry in {seconds} s", self.what),
        );
        let mut response = ApiError(err).into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub struct Limits {
    config: LimitConfig,
    login: DefaultKeyedRateLimiter<IpAddr>,
    signup: DefaultKeyedRateLimiter<IpAddr>,
    frames: Arc<UserFrames>,
    hashing: Arc<Semaphore>,
}

fn per(count: u32, period: Duration) -> Quota {
    let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period / count.get()).unwrap_or_else(|| Quota::per_second(count)).allow_burst(count)
}

impl Limits {
    pub fn new(config: LimitConfig) -> Arc<Self> {
        let frames = Arc::new(UserFrames::new(config.frames_per_sec, config.frames_burst));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).min(password::MAX_PARALLEL);
        let limits = Arc::new(Self {
            login: RateLimiter::keyed(per(config.login_per_min, Duration::from_secs(60))),
            signup: RateLimiter::keyed(per(config.signup_per_hour, Duration::from_secs(3600))),
            frames,
            hashing: Arc::new(Semaphore::new(cores)),
            config,
        });
        // Keyed limiters remember every key; forget those idle long enough to be full again.
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                limits.login.retain_recent();
                limits.signup.retain_recent();
                limits.frames.limiter.retain_recent();
            }
        });
        limits
    }

    /// The frame limiter shared by every socket on this node.
    pub fn frames(&self) -> Arc<dyn FrameLimiter> {
        self.frames.clone()
    }

    /// A password-hashing slot, or `unavailable` when the node is saturated.
    pub async fn hashing_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(HASH_WAIT, self.hashing.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                warn!("password hashing saturated, refusing a request");
                Err(ApiError(RequestError::unavailable()))
            }
        }
    }

    /// The address a request comes from.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.ip();
        if !self.config.trusted_proxies.iter().any(|(net, bits)| in_net(peer, *net, *bits)) {
            return Some(peer);
        }
        let forwarded = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok());
        forwarded.and_then(|list| list.rsplit(',').next()).and_then(|last| last.trim().parse().ok()).or(Some(peer))
    }

    fn check(&self, limiter: &DefaultKeyedRateLimiter<IpAddr>, ip: IpAddr, what: &'static str) -> Result<(), Limited> {
        limiter
            .check_key(&ip)
            .map_err(|not_until| Limited { what, retry_after: not_until.wait_time_from(DefaultClock::default().now()) })
    }
}

/// Parses `TRUSTED_PROXIES`: addresses (`10.0.0.5`) or networks (`10.0.0.0/8`).
pub fn parse_proxies(text: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (addr, bits) = item.split_once('/').unwrap_or((item, ""));
            let addr: IpAddr = addr.parse().map_err(|_| format!("{item:?} is not an address or network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = if bits.is_empty() {
                max
            } else {
                bits.parse::<u8>().map_err(|_| format!("bad prefix in {item:?}"))?
            };
            if bits > max {
                return Err(format!("prefix too long in {item:?}"));
            }
            Ok((addr, bits))
        })
        .collect()
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// WebSocket frames per user, across the user's sockets on this node.
struct UserFrames {
    limiter: DefaultKeyedRateLimiter<Uuid>,
}

impl UserFrames {
    fn new(per_sec: f64, burst: f64) -> Self {
        let per_sec = (per_sec.max(1.0).round() as u32).max(1);
        let burst = NonZeroU32::new((burst.max(1.0).round() as u32).max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN)).allow_burst(burst);
        Self { limiter: RateLimiter::keyed(quota) }
    }
}

impl FrameLimiter for UserFrames {
    fn allow(&self, user_id: Uuid) -> bool {
        self.limiter.check_key(&user_id).is_ok()
    }
}

/// Which limit a route is under.
#[derive(Debug, Clone, Copy)]
enum Guarded {
    Login,
    Signup,
}

/// Middleware of the login route: refuses a request over its address's limit before the
/// handler runs argon2.
pub async fn login_guard(State(state): State<AppState>, peer: Peer, request: Request, next: Next) -> Response {
    guard(&state, Guarded::Login, peer, request, next).await
}

/// Middleware of the sign-up routes (new company, new user).
pub async fn signup_guard(State(state): State<AppState>, peer: Peer, request: Request, next: Next) -> Response {
    guard(&state, Guarded::Signup, peer, request, next).await
}

async fn guard(state: &AppState, guarded: Guarded, peer: Peer, request: Request, next: Next) -> Response {
    let limits = &state.limits;
    let Some(ip) = limits.client_ip(peer.0, request.headers()) else {
        return next.run(request).await;
    };
    let (limiter, what, window, max) = match guarded {
        Guarded::Login => (&limits.login, "login attempts", 60, limits.config.login_per_min),
        Guarded::Signup => (&limits.signup, "sign-ups", 3600, limits.config.signup_per_hour),
    };
    if let Err(limited) = limits.check(limiter, ip, what) {
        debug!(%ip, what, "rate limited on this node");
        return limited.into_response();
    }
    if let Some(redis) = &state.redis {
        // The same limit across the cluster: one counter per address and window in Redis. A
        // Redis that does not answer leaves only the node's own limit in force.
        let key = format!("ratelimit:{what}:{ip}");
        match redis.window_hit(&key, window).await {
            Ok((count, ttl)) if count > u64::from(max) => {
                debug!(%ip, what, count, "rate limited across the cluster");
                return Limited { what, retry_after: Duration::from_secs(ttl.max(1)) }.into_response();
            }
            Ok(_) => {}
            Err(err) => debug!(error = %err, "shared rate limit unavailable, node limit only"),
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_by_prefix() {
        let proxies = parse_proxies("10.0.0.0/8, 192.168.1.7, ::1").unwrap();
        let inside = |ip: &str| proxies.iter().any(|(net, bits)| in_net(ip.parse().unwrap(), *net, *bits));
        assert!(inside("10.200.3.4") && inside("192.168.1.7") && inside("::1"));
        assert!(!inside("11.0.0.1") && !inside("192.168.1.8") && !inside("::2"));
        assert!(parse_proxies("10.0.0.0/33").is_err() && parse_proxies("nope").is_err());
    }
}
