//! The cluster port of real node processes under attack from the local network: a captured
//! handshake replayed, forged and garbage handshakes, and many unauthenticated connections
//! that announce huge frames. The node must refuse them, stay small and keep serving.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::sandbox::ClusterSandbox;
use integration_tests::WAIT;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a proxy saw clients send, one entry per connection.
type Captured = Arc<Mutex<Vec<Vec<u8>>>>;

/// A TCP proxy in front of `target` that records what each client sent.
async fn recording_proxy(target: String) -> (String, Captured) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
    let addr = listener.local_addr().expect("proxy address").to_string();
    let captured = Captured::default();
    let connections = captured.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else { continue };
            let slot = {
                let mut connections = connections.lock().unwrap();
                connections.push(Vec::new());
                connections.len() - 1
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let record = connections.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(read @ 1..) = client_read.read(&mut buf).await {
                    record.lock().unwrap()[slot].extend_from_slice(&buf[..read]);
                    if server_write.write_all(&buf[..read]).await.is_err() {
                        break;
                    }
                }
            });
            // The other direction unrecorded; a copy error is the end of the connection.
            tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
        }
    });
    (addr, captured)
}

/// Sends `bytes` on a fresh connection to `addr` and reads until the node closes it.
/// `None` when the node kept the connection open (it accepted what it was sent).
async fn answer_then_close(addr: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.expect("the cluster port accepts");
    if let Err(err) = stream.write_all(bytes).await {
        eprintln!("the node hung up during the write ({err}): a refusal");
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(received),
            Ok(Ok(read)) => received.extend_from_slice(&buf[..read]),
        }
    }
}

/// postcard's unsigned varint.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The Hello of the old plaintext handshake (address, node, incarnation, time, nonce, mac),
/// with a made-up mac, framed with its 4-byte length.
fn forged_old_hello() -> Vec<u8> {
    let mut hello = vec![0]; // variant 0: Hello
    let from = b"127.0.0.99:7000";
    varint(from.len() as u64, &mut hello);
    hello.extend_from_slice(from);
    varint(42, &mut hello);
    varint(7, &mut hello);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    varint(now, &mut hello);
    for len in [16, 32] {
        varint(len, &mut hello);
        hello.extend(std::iter::repeat_n(0xab, len as usize));
    }
    let mut framed = (hello.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&hello);
    framed
}

/// A user on node 1 receives what an admin sends through node 0: actor traffic crossed.
async fn a_message_crosses_nodes(cluster: &ClusterSandbox, client_msg_id: &str) {
    let admin = cluster.company(0).await;
    let bob = admin.add_user("bob").await.on(&cluster.nodes[1].http());
    let channel = admin.channel("general", false).await.to_string();
    let (status, answer) = bob.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let mut ws = bob.connect().await;
    ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    let body = format!("still serving {client_msg_id}");
    let message = json!({"client_msg_id": client_msg_id, "body": body});
    let (status, answer) = admin.post(&format!("/v1/channels/{channel}/messages"), &message).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(ws.next_of("event").await["event"]["message"]["body"], body.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_forged_and_garbage_handshakes_are_refused_and_the_cluster_keeps_serving() {
    let Some(mut cluster) = ClusterSandbox::start(1).await else { return };
    let target = cluster.nodes[0].cluster_addr();
    // Node 1 joins through a proxy that records its genuine handshake with node 0.
    let (proxy, captured) = recording_proxy(target.clone()).await;
    cluster.add_node_via(vec![proxy]).await;
    cluster.wait_for_members(2, Duration::from_secs(60)).await;
    let genuine = captured.lock().unwrap().first().cloned().expect("node 1 dialled through the proxy");
    assert!(!genuine.is_empty());

    let attempts: [(&str, Vec<u8>); 5] = [
        ("the captured handshake, byte for byte", genuine.clone()),
        ("the captured handshake twice in a row", [genuine.clone(), genuine].concat()),
        ("a forged hello of the old plaintext protocol", forged_old_hello()),
        ("a 16 MiB length prefix", (16u32 << 20).to_be_bytes().to_vec()),
        ("an http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in attempts {
        let answer = answer_then_close(&target, &bytes).await;
        let answer = answer.unwrap_or_else(|| panic!("{what}: the node kept the connection open"));
        eprintln!("{what}: {} bytes sent, {} bytes back, then closed", bytes.len(), answer.len());
    }
    assert!(cluster.log(0).contains("cluster handshake refused"), "the node says so");

    // The cluster still works, across nodes.
    cluster.wait_for_members(2, Duration::from_secs(10)).await;
    a_message_crosses_nodes(&cluster, "after-replay").await;
}

/// How a flooding connection announces its big frame.
fn announcement(index: usize) -> Vec<u8> {
    if index.is_multiple_of(2) {
        // The old framing: a 16 MiB length prefix.
        (16u32 << 20).to_be_bytes().to_vec()
    } else {
        // TLS-shaped: a 16 KiB handshake record starting a ClientHello of 16 MiB.
        vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff]
    }
}

const FLOOD_CONNECTIONS: usize = 50;
const FLOOD_BYTES_EACH: usize = 4 << 20;

/// Announces a big frame and pushes up to [`FLOOD_BYTES_EACH`] after it; the open stream
/// and how much the node took before it hung up.
async fn flood(addr: String, index: usize) -> (TcpStream, usize) {
    let mut stream = TcpStream::connect(&addr).await.expect("the cluster port accepts");
    let chunk = vec![0x5a; 64 * 1024];
    let mut sent = 0;
    if stream.write_all(&announcement(index)).await.is_ok() {
        while sent < FLOOD_BYTES_EACH && stream.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
    }
    (stream, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_announcing_huge_frames_cost_the_node_little() {
    let Some(cluster) = ClusterSandbox::start(2).await else { return };
    let target = cluster.nodes[0].cluster_addr();
    let before = cluster.nodes[0].rss_kib().expect("rss of node 0");
    let floods: Vec<_> = (0..FLOOD_CONNECTIONS).map(|index| tokio::spawn(flood(target.clone(), index))).collect();
    let mut held = Vec::new();
    let mut taken = 0;
    for flood in floods {
        let (stream, sent) = tokio::time::timeout(WAIT, flood).await.expect("floods end").expect("flood task");
        held.push(stream);
        taken += sent;
    }
    // Measured while the connections are still open (a node that buffered would still hold it).
    let after = cluster.nodes[0].rss_kib().expect("rss of node 0");
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "{FLOOD_CONNECTIONS} connections announcing 16 MiB frames, {:.1} MiB written before the node hung up: \
         node rss {:.1} MiB → {:.1} MiB (+{grown_mib:.1} MiB)",
        taken as f64 / (1 << 20) as f64,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
    );
    assert!(grown_mib < 32.0, "the node grew by {grown_mib:.1} MiB for unauthenticated connections");
    drop(held);
    cluster.wait_for_members(2, Duration::from_secs(10)).await;
    a_message_crosses_nodes(&cluster, "after-flood").await;
}
