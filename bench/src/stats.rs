//! The bench clock, latency percentiles and the plain-text result table.

use std::sync::OnceLock;
use std::time::Instant;

static CLOCK: OnceLock<Instant> = OnceLock::new();

/// Fixes the bench's time origin; timestamps in message bodies are relative to it.
pub fn start_clock() {
    CLOCK.get_or_init(Instant::now);
}

/// Microseconds since the bench started (all clients share one process, so one clock).
pub fn now_micros() -> u64 {
    let origin = *CLOCK.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

impl Samples {
    pub fn push(&mut self, micros: u64) {
        self.0.push(micros);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Sorts once; call before asking for percentiles.
    pub fn sorted(mut self) -> Sorted {
        self.0.sort_unstable();
        Sorted(self.0)
    }
}

pub struct Sorted(Vec<u64>);

impl Sorted {
    /// The nearest-rank percentile (`p` in 0..=100), or `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = (p / 100.0 * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    pub fn max(&self) -> Option<u64> {
        self.0.last().copied()
    }
}

/// Formats microseconds as milliseconds with three decimals, or `n/a`.
pub fn ms(micros: Option<u64>) -> String {
    match micros {
        Some(us) => format!("{:.3} ms", us as f64 / 1000.0),
        None => "n/a".to_owned(),
    }
}

/// A two-column plain-text table, one figure per line.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn row(&mut self, label: &str, value: impl std::fmt::Display) {
        self.rows.push((label.to_owned(), value.to_string()));
    }

    pub fn print(&self, title: &str) {
        let width = self.rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
        println!();
        println!("== {title} ==");
        for (label, value) in &self.rows {
            println!("{:<width$} {value}", format!("{label}:"), width = width);
        }
    }
}

/// Reads a `kB` field (e.g. `VmRSS`) from `/proc/<pid>/status`.
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The soft "Max open files" limit of a process, from `/proc/<pid>/limits`.
pub fn open_files_limit(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples = Samples::default();
        for value in (1..=100).rev() {
            samples.push(value);
        }
        let sorted = samples.sorted();
        assert_eq!(sorted.percentile(50.0), Some(50));
        assert_eq!(sorted.percentile(99.0), Some(99));
        assert_eq!(sorted.percentile(100.0), Some(100));
        assert_eq!(sorted.percentile(0.0), Some(1));
        assert_eq!(sorted.max(), Some(100));
        assert_eq!(Samples::default().sorted().percentile(50.0), None);
    }

    #[test]
    fn reads_own_proc_files() {
        assert!(proc_status_kib("self", "VmRSS").is_some_and(|kib| kib > 0));
        assert!(open_files_limit("self").is_some_and(|limit| limit > 0));
    }
}
