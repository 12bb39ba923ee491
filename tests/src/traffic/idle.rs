//! Idle connections, for the memory benchmark: connect, say `Hello`, then do nothing.
//!
//! No sign-up (argon2 would make 10,000 of them take minutes), so this measures what an idle,
//! handshaken connection costs the server. With `--rss-pid` the server's resident memory is read from
//! `/proc/PID/status` (VmRSS) before the first connection and after all of them have been held for
//! the run's duration.

use super::customer::hello;
use futures::StreamExt;
use protocol::Client;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The idle part of an `idle` run's summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdleReport {
    /// Connections asked for.
    pub requested: usize,
    /// Connections that got a `Welcome`.
    pub connected: usize,
    /// Of those, still open at the end of the hold.
    pub open_at_end: usize,
    /// Seconds it took to open them all.
    pub connect_s: f64,
    /// Server VmRSS before, KiB (if a pid was given).
    pub rss_before_kib: Option<u64>,
    /// Server VmRSS with every connection open, KiB.
    pub rss_after_kib: Option<u64>,
    /// `(after - before) / connected`, KiB.
    pub rss_per_connection_kib: Option<f64>,
}

/// Reads `VmRSS` (KiB) from `/proc/<pid>/status`.
pub fn read_rss_kib(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:` value of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Opens `connections` handshaken connections (at most `concurrency` connecting at once), holds them
/// for `hold`, and reports. Failed connections are counted by the caller as errors.
pub async fn hold_idle(
    addr: &str,
    tls_ca: Option<&std::path::Path>,
    connections: usize,
    concurrency: usize,
    hold: Duration,
    rss_pid: Option<u32>,
) -> (IdleReport, u64) {
    let rss_before_kib = rss_pid.and_then(read_rss_kib);
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..connections)
        .map(|_| Client::connect_with(addr, tls_ca, hello()))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let connect_s = started.elapsed().as_secs_f64();
    let mut clients = Vec::with_capacity(connections);
    let mut failures = 0u64;
    for result in results {
        match result {
            // Pushes to idle customers are dropped with the receiver.
            Ok((client, _events)) => clients.push(client),
            Err(_) => failures += 1,
        }
    }
    tokio::time::sleep(hold).await;
    let rss_after_kib = rss_pid.and_then(read_rss_kib);
    let open_at_end = clients.iter().filter(|c| !c.is_closed()).count();
    let rss_per_connection_kib = match (rss_before_kib, rss_after_kib, clients.len()) {
        (Some(before), Some(after), n) if n > 0 => {
            Some(after.saturating_sub(before) as f64 / n as f64)
        }
        _ => None,
    };
    let report = IdleReport {
        requested: connections,
        connected: clients.len(),
        open_at_end,
        connect_s,
        rss_before_kib,
        rss_after_kib,
        rss_per_connection_kib,
    };
    drop(clients);
    (report, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_a_proc_status_text() {
        let status = "Name:\tdistributor\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(read_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
