//! What travels inside a connection: length-prefixed postcard frames.
//!
//! A frame is a 4-byte big-endian length and that many bytes of postcard. Reading never
//! trusts the length: it is checked against the limit of the connection's stage (a few KiB
//! until the peer's Hello is accepted, [`MAX_FRAME_BYTES`] after), and the buffer grows
//! with the bytes that actually arrive, so a peer that announces a large frame and sends
//! little costs little.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{decode, encode};
use crate::{Incarnation, NodeId, TransportError};

/// Largest frame accepted from an authenticated peer; a larger length prefix is a protocol error.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest frame accepted before the peer's Hello is accepted (Hello and Welcome are tiny:
/// two integers and an address).
pub const HANDSHAKE_FRAME_BYTES: usize = 4 * 1024;

/// The buffer of a frame starts at most this large and grows as its bytes arrive.
const FIRST_READ_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Service {
    Membership,
    Actors,
}

/// The frames of the protocol.
///
/// Hello and Welcome carry identities only. They used to carry an HMAC over a time and a
/// nonce; mutual TLS now authenticates both ends with certificates of the cluster CA and
/// binds every byte to this connection's fresh keys, so a captured Hello cannot be replayed
/// and a MAC inside would add nothing.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Frame {
    /// The dialler introduces itself (first frame on a connection).
    Hello {
        from: String,
        node: NodeId,
        incarnation: Incarnation,
    },
    /// The acceptor's answer to an accepted Hello.
    Welcome {
        node: NodeId,
        incarnation: Incarnation,
    },
    Request {
        id: u64,
        service: Service,
        payload: Vec<u8>,
    },
    Response {
        id: u64,
        result: Result<Vec<u8>, String>,
    },
    Message {
        service: Service,
        payload: Vec<u8>,
    },
}

fn io_error(err: std::io::Error) -> TransportError {
    TransportError::Protocol(err.to_string())
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &Frame) -> Result<(), TransportError> {
    let bytes = encode(frame).map_err(|err| TransportError::Protocol(err.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(TransportError::Protocol(format!("frame of {} bytes is too large", bytes.len())));
    }
    writer.write_u32(bytes.len() as u32).await.map_err(io_error)?;
    writer.write_all(&bytes).await.map_err(io_error)
}

/// Reads one frame of at most `limit` bytes.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> Result<Frame, TransportError> {
    let bytes = read_frame_bytes(reader, limit).await?;
    decode(&bytes).map_err(|err| TransportError::Protocol(format!("undecodable frame: {err}")))
}

/// The body of one frame of at most `limit` bytes, read as it arrives.
pub(super) async fn read_frame_bytes<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Vec<u8>, TransportError> {
    let len = reader.read_u32().await.map_err(io_error)? as usize;
    if len > limit {
        return Err(TransportError::Protocol(format!("frame length {len} exceeds {limit}")));
    }
    // Not `vec![0; len]`: the announced length is only a claim until the bytes are here.
    let mut bytes = Vec::with_capacity(len.min(FIRST_READ_BYTES));
    let read = (&mut *reader).take(len as u64).read_to_end(&mut bytes).await.map_err(io_error)?;
    if read < len {
        return Err(TransportError::Protocol(format!("connection closed after {read} of {len} frame bytes")));
    }
    Ok(bytes)
}
