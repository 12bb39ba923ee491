//! Simulated customers for `loadgen`, the benchmark and the end-to-end tests.
//!
//! # Layout
//! - [`customer`]: one simulated customer: connection, sign-up, test card, the `mixed` and
//!   `checkout` loops, reconnects with same-id checkout retries.
//! - [`stock`]: the customer's own view of stock and the seeded random choices made from it.
//! - [`ledger`]: what a customer was told it bought, and the end-of-run consistency check.
//! - [`acked`]: the `--acked-log` file that `distributor audit --acked` reads.
//! - [`cpu`]: CPU time over the measured window, of loadgen itself and of another process.
//! - [`source`]: which loopback address each customer connects from (sign-ups are limited per
//!   address).
//! - [`stats`]: shared counters, HDR latency histograms, the progress line, error classification.
//! - [`watch`]: the live-stock fan-out measurement (`watch` mode).
//! - [`idle`]: idle handshaken connections and server RSS (`idle` mode).
//!
//! # A run
//! 1. Setup, not measured: customers connect and sign up at most `connect_concurrency` at a time
//!    (sign-up runs argon2 on the server), attach the test card and fetch the catalog. Then the run
//!    waits until the catalog has stock.
//! 2. The measured window: every customer runs its loop until `duration` has passed.
//! 3. Verification: every customer fetches its orders and checks them against what it was told
//!    (see [`ledger`] for exactly what is checked).

pub mod acked;
pub mod cpu;
pub mod customer;
pub mod idle;
pub mod ledger;
pub mod source;
pub mod stats;
pub mod stock;
pub mod watch;

use acked::AckedLog;
use customer::{Customer, Identity, Plan, SetupError};
use futures::StreamExt;
use ledger::Check;
use serde::Serialize;
use stats::{percentile_ms, Stats};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use watch::{FanoutReport, ProbeBoard};

/// The longest a run's measured window may be, whatever is asked.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// What the simulated customers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Browse, add, change quantities, remove and check out the cart, at random.
    Mixed,
    /// "Buy now" checkouts of 1–3 in-stock lines, as fast as possible.
    Checkout,
    /// `checkout` buyers, plus watchers timing how fast a probe's sales reach them.
    Watch,
    /// Connect, `Hello`, then hold the connection idle (memory benchmark).
    Idle,
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The distributor, `host:port`.
    pub server: String,
    /// Simulated buying customers (connections in `idle` mode).
    pub customers: usize,
    /// The measured window (capped at [`MAX_DURATION`]).
    pub duration: Duration,
    /// Seeds every customer's choices.
    pub seed: u64,
    /// Keeps emails unique across reruns with the same seed; random when `None`.
    pub nonce: Option<String>,
    /// What the customers do.
    pub mode: Mode,
    /// `checkout`/`watch` mode: every checkout includes one unit of the same listing.
    pub hot: bool,
    /// Append a line per confirmed checkout here.
    pub acked_log: Option<PathBuf>,
    /// `watch` mode: customers that only watch stock.
    pub watchers: usize,
    /// `watch` mode: time between probe checkouts.
    pub probe_interval: Duration,
    /// Connections being set up at the same time.
    pub connect_concurrency: usize,
    /// Limit on setup (connect, sign up, card, catalog) for all customers.
    pub setup_timeout: Duration,
    /// How long to wait for the catalog to have stock before giving up.
    pub stock_wait: Duration,
    /// `idle` mode: read this process's VmRSS before and after.
    pub rss_pid: Option<u32>,
    /// Also report this process's CPU time over the measured window (the distributor's pid).
    pub cpu_pid: Option<u32>,
    /// If the catalog is still empty [`EMPTY_MONTH_GRACE`] after the start, close the open month as
    /// an operator once, so that the next month asks every manufacturer connected now for offers.
    /// A no-op when goods arrived: a manufacturer that connects mid-month offers into that month
    /// at once, so this only matters for an older distributor.
    pub close_empty_month: bool,
    /// The operator key, for the operator connection of `close_empty_month` (`loadgen` reads it from
    /// `operator.key` beside `--db` unless `--peer-key` is given).
    pub peer_key: Option<String>,
    /// Connect over TLS, trusting this CA certificate (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

impl Config {
    /// Defaults for everything but the server address.
    pub fn new(server: impl Into<String>) -> Self {
        Config {
            server: server.into(),
            customers: 16,
            duration: Duration::from_secs(10),
            seed: 1,
            nonce: None,
            mode: Mode::Mixed,
            hot: false,
            acked_log: None,
            watchers: 1000,
            probe_interval: Duration::from_millis(100),
            connect_concurrency: 64,
            setup_timeout: Duration::from_secs(300),
            stock_wait: Duration::from_secs(30),
            rss_pid: None,
            cpu_pid: None,
            close_empty_month: false,
            peer_key: None,
            tls_ca: None,
            progress: false,
        }
    }
}

/// How long `close_empty_month` waits for goods to arrive before it closes an empty month.
pub const EMPTY_MONTH_GRACE: Duration = Duration::from_secs(3);

/// What can stop a run from being made at all. Everything else is counted in the [`Summary`].
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// Not a single customer could be set up (for example the server is not there).
    #[error("no customer could be set up; first failure: {0}")]
    NoCustomers(String),
    /// Setup did not finish within the setup timeout.
    #[error("setup did not finish within {0:?}")]
    SetupTimeout(Duration),
    /// The catalog stayed empty.
    #[error("the catalog had no stock within {0:?}")]
    NoStock(Duration),
    /// The operator connection (for `close_empty_month`) failed.
    #[error("closing the empty month as an operator failed: {0}")]
    Operator(String),
    /// The acked log could not be opened.
    #[error("cannot open the acked log {path}: {source}")]
    AckedLog {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// State every customer task of a run shares.
#[derive(Debug)]
pub struct Shared {
    /// The distributor's address, for reconnects.
    pub addr: String,
    /// The CA to trust for TLS, if the distributor speaks TLS.
    pub tls_ca: Option<PathBuf>,
    /// Counters and histograms.
    pub stats: Stats,
    /// The acked log, if one was asked for.
    pub acked: Option<AckedLog>,
}

/// The result of a run; `loadgen` prints it as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What the customers did.
    pub mode: Mode,
    /// Whether every checkout included the hot listing.
    pub hot: bool,
    /// The seed.
    pub seed: u64,
    /// Customers (or connections) asked for.
    pub customers: usize,
    /// Customers that were set up and ran.
    pub customers_ready: usize,
    /// Seconds spent on setup (not measured).
    pub setup_s: f64,
    /// Seconds of the measured window.
    pub duration_s: f64,
    /// Checkouts the server confirmed.
    pub checkouts_ok: u64,
    /// Checkouts rejected for a business reason.
    pub checkouts_rejected: u64,
    /// Units in confirmed checkouts.
    pub units_bought: u64,
    /// Transport and protocol errors (including failed setups), not business rejections.
    pub errors: u64,
    /// Requests answered, any outcome.
    pub requests: u64,
    /// Business rejections of any request, by error code.
    pub rejections: BTreeMap<String, u64>,
    /// Confirmed checkouts per second of the measured window.
    pub checkouts_per_s: f64,
    /// Median confirmed-checkout latency (send to reply), ms.
    pub p50_ms: f64,
    /// 99th percentile confirmed-checkout latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile confirmed-checkout latency, ms.
    pub p999_ms: f64,
    /// Largest confirmed-checkout latency, ms.
    pub max_ms: f64,
    /// Every customer's orders matched what it was told (see [`ledger`]).
    pub consistent: bool,
    /// The details of the consistency check.
    pub consistency: Check,
    /// `watch` mode: the fan-out measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutReport>,
    /// `idle` mode: connections and memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<idle::IdleReport>,
    /// CPU spent over the measured window, by loadgen (and by `cpu_pid`), per confirmed checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<cpu::CpuReport>,
}

impl Summary {
    /// The summary as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    fn new(config: &Config, shared: &Shared, duration: Duration) -> Summary {
        let c = shared.stats.counters();
        let latency = shared.stats.latency();
        let secs = duration.as_secs_f64();
        Summary {
            mode: config.mode,
            hot: config.hot,
            seed: config.seed,
            customers: config.customers,
            customers_ready: 0,
            setup_s: 0.0,
            duration_s: secs,
            checkouts_ok: c.checkouts_ok,
            checkouts_rejected: c.checkouts_rejected,
            units_bought: c.units_bought,
            errors: c.errors,
            requests: c.requests,
            rejections: shared.stats.rejections(),
            checkouts_per_s: if secs > 0.0 {
                c.checkouts_ok as f64 / secs
            } else {
                0.0
            },
            p50_ms: percentile_ms(&latency, 50.0),
            p99_ms: percentile_ms(&latency, 99.0),
            p999_ms: percentile_ms(&latency, 99.9),
            max_ms: if latency.is_empty() {
                0.0
            } else {
                latency.max() as f64 / 1000.0
            },
            consistent: true,
            consistency: Check::default(),
            fanout: None,
            idle: None,
            cpu: None,
        }
    }
}

/// Makes one run and reports it.
pub async fn run(config: Config) -> Result<Summary, TrafficError> {
    let mut config = config;
    config.duration = config.duration.min(MAX_DURATION);
    let acked = match &config.acked_log {
        Some(path) => Some(
            AckedLog::open(path).map_err(|source| TrafficError::AckedLog {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        addr: config.server.clone(),
        tls_ca: config.tls_ca.clone(),
        stats: Stats::default(),
        acked,
    });
    match config.mode {
        Mode::Idle => run_idle(&config, &shared).await,
        Mode::Mixed | Mode::Checkout | Mode::Watch => run_shoppers(&config, shared).await,
    }
}

async fn run_idle(config: &Config, shared: &Shared) -> Result<Summary, TrafficError> {
    let (report, failures) = idle::hold_idle(
        &config.server,
        config.tls_ca.as_deref(),
        config.customers,
        config.connect_concurrency,
        config.duration,
        config.rss_pid,
    )
    .await;
    for _ in 0..failures {
        shared.stats.error();
    }
    if report.connected == 0 && config.customers > 0 {
        return Err(TrafficError::NoCustomers(format!(
            "none of {} connections to {} succeeded",
            config.customers, config.server
        )));
    }
    let mut summary = Summary::new(config, shared, config.duration);
    summary.customers_ready = report.connected;
    summary.setup_s = report.connect_s;
    summary.idle = Some(report);
    Ok(summary)
}

/// Signs up `count` customers with indices from `first`, `concurrency` at a time.
async fn set_up(
    config: &Config,
    shared: &Shared,
    nonce: &str,
    first: u32,
    count: usize,
    with_card: bool,
) -> (Vec<Customer>, Option<SetupError>) {
    let results: Vec<Result<Customer, SetupError>> = futures::stream::iter(0..count)
        .map(|i| {
            let identity = Identity {
                seed: config.seed,
                nonce: nonce.to_string(),
                index: first + i as u32,
            };
            async move {
                Customer::sign_up(
                    &config.server,
                    config.tls_ca.as_deref(),
                    &identity,
                    with_card,
                )
                .await
            }
        })
        .buffer_unordered(config.connect_concurrency.max(1))
        .collect()
        .await;
    let mut customers = Vec::with_capacity(count);
    let mut first_error = None;
    for result in results {
        match result {
            Ok(c) => customers.push(c),
            Err(e) => {
                shared.stats.error();
                first_error.get_or_insert(e);
            }
        }
    }
    customers.sort_by_key(|c| c.index);
    (customers, first_error)
}

fn random_nonce() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Who does what in the measured window.
struct Cast {
    buyers: Vec<Customer>,
    probe: Option<Customer>,
    watchers: Vec<Customer>,
}

async fn cast(config: &Config, shared: &Shared) -> Result<Cast, TrafficError> {
    let nonce = config.nonce.clone().unwrap_or_else(random_nonce);
    let (buyers, error) = set_up(config, shared, &nonce, 0, config.customers, true).await;
    if buyers.is_empty() {
        let why = error.map_or_else(|| "no customers asked for".into(), |e| e.to_string());
        return Err(TrafficError::NoCustomers(why));
    }
    if config.mode != Mode::Watch {
        return Ok(Cast {
            buyers,
            probe: None,
            watchers: Vec::new(),
        });
    }
    let next = config.customers as u32;
    let (mut probe, error) = set_up(config, shared, &nonce, next, 1, true).await;
    let Some(probe) = probe.pop() else {
        let why = error.map_or_else(String::new, |e| e.to_string());
        return Err(TrafficError::NoCustomers(format!("the probe: {why}")));
    };
    let (watchers, _) = set_up(config, shared, &nonce, next + 1, config.watchers, false).await;
    Ok(Cast {
        buyers,
        probe: Some(probe),
        watchers,
    })
}

/// Waits until `customer` sees stock (fetching the catalog every 200 ms), up to the configured
/// limit. Closes an empty month first if the config asks for it.
async fn wait_for_stock(
    customer: &mut Customer,
    shared: &Shared,
    config: &Config,
) -> Result<(), TrafficError> {
    let started = Instant::now();
    let until = started + config.stock_wait;
    let mut may_close = config.close_empty_month;
    loop {
        customer.drain_events();
        if customer.stock().in_stock() > 0 {
            return Ok(());
        }
        if may_close && started.elapsed() >= EMPTY_MONTH_GRACE.min(config.stock_wait / 2) {
            may_close = false;
            close_month(config).await?;
        }
        if Instant::now() >= until {
            return Err(TrafficError::NoStock(config.stock_wait));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        customer.browse(shared).await;
    }
}

/// Closes the open month as an operator (the next month opens at once).
async fn close_month(config: &Config) -> Result<(), TrafficError> {
    let hello = protocol::Hello {
        version: protocol::PROTOCOL_VERSION,
        role: protocol::Role::Operator,
        client: format!("loadgen/{}", env!("CARGO_PKG_VERSION")),
        name: None,
        key: config.peer_key.clone(),
    };
    let (operator, _) =
        protocol::Client::connect_with(&config.server, config.tls_ca.as_deref(), hello)
            .await
            .map_err(|e| TrafficError::Operator(e.to_string()))?;
    match operator.call(protocol::RequestBody::CloseMonth).await {
        Ok(_) => Ok(()),
        // No month open: the next one opens by itself; waiting for stock covers it.
        Err(e)
            if e.server_error()
                .is_some_and(|w| w.code == protocol::ErrorCode::Conflict) =>
        {
            Ok(())
        }
        Err(e) => Err(TrafficError::Operator(e.to_string())),
    }
}

async fn run_shoppers(config: &Config, shared: Arc<Shared>) -> Result<Summary, TrafficError> {
    let setup_started = Instant::now();
    let mut cast = tokio::time::timeout(config.setup_timeout, cast(config, &shared))
        .await
        .map_err(|_| TrafficError::SetupTimeout(config.setup_timeout))??;
    let lead = cast.probe.as_mut().unwrap_or(&mut cast.buyers[0]);
    wait_for_stock(lead, &shared, config).await?;
    let first_listing = lead.stock().first_listing();
    let board = match (config.mode, first_listing) {
        (Mode::Watch, Some(listing)) => Some(Arc::new(ProbeBoard::new(listing))),
        _ => None,
    };
    let plan = Plan {
        hot: if config.hot { first_listing } else { None },
        exclude: board.iter().map(|b| b.listing).collect(),
    };
    let setup_s = setup_started.elapsed().as_secs_f64();
    let customers_ready = cast.buyers.len() + cast.watchers.len() + cast.probe.iter().count();

    // The measured window starts now that everyone is ready.
    shared.stats.reset_latency();
    let cpu_before = cpu::Sample::take(config.cpu_pid);
    let started = Instant::now();
    let deadline = started + config.duration;
    let progress = config.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move { stats::report_progress(&shared.stats, started, deadline).await })
    });
    let mut tasks = Vec::new();
    for mut buyer in cast.buyers {
        let (shared, plan, mode) = (shared.clone(), plan.clone(), config.mode);
        tasks.push(tokio::spawn(async move {
            match mode {
                Mode::Mixed => buyer.shop_mixed(&shared, deadline).await,
                _ => buyer.shop_checkout(&shared, deadline, &plan).await,
            }
            buyer
        }));
    }
    let watchers = cast.watchers.len();
    if let (Some(board), Some(mut probe)) = (&board, cast.probe) {
        let (shared, board) = (shared.clone(), board.clone());
        let interval = config.probe_interval;
        tasks.push(tokio::spawn(async move {
            watch::run_probe(&mut probe, &shared, deadline, &board, interval).await;
            probe
        }));
    }
    if let Some(board) = &board {
        for mut watcher in cast.watchers {
            let (shared, board) = (shared.clone(), board.clone());
            tasks.push(tokio::spawn(async move {
                watch::run_watcher(&mut watcher, &shared, deadline, &board).await;
                watcher
            }));
        }
    }
    let mut finished = Vec::with_capacity(tasks.len());
    let mut lost = 0;
    for task in tasks {
        match task.await {
            Ok(customer) => finished.push(customer),
            Err(_) => {
                shared.stats.error();
                lost += 1;
            }
        }
    }
    let duration = started.elapsed();
    let cpu_after = cpu::Sample::take(config.cpu_pid);
    if let Some(progress) = progress {
        progress.abort();
    }

    let mut check = Check::default();
    let checks: Vec<Check> = futures::stream::iter(finished.iter_mut())
        .map(|customer| {
            let shared = &shared;
            async move { customer.verify(shared).await }
        })
        .buffer_unordered(config.connect_concurrency.max(1))
        .collect()
        .await;
    for c in checks {
        check.merge(c);
    }
    for _ in 0..lost {
        check.merge(Check::unverifiable("a customer task", "it panicked"));
    }

    let mut summary = Summary::new(config, &shared, duration);
    summary.customers_ready = customers_ready;
    summary.setup_s = setup_s;
    summary.consistent = check.consistent();
    summary.consistency = check;
    summary.fanout = board.map(|b| b.report(&shared, watchers));
    summary.cpu = Some(cpu::CpuReport::between(
        &cpu_before,
        &cpu_after,
        summary.checkouts_ok,
        summary.requests,
    ));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_json_has_every_field_the_benchmark_reads() {
        let config = Config::new("127.0.0.1:1");
        let shared = Shared {
            addr: config.server.clone(),
            tls_ca: config.tls_ca.clone(),
            stats: Stats::default(),
            acked: None,
        };
        shared.stats.checkout_ok(3, Some(Duration::from_millis(2)));
        shared.stats.checkout_ok(1, Some(Duration::from_millis(4)));
        let summary = Summary::new(&config, &shared, Duration::from_secs(2));
        let json: serde_json::Value = serde_json::from_str(&summary.to_json()).unwrap();
        for field in [
            "checkouts_ok",
            "checkouts_rejected",
            "units_bought",
            "errors",
            "checkouts_per_s",
            "p50_ms",
            "p99_ms",
            "consistent",
        ] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert_eq!(json["checkouts_ok"], 2);
        assert_eq!(json["units_bought"], 4);
        assert_eq!(json["checkouts_per_s"], 1.0);
        assert_eq!(json["mode"], "mixed");
        assert!(json.get("fanout").is_none());
        assert!(!summary.to_json().contains('\n'));
    }
}
