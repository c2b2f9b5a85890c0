//! The traffic scenarios, each run against lark and then the baseline:
//! - `fanout-ratio`: 1 room × 200 sockets, 5 senders, 100 msg/s in total (20k deliveries/s).
//! - `saturation`: the same room at doubling total rates (then bisected) until p99 > 200 ms
//!   or deliveries fall behind; then lark at 70% of its own maximum.
//! - `rooms`: 1,000 rooms × 5 sockets, the first socket of each room sends, 200 msg/s in all.
//!
//! Every measured run uses freshly connected sockets, so a backlog left by an overloaded step
//! cannot leak into the next one.

use anyhow::Context;

use super::load::{self, Outcome, Plan};
use super::servers::{self, Side, Target};
use super::summary::{self, Report, Saturation};
use super::{Settings, Which};
use crate::api::Api;
use crate::baseline::Baseline;
use crate::node::Node;

/// Lark users whose tokens the sockets share (each sender is a different user).
const LARK_USERS: usize = 10;

pub async fn run(
    which: Which,
    settings: &Settings,
    node: &Node,
    baseline: &Baseline,
    report: &mut Report,
) -> anyhow::Result<()> {
    let node_pid = node.pid.context("the spawned node has no pid")?;
    let api = Api::new(&node.base)?;
    let accounts = servers::lark_accounts(&api, LARK_USERS.max(settings.room_size)).await?;
    let one_room = servers::lark_rooms(&api, &accounts, 1).await?;
    let lark = Side { target: one_room, pid: node_pid };
    let bare = Side { target: Target::baseline(&baseline.ws_base), pid: baseline.pid };

    if which.includes(Which::Fanout) {
        println!("\n== fanout-ratio: 1 room x {} sockets, {} msg/s ==", settings.subscribers, settings.fanout_rate);
        let lark_run = fanout(&lark, settings, settings.fanout_rate, settings.seconds, settings.drain).await?;
        println!("  lark:     {}", lark_run.summary());
        let bare_run = fanout(&bare, settings, settings.fanout_rate, settings.seconds, settings.drain).await?;
        println!("  baseline: {}", bare_run.summary());
        summary::print_pair("fanout-ratio", &lark_run, &bare_run);
        report.fanout = Some((lark_run, bare_run));
    }
    if which.includes(Which::Saturation) {
        println!("\n== saturation: 1 room x {} sockets, p99 limit 200 ms ==", settings.subscribers);
        let lark_max = saturate("lark", &lark, settings).await?;
        let bare_max = saturate("baseline", &bare, settings).await?;
        let at_70 = match &lark_max {
            Some((rate, _)) => {
                let rate = rate * 0.7;
                println!("  lark at 70% of its maximum: {rate:.0} msg/s for {} s", settings.seconds);
                let run = fanout(&lark, settings, rate, settings.seconds, settings.drain).await?;
                println!("  lark:     {}", run.summary());
                Some(run)
            }
            None => None,
        };
        let saturation = Saturation { lark: lark_max, baseline: bare_max, lark_at_70: at_70 };
        summary::print_saturation(&saturation);
        report.saturation = Some(saturation);
    }
    if which.includes(Which::Rooms) {
        println!(
            "\n== rooms: {} rooms x {} sockets, {} msg/s spread over the rooms ==",
            settings.rooms, settings.room_size, settings.rooms_rate
        );
        let started = std::time::Instant::now();
        let many = servers::lark_rooms(&api, &accounts[..settings.room_size], settings.rooms).await?;
        println!("  lark: {} channels created and joined in {:.1} s", settings.rooms, started.elapsed().as_secs_f64());
        let lark_rooms = Side { target: many, pid: node_pid };
        let lark_run = rooms(&lark_rooms, settings).await?;
        println!("  lark:     {}", lark_run.summary());
        let bare_run = rooms(&bare, settings).await?;
        println!("  baseline: {}", bare_run.summary());
        summary::print_pair("rooms", &lark_run, &bare_run);
        report.rooms = Some((lark_run, bare_run));
    }
    Ok(())
}

/// One room, every socket subscribed, the first `senders` sockets send.
async fn fanout(
    side: &Side,
    settings: &Settings,
    rate: f64,
    seconds: f64,
    drain: std::time::Duration,
) -> anyhow::Result<Outcome> {
    let target = side.fresh();
    let sockets = target.connect_rooms(1, settings.subscribers).await.context("connecting the room")?;
    let senders: Vec<usize> = (0..settings.senders).collect();
    let plan = Plan { rate, seconds, drain, room_size: settings.subscribers as u64, sender_tasks: settings.senders };
    Ok(load::run(sockets, &senders, target.frame_fn(), &plan, side.pid).await)
}

/// Doubles the rate while the server keeps up, then bisects between the last rate that
/// passed and the first that failed; answers the best passing rate and its run.
async fn saturate(label: &str, side: &Side, settings: &Settings) -> anyhow::Result<Option<(f64, Outcome)>> {
    let seconds = settings.saturation_step_seconds;
    let mut best: Option<(f64, Outcome)> = None;
    let mut failed_at: Option<f64> = None;
    let mut rate = settings.saturation_start_rate;
    let step = |rate: f64| async move {
        let run = fanout(side, settings, rate, seconds, settings.saturation_drain).await?;
        let pass = run.sustained(seconds, settings.saturation_p99_us);
        println!(
            "  {label:<8} {rate:>6.0} msg/s ({:>7.0} deliveries/s asked): {} -> {}",
            rate * settings.subscribers as f64,
            run.summary(),
            if pass { "kept up" } else { "fell behind" }
        );
        anyhow::Ok((pass, run))
    };
    for _ in 0..settings.saturation_doublings {
        let (pass, run) = step(rate).await?;
        if !pass {
            failed_at = Some(rate);
            break;
        }
        best = Some((rate, run));
        rate *= 2.0;
    }
    // The start rate already failed: halve a few times to find one that passes.
    if best.is_none() {
        for _ in 0..3 {
            rate /= 2.0;
            let (pass, run) = step(rate).await?;
            if pass {
                best = Some((rate, run));
                break;
            }
        }
    }
    if failed_at.is_none() {
        if let Some((rate, _)) = &best {
            println!("  {label:<8} never fell behind: {rate:.0} msg/s is a lower bound of its maximum");
        }
    }
    if let (Some(mut low), Some(mut high)) = (best.as_ref().map(|(rate, _)| *rate), failed_at) {
        for _ in 0..settings.saturation_bisections {
            let middle = (low + high) / 2.0;
            let (pass, run) = step(middle).await?;
            if pass {
                low = middle;
                best = Some((middle, run));
            } else {
                high = middle;
            }
        }
    }
    Ok(best)
}

/// `rooms × room_size` sockets; the first socket of every room sends, round-robin.
async fn rooms(side: &Side, settings: &Settings) -> anyhow::Result<Outcome> {
    let target = side.fresh();
    let started = std::time::Instant::now();
    let sockets = target.connect_rooms(settings.rooms, settings.room_size).await.context("connecting the rooms")?;
    println!("  connected {} sockets in {:.1} s", sockets.len(), started.elapsed().as_secs_f64());
    let senders: Vec<usize> = (0..settings.rooms).map(|room| room * settings.room_size).collect();
    let plan = Plan {
        rate: settings.rooms_rate,
        seconds: settings.seconds,
        drain: settings.drain,
        room_size: settings.room_size as u64,
        sender_tasks: 10,
    };
    Ok(load::run(sockets, &senders, target.frame_fn(), &plan, side.pid).await)
}
