//! The central distributor: a tokio TCP server that sells manufacturers' goods to many customers.
//!
//! # Layout
//! - [`listener`]: the accept loop, the connection cap, TLS and graceful shutdown.
//! - [`proxy_header`]: a trusted load balancer's PROXY protocol header, naming the client.
//! - [`session`]: one connection: handshake, timeouts, role checks, requests and pushes.
//! - [`engine`]: the one task that owns the market, applies commands in order and runs the month clock.
//! - [`market`]: the pure domain: stock, carts, checkout, months. No I/O.
//! - [`operator`]: the operator's status: what only operators need tracked, and their live feed.
//! - [`store`]: SQLite or PostgreSQL: schema, the group-committing writer, reads, start-up load, audit.
//! - [`node`]: on PostgreSQL, the lease that makes one node the market; with `--nats` every node
//!   serves clients as an edge ([`node::cluster`]).
//! - [`broker`]: with `--nats`, sale notices through NATS JetStream instead of the manufacturers'
//!   links, and in cluster mode the market's traffic between nodes (forwarded commands, events).
//! - [`board`]: live stock for watchers, coalesced through `watch` channels.
//! - [`push`]: who to push events to.
//! - [`pages`]: stock updates cut to fit a frame, and multi-part offers put back together.
//! - [`tls`]: loading the TLS certificate and key.
//! - [`auth`]: session tokens (at most 20 per account) and password rules.
//! - [`hashing`]: the argon2id pool: one thread per core at most, a bounded queue, memory reused.
//! - [`throttle`]: login and sign-up throttling by (account, address), account and address.
//! - [`names`]: person, manufacturer and product names: cleaned, checked, compared for look-alikes.
//! - [`email`]: email syntax and the case-folded key accounts are found by.
//! - [`card`]: card validation; only brand, last four and expiry are kept.
//! - [`identity`]: manufacturer credentials and the operator key: who may connect as what.
//! - [`backup`]: `distributor backup`, a consistent copy of a live database (SQLite's backup API).
//! - [`revoke`]: `distributor revoke-manufacturer`, an operator client that frees a name.
//! - [`cli`]: the `distributor` command line (`serve`, `audit`, `backup`, `revoke-manufacturer`).
//!
//! # How a checkout flows
//! session → engine (validates against live stock, takes the units, freezes prices) → writer thread
//! (one transaction per batch: order, lines, stock, outbox) → after `COMMIT` the writer answers the
//! session directly, and the manufacturer's relay (in its session) sees the new notices.

pub mod auth;
pub mod backup;
pub mod board;
pub mod broker;
pub mod card;
pub mod cli;
pub mod email;
pub mod engine;
pub mod hashing;
pub mod identity;
pub mod listener;
pub mod market;
pub mod names;
pub mod node;
pub mod operator;
pub mod pages;
pub mod proxy_header;
pub mod push;
pub mod revoke;
pub mod session;
pub mod store;
pub mod throttle;
pub mod tls;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use store::audit::AuditReport;
pub use store::backend::audit;

/// Server settings. [`Config::new`] gives sensible defaults.
#[derive(Clone)]
pub struct Config {
    /// The SQLite file, or a `postgres://` URL (see [`store::backend`]).
    pub db: PathBuf,
    /// This node's name in logs and in the lease row; `None`: host and listen address.
    pub node: Option<String>,
    /// Where `operator.key` lives when `db` is a URL (every node of a cluster shares one).
    pub data_dir: Option<PathBuf>,
    /// How long a month lasts at most.
    pub month_secs: u64,
    /// How long a month lasts at least before "every customer has bought" may close it; `None`
    /// means a quarter of `month_secs`, at most 30 s. Sold out and time up still close at once.
    pub min_month_secs: Option<u64>,
    /// The most connections served at once; more are refused with `TooManyConnections`.
    pub max_connections: usize,
    /// A started frame (and the handshake) must complete within this.
    pub frame_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The operator key, overriding `operator.key` beside the database (see [`identity::operator`]).
    /// Operator-grade roles must present it; it does not make anyone a manufacturer.
    pub peer_key: Option<String>,
    /// The least time between two stock updates to one watcher. 50 ms: a sale reaches a watcher in
    /// well under the 100 ms the fan-out target allows, at two updates per watcher per 100 ms (at
    /// 100 ms the window alone used the whole budget: p99 101–105 ms with 1,000 watchers).
    pub stock_interval: Duration,
    /// TLS, if enabled.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Login and sign-up throttling.
    pub limits: throttle::Limits,
    /// Password-hashing threads; 0 means one per core (never more).
    pub hash_threads: usize,
    /// Password hashes that may wait for a thread; more are refused with `Busy`.
    pub hash_queue: usize,
    /// The NATS server whose JetStream carries sale notices to manufacturers that ask for it
    /// (`--nats URL`); `None`: every notice goes over the manufacturer's TCP link.
    pub nats: Option<String>,
    /// The name this distributor's (or cluster's) traffic uses on NATS (`--cluster`); `None`: named
    /// after the PostgreSQL database, or on SQLite after the database file.
    pub cluster: Option<String>,
    /// Load balancers whose PROXY protocol header names the client (`--trust-proxy`): see
    /// [`proxy_header`].
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Config {
    /// Defaults: 120 s months (open at least 30 s before "every customer has bought" may close
    /// one), 10,000 connections, 10 s frame deadline, 5 min idle timeout, at most one stock update
    /// per watcher every 100 ms, [`throttle::Limits::default`], one hashing thread per core and 16
    /// hashes waiting at most.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Config {
            db: db.into(),
            node: None,
            data_dir: None,
            month_secs: 120,
            min_month_secs: None,
            max_connections: 10_000,
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            peer_key: None,
            stock_interval: Duration::from_millis(50),
            tls: None,
            limits: throttle::Limits::default(),
            hash_threads: 0,
            hash_queue: 16,
            nats: None,
            cluster: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Config {
    /// The shortest month in ms: `min_month_secs`, or by default a quarter of `month_secs` capped
    /// at 30 s.
    pub fn min_month_ms(&self) -> u64 {
        match self.min_month_secs {
            Some(secs) => secs.saturating_mul(1000),
            None => market::default_min_month_ms(self.month_secs.max(1).saturating_mul(1000)),
        }
    }
}

/// What can stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or loaded.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A thread the server needs could not be started.
    #[error("cannot start a server thread: {0}")]
    Start(std::io::Error),
    /// The writer hit an error and stopped the server to keep memory and disk in step.
    #[error("stopped after a fatal storage error; see the log")]
    Fatal,
    /// Another process holds the database, or its lock file cannot be made.
    #[error(transparent)]
    Lock(#[from] protocol::lock_file::LockError),
    /// No usable operator key.
    #[error(transparent)]
    OperatorKey(#[from] identity::operator::KeyError),
    /// `--nats` was given but the broker cannot be used.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// A cluster node (`--db postgres://…`) was started without `--nats`.
    #[error("cluster mode (--db postgres://…) needs --nats URL: edges forward market commands and sale notices over NATS")]
    ClusterNeedsNats,
}

/// Runs the distributor on `listener` until `shutdown` is cancelled, then drains and returns.
///
/// With a `postgres://` database this is one node of a cluster (see [`node`]): it serves on
/// `listener` only while it holds the lease.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    if store::backend::postgres_url(&config.db).is_some() {
        return node::run(config, node::Listen::Bound(listener), shutdown).await;
    }
    let started = std::time::Instant::now();
    // Held until `run` returns; the kernel lets go if the process dies.
    let _lock = protocol::lock_file::LockFile::acquire(&config.db)?;
    let operator_key =
        identity::operator::OperatorKey::establish(&config.db, config.peer_key.as_deref())?;
    // Before anything else starts: a distributor told to use a broker must not run without it.
    let broker = match &config.nats {
        Some(url) => {
            let cluster = match &config.cluster {
                Some(name) => name.clone(),
                None => broker::cluster_for_file(&config.db),
            };
            Some(broker::Broker::connect(url, &cluster).await?)
        }
        None => None,
    };
    let conn = store::schema::open_writer(&config.db)?;
    let snapshot = store::load::snapshot(&conn)?;
    let past = store::history::load(&conn, protocol::HISTORY_MONTHS)?;
    let mut throttle = throttle::Throttle::new(config.limits);
    store::logins::load_throttle(&conn, &mut throttle, store::now_ms())?;
    let credentials = identity::credentials::Credentials::load(&conn)?;
    let wiring = Wiring::new();
    let (writer, writer_thread) =
        store::writer::Writer::start(conn, wiring.effects()).map_err(ServerError::Start)?;
    let reads = store::read::Reads::new(config.db.clone());
    let ready = Ready {
        started,
        operator_key,
        broker,
        snapshot,
        past,
        throttle,
        credentials,
        writer,
        writer_done: tokio::task::spawn_blocking(move || {
            let _ = writer_thread.join();
        }),
        reads,
        wiring,
    };
    serve(config, ready, listener, shutdown).await
}

/// What connects the writer to the rest of the server: made before the writer starts.
pub(crate) struct Wiring {
    registry: Arc<push::Registry>,
    committed_tx: tokio::sync::mpsc::UnboundedSender<market::Committed>,
    committed_rx: tokio::sync::mpsc::UnboundedReceiver<market::Committed>,
    fatal: CancellationToken,
}

impl Wiring {
    pub(crate) fn new() -> Wiring {
        let (committed_tx, committed_rx) = tokio::sync::mpsc::unbounded_channel();
        Wiring {
            registry: Arc::new(push::Registry::default()),
            committed_tx,
            committed_rx,
            fatal: CancellationToken::new(),
        }
    }

    /// The writer's side of the wiring.
    pub(crate) fn effects(&self) -> store::writer::Effects {
        store::writer::Effects {
            registry: self.registry.clone(),
            committed: self.committed_tx.clone(),
            fatal: self.fatal.clone(),
        }
    }
}

/// A loaded store with its writer running: everything [`serve`] needs, from either back end.
pub(crate) struct Ready {
    pub(crate) started: std::time::Instant,
    pub(crate) operator_key: identity::operator::OperatorKey,
    /// With `--nats`: the broker sale notices go through.
    pub(crate) broker: Option<broker::Broker>,
    pub(crate) snapshot: market::Snapshot,
    pub(crate) past: store::history::Past,
    pub(crate) throttle: throttle::Throttle,
    pub(crate) credentials: identity::credentials::Credentials,
    pub(crate) writer: store::writer::Writer,
    /// Ends when the writer has drained and stopped.
    pub(crate) writer_done: tokio::task::JoinHandle<()>,
    pub(crate) reads: store::read::Reads,
    pub(crate) wiring: Wiring,
}

/// Serves a loaded store on `listener` until `shutdown` is cancelled or the writer fails.
pub(crate) async fn serve(
    config: Config,
    ready: Ready,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let Ready {
        started,
        operator_key,
        broker,
        snapshot,
        past,
        throttle,
        credentials,
        writer,
        writer_done,
        reads,
        wiring,
    } = ready;
    let Wiring {
        registry,
        committed_tx,
        committed_rx,
        fatal,
    } = wiring;
    // Only the writer reports commits: when it stops, the engine's receiver closes.
    drop(committed_tx);
    let hashing = hashing::HashPool::start(config.hash_threads, config.hash_queue)
        .map_err(ServerError::Start)?;
    let mut market = market::Market::restore(snapshot);
    market.set_min_month_ms(config.min_month_ms());
    let (board, board_reader) = board::Board::new();
    let (engine_handle, commands) = engine::channel();
    let engine = engine::Engine::new(
        market,
        writer.clone(),
        reads.clone(),
        board,
        registry.clone(),
        Duration::from_secs(config.month_secs.max(1)),
    )
    .with_past(past)
    .with_credentials(credentials);
    let engine_stop = CancellationToken::new();
    let engine_task = tokio::spawn(engine.run(commands, committed_rx, engine_stop.clone()));
    tracing::info!(
        db = %store::postgres::audit::redact(&config.db.display().to_string()),
        node = config.node.as_deref().unwrap_or(""),
        addr = ?listener.local_addr().ok(),
        ms = started.elapsed().as_millis() as u64,
        operator_key = %operator_key.source,
        "distributor ready"
    );

    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let config = Arc::new(config);
    let shared = Arc::new(session::Shared {
        engine: engine_handle,
        writer,
        reads,
        board: board_reader,
        registry,
        throttle: std::sync::Mutex::new(throttle),
        hashing,
        next_session: AtomicU64::new(1),
        operator_key,
        broker,
        config,
    });
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        let fatal = fatal.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = fatal.cancelled() => {}
            }
            stop.cancel();
        })
    };
    let upkeep = tokio::spawn(forget_expired_login_failures(shared.clone(), stop.clone()));
    listener::accept_loop(listener, shared, tls, stop).await;
    watcher.abort();
    upkeep.abort();
    let _ = upkeep.await;
    // Every session is done: nothing new reaches the engine. Stop it, then let the writer drain.
    engine_stop.cancel();
    let _ = engine_task.await;
    let _ = writer_done.await;
    tracing::info!("distributor stopped");
    if fatal.is_cancelled() {
        return Err(ServerError::Fatal);
    }
    Ok(())
}

/// How often a running server forgets login failures past the throttle's window, in memory and in
/// the store (start-up does it once). Without it a spray of made-up emails, slowed as it is, would
/// still grow both for as long as the server runs.
const FORGET_LOGIN_FAILURES_EVERY: Duration = Duration::from_secs(600);

async fn forget_expired_login_failures(shared: Arc<session::Shared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(FORGET_LOGIN_FAILURES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now, and start-up has just done it.
    every.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = store::now_ms();
        let window_ms = {
            // The maps stay consistent even if a holder panicked.
            let mut throttle = shared.throttle.lock().unwrap_or_else(|e| e.into_inner());
            throttle.forget_expired(now);
            throttle.limits().window_ms
        };
        let op = store::writer::Op::ForgetLoginFailures {
            before_ms: now.saturating_sub(window_ms),
        };
        if let Err(e) = shared.writer.run(op).await {
            tracing::warn!(error = %e, "could not forget old login failures; trying again later");
        }
    }
}
