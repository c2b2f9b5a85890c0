//! Pure bookkeeping with no I/O: latency samples and their histogram, the per-user,
//! per-channel sequence check (duplicates, order, holes), per-second series and a tiny
//! deterministic random generator.

use std::collections::BTreeSet;

/// Upper edges (ms) of the latency histogram's buckets; one more bucket holds the rest.
pub const BUCKET_EDGES_MS: [f64; 24] = [
    1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 750.0, 1000.0,
    1500.0, 2000.0, 3000.0, 5000.0, 10000.0, 20000.0,
];

/// Latency samples in milliseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<f64>,
}

impl Latencies {
    pub fn push(&mut self, ms: f64) {
        self.samples.push(ms);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Nearest-rank percentile (`p` in 0..=100); `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub fn max(&self) -> Option<f64> {
        self.samples.iter().copied().reduce(f64::max)
    }

    /// Counts per bucket of [`BUCKET_EDGES_MS`] (a sample equal to an edge falls in its bucket),
    /// plus the overflow bucket at the end.
    pub fn histogram(&self) -> Vec<u64> {
        let mut counts = vec![0u64; BUCKET_EDGES_MS.len() + 1];
        for &sample in &self.samples {
            let index = BUCKET_EDGES_MS.iter().position(|&edge| sample <= edge).unwrap_or(BUCKET_EDGES_MS.len());
            counts[index] += 1;
        }
        counts
    }
}

/// What one `event` frame was, for one user's view of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Seen for the first time, above everything seen before.
    New,
    /// This seq was already seen (on this or an earlier connection).
    Duplicate,
    /// First time seen, but after a higher seq.
    OutOfOrder,
}

/// One user's events in one channel: which seqs arrived, from the first subscription on.
#[derive(Debug, Default, Clone)]
pub struct SeqLog {
    /// `head_seq` of the first subscription: holes are counted above it only.
    base: Option<i64>,
    seen: BTreeSet<i64>,
    max: i64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl SeqLog {
    /// The answer to a subscription arrived with `head_seq`.
    pub fn subscribed(&mut self, head_seq: i64) {
        if self.base.is_none() {
            self.base = Some(head_seq);
            self.max = self.max.max(head_seq);
        }
    }

    pub fn on_event(&mut self, seq: i64) -> Arrival {
        if self.seen.contains(&seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        let late = self.base.is_some() && seq < self.max;
        self.seen.insert(seq);
        self.max = self.max.max(seq);
        if late {
            self.out_of_order += 1;
            Arrival::OutOfOrder
        } else {
            Arrival::New
        }
    }

    /// What to resubscribe with after a reconnect (`None` before the first subscription).
    pub fn last_seq(&self) -> Option<i64> {
        self.base.map(|_| self.max)
    }

    pub fn max(&self) -> i64 {
        self.max
    }

    /// Seqs above the base and up to the highest seen that never arrived.
    pub fn holes(&self) -> u64 {
        let Some(base) = self.base else { return 0 };
        if self.max <= base {
            return 0;
        }
        let span = (self.max - base).max(0) as u64;
        let present = self.seen.range(base + 1..=self.max).count() as u64;
        span - present
    }
}

/// Counts per whole second since a start.
#[derive(Debug, Default, Clone)]
pub struct Series {
    counts: Vec<u64>,
}

impl Series {
    pub fn add(&mut self, seconds_since_start: f64) {
        let index = seconds_since_start.max(0.0) as usize;
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
    }

    pub fn counts(&self, length: usize) -> Vec<u64> {
        let mut counts = self.counts.clone();
        counts.resize(length.max(counts.len()), 0);
        counts
    }
}

/// xorshift64*: reproducible choices without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.percentile(50.0), None);
        for ms in 1..=100 {
            latencies.push(ms as f64);
        }
        assert_eq!(latencies.percentile(50.0), Some(50.0));
        assert_eq!(latencies.percentile(99.0), Some(99.0));
        assert_eq!(latencies.percentile(100.0), Some(100.0));
        assert_eq!(latencies.max(), Some(100.0));
    }

    #[test]
    fn histogram_puts_edges_in_their_bucket_and_keeps_the_overflow() {
        let mut latencies = Latencies::default();
        for ms in [0.5, 1.0, 1.5, 25_000.0] {
            latencies.push(ms);
        }
        let counts = latencies.histogram();
        assert_eq!(counts.len(), BUCKET_EDGES_MS.len() + 1);
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[BUCKET_EDGES_MS.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
    }

    #[test]
    fn seq_log_finds_duplicates_disorder_and_holes() {
        let mut log = SeqLog::default();
        assert_eq!(log.last_seq(), None);
        log.subscribed(10);
        assert_eq!(log.on_event(11), Arrival::New);
        assert_eq!(log.on_event(13), Arrival::New);
        assert_eq!(log.holes(), 1, "12 is missing");
        assert_eq!(log.on_event(12), Arrival::OutOfOrder);
        assert_eq!(log.on_event(12), Arrival::Duplicate);
        assert_eq!(log.holes(), 0);
        assert_eq!((log.duplicates, log.out_of_order), (1, 1));
        assert_eq!(log.last_seq(), Some(13));
    }

    #[test]
    fn events_before_the_first_answer_are_not_disorder() {
        let mut log = SeqLog::default();
        assert_eq!(log.on_event(5), Arrival::New);
        assert_eq!(log.on_event(4), Arrival::New);
        log.subscribed(5);
        assert_eq!(log.last_seq(), Some(5));
        log.subscribed(9);
        assert_eq!(log.last_seq(), Some(5), "only the first answer sets the base");
        assert_eq!(log.holes(), 0);
    }

    #[test]
    fn series_counts_per_second_and_pads() {
        let mut series = Series::default();
        series.add(0.2);
        series.add(0.9);
        series.add(2.5);
        assert_eq!(series.counts(5), vec![2, 0, 1, 0, 0]);
    }

    #[test]
    fn rng_is_reproducible_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert!(Rng::new(1).pick::<u8>(&[]).is_none());
    }
}
