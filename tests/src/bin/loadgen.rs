//! `loadgen`: simulated customers against a running distributor.
//!
//! The customer logic lives in `tests::traffic`; this file is the command line. A progress line goes
//! to stderr every second; the last line on stdout is one JSON summary (see `traffic::Summary`).
//! Exit status is 0 whenever a run was made (errors and inconsistencies are in the JSON), 1 when it
//! could not be made at all (for example nothing could connect).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tests::traffic::{self, Config, Mode};

/// See the workspace's Cargo.toml for why this allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated customers against a running distributor.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// The distributor, host:port.
    #[arg(long)]
    server: String,
    /// Buying customers (connections in idle mode). Each has its own connection and fresh account.
    #[arg(long, default_value_t = 16)]
    customers: usize,
    /// Seconds of load, measured from when every customer is ready (at most 3600).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seeds every customer's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What the customers do.
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    mode: Mode,
    /// checkout/watch mode: every checkout includes one unit of the first listing.
    #[arg(long)]
    hot: bool,
    /// Append `<checkout_id_hex> <order_id> <units>` per confirmed checkout to this file.
    #[arg(long)]
    acked_log: Option<PathBuf>,
    /// watch mode: customers that only watch live stock.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// watch mode: milliseconds between probe checkouts.
    #[arg(long, default_value_t = 100)]
    probe_interval_ms: u64,
    /// Customers connecting and signing up at the same time.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seconds allowed for setting up every customer.
    #[arg(long, default_value_t = 300)]
    setup_timeout: u64,
    /// Seconds to wait for the catalog to have stock.
    #[arg(long, default_value_t = 30)]
    stock_wait: u64,
    /// idle mode: report this process's resident memory before and after (the server's pid).
    #[arg(long)]
    rss_pid: Option<u32>,
    /// Report this process's CPU time over the measured window too (for example the distributor's
    /// pid), beside loadgen's own, per confirmed checkout.
    #[arg(long)]
    cpu_pid: Option<u32>,
    /// If the catalog is still empty 3 s after the start, close the open month as an operator so
    /// that the next month asks the manufacturers connected now. A no-op when goods arrived (a
    /// manufacturer that connects mid-month offers into that month at once).
    #[arg(long)]
    close_empty_month: bool,
    /// The operator key for that operator connection, instead of `operator.key` beside --db.
    #[arg(long, env = "DISTRIBUTOR_PEER_KEY")]
    peer_key: Option<String>,
    /// The distributor's database, to find its operator key (`operator.key` beside it) for
    /// --close-empty-month.
    #[arg(long, default_value = "data/distributor.db")]
    db: PathBuf,
    /// Connect over TLS, trusting this CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(protocol::logging::colour_on_stderr())
        .init();
    let args = Args::parse();
    let key_file = protocol::operator_key::path_for_db(&args.db);
    let peer_key = match protocol::operator_key::resolve(args.peer_key.as_deref(), &key_file) {
        Ok(key) => key,
        // Only --close-empty-month needs the key; without it a bad key file is no reason to stop.
        Err(e) if args.close_empty_month => {
            eprintln!("loadgen: operator key: {e}");
            return ExitCode::from(2);
        }
        Err(_) => None,
    };
    let config = Config {
        customers: args.customers,
        duration: Duration::from_secs(args.duration).min(traffic::MAX_DURATION),
        seed: args.seed,
        mode: args.mode,
        hot: args.hot,
        acked_log: args.acked_log,
        watchers: args.watchers,
        probe_interval: Duration::from_millis(args.probe_interval_ms.max(1)),
        connect_concurrency: args.connect_concurrency.max(1),
        setup_timeout: Duration::from_secs(args.setup_timeout),
        stock_wait: Duration::from_secs(args.stock_wait),
        rss_pid: args.rss_pid,
        cpu_pid: args.cpu_pid,
        close_empty_month: args.close_empty_month,
        peer_key,
        tls_ca: args.tls_ca,
        progress: !args.quiet,
        ..Config::new(args.server)
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(traffic::run(config)) {
        Ok(summary) => {
            println!("{}", summary.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
