//! A link to a peer: the byte stream a connection runs on, and what can go wrong opening it.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::TransportError;

/// A byte stream to a peer: TLS, or plain TCP in the tests that measure what TLS costs.
pub(super) trait LinkStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> LinkStream for T {}
pub(super) type Link = Box<dyn LinkStream>;

#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("tls handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("the peer did not negotiate the cluster protocol (alpn)")]
    Protocol,
    #[error("handshake timed out")]
    Timeout,
    #[error("expected a {expected} frame")]
    UnexpectedFrame { expected: &'static str },
    #[error(transparent)]
    Frame(#[from] TransportError),
    #[error("handshake i/o: {0}")]
    Io(std::io::Error),
}
