//! WebSocket connections from many loopback source addresses, so that 100k+ sockets to one
//! server port do not run out of ephemeral ports (about 28k per source address by default).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use anyhow::Context;
use tokio::net::{lookup_host, TcpSocket};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::MaybeTlsStream;

use crate::client::{self, ConnectError, Ws, CALL_TIMEOUT};

/// Loopback source addresses cycled through: 127.0.0.2 ..= 127.0.0.(1 + SOURCES).
const SOURCES: usize = 16;
/// Client-side read buffer per socket (small frames only).
const READ_BUFFER_BYTES: usize = 8 * 1024;

static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// The source address for the next connection to `server`: cycles through 127.0.0.2..17 when
/// the server is on loopback (all of 127/8 is local on Linux), else lets the kernel choose.
pub fn source_for(server: &SocketAddr) -> Option<IpAddr> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let index = NEXT_SOURCE.fetch_add(1, Relaxed) % SOURCES;
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + index as u8)))
        }
        _ => None,
    }
}

/// Opens `url` (`ws://host:port/path?query`) from a cycled source address and waits for the
/// server's first text frame, which must be `{"type":"hello",…}`.
pub async fn connect(url: &str) -> Result<Ws, ConnectError> {
    let attempt = async {
        let ws = open(url).await?;
        anyhow::Ok(ws)
    };
    let mut ws = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(err)) => return Err(client::classify(err)),
        Err(_) => return Err(ConnectError::Other(anyhow::anyhow!("WebSocket handshake timed out"))),
    };
    match client::next_json(&mut ws).await {
        Ok(hello) if hello["type"] == "hello" => Ok(ws),
        Ok(other) => Err(ConnectError::Other(anyhow::anyhow!("expected hello, got {other}"))),
        Err(err) => Err(client::classify(err.context("waiting for hello"))),
    }
}

async fn open(url: &str) -> anyhow::Result<Ws> {
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .with_context(|| format!("not a ws:// URL: {url}"))?;
    let server = lookup_host(authority).await?.next().with_context(|| format!("no address for {authority}"))?;
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source_for(&server) {
        socket.bind(SocketAddr::new(source, 0)).with_context(|| format!("binding {source}"))?;
    }
    let stream = socket.connect(server).await.with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(stream), Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_loopback_sources_only() {
        let loopback: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let sources: Vec<_> = (0..SOURCES * 2).filter_map(|_| source_for(&loopback)).collect();
        assert_eq!(sources.len(), SOURCES * 2);
        assert!(sources
            .iter()
            .all(|ip| matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] >= 2)));
        assert!(source_for(&"10.1.2.3:80".parse().unwrap()).is_none());
    }
}
