//! The figures of a comparison, the goals with a PASS/MISS verdict each, and the
//! machine-readable `BENCH_RESULT {json}` line.

use serde_json::{json, Value};

use super::idle::IdleFigures;
use super::load::{fmt_opt, Outcome};
use super::logins::LoginFigures;
use super::Settings;
use crate::stats::ms;

/// Everything measured in one `bench all`.
#[derive(Default)]
pub struct Report {
    /// (lark, baseline).
    pub fanout: Option<(Outcome, Outcome)>,
    pub saturation: Option<Saturation>,
    pub rooms: Option<(Outcome, Outcome)>,
    pub idle: Option<IdleFigures>,
    pub logins: Option<LoginFigures>,
}

/// Best sustained (total msg/s, run) of each server, and lark at 70% of its own.
pub struct Saturation {
    pub lark: Option<(f64, Outcome)>,
    pub baseline: Option<(f64, Outcome)>,
    pub lark_at_70: Option<Outcome>,
}

impl Saturation {
    fn max_deliveries(side: &Option<(f64, Outcome)>) -> Option<f64> {
        side.as_ref().map(|(_, run)| run.deliveries_per_sec())
    }
}

/// What a goal asks of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// lark / baseline at most this.
    RatioAtMost(f64),
    /// lark / baseline at least this.
    RatioAtLeast(f64),
    /// lark's figure at most this.
    AtMost(f64),
    /// lark's figure at least this.
    AtLeast(f64),
    /// lark's figure strictly below this.
    Below(f64),
}

impl Goal {
    fn describe(self) -> String {
        match self {
            Goal::RatioAtMost(limit) => format!("ratio <= {limit}"),
            Goal::RatioAtLeast(limit) => format!("ratio >= {limit}"),
            Goal::AtMost(limit) => format!("lark <= {limit}"),
            Goal::AtLeast(limit) => format!("lark >= {limit}"),
            Goal::Below(limit) => format!("lark < {limit}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// The figure was not measured (scenario skipped or failed).
    NotMeasured,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::NotMeasured => "n/a",
        }
    }
}

/// lark / baseline, when both are known and the baseline is not zero.
pub fn ratio(lark: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (lark, baseline) {
        (Some(lark), Some(baseline)) if baseline != 0.0 => Some(lark / baseline),
        _ => None,
    }
}

pub fn verdict(lark: Option<f64>, baseline: Option<f64>, goal: Goal) -> Verdict {
    let value = match goal {
        Goal::RatioAtMost(_) | Goal::RatioAtLeast(_) => ratio(lark, baseline),
        Goal::AtMost(_) | Goal::AtLeast(_) | Goal::Below(_) => lark,
    };
    let Some(value) = value else { return Verdict::NotMeasured };
    let pass = match goal {
        Goal::RatioAtMost(limit) | Goal::AtMost(limit) => value <= limit,
        Goal::RatioAtLeast(limit) | Goal::AtLeast(limit) => value >= limit,
        Goal::Below(limit) => value < limit,
    };
    if pass {
        Verdict::Pass
    } else {
        Verdict::Miss
    }
}

/// One line of the summary.
pub struct Row {
    pub key: &'static str,
    pub name: &'static str,
    pub lark: Option<f64>,
    pub baseline: Option<f64>,
    pub goal: Goal,
}

impl Row {
    fn verdict(&self) -> Verdict {
        verdict(self.lark, self.baseline, self.goal)
    }
}

/// The goals, filled from what was measured.
pub fn rows(report: &Report) -> Vec<Row> {
    let fanout = report.fanout.as_ref();
    let rooms = report.rooms.as_ref();
    let saturation = report.saturation.as_ref();
    let idle = report.idle.as_ref();
    vec![
        Row {
            key: "cpu_us_per_delivery",
            name: "CPU-us per delivery @100 msg/s (1 room x 200)",
            lark: fanout.and_then(|(lark, _)| lark.server_cpu_per_delivery()),
            baseline: fanout.and_then(|(_, bare)| bare.server_cpu_per_delivery()),
            goal: Goal::RatioAtMost(1.3),
        },
        Row {
            key: "max_deliveries_per_sec",
            name: "max sustained deliveries/s (p99 <= 200 ms)",
            lark: saturation.and_then(|s| Saturation::max_deliveries(&s.lark)),
            baseline: saturation.and_then(|s| Saturation::max_deliveries(&s.baseline)),
            goal: Goal::RatioAtLeast(0.6),
        },
        Row {
            key: "rooms_cpu_us_per_delivery",
            name: "rooms (N x 5): CPU-us per delivery",
            lark: rooms.and_then(|(lark, _)| lark.server_cpu_per_delivery()),
            baseline: rooms.and_then(|(_, bare)| bare.server_cpu_per_delivery()),
            goal: Goal::RatioAtMost(2.0),
        },
        Row {
            key: "kib_per_idle_socket",
            name: "KiB per idle WebSocket (fresh node)",
            lark: idle.and_then(|idle| idle.lark.kib_per_socket()),
            baseline: idle.and_then(|idle| idle.baseline.kib_per_socket()),
            goal: Goal::AtMost(10.0),
        },
        Row {
            key: "idle_sockets_opened",
            name: "idle WebSockets held by one node",
            lark: idle.map(|idle| idle.lark.opened as f64),
            baseline: idle.map(|idle| idle.baseline.opened as f64),
            goal: Goal::AtLeast(100_000.0),
        },
        Row {
            key: "p99_ms_at_70pct",
            name: "p99 ms at 70% of lark's saturation",
            lark: saturation.and_then(|s| s.lark_at_70.as_ref()).and_then(|run| run.p99_us).map(|us| us as f64 / 1e3),
            baseline: None,
            goal: Goal::AtMost(20.0),
        },
        Row {
            key: "rss_mb_after_logins",
            name: "RSS MB after the login burst (last reading)",
            lark: report.logins.as_ref().and_then(LoginFigures::final_kib).map(|kib| kib as f64 * 1024.0 / 1e6),
            baseline: None,
            goal: Goal::Below(100.0),
        },
    ]
}

fn num(value: Option<f64>) -> String {
    match value {
        Some(value) if value.abs() >= 1000.0 => format!("{value:.0}"),
        other => fmt_opt(other),
    }
}

/// A lark / baseline / ratio table for one traffic scenario.
pub fn print_pair(title: &str, lark: &Outcome, baseline: &Outcome) {
    let pair = |name: &str, lark: Option<f64>, bare: Option<f64>| {
        println!("{name:<34} {:>12} {:>12} {:>8}", num(lark), num(bare), fmt_opt(ratio(lark, bare)));
    };
    println!("\n== {title}: lark / baseline ==");
    println!("{:<34} {:>12} {:>12} {:>8}", "", "lark", "baseline", "ratio");
    let p = |run: &Outcome, us: fn(&Outcome) -> Option<u64>| us(run).map(|us| us as f64 / 1e3);
    pair("server CPU-us per delivery", lark.server_cpu_per_delivery(), baseline.server_cpu_per_delivery());
    pair("bench CPU-us per delivery", lark.bench_cpu_per_delivery(), baseline.bench_cpu_per_delivery());
    pair("deliveries/s", Some(lark.deliveries_per_sec()), Some(baseline.deliveries_per_sec()));
    pair("delivery p50 ms", p(lark, |run| run.p50_us), p(baseline, |run| run.p50_us));
    pair("delivery p99 ms", p(lark, |run| run.p99_us), p(baseline, |run| run.p99_us));
    pair("delivered / expected", Some(lark.delivered as f64), Some(baseline.delivered as f64));
    println!("{:<34} {:>12} {:>12}", "", lark.expected, baseline.expected);
}

pub fn print_saturation(saturation: &Saturation) {
    let lark = Saturation::max_deliveries(&saturation.lark);
    let bare = Saturation::max_deliveries(&saturation.baseline);
    println!("\n== saturation: lark / baseline ==");
    println!(
        "max sustained deliveries/s: lark {} baseline {} ratio {}",
        num(lark),
        num(bare),
        fmt_opt(ratio(lark, bare))
    );
    if let Some(run) = &saturation.lark_at_70 {
        println!(
            "lark at 70% ({:.0} msg/s, {:.0} deliveries/s): p50 {} p99 {}",
            run.target_rate,
            run.deliveries_per_sec(),
            ms(run.p50_us),
            ms(run.p99_us)
        );
    }
}

/// The goal table and the `BENCH_RESULT` line.
pub fn print(report: &Report, settings: &Settings) {
    let rows = rows(report);
    println!("\n== summary: backend {:?}{} ==", settings.backend, if settings.quick { " (quick)" } else { "" });
    println!("{:<46} {:>12} {:>12} {:>8} {:>16} {:>7}", "goal", "lark", "baseline", "ratio", "target", "verdict");
    for row in &rows {
        println!(
            "{:<46} {:>12} {:>12} {:>8} {:>16} {:>7}",
            row.name,
            num(row.lark),
            num(row.baseline),
            fmt_opt(ratio(row.lark, row.baseline)),
            row.goal.describe(),
            row.verdict().label()
        );
    }
    if let Some(saturation) = &report.saturation {
        if let Some(run) = &saturation.lark_at_70 {
            println!("(lark at 70% of its saturation: p50 {}, p99 {})", ms(run.p50_us), ms(run.p99_us));
        }
    }
    println!("BENCH_RESULT {}", result_json(report, settings, &rows));
}

fn result_json(report: &Report, settings: &Settings, rows: &[Row]) -> Value {
    let goals: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "key": row.key,
                "lark": row.lark,
                "baseline": row.baseline,
                "ratio": ratio(row.lark, row.baseline),
                "target": row.goal.describe(),
                "verdict": row.verdict().label(),
            })
        })
        .collect();
    let run = |run: &Outcome| {
        json!({
            "server_cpu_us_per_delivery": run.server_cpu_per_delivery(),
            "bench_cpu_us_per_delivery": run.bench_cpu_per_delivery(),
            "deliveries_per_sec": run.deliveries_per_sec(),
            "delivered": run.delivered,
            "expected": run.expected,
            "p50_ms": run.p50_us.map(|us| us as f64 / 1e3),
            "p99_ms": run.p99_us.map(|us| us as f64 / 1e3),
            "max_ms": run.max_us.map(|us| us as f64 / 1e3),
            "send_secs": run.send_secs,
        })
    };
    let logins = report.logins.as_ref().map(|logins| {
        json!({
            "logins": logins.logins,
            "burst_secs": logins.burst_secs,
            "fresh_kib": logins.fresh_kib,
            "peak_kib": logins.peak_kib,
            "final_kib": logins.final_kib(),
        })
    });
    json!({
        "backend": format!("{:?}", settings.backend).to_lowercase(),
        "quick": settings.quick,
        "node_bin": super::binary_stamp(&settings.spawn.bin),
        "load_average": super::load_average(),
        "goals": goals,
        "fanout": report.fanout.as_ref().map(|(lark, bare)| json!({ "lark": run(lark), "baseline": run(bare) })),
        "rooms": report.rooms.as_ref().map(|(lark, bare)| json!({ "lark": run(lark), "baseline": run(bare) })),
        "saturation": report.saturation.as_ref().map(|s| json!({
            "lark_msg_per_sec": s.lark.as_ref().map(|(rate, _)| rate),
            "baseline_msg_per_sec": s.baseline.as_ref().map(|(rate, _)| rate),
            "lark_at_70": s.lark_at_70.as_ref().map(run),
        })),
        "logins": logins,
        "idle": report.idle.as_ref().map(|idle| json!({
            "requested": idle.requested,
            "lark": { "opened": idle.lark.opened, "failed": idle.lark.failed, "kib_per_socket": idle.lark.kib_per_socket() },
            "baseline": {
                "opened": idle.baseline.opened,
                "failed": idle.baseline.failed,
                "kib_per_socket": idle.baseline.kib_per_socket(),
            },
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_need_both_sides() {
        assert_eq!(ratio(Some(13.0), Some(10.0)), Some(1.3));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    #[test]
    fn verdicts_follow_the_goal() {
        assert_eq!(verdict(Some(13.0), Some(10.0), Goal::RatioAtMost(1.3)), Verdict::Pass);
        assert_eq!(verdict(Some(17.3), Some(9.9), Goal::RatioAtMost(1.3)), Verdict::Miss);
        assert_eq!(verdict(Some(40e3), Some(140e3), Goal::RatioAtLeast(0.6)), Verdict::Miss);
        assert_eq!(verdict(Some(90e3), Some(140e3), Goal::RatioAtLeast(0.6)), Verdict::Pass);
        assert_eq!(verdict(Some(29.3), Some(7.0), Goal::AtMost(10.0)), Verdict::Miss);
        assert_eq!(verdict(Some(9.0), None, Goal::AtMost(10.0)), Verdict::Pass);
        assert_eq!(verdict(Some(100.0), None, Goal::Below(100.0)), Verdict::Miss);
        assert_eq!(verdict(None, Some(1.0), Goal::AtMost(10.0)), Verdict::NotMeasured);
        assert_eq!(verdict(Some(1.0), None, Goal::RatioAtMost(1.3)), Verdict::NotMeasured);
    }

    #[test]
    fn an_empty_report_measures_nothing() {
        let rows = rows(&Report::default());
        assert_eq!(rows.len(), 7);
        assert!(rows.iter().all(|row| row.verdict() == Verdict::NotMeasured));
    }
}
