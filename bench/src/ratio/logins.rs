//! `logins`: a fresh node takes a burst of logins (password hashing is argon2, 19 MiB of
//! working memory each), then its RSS is read every 5 s for a minute. The goal is that the
//! node gives that memory back: under 100 MB a minute after the burst.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::Settings;
use crate::api::Api;
use crate::node::Node;

/// Users the logins cycle through.
const USERS: usize = 10;
/// RSS is read this often during the burst (for the peak) and afterwards.
const BURST_SAMPLE: Duration = Duration::from_millis(250);
const AFTER_SAMPLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct LoginFigures {
    pub logins: usize,
    pub burst_secs: f64,
    pub fresh_kib: Option<u64>,
    pub peak_kib: Option<u64>,
    pub end_of_burst_kib: Option<u64>,
    /// (seconds after the burst, KiB).
    pub after: Vec<(u64, Option<u64>)>,
}

impl LoginFigures {
    /// RSS at the last reading (60 s after the burst, or less with `--quick`).
    pub fn final_kib(&self) -> Option<u64> {
        self.after.last().and_then(|(_, kib)| *kib)
    }
}

pub async fn run(settings: &Settings) -> anyhow::Result<LoginFigures> {
    println!("\n== logins: {} logins on a fresh node, then RSS every 5 s ==", settings.logins);
    let node = Node::spawn(&settings.spawn).await?;
    let outcome = burst(&node, settings).await;
    if outcome.is_err() {
        node.print_log_tail(20);
    }
    node.stop(Duration::from_secs(5)).await;
    outcome
}

async fn burst(node: &Node, settings: &Settings) -> anyhow::Result<LoginFigures> {
    let fresh_kib = node.rss_kib();
    let api = Api::new(&node.base)?;
    let (slug, admin) = api.create_company().await?;
    let names: Vec<String> = (1..USERS).map(|index| format!("user{index}")).collect();
    stream::iter(&names)
        .map(|name| api.create_user(&admin, name))
        .buffer_unordered(settings.login_concurrency)
        .try_for_each(|()| async { Ok(()) })
        .await
        .context("creating users")?;
    let peak = Arc::new(AtomicU64::new(fresh_kib.unwrap_or(0)));
    let sampler = {
        let (peak, pid) = (peak.clone(), node.pid);
        tokio::spawn(async move {
            loop {
                if let Some(kib) = pid.and_then(|pid| crate::stats::proc_status_kib(&pid.to_string(), "VmRSS")) {
                    peak.fetch_max(kib, Relaxed);
                }
                tokio::time::sleep(BURST_SAMPLE).await;
            }
        })
    };
    let started = Instant::now();
    let logged_in = stream::iter(0..settings.logins)
        .map(|index| {
            let (api, slug) = (&api, &slug);
            let name = if index % USERS == 0 { "admin".to_owned() } else { format!("user{}", index % USERS) };
            async move { api.login(slug, &name).await }
        })
        .buffer_unordered(settings.login_concurrency)
        .try_fold(0usize, |count, _| async move { Ok(count + 1) })
        .await;
    let burst_secs = started.elapsed().as_secs_f64();
    let end_of_burst_kib = node.rss_kib();
    let logins = match logged_in {
        Ok(count) => count,
        Err(err) => {
            sampler.abort();
            return Err(err.context("logging in"));
        }
    };
    println!(
        "  {logins} logins in {burst_secs:.1} s ({:.0}/s), {} users, {} at a time",
        logins as f64 / burst_secs.max(1e-9),
        USERS,
        settings.login_concurrency
    );
    let mut after = Vec::new();
    let observe_start = Instant::now();
    let mut next = AFTER_SAMPLE;
    while next <= settings.logins_observe {
        tokio::time::sleep(next.saturating_sub(observe_start.elapsed())).await;
        let kib = node.rss_kib();
        println!("  RSS {:>2} s after the burst: {}", next.as_secs(), mib(kib));
        after.push((next.as_secs(), kib));
        next += AFTER_SAMPLE;
    }
    sampler.abort();
    let figures = LoginFigures {
        logins,
        burst_secs,
        fresh_kib,
        peak_kib: Some(peak.load(Relaxed)).filter(|&kib| kib > 0),
        end_of_burst_kib,
        after,
    };
    println!(
        "  RSS fresh {}, peak {}, end of burst {}, {} s later {}",
        mib(figures.fresh_kib),
        mib(figures.peak_kib),
        mib(figures.end_of_burst_kib),
        settings.logins_observe.as_secs(),
        mib(figures.final_kib())
    );
    Ok(figures)
}

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".to_owned(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
}
