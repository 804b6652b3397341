//! Latency recording (samples kept per task and merged at the end, so the
//! hot path takes no lock; one histogram is built from them for the
//! report), a per-second series for the plots, the bench's own CPU time and
//! a process's resident memory.

use hdrhistogram::Histogram;
use std::sync::OnceLock;
use std::time::Duration;

/// One second of the latency-over-time series.
#[derive(Clone, Copy, Default)]
pub struct Second {
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

/// Latencies in microseconds, overall and per second of the run.
///
/// Each task keeps its samples (4 bytes each) rather than a histogram of
/// its own: a histogram of this range and precision is about 190 KB, so one
/// per connection cost a 10,000-connection run gigabytes of zeroed pages
/// (and the bench most of its CPU) before the first message.
#[derive(Clone, Default)]
pub struct Lat {
    /// Every latency recorded, in microseconds (saturating at `u32::MAX`,
    /// 71 minutes).
    samples: Vec<u32>,
    pub secs: Vec<Second>,
    hist: OnceLock<Histogram<u64>>,
}

impl Lat {
    /// Records a latency observed `at` (since the run's base instant).
    pub fn record(&mut self, at: Duration, lat_us: u64) {
        let lat_us = lat_us.max(1);
        self.samples.push(u32::try_from(lat_us).unwrap_or(u32::MAX));
        // A histogram built before no longer holds every sample.
        self.hist.take();
        let s = at.as_secs() as usize;
        if self.secs.len() <= s {
            self.secs.resize(s + 1, Second::default());
        }
        let e = &mut self.secs[s];
        e.count += 1;
        e.sum_us += lat_us;
        e.max_us = e.max_us.max(lat_us);
    }

    pub fn merge(&mut self, other: &Lat) {
        self.samples.extend_from_slice(&other.samples);
        self.hist.take();
        if self.secs.len() < other.secs.len() {
            self.secs.resize(other.secs.len(), Second::default());
        }
        for (a, b) in self.secs.iter_mut().zip(&other.secs) {
            a.count += b.count;
            a.sum_us += b.sum_us;
            a.max_us = a.max_us.max(b.max_us);
        }
    }

    /// Every sample in one histogram (built once, on first use).
    pub fn hist(&self) -> &Histogram<u64> {
        self.hist.get_or_init(|| {
            // 1 us to 1 h at 3 significant digits.
            let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
            for &s in &self.samples {
                h.saturating_record(u64::from(s));
            }
            h
        })
    }

    /// The latency at `q` (0..=1) in milliseconds; 0 when nothing was recorded.
    pub fn ms(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.hist().value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.hist().max() as f64 / 1000.0
    }
}

/// CPU time this process has used so far.
pub fn cpu_time() -> Duration {
    cpu_time::ProcessTime::try_now()
        .map(|t| t.as_duration())
        .unwrap_or_default()
}

/// Resident set size of `pid` in KiB (Linux `/proc`), if readable.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_counts_percentiles_and_series() {
        let mut a = Lat::default();
        let mut b = Lat::default();
        for i in 1..=100u64 {
            a.record(Duration::from_millis(100), i * 1000);
        }
        b.record(Duration::from_secs(3), 500_000);
        a.merge(&b);
        assert_eq!(a.hist().len(), 101);
        assert_eq!(a.secs.len(), 4);
        assert_eq!(a.secs[0].count, 100);
        assert_eq!(a.secs[3].max_us, 500_000);
        assert!((a.ms(0.5) - 51.0).abs() < 0.1, "p50 {}", a.ms(0.5));
        assert!((a.max_ms() - 500.0).abs() < 1.0);
    }

    #[test]
    fn reads_own_rss() {
        let kb = rss_kb(std::process::id()).expect("own /proc status");
        assert!(kb > 0);
    }
}
