//! What `/proc` says of a process under test: resident memory and CPU time.

/// Resident memory in KiB (`VmRSS`), `None` when the process is gone or unreadable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), counting from field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports CPU time in USER_HZ, 100 per second on every common configuration.
    Some(ticks / 100.0)
}

/// CPU seconds used so far by the process under test (when its PID is known) and by this one.
pub struct CpuMark {
    under_test: Option<f64>,
    own: Option<f64>,
}

impl CpuMark {
    pub fn now(under_test: Option<u32>) -> CpuMark {
        CpuMark {
            under_test: under_test.and_then(cpu_seconds),
            own: cpu_seconds(std::process::id()),
        }
    }

    /// The CPU each side used from `self` to `later`, per one of `count` operations, as text
    /// (process under test, this process).
    pub fn per(&self, later: &CpuMark, count: usize) -> (String, String) {
        let per = |before: Option<f64>, after: Option<f64>| {
            before
                .zip(after)
                .map(|(b, a)| format!("{:.1} ms", (a - b) * 1000.0 / count.max(1) as f64))
                .unwrap_or_else(|| "unknown".to_owned())
        };
        (
            per(self.under_test, later.under_test),
            per(self.own, later.own),
        )
    }
}
