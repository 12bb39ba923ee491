//! The `manufacturer-sim` command line. It lives in the library so that tests can run the very same
//! entry point in a child process of their own (see [`main_from`]).
//!
//! - `manufacturer-sim --server ADDR --name NAME --db PATH [--preset P]… [--catalog FILE] [--count N]`
//!   runs manufacturers until Ctrl-C / SIGTERM (the library's [`crate::run_all`]).
//! - `manufacturer-sim report --db PATH` prints the books read-only; the last stdout line is JSON.

use clap::{Args, Parser, Subcommand};

use crate::{preset, Catalog, SimConfig, SimError, PRESETS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "manufacturer-sim",
    version,
    about = "Simulated manufacturers that produce in parallel, offer to the distributor and keep their own books",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run manufacturers (the default when no subcommand is given).
    Run(RunArgs),
    /// Print the totals in a books file, read-only. The last line is one JSON object.
    Report {
        /// The books file.
        #[arg(long)]
        db: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The distributor's address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    server: String,
    /// The manufacturer's stable name. With several manufacturers: the prefix of their names.
    /// Defaults to the preset's name.
    #[arg(long)]
    name: Option<String>,
    /// The books file (SQLite). Several manufacturers may share one.
    #[arg(long)]
    db: Option<PathBuf>,
    /// A built-in catalog; give it several times to run one manufacturer per preset.
    #[arg(long = "preset", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    presets: Vec<String>,
    /// A catalog file (JSON, see README) instead of a preset.
    #[arg(long, conflicts_with = "presets")]
    catalog: Option<PathBuf>,
    /// Run this many manufacturers, named NAME-1..NAME-N (presets are dealt out in turn).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    count: u32,
    /// Multiply every production rate.
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
    /// The share of the stock offered each month.
    #[arg(long, default_value_t = 1.0, value_parser = parse_share)]
    offer_share: f64,
    /// Milliseconds between a confirmed sale and its dispatch report.
    #[arg(long, default_value_t = 1500)]
    dispatch_ms: u64,
    /// Never report dispatch (for benchmarks that measure checkouts only).
    #[arg(long)]
    no_dispatch: bool,
    /// This manufacturer's credential, overriding the one kept in the books (which is where the
    /// distributor's credential goes when the name first registers). Rarely needed.
    #[arg(long)]
    key: Option<String>,
    /// Connect over TLS, trusting this CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Take sale notices from this NATS server's JetStream (for example nats://127.0.0.1:4222)
    /// instead of the TCP link: a durable pull consumer on `sales.<cluster>.<name>`, both named by
    /// the distributor. Acks still go to the distributor over TCP. The distributor must run with
    /// --nats too, or it refuses.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0.0 and 1.0"))
    }
}

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs the command line given by `args` (the first item is the program name), exactly as the
/// `manufacturer-sim` binary does: logs on stderr, the report on stdout, stops on Ctrl-C / SIGTERM.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // `try_init`: a test process that hosts the command line may have set up logging already.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        // Seconds since start keep lines short; colours only on a terminal, never under NO_COLOR.
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_ansi(protocol::logging::colour_on_stderr())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not failures; clap knows which is which.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Some(Command::Report { db }) => print_report(&db),
        Some(Command::Run(args)) => serve(args),
        None => serve(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("manufacturer-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(db: &std::path::Path) -> Result<(), SimError> {
    let report = crate::report(db)?;
    for line in report.lines() {
        println!("{line}");
    }
    let json = serde_json::to_string(&report)
        .map_err(|e| SimError::Config(format!("cannot encode the report: {e}")))?;
    println!("{json}");
    Ok(())
}

/// Turns the command line into one config per manufacturer.
fn configs(args: RunArgs) -> Result<Vec<SimConfig>, SimError> {
    let db = args.db.ok_or_else(|| {
        SimError::Config("--db PATH is required (the manufacturer's books file)".into())
    })?;
    // (label, catalog): the label names manufacturers when there is no --name.
    let catalogs: Vec<(String, Catalog)> = match &args.catalog {
        Some(path) => vec![(stem(path), Catalog::load(path)?)],
        None => {
            let names = if args.presets.is_empty() {
                vec!["orchard".to_string()]
            } else {
                args.presets.clone()
            };
            names
                .into_iter()
                .map(|p| {
                    let catalog = preset(&p)
                        .ok_or_else(|| SimError::Config(format!("unknown preset {p:?}")))?;
                    Ok((p, catalog))
                })
                .collect::<Result<_, SimError>>()?
        }
    };
    let base = args.name.clone();
    let count = args.count as usize;
    let mut out = Vec::new();
    let total = count.max(catalogs.len());
    for i in 0..total {
        let (label, catalog) = &catalogs[i % catalogs.len()];
        let name = match (&base, count > 1, catalogs.len() > 1) {
            (Some(b), false, false) => b.clone(),
            (Some(b), true, _) => format!("{b}-{}", i + 1),
            (Some(b), false, true) => format!("{b}-{label}"),
            (None, true, _) => format!("{label}-{}", i + 1),
            (None, false, _) => label.clone(),
        };
        let mut config = SimConfig::new(args.server.clone(), name, db.clone(), catalog.clone());
        config.rate_scale = args.rate_scale;
        config.offer_share = args.offer_share;
        config.dispatch_delay =
            (!args.no_dispatch).then(|| Duration::from_millis(args.dispatch_ms));
        config.key = args.key.clone();
        config.tls_ca = args.tls_ca.clone();
        config.nats = args.nats.clone();
        out.push(config);
    }
    let mut names: Vec<&str> = out.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() != out.len() {
        return Err(SimError::Config(
            "two manufacturers would share a name; use --name with --count".into(),
        ));
    }
    Ok(out)
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manufacturer".into())
}

fn serve(args: RunArgs) -> Result<(), SimError> {
    let configs = configs(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SimError::Config(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        crate::run_all(configs, shutdown).await
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping");
    shutdown.cancel();
}
