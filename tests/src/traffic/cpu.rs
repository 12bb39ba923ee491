//! CPU time over the measured window, from `/proc/PID/stat` (user + system, in clock ticks): what
//! loadgen itself costs per request, so that its cost can be set beside the echo client's, and what
//! another process (the distributor) costs.

use serde::Serialize;

/// Linux's `USER_HZ`: `/proc` counts CPU time in hundredths of a second.
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds used so far by loadgen and, if asked, by another process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    own: Option<f64>,
    other: Option<f64>,
}

impl Sample {
    /// Reads both now.
    pub fn take(other: Option<u32>) -> Sample {
        Sample {
            own: cpu_seconds("self"),
            other: other.and_then(|pid| cpu_seconds(&pid.to_string())),
        }
    }
}

/// The window's CPU, in all and per confirmed checkout.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// loadgen's CPU seconds over the window.
    pub loadgen_cpu_s: Option<f64>,
    /// loadgen's CPU microseconds per confirmed checkout.
    pub loadgen_us_per_checkout: Option<f64>,
    /// loadgen's CPU microseconds per answered request.
    pub loadgen_us_per_request: Option<f64>,
    /// The other process's CPU seconds over the window (`--cpu-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// The other process's CPU microseconds per confirmed checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_us_per_checkout: Option<f64>,
}

impl CpuReport {
    /// The difference between two samples, shared out over `checkouts` and `requests`.
    pub fn between(before: &Sample, after: &Sample, checkouts: u64, requests: u64) -> CpuReport {
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        let per = |secs: Option<f64>, n: u64| secs.filter(|_| n > 0).map(|s| s * 1e6 / n as f64);
        let own = diff(before.own, after.own);
        let other = diff(before.other, after.other);
        CpuReport {
            loadgen_cpu_s: own,
            loadgen_us_per_checkout: per(own, checkouts),
            loadgen_us_per_request: per(own, requests),
            server_cpu_s: other,
            server_us_per_checkout: per(other, checkouts),
        }
    }
}

/// utime + stime of `/proc/<who>/stat`, in seconds.
fn cpu_seconds(who: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time_that_grows_with_work() {
        let before = cpu_seconds("self").expect("/proc/self/stat");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_seconds("self").expect("/proc/self/stat");
        assert!(after >= before + 0.02, "{before} -> {after}");
    }
}
