//! What someone on the network can try against the cluster port: replay a captured
//! handshake, read the traffic, dial without a certificate, send an oversized Hello, hold
//! the handshake stage open.

use std::io::ErrorKind;

use rustls::pki_types::ServerName;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::*;

/// Bytes a proxy saw going one way.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy in front of `target` recording what each direction carried (all connections).
struct RecordingProxy {
    addr: String,
    to_server: Recording,
    to_client: Recording,
}

impl RecordingProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (to_server, to_client) = (Recording::default(), Recording::default());
        let (up, down) = (to_server.clone(), to_client.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&target).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, up.clone()));
                tokio::spawn(pump(server_read, client_write, down.clone()));
            }
        });
        Self { addr, to_server, to_client }
    }
}

/// Copies one direction until either side closes (a read or write error is such a close).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, record: Recording) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buf).await {
        record.lock().unwrap().extend_from_slice(&buf[..read]);
        if to.write_all(&buf[..read]).await.is_err() {
            break;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Waits (at most [`WAIT`]) until `condition` holds.
async fn wait_until(condition: impl Fn() -> bool) {
    let polled = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, polled).await.expect("condition within the wait");
}

#[tokio::test]
async fn a_replayed_handshake_is_answered_with_nothing_usable() {
    let (server, addr, mut messages) = server("s3cret").await;
    let mut links = server.link_events();
    let proxy = RecordingProxy::start(addr.clone()).await;
    let genuine = client("s3cret");
    assert_eq!(genuine.call(&proxy.addr, Service::Actors, b"ping".to_vec(), WAIT).await.unwrap(), b"gnip");
    genuine.send(&proxy.addr, Service::Actors, b"forged event".to_vec()).unwrap();
    assert_eq!(tokio::time::timeout(WAIT, messages.recv()).await.unwrap().unwrap(), b"forged event");
    assert!(matches!(links.try_recv(), Ok(LinkEvent::Up { .. })), "the genuine link came up");
    let captured = proxy.to_server.lock().unwrap().clone();
    let genuine_answer = proxy.to_client.lock().unwrap().clone();

    // The captured bytes, byte for byte, on a connection of our own.
    let mut replay = TcpStream::connect(&addr).await.unwrap();
    if let Err(err) = replay.write_all(&captured).await {
        eprintln!("the server hung up while the replay was still being written: {err}");
    }
    let answer = read_until_closed(&mut replay).await;
    eprintln!("replayed {} bytes, got {} bytes and a closed connection", captured.len(), answer.len());
    // A fresh ServerHello (its own random and key share), then the end: nothing of the
    // captured session comes back, and nothing was accepted.
    let shared = genuine_answer.len().min(answer.len());
    assert!(shared == 0 || answer[..shared] != genuine_answer[..shared], "the server answered as before");
    assert!(links.try_recv().is_err(), "no link came up for the replay");
    assert!(messages.try_recv().is_err(), "the replayed message was not delivered again");
    // Real peers are still served, on the old link and on new ones.
    assert_eq!(genuine.call(&proxy.addr, Service::Actors, vec![1, 2], WAIT).await.unwrap(), vec![2, 1]);
    assert_eq!(client("s3cret").call(&addr, Service::Actors, vec![3, 4], WAIT).await.unwrap(), vec![4, 3]);
}

#[tokio::test]
async fn nothing_readable_crosses_the_wire() {
    const MARKER: &[u8] = b"lark-wire-marker-7f3a";
    let (_server, addr, mut messages) = server("s3cret").await;
    let proxy = RecordingProxy::start(addr).await;
    let client = client("s3cret");
    // A palindrome: Echo's reversed answer carries the marker back too.
    let request: Vec<u8> = MARKER.iter().chain(MARKER.iter().rev()).copied().collect();
    assert_eq!(client.call(&proxy.addr, Service::Actors, request.clone(), WAIT).await.unwrap(), request);
    client.send(&proxy.addr, Service::Actors, MARKER.to_vec()).unwrap();
    assert_eq!(tokio::time::timeout(WAIT, messages.recv()).await.unwrap().unwrap(), MARKER);
    let to_server = proxy.to_server.lock().unwrap().clone();
    let to_client = proxy.to_client.lock().unwrap().clone();
    for (direction, bytes) in [("to the server", to_server), ("to the client", to_client)] {
        assert!(bytes.len() > request.len(), "traffic {direction} was recorded");
        assert!(!contains(&bytes, MARKER), "the marker crossed the wire {direction} in clear");
        assert!(!contains(&bytes, b"127.0.0.1:9"), "the Hello crossed the wire {direction} in clear");
    }
}

#[tokio::test]
async fn a_dialler_without_a_client_certificate_is_refused() {
    let (server, addr, mut messages) = server("s3cret").await;
    let mut links = server.link_events();
    let (ca, _) = ca::derive("s3cret", DEFAULT_SERVER_NAME).unwrap();
    let connector = tls::connector_without_certificate(vec![ca]);
    let tcp = TcpStream::connect(&addr).await.unwrap();
    // In TLS 1.3 the client finishes before the server has judged its (missing)
    // certificate, so the refusal may come as an alert on the first read.
    match connector.connect(ServerName::try_from(DEFAULT_SERVER_NAME).unwrap(), tcp).await {
        Err(err) => eprintln!("refused during the tls handshake: {err}"),
        Ok(mut stream) => {
            let hello = Frame::Hello { from: "intruder:1".to_owned(), node: 1, incarnation: 1 };
            if write_frame(&mut stream, &hello).await.is_ok() && stream.flush().await.is_ok() {
                let answer = tokio::time::timeout(WAIT, read_frame(&mut stream, HANDSHAKE_FRAME_BYTES)).await.unwrap();
                match answer {
                    Err(err) => eprintln!("refused after the client's side of the handshake: {err}"),
                    Ok(frame) => panic!("answered without a certificate: {frame:?}"),
                }
            }
        }
    }
    assert!(links.try_recv().is_err(), "no link came up");
    assert!(messages.try_recv().is_err());
    assert_eq!(client("s3cret").call(&addr, Service::Actors, vec![5, 6], WAIT).await.unwrap(), vec![6, 5]);
}

/// Dials `addr` with a genuine certificate and sends a Hello from `from`; the answer.
async fn hello_over_tls(tls: &ClusterTls, addr: &str, from: String) -> Result<Frame, TransportError> {
    let (connector, name) = tls.connector();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = connector.connect(name.clone(), tcp).await.unwrap();
    write_frame(&mut stream, &Frame::Hello { from, node: 7, incarnation: 7 }).await?;
    stream.flush().await.unwrap();
    tokio::time::timeout(WAIT, read_frame(&mut stream, HANDSHAKE_FRAME_BYTES)).await.unwrap()
}

#[tokio::test]
async fn a_hello_beyond_the_pre_auth_frame_limit_is_refused() {
    let (_server, addr, _) = server("s3cret").await;
    let insider = ClusterTls::from_secret("s3cret").unwrap();
    let small = hello_over_tls(&insider, &addr, "a".repeat(HANDSHAKE_FRAME_BYTES - 64)).await;
    assert!(matches!(small, Ok(Frame::Welcome { .. })), "{small:?}");
    // Far below the limit of authenticated peers, above the one before the Hello.
    let big = hello_over_tls(&insider, &addr, "a".repeat(HANDSHAKE_FRAME_BYTES + 1)).await;
    assert!(big.is_err(), "{big:?}");
}

#[tokio::test]
async fn connections_beyond_the_handshake_cap_are_closed_at_once() {
    let (server, addr, _) = server("s3cret").await;
    let mut silent = Vec::new();
    for _ in 0..MAX_HANDSHAKES {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    wait_until(|| server.handshakes.available_permits() == 0).await;
    let mut excess = TcpStream::connect(&addr).await.unwrap();
    read_until_closed(&mut excess).await;
    let mut probe = [0u8; 1];
    let first = silent[0].try_read(&mut probe);
    assert!(
        matches!(&first, Err(err) if err.kind() == ErrorKind::WouldBlock),
        "the excess was closed while the others were still in their handshake: {first:?}"
    );
    drop(silent);
    wait_until(|| server.handshakes.available_permits() == MAX_HANDSHAKES).await;
    assert_eq!(client("s3cret").call(&addr, Service::Actors, vec![1, 0], WAIT).await.unwrap(), vec![0, 1]);
}
