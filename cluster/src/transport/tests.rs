use super::*;
use tokio::io::AsyncWriteExt;

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

async fn node(secret: &str) -> (Arc<Transport>, String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (transport, local) = Transport::bind(listen, identity(String::new()), secret).await.unwrap();
    // Advertise the real port (bound on port 0).
    let transport = Arc::new(Transport {
        identity: identity(local.to_string()),
        secret: transport.secret.clone(),
        links: broadcast::channel(16).0,
        peers: Mutex::new(HashMap::new()),
        backoff: Mutex::new(HashMap::new()),
        inbound: OnceLock::new(),
        next_id: AtomicU64::new(1),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    transport.set_inbound(Arc::new(Echo { messages: tx }));
    (transport, local.to_string(), rx)
}

/// A transport bound on port 0 that serves the Echo handler itself.
async fn server(secret: &str) -> (Arc<Transport>, String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (transport, local) = Transport::bind(listen, identity("server".to_owned()), secret).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    transport.set_inbound(Arc::new(Echo { messages: tx }));
    (transport, local.to_string(), rx)
}

const WAIT: Duration = Duration::from_secs(5);

fn identity(advertise: String) -> Identity {
    Identity { node: rand::random(), incarnation: rand::random(), advertise }
}

#[tokio::test]
async fn requests_and_messages_cross_an_authenticated_connection() {
    let (_server, addr, mut messages) = server("s3cret").await;
    let (client, _, _) = node("s3cret").await;
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
async fn a_peer_with_the_wrong_secret_is_refused() {
    let (_server, addr, _) = server("right").await;
    let (intruder, _, _) = node("wrong").await;
    let err = intruder.call(&addr, Service::Actors, vec![1], WAIT).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(..) | TransportError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn garbage_and_truncated_frames_drop_the_connection_not_the_node() {
    let (_server, addr, _) = server("s3cret").await;
    // Garbage instead of a handshake.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(read, 0, "the server closed the connection");
    // A length prefix beyond the limit, then a truncated frame.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes()).await.unwrap();
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(read, 0);
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 100, 1, 2]).await.unwrap();
    drop(raw);
    // The node still serves authenticated peers.
    let (client, _, _) = node("s3cret").await;
    assert_eq!(client.call(&addr, Service::Actors, vec![9, 8], WAIT).await.unwrap(), vec![8, 9]);
}

#[tokio::test]
async fn an_unreachable_peer_fails_fast_while_backing_off() {
    let (client, _, _) = node("s3cret").await;
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
