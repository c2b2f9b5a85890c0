//! The session's two ends of its socket: the bounded outbound queue and the close signal
//! that the node's socket writer drains, and the close codes.

use crate::model::FrameText;
use tokio::sync::{mpsc, watch};

/// Close code sent to a client whose outbound queue overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code sent when the server shuts down: reconnect (to any node) and resume.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Close code sent after no frame arrived for the idle timeout.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4002;
/// Close code sent when the client's token expired (or its user no longer exists).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code sent for a frame larger than the socket accepts.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Why and how the socket is to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// The session's side of its socket: the bounded outbound queue and the close signal.
pub struct SessionIo {
    pub outbound: mpsc::Sender<FrameText>,
    pub close: watch::Sender<Option<CloseFrame>>,
}

/// The socket's side: what the node's writer task drains.
pub struct SocketIo {
    pub outbound: mpsc::Receiver<FrameText>,
    pub close: watch::Receiver<Option<CloseFrame>>,
}

pub fn session_io(queue_capacity: usize) -> (SessionIo, SocketIo) {
    let (outbound_tx, outbound_rx) = mpsc::channel(queue_capacity);
    let (close_tx, close_rx) = watch::channel(None);
    (SessionIo { outbound: outbound_tx, close: close_tx }, SocketIo { outbound: outbound_rx, close: close_rx })
}
