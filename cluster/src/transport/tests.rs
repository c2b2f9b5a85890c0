use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::frames::HANDSHAKE_FRAME_BYTES;
use crate::codec::{decode, encode};

mod measure;
mod operator_files;
mod security;

/// Answers requests with the payload reversed and records messages.
struct Echo {
    messages: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait]
impl Inbound for Echo {
    async fn request(&self, _service: Service, mut payload: Vec<u8>) -> Reply {
        payload.reverse();
        Box::pin(async move { Ok(payload) })
    }
    async fn message(&self, _service: Service, payload: Vec<u8>) {
        self.messages.send(payload).ok();
    }
}

fn tls(secret: &str) -> Security {
    Security::Tls(ClusterTls::from_secret(secret).unwrap())
}

/// A transport that only dials (it advertises an address nobody listens on).
fn client_with(security: Security) -> (Arc<Transport>, mpsc::UnboundedReceiver<Vec<u8>>) {
    let transport = Arc::new(Transport::new(identity("127.0.0.1:9".to_owned()), security));
    let (tx, rx) = mpsc::unbounded_channel();
    transport.set_inbound(Arc::new(Echo { messages: tx }));
    (transport, rx)
}

fn client(secret: &str) -> Arc<Transport> {
    client_with(tls(secret)).0
}

/// A transport bound on port 0 that serves the Echo handler itself.
async fn server_with(security: Security) -> (Arc<Transport>, String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (transport, local) = Transport::bind_with(listen, identity("server".to_owned()), security).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    transport.set_inbound(Arc::new(Echo { messages: tx }));
    (transport, local.to_string(), rx)
}

async fn server(secret: &str) -> (Arc<Transport>, String, mpsc::UnboundedReceiver<Vec<u8>>) {
    server_with(tls(secret)).await
}

const WAIT: Duration = Duration::from_secs(5);

fn identity(advertise: String) -> Identity {
    Identity { node: rand::random(), incarnation: rand::random(), advertise }
}

/// Reads until the peer closes (or resets) the connection; what arrived before.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("the server closes the connection") {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn requests_and_messages_cross_an_authenticated_connection() {
    let (_server, addr, mut messages) = server("s3cret").await;
    let client = client("s3cret");
    let answer = client.call(&addr, Service::Actors, vec![1, 2, 3], WAIT).await.unwrap();
    assert_eq!(answer, vec![3, 2, 1]);
    for n in 0..100u8 {
        client.send(&addr, Service::Actors, vec![n]).unwrap();
    }
    for n in 0..100u8 {
        let message = tokio::time::timeout(WAIT, messages.recv()).await.unwrap().unwrap();
        assert_eq!(message, vec![n], "one-way messages keep their order");
    }
}

#[tokio::test]
async fn link_events_tell_each_side_the_other_nodes_incarnation() {
    let (server, addr, _) = server("s3cret").await;
    let client = client("s3cret");
    let (mut server_links, mut client_links) = (server.link_events(), client.link_events());
    client.call(&addr, Service::Actors, vec![1], WAIT).await.unwrap();
    let (me, them) = (&client.identity, &server.identity);
    let up = tokio::time::timeout(WAIT, server_links.recv()).await.unwrap().unwrap();
    assert_eq!(up, LinkEvent::Up { node: me.node, incarnation: me.incarnation });
    let up = tokio::time::timeout(WAIT, client_links.recv()).await.unwrap().unwrap();
    assert_eq!(up, LinkEvent::Up { node: them.node, incarnation: them.incarnation });
}

#[tokio::test]
async fn a_peer_with_the_wrong_secret_is_refused() {
    let (_server, addr, _) = server("right").await;
    let intruder = client("wrong");
    let err = intruder.call(&addr, Service::Actors, vec![1], WAIT).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(..) | TransportError::Protocol(_)), "{err:?}");
    let friend = client("right");
    assert_eq!(friend.call(&addr, Service::Actors, vec![1, 2], WAIT).await.unwrap(), vec![2, 1]);
}

#[tokio::test]
async fn garbage_and_truncated_frames_drop_the_connection_not_the_node() {
    let (_server, addr, _) = server("s3cret").await;
    // Garbage instead of a handshake.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    read_until_closed(&mut raw).await;
    // A length prefix beyond the limit, then a truncated frame.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes()).await.unwrap();
    read_until_closed(&mut raw).await;
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 100, 1, 2]).await.unwrap();
    drop(raw);
    // The node still serves authenticated peers.
    let client = client("s3cret");
    assert_eq!(client.call(&addr, Service::Actors, vec![9, 8], WAIT).await.unwrap(), vec![8, 9]);
}

#[tokio::test]
async fn an_unreachable_peer_fails_fast_while_backing_off() {
    let client = client("s3cret");
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let first = client.call(&closed, Service::Actors, vec![1], WAIT).await.unwrap_err();
    assert!(matches!(first, TransportError::Unreachable(..)), "{first:?}");
    let second = client.request(&closed, Service::Actors, vec![1]);
    assert!(matches!(second, Err(TransportError::Unreachable(..))), "fails at once during the backoff");
}

#[test]
fn frames_round_trip_through_the_codec() {
    let frame = Frame::Request { id: 42, service: Service::Membership, payload: vec![1, 2, 3] };
    let bytes = encode(&frame).unwrap();
    match decode::<Frame>(&bytes).unwrap() {
        Frame::Request { id, service, payload } => {
            assert_eq!((id, service, payload), (42, Service::Membership, vec![1, 2, 3]));
        }
        other => panic!("decoded {other:?}"),
    }
    assert!(decode::<Frame>(&bytes[..bytes.len() - 1]).is_err());
}

#[tokio::test]
async fn frame_lengths_are_checked_against_the_stage_limit_and_not_trusted() {
    let (mut writer, mut reader) = tokio::io::duplex(1024);
    writer.write_all(&(HANDSHAKE_FRAME_BYTES as u32 + 1).to_be_bytes()).await.unwrap();
    let err = frames::read_frame_bytes(&mut reader, HANDSHAKE_FRAME_BYTES).await.unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    // Announced 8 MiB, sent 100 bytes, closed: an error, not an 8 MiB buffer waiting.
    let (mut writer, mut reader) = tokio::io::duplex(1024);
    writer.write_all(&(8u32 << 20).to_be_bytes()).await.unwrap();
    writer.write_all(&[7; 100]).await.unwrap();
    drop(writer);
    let err = frames::read_frame_bytes(&mut reader, MAX_FRAME_BYTES).await.unwrap_err();
    assert!(err.to_string().contains("after 100 of 8388608"), "{err}");
}
