//! Shared counters and latency histograms (sharded by thread), the once-a-second progress line, and what counts as an
//! error.
//!
//! Business rejections (out of stock, month closed, ...) are normal outcomes of a shop under load and
//! are counted apart from errors. Errors are transport failures, protocol violations and refusals that
//! a correct server should not produce for this traffic.

use hdrhistogram::Histogram;
use protocol::{ClientError, ErrorCode};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Histograms hold microseconds, up to one minute, with three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// Records a duration in microseconds, saturating at the histogram's top.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    histogram.saturating_record(micros);
}

/// A percentile in milliseconds (0 for an empty histogram).
pub fn percentile_ms(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_percentile(percentile) as f64 / 1000.0
}

/// Whether a server error is a business outcome of this traffic rather than a failure.
pub fn is_business_rejection(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::OutOfStock
            | ErrorCode::MonthClosed
            | ErrorCode::EmptyCart
            | ErrorCode::InvalidInput
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::PriceChanged
    )
}

/// The business rejection in an error, if that is what it is.
pub fn rejection(error: &ClientError) -> Option<ErrorCode> {
    match error {
        ClientError::Server(e) if is_business_rejection(e.code) => Some(e.code),
        _ => None,
    }
}

/// How many shards the counters are split into. Each thread adds to its own (see [`shard_index`]),
/// so the runtime's worker threads never wait for each other or bounce a cache line per checkout.
const SHARDS: usize = 8;

/// Counters every customer task adds to, sharded by thread; readers add the shards up.
#[derive(Debug)]
pub struct Stats {
    shards: Box<[Padded]>,
}

/// One shard on its own cache lines, so two threads' shards never share one.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// What one thread has counted.
#[derive(Debug)]
struct Shard {
    counters: Counters,
    /// Checkout latency: `total` for the summary, `interval` for the progress line (reset each second).
    latency: Latency,
    rejections: HashMap<ErrorCode, u64>,
    /// Watch mode: time from a probe checkout's send to a watcher seeing the change.
    fanout: Histogram<u64>,
}

#[derive(Debug)]
struct Latency {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Checkouts the server confirmed.
    pub checkouts_ok: u64,
    /// Checkouts the server rejected for a business reason.
    pub checkouts_rejected: u64,
    /// Units in confirmed checkouts.
    pub units_bought: u64,
    /// Transport and protocol errors.
    pub errors: u64,
    /// Requests answered (any outcome).
    pub requests: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.checkouts_ok += other.checkouts_ok;
        self.checkouts_rejected += other.checkouts_rejected;
        self.units_bought += other.units_bought;
        self.errors += other.errors;
        self.requests += other.requests;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these locks is plain counters; a panic elsewhere does not make it wrong.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This thread's shard: threads are numbered in the order they first count something.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// Adds `from`'s counts to `into` (both have the same bounds, so adding cannot fail).
fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    let _ = into.add(from);
}

impl Default for Stats {
    fn default() -> Self {
        let shard = || {
            Padded(Mutex::new(Shard {
                counters: Counters::default(),
                latency: Latency {
                    total: new_histogram(),
                    interval: new_histogram(),
                },
                rejections: HashMap::new(),
                fanout: new_histogram(),
            }))
        };
        Stats {
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }
}

impl Stats {
    /// This thread's shard, locked. Only this thread and the (rare) readers take it.
    fn mine(&self) -> std::sync::MutexGuard<'_, Shard> {
        lock(&self.shards[shard_index()].0)
    }

    /// Every shard in turn, for the readers.
    fn each(&self, mut f: impl FnMut(&mut Shard)) {
        for shard in self.shards.iter() {
            f(&mut lock(&shard.0));
        }
    }

    /// A confirmed checkout of `units` units that took `latency` from send to reply.
    pub fn checkout_ok(&self, units: u64, latency: Option<Duration>) {
        let mut shard = self.mine();
        shard.counters.checkouts_ok += 1;
        shard.counters.units_bought += units;
        if let Some(latency) = latency {
            record(&mut shard.latency.total, latency);
            record(&mut shard.latency.interval, latency);
        }
    }

    /// A checkout rejected for a business reason.
    pub fn checkout_rejected(&self, code: ErrorCode) {
        let mut shard = self.mine();
        shard.counters.checkouts_rejected += 1;
        *shard.rejections.entry(code).or_default() += 1;
    }

    /// Any request rejected for a business reason.
    pub fn rejected(&self, code: ErrorCode) {
        *self.mine().rejections.entry(code).or_default() += 1;
    }

    /// A transport or protocol error.
    pub fn error(&self) {
        self.mine().counters.errors += 1;
    }

    /// A request got an answer.
    pub fn request(&self) {
        self.mine().counters.requests += 1;
    }

    /// A watcher saw a probe's change `elapsed` after the probe sent its checkout.
    pub fn fanout(&self, elapsed: Duration) {
        record(&mut self.mine().fanout, elapsed);
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let mut all = Counters::default();
        self.each(|shard| all.add(&shard.counters));
        all
    }

    /// Rejections by code name, sorted.
    pub fn rejections(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        self.each(|shard| {
            for (code, n) in &shard.rejections {
                *all.entry(format!("{code:?}")).or_default() += *n;
            }
        });
        all
    }

    /// The whole-run checkout latency histogram.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        self.each(|shard| merge(&mut all, &shard.latency.total));
        all
    }

    /// The fan-out histogram.
    pub fn fanout_histogram(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        self.each(|shard| merge(&mut all, &shard.fanout));
        all
    }

    /// The p99 checkout latency since the last call, in ms; resets the interval.
    fn take_interval_p99(&self) -> f64 {
        let mut interval = new_histogram();
        self.each(|shard| {
            merge(&mut interval, &shard.latency.interval);
            shard.latency.interval.reset();
        });
        percentile_ms(&interval, 99.0)
    }

    /// Forgets setup-phase latencies, so the summary covers the measured window only.
    pub fn reset_latency(&self) {
        self.each(|shard| {
            shard.latency.total.reset();
            shard.latency.interval.reset();
        });
    }
}

/// Prints one progress line per second on stderr until `until`.
pub async fn report_progress(stats: &Stats, started: Instant, until: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut previous = stats.counters();
    while Instant::now() < until {
        ticker.tick().await;
        let now = stats.counters();
        eprintln!(
            "[{:>4.0}s] {:>7} checkouts/s  p99 {:>7.2} ms  ok {} rejected {} errors {}",
            started.elapsed().as_secs_f64(),
            now.checkouts_ok - previous.checkouts_ok,
            stats.take_interval_p99(),
            now.checkouts_ok,
            now.checkouts_rejected,
            now.errors,
        );
        previous = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::WireError;

    #[test]
    fn business_rejections_are_not_errors_but_transport_and_auth_failures_are() {
        let server = |code| ClientError::Server(WireError::new(code, "x"));
        assert_eq!(
            rejection(&server(ErrorCode::OutOfStock)),
            Some(ErrorCode::OutOfStock)
        );
        assert_eq!(
            rejection(&server(ErrorCode::MonthClosed)),
            Some(ErrorCode::MonthClosed)
        );
        assert_eq!(rejection(&server(ErrorCode::Internal)), None);
        assert_eq!(rejection(&server(ErrorCode::NotAuthenticated)), None);
        assert_eq!(rejection(&server(ErrorCode::CardRequired)), None);
        assert_eq!(rejection(&ClientError::Closed(None)), None);
    }

    #[test]
    fn counters_and_percentiles_reflect_what_was_recorded() {
        let stats = Stats::default();
        for ms in 1..=100 {
            stats.checkout_ok(2, Some(Duration::from_millis(ms)));
        }
        stats.checkout_rejected(ErrorCode::OutOfStock);
        stats.error();
        let c = stats.counters();
        assert_eq!((c.checkouts_ok, c.units_bought), (100, 200));
        assert_eq!((c.checkouts_rejected, c.errors), (1, 1));
        let p99 = percentile_ms(&stats.latency(), 99.0);
        assert!((98.0..=100.0).contains(&p99), "{p99}");
        assert_eq!(stats.rejections().get("OutOfStock"), Some(&1));
        stats.reset_latency();
        assert_eq!(percentile_ms(&stats.latency(), 99.0), 0.0);
    }
}
