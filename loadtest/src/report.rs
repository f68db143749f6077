//! Latency bookkeeping and the printed report lines.

use std::time::Duration;

/// Latencies of one measured run.
pub struct Report {
    pub ok: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
    }

    pub fn print(&mut self, what: &str) {
        self.latencies.sort_unstable();
        let sorted = &self.latencies;
        println!(
            "{what:<28} {:>8} ok {:>6} err {:>6.2} s {:>9.0}/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.ok as f64 / self.elapsed.as_secs_f64(),
            Report::percentile_ms(sorted, 0.50),
            Report::percentile_ms(sorted, 0.99),
            Report::percentile_ms(sorted, 0.999),
            Report::percentile_ms(sorted, 1.0),
        );
    }
}
