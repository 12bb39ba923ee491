//! The `distributor` command line: serve customers and manufacturers, audit or back up a database,
//! act as the operator of a running distributor (`status`, `close-month`), or revoke a manufacturer's
//! credential. Each subcommand's work lives in its own module.
//!
//! It lives in the library so that tests can run the very same entry point in a child process
//! (see [`main_from`]) and kill it with `kill -9`.

mod close_month;
mod operator;
mod status;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The central distributor: sells what many manufacturers produce to many customers at once.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check the invariants of a database (read-only; safe while the server runs). The last line of
    /// output is a JSON object; the exit code is 0 only when it says "ok": true.
    Audit {
        /// The database file, or a `postgres://` URL.
        #[arg(long)]
        db: PathBuf,
        /// A file of `<checkout_id> <order_id> <units>` lines (as `loadgen --acked-log` writes):
        /// every listed checkout must exist with exactly those units.
        #[arg(long)]
        acked: Option<PathBuf>,
    },
    /// Copy the database consistently, also while the server runs (SQLite's online backup API). This
    /// is the supported way to copy it: the `.db` file alone can miss what is still in its `-wal`.
    /// FILE must not exist. The last line of output is a JSON object.
    Backup {
        /// The database file.
        #[arg(long, default_value = "data/distributor.db")]
        db: PathBuf,
        /// Where to write the copy (a single SQLite file).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Revoke a manufacturer's credential and end its link, so that the next manufacturer to connect
    /// under the name registers it again (for example after its books were lost).
    RevokeManufacturer {
        /// The manufacturer's name.
        #[arg(long)]
        name: String,
        /// The distributor's address.
        #[arg(long, default_value = "127.0.0.1:7878")]
        server: String,
        /// The distributor's database: the operator key is read from `operator.key` beside it.
        #[arg(long, default_value = "data/distributor.db")]
        db: PathBuf,
        /// The operator key, instead of the key file.
        #[arg(long, env = "DISTRIBUTOR_PEER_KEY")]
        peer_key: Option<String>,
        /// Connect over TLS, trusting this CA certificate (PEM).
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
    },
    /// Print a running distributor's status as one JSON line: the month, the manufacturers (with
    /// their pending notices), customers, sales and the last months.
    Status {
        #[command(flatten)]
        operator: operator::OperatorArgs,
    },
    /// Close the open month of a running distributor now; the next month opens at once. Asks first
    /// on a terminal.
    CloseMonth {
        #[command(flatten)]
        operator: operator::OperatorArgs,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on. Addresses outside loopback need TLS or --insecure.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The SQLite database file (created if missing; never overwritten if foreign or corrupt), or a
    /// `postgres://` URL: then this is one node of a cluster, which listens only while it holds the
    /// lease (see --node and --data-dir).
    #[arg(long, default_value = "data/distributor.db")]
    db: PathBuf,
    /// This node's name in logs and in the lease (PostgreSQL only). Default: host and listen address.
    #[arg(long)]
    node: Option<String>,
    /// Where `operator.key` lives when --db is a URL. Every node of a cluster uses the same key.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The longest a month lasts, in seconds. It closes earlier when stock runs out, or when every
    /// active customer has checked out (see --min-month-secs).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    month_secs: u64,
    /// The shortest a month lasts before "every customer has bought" may close it, in seconds.
    /// Default: a quarter of --month-secs, at most 30. Sold out and time up still close at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    min_month_secs: Option<u64>,
    /// The most connections served at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a started frame (or the handshake) may take to arrive.
    #[arg(long, default_value_t = 10)]
    frame_timeout_secs: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 300)]
    idle_timeout_secs: u64,
    /// The operator key that operator tools must present, instead of the one in `operator.key`
    /// beside the database (written with mode 0600 on first start). Must not be empty.
    /// Manufacturers do not use it: each has its own credential.
    #[arg(long, env = "DISTRIBUTOR_PEER_KEY")]
    peer_key: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow a non-loopback address without TLS.
    #[arg(long)]
    insecure: bool,
    /// Sign-ups accepted per client address per minute (also the burst allowed at once). Raise it for
    /// load tests that open thousands of accounts from one machine.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    signups_per_minute: u32,
    /// Login attempts accepted per client address per minute (also the burst allowed at once).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    logins_per_minute: u32,
    /// Password-hashing threads; 0 means one per core, and more than the cores are never started.
    #[arg(long, default_value_t = 0)]
    hash_threads: usize,
    /// Password hashes that may wait for a hashing thread; more are refused with "busy, retry".
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(2..=4096))]
    hash_queue: u64,
    /// A NATS server with JetStream (for example nats://127.0.0.1:4222): manufacturers started with
    /// --nats take their sale notices from its stream SALES instead of their TCP link. The
    /// distributor does not start if it cannot reach it. Without it, notices go over TCP. Required
    /// with a `postgres://` --db (cluster mode).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// This distributor's (or cluster's) name on NATS: its nodes talk on subjects under it, and its
    /// manufacturers' sale notices sit under it in the stream, so that distributors and clusters
    /// sharing a nats-server never cross. Every node of a cluster must use the same one. Default:
    /// in cluster mode named after the PostgreSQL database (`cds-<database>`), which its nodes share;
    /// on SQLite after the database file (`cds-<file stem>-<hash of its absolute path>`).
    #[arg(long, value_name = "NAME", requires = "nats")]
    cluster: Option<String>,
    /// A load balancer (an IP address; repeat for more) whose connections may start with a PROXY
    /// protocol header (HAProxy's `send-proxy` or `send-proxy-v2`): the client address it names is
    /// the one sign-up and login throttling count and logs show. Its connections without one (health
    /// checks) are served as its own. Nobody else can send one.
    #[arg(long = "trust-proxy", value_name = "IP")]
    trust_proxy: Vec<std::net::IpAddr>,
}

/// Runs the command line with the process's arguments.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs the command line with the given arguments (the first is the program name).
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(protocol::logging::colour_on_stderr())
        .try_init();
    match cli.command {
        Some(Cmd::Audit { db, acked }) => audit(&db, acked.as_deref()),
        Some(Cmd::Status { operator }) => status::run(&operator),
        Some(Cmd::CloseMonth { operator, yes }) => close_month::run(&operator, yes),
        Some(Cmd::Backup { db, to }) => backup(&db, &to),
        Some(Cmd::RevokeManufacturer {
            name,
            server,
            db,
            peer_key,
            tls_ca,
        }) => revoke(&server, &db, peer_key.as_deref(), tls_ca.as_deref(), &name),
        None => serve(cli.serve),
    }
}

fn audit(db: &std::path::Path, acked: Option<&std::path::Path>) -> ExitCode {
    let acked = match acked.map(std::fs::read_to_string).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: cannot read the acked file: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::store::backend::audit(db, acked.as_deref()) {
        Ok(report) => {
            for v in &report.violations {
                eprintln!("violation: {v}");
            }
            match serde_json::to_string(&report) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            println!(
                "{}",
                serde_json::json!({"ok": false, "violations": [e.to_string()], "sold_units": 0, "orders": 0, "outbox_pending": 0})
            );
            ExitCode::from(2)
        }
    }
}

fn backup(db: &std::path::Path, to: &std::path::Path) -> ExitCode {
    match crate::backup::backup(db, to) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::json!({"ok": true, "to": report.to, "pages": report.pages, "bytes": report.bytes})
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            );
            ExitCode::FAILURE
        }
    }
}

fn revoke(
    server: &str,
    db: &std::path::Path,
    peer_key: Option<&str>,
    tls_ca: Option<&std::path::Path>,
    name: &str,
) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| rt.block_on(crate::revoke::revoke(server, db, peer_key, tls_ca, name)));
    match result {
        Ok(()) => {
            println!("revoked the credential of {name:?}; the next manufacturer to connect under it registers it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if args
        .peer_key
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        eprintln!("error: the operator key (--peer-key / DISTRIBUTOR_PEER_KEY) is empty; set a real key, or unset it to use operator.key beside the database");
        return ExitCode::from(2);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match crate::tls::load(cert, key) {
            Ok(config) => Some(Arc::new(config)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    if !args.listen.ip().is_loopback() && tls.is_none() && !args.insecure {
        eprintln!(
            "error: refusing to listen on {} without TLS: pass --tls-cert and --tls-key, or --insecure",
            args.listen
        );
        return ExitCode::from(2);
    }
    let mut config = crate::Config::new(&args.db);
    config.node = args.node.clone();
    config.data_dir = args.data_dir.clone();
    config.month_secs = args.month_secs;
    config.min_month_secs = args.min_month_secs;
    config.max_connections = args.max_connections.max(1);
    config.frame_timeout = Duration::from_secs(args.frame_timeout_secs.max(1));
    config.idle_timeout = Duration::from_secs(args.idle_timeout_secs.max(1));
    config.peer_key = args.peer_key;
    config.tls = tls;
    config.limits.signups_per_minute = args.signups_per_minute;
    config.limits.logins_per_minute = args.logins_per_minute;
    config.hash_threads = args.hash_threads;
    config.hash_queue = args.hash_queue as usize;
    config.nats = args.nats;
    config.cluster = args.cluster;
    config.trusted_proxies = args.trust_proxy;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received; finishing requests in flight");
            signal.cancel();
        });
        if crate::store::backend::postgres_url(&config.db).is_some() {
            // A node listens only while it holds the lease, so it binds later.
            let listen = crate::node::Listen::Addr(args.listen);
            return crate::node::run(config, listen, shutdown)
                .await
                .map_err(|e| e.to_string());
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        crate::run(config, listener, shutdown)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
