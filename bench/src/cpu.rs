//! Server CPU time from `/proc/<pid>/stat` (utime + stime), to divide by the deliveries made.
//!
//! The kernel counts in clock ticks. Without libc the bench cannot call `sysconf(_SC_CLK_TCK)`,
//! so it asks `getconf CLK_TCK` once and assumes 100 (the Linux value on every common
//! architecture) if that fails. One tick is 10 ms: a measured window should hold at least a
//! few hundred ticks of server CPU for the figure to be meaningful.

use std::sync::OnceLock;

/// Clock ticks per second, assumed when `getconf CLK_TCK` cannot be run.
const ASSUMED_CLK_TCK: u64 = 100;

static CLK_TCK: OnceLock<u64> = OnceLock::new();

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn clk_tck() -> u64 {
    *CLK_TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks: &u64| ticks > 0)
            .unwrap_or(ASSUMED_CLK_TCK)
    })
}

/// utime + stime in clock ticks from the text of `/proc/<pid>/stat`.
///
/// The second field is the command name in parentheses and may itself contain spaces and
/// parentheses, so fields are counted after the last `)`: there the state is field 3, utime
/// field 14 and stime field 15.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) a process has used so far, in microseconds; `pid` may be `self`.
pub fn cpu_micros(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat_ticks(&stat)? * 1_000_000 / clk_tck())
}

/// A process's CPU time at the start of a measured window.
#[derive(Debug, Clone)]
pub struct Window {
    pid: String,
    start: Option<u64>,
}

impl Window {
    pub fn start(pid: &str) -> Self {
        Self { pid: pid.to_owned(), start: cpu_micros(pid) }
    }

    /// CPU microseconds used since [`Window::start`].
    pub fn elapsed_micros(&self) -> Option<u64> {
        Some(cpu_micros(&self.pid)?.saturating_sub(self.start?))
    }
}

/// CPU microseconds per delivery, if anything was delivered.
pub fn per_delivery(cpu_micros: Option<u64>, deliveries: u64) -> Option<f64> {
    let cpu = cpu_micros?;
    (deliveries > 0).then(|| cpu as f64 / deliveries as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let stat = "4242 (node) S 1 4242 4242 0 -1 4194560 3000 0 0 0 150 25 0 0 20 0 9 0 100 1000 500";
        assert_eq!(parse_stat_ticks(stat), Some(175));
    }

    #[test]
    fn command_names_may_hold_spaces_and_parentheses() {
        let stat = "7 (tokio (worker) 1) R 1 7 7 0 -1 0 0 0 0 0 1000 234 0 0 20 0 2 0 1 1 1";
        assert_eq!(parse_stat_ticks(stat), Some(1234));
        assert_eq!(parse_stat_ticks("7 (cut"), None);
        assert_eq!(parse_stat_ticks("7 (short) R 1 2"), None);
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(cpu_micros("self").is_some());
        assert!(clk_tck() > 0);
    }

    #[test]
    fn divides_by_deliveries() {
        assert_eq!(per_delivery(Some(1_000), 100), Some(10.0));
        assert_eq!(per_delivery(Some(1_000), 0), None);
        assert_eq!(per_delivery(None, 10), None);
    }
}
