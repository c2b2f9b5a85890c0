//! Opening a connection: mutual TLS, then the dialler's Hello and the acceptor's Welcome.
//!
//! Everything before the Hello is accepted is bounded: the whole stage has a deadline
//! ([`HANDSHAKE_TIMEOUT`]), at most [`MAX_HANDSHAKES`] accepted connections may be in it at
//! once (the accept loop closes the excess at once), and frames are limited to
//! [`HANDSHAKE_FRAME_BYTES`]. rustls bounds what it buffers itself (one record, one
//! handshake message of at most 64 KiB), so an unauthenticated peer costs kilobytes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frames::{read_frame, write_frame, Frame, HANDSHAKE_FRAME_BYTES};
use super::link::{HandshakeError, Link};
use super::tls::Security;
use super::Identity;
use crate::{Incarnation, NodeId};

/// TLS and the Hello/Welcome exchange must finish within this.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Accepted connections still in their handshake, at most.
pub(super) const MAX_HANDSHAKES: usize = 64;

/// Who dialled us, as its Hello said (the TLS handshake already proved it holds a
/// certificate of the cluster CA).
#[derive(Debug)]
pub(super) struct PeerHello {
    pub from: String,
    pub node: NodeId,
    pub incarnation: Incarnation,
}

/// The acceptor's side: TLS, read the Hello, answer with our Welcome.
pub(super) async fn accept(
    security: &Security,
    tcp: TcpStream,
    me: &Identity,
) -> Result<(Link, PeerHello), HandshakeError> {
    let handshake = async {
        let mut link = security.accept(tcp).await?;
        let hello = match read_frame(&mut link, HANDSHAKE_FRAME_BYTES).await? {
            Frame::Hello { from, node, incarnation } => PeerHello { from, node, incarnation },
            _ => return Err(HandshakeError::UnexpectedFrame { expected: "hello" }),
        };
        let welcome = Frame::Welcome { node: me.node, incarnation: me.incarnation };
        write_frame(&mut link, &welcome).await?;
        link.flush().await.map_err(HandshakeError::Io)?;
        Ok((link, hello))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.map_err(|_| HandshakeError::Timeout)?
}

/// The dialler's side over a connected socket: TLS, send our Hello, read the Welcome.
pub(super) async fn connect(
    security: &Security,
    tcp: TcpStream,
    me: &Identity,
) -> Result<(Link, (NodeId, Incarnation)), HandshakeError> {
    let handshake = async {
        let mut link = security.connect(tcp).await?;
        let hello = Frame::Hello { from: me.advertise.clone(), node: me.node, incarnation: me.incarnation };
        write_frame(&mut link, &hello).await?;
        link.flush().await.map_err(HandshakeError::Io)?;
        // In TLS 1.3 the server checks our certificate after our side finished: a refusal
        // shows up here, as an alert instead of a Welcome.
        match read_frame(&mut link, HANDSHAKE_FRAME_BYTES).await? {
            Frame::Welcome { node, incarnation } => Ok((link, (node, incarnation))),
            _ => Err(HandshakeError::UnexpectedFrame { expected: "welcome" }),
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.map_err(|_| HandshakeError::Timeout)?
}

/// Lets a warning through at most once per period and counts the ones held back, so a
/// flood of bad connections cannot flood the log.
#[derive(Debug)]
pub(super) struct Throttle {
    period: Duration,
    /// When a warning last went out, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub(super) fn new(period: Duration) -> Self {
        Self { period, state: Mutex::new((None, 0)) }
    }

    /// `Some(held back since the last one)` when a warning may go out now.
    pub(super) fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let held_back = state.1;
                *state = (Some(now), 0);
                Some(held_back)
            }
        }
    }
}
