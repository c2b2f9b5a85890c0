//! The fake FCM server (`integration_tests::fake_fcm`) on a fixed port, for local runs.
//!
//! Run with:
//! ```text
//! cargo run --release -p integration-tests --bin mock_firebase -- --port 9099 --service-account /tmp/fcm-sa.json
//! FCM_SERVICE_ACCOUNT_FILE=/tmp/fcm-sa.json FCM_BASE_URL=http://127.0.0.1:9099 cargo run --release -p node
//! ```
//! `--bind 0.0.0.0` serves other machines or containers too (default 127.0.0.1).
//! `--release` reuses the node's release build: only this crate is compiled on top.
//! Inspect with `curl localhost:9099/_fake/messages`; script failures with
//! `curl -X POST localhost:9099/_fake/script -H 'content-type: application/json'
//! -d '{"device_token":null,"reply":{"kind":"unavailable"},"times":2}'`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use integration_tests::fake_fcm::FakeFcm;

struct Args {
    bind: IpAddr,
    port: u16,
    service_account: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { bind: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 9099, service_account: None };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--port" => {
                let value = words.next().context("--port needs a value")?;
                args.port = value.parse().with_context(|| format!("bad port {value:?}"))?;
            }
            "--bind" => {
                let value = words.next().context("--bind needs an address")?;
                args.bind = value.parse().with_context(|| format!("bad address {value:?} (an IP, e.g. 0.0.0.0)"))?;
            }
            "--service-account" => {
                args.service_account = Some(words.next().context("--service-account needs a path")?.into());
            }
            "-h" | "--help" => {
                println!("usage: mock_firebase [--bind 127.0.0.1] [--port 9099] [--service-account <path>]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let fake = FakeFcm::start_on(SocketAddr::new(args.bind, args.port)).await?;
    println!("fake fcm listening on {}", fake.base_url);
    println!("  token endpoint: {}", fake.token_uri);
    println!("  send endpoint:  {}/v1/projects/{}/messages:send", fake.base_url, fake.project_id);
    println!("  FCM_BASE_URL={}", fake.base_url);
    if let Some(path) = &args.service_account {
        fake.write_service_account(path)?;
        println!("  FCM_SERVICE_ACCOUNT_FILE={}", path.display());
    }
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    println!("fake fcm stopped: {} messages received", fake.received().len());
    Ok(())
}
