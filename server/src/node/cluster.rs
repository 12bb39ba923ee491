//! A node in cluster mode (a PostgreSQL store and `--nats`): every node is an edge, and the lease
//! holder is also the market.
//!
//! - **The edge** runs for the node's whole life: it listens at once, holder or not, and serves
//!   handshakes, sign-up and login (argon2), resume, reads and pushes. Its sessions reach the market
//!   only through their [`crate::engine::EngineHandle`], whose commands [`Edge::forward`] sends over
//!   NATS; its board and pushes are fed by [`Edge::ingest`]. Its own writes go through an unfenced
//!   writer (see [`crate::broker::edge`]).
//! - **The market** runs while this node holds the lease ([`market_term`]): the load, the fenced
//!   writer, the engine, [`crate::broker::market::serve`] (the forwarded requests) and
//!   [`crate::broker::market::publish`] (what edges fan out). At step-down it unsubscribes and stops,
//!   and the edge carries on; the next holder serves the same subjects.
//!
//! This node's own sessions take the same path through NATS as an edge's, so there is one way a
//! command reaches the market, and nothing changes for them when the market moves.

use super::{acquire, Lease, Listen};
use crate::broker::edge::Edge;
use crate::broker::wire::Subjects;
use crate::broker::{Broker, Bus};
use crate::store::postgres::{self, Purpose};
use crate::store::StoreError;
use crate::{Config, ServerError};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often a node that came up before the schema exists tries again to open its writer.
const SCHEMA_POLL: Duration = Duration::from_millis(200);

/// Runs the node until `shutdown`: the edge all along, the market while it holds the lease.
pub async fn run(
    config: Config,
    url: String,
    nats: String,
    listen: Listen,
    operator_key: crate::identity::operator::OperatorKey,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let node = config.node.clone().unwrap_or_default();
    let cluster = cluster_name(&config, &url);
    let broker = Broker::connect(&nats, &cluster).await?;
    let bus = Bus {
        client: broker.client(),
        subjects: Subjects::new(&cluster),
    };
    tracing::info!(subjects = %bus.subjects.requests(), "this cluster's market subjects");
    let market = tokio::spawn(market_loop(
        config.clone(),
        url.clone(),
        node.clone(),
        bus.clone(),
        shutdown.clone(),
    ));
    let served = edge(
        &config,
        &url,
        &node,
        &broker,
        bus,
        listen,
        operator_key,
        started,
        &shutdown,
    )
    .await;
    // The market stops with the node (or has already stopped on an error of its own).
    let result = market.await.unwrap_or(Ok(()));
    served.and(result)
}

/// This cluster's name on NATS (its subjects, and its manufacturers' notice feeds): `--cluster`,
/// else named after the database every node shares (the part of the URL that is the same whichever
/// address a node reaches it by).
fn cluster_name(config: &Config, url: &str) -> String {
    if let Some(name) = &config.cluster {
        return name.clone();
    }
    let database = url
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_dbname().or(c.get_user()).map(str::to_string))
        .unwrap_or_default();
    crate::broker::cluster_for_database(&database)
}

#[allow(clippy::too_many_arguments)]
async fn edge(
    config: &Config,
    url: &str,
    node: &str,
    broker: &Broker,
    bus: Bus,
    listen: Listen,
    operator_key: crate::identity::operator::OperatorKey,
    started: std::time::Instant,
    shutdown: &CancellationToken,
) -> Result<(), ServerError> {
    // What this node's own writes push (a dispatch report's order status) goes to the bus, so that
    // the account's sessions on every node see it.
    let (published_tx, published_rx) = tokio::sync::mpsc::unbounded_channel();
    let publishing = Arc::new(crate::push::Registry::publishing(published_tx.clone()));
    let (committed, _) = tokio::sync::mpsc::unbounded_channel();
    let fatal = CancellationToken::new();
    let effects = crate::store::writer::Effects {
        registry: publishing,
        committed,
        fatal: fatal.clone(),
    };
    let Some((writer, writer_done)) = open_writer(url, effects, shutdown).await? else {
        return Ok(());
    };
    let reads = crate::store::read::Reads::on_postgres(postgres::read::Pool::open(url).await?);
    // The login failures every node recorded, so that a restarted edge hands out no fresh guesses.
    let mut throttle = crate::throttle::Throttle::new(config.limits);
    let mut db = postgres::connect(url, Purpose::Work).await?;
    postgres::load::throttle(&mut db, &mut throttle).await?;
    drop(db);
    // A password change or the session cap ends the account's connections on every node.
    let registry = Arc::new(crate::push::Registry::with_peers(published_tx.clone()));
    let (board, board_reader) = crate::board::Board::new();
    let (engine, commands) = crate::engine::channel();
    let forwarding = Edge::start(bus.clone(), node)
        .await
        .map_err(|e| broker_error(&e))?;
    let stop_bus = CancellationToken::new();
    tokio::spawn(forwarding.clone().forward(commands));
    let ingest = tokio::spawn(
        forwarding
            .clone()
            .ingest(board, registry.clone(), stop_bus.clone()),
    );
    let edge_publisher = tokio::spawn(crate::broker::market::publish_only(
        bus,
        published_rx,
        stop_bus.clone(),
    ));
    let listener = match listen {
        Listen::Bound(listener) => listener,
        Listen::Addr(addr) => TcpListener::bind(addr).await.map_err(ServerError::Start)?,
    };
    let hashing = crate::hashing::HashPool::start(config.hash_threads, config.hash_queue)
        .map_err(ServerError::Start)?;
    tracing::info!(
        node,
        addr = ?listener.local_addr().ok(),
        ms = started.elapsed().as_millis() as u64,
        "edge ready: serving clients; the market is wherever the lease is"
    );
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let shared = Arc::new(crate::session::Shared {
        engine,
        writer,
        reads,
        board: board_reader,
        registry,
        throttle: std::sync::Mutex::new(throttle),
        hashing,
        next_session: AtomicU64::new(1),
        operator_key,
        broker: Some(broker.clone()),
        config: Arc::new(config.clone()),
    });
    let stop = CancellationToken::new();
    let watcher = {
        let (stop, shutdown, fatal) = (stop.clone(), shutdown.clone(), fatal.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = fatal.cancelled() => {}
            }
            stop.cancel();
        })
    };
    crate::listener::accept_loop(listener, shared, tls, stop).await;
    watcher.abort();
    stop_bus.cancel();
    let _ = ingest.await;
    let _ = edge_publisher.await;
    let _ = writer_done.await;
    if fatal.is_cancelled() && !shutdown.is_cancelled() {
        tracing::error!(node, "the edge's writer failed; stopping");
        return Err(ServerError::Fatal);
    }
    Ok(())
}

fn broker_error(e: &dyn std::fmt::Display) -> ServerError {
    ServerError::Store(StoreError::Foreign(format!("message broker: {e}")))
}

/// Opens the edge's unfenced writer, waiting for the schema that the first lease holder creates.
async fn open_writer(
    url: &str,
    effects: crate::store::writer::Effects,
    shutdown: &CancellationToken,
) -> Result<Option<(crate::store::writer::Writer, tokio::task::JoinHandle<()>)>, ServerError> {
    let mut complained = false;
    loop {
        match postgres::writer::start(url, None, effects.clone()).await {
            Ok(writer) => return Ok(Some(writer)),
            Err(e) => {
                if !complained {
                    tracing::info!(error = %e, "waiting for the store's schema (the first lease holder creates it)");
                    complained = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(SCHEMA_POLL) => {}
        }
    }
}

/// Standby for the lease, market while holding it, standby again after it is lost; until
/// `shutdown`.
async fn market_loop(
    config: Config,
    url: String,
    node: String,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    loop {
        tracing::info!(node, "waiting for the lease (serving as an edge)");
        let Some(lease) = acquire(&url, &node, &shutdown).await else {
            return Ok(());
        };
        tracing::info!(
            node,
            epoch = lease.epoch,
            "took the lease; loading the market"
        );
        let result = market_term(&config, &url, &lease, bus.clone(), &shutdown).await;
        if shutdown.is_cancelled() {
            return result;
        }
        match &result {
            Ok(()) => tracing::warn!(
                node,
                epoch = lease.epoch,
                "lost the lease; the market steps down, the edge serves on"
            ),
            Err(e) => {
                tracing::warn!(node, epoch = lease.epoch, error = %e, "the market stopped; stepping down, the edge serves on")
            }
        }
        drop(lease);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// The market while this node holds `lease`: load, the fenced writer, the engine, and its NATS
/// service and publisher; until the lease is lost, the writer fails, or `shutdown`.
async fn market_term(
    config: &Config,
    url: &str,
    lease: &Lease,
    bus: Bus,
    shutdown: &CancellationToken,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let term = lease.epoch;
    // The throttle state is each edge's own; the market's load fills one it does not use.
    let mut throttle = crate::throttle::Throttle::new(config.limits);
    let mut db = postgres::connect(url, Purpose::Work).await?;
    let loaded = postgres::load::load(&mut db, &mut throttle, protocol::HISTORY_MONTHS).await?;
    drop(db);
    let (sink, published) = tokio::sync::mpsc::unbounded_channel();
    let registry = Arc::new(crate::push::Registry::publishing(sink.clone()));
    let (committed_tx, committed_rx) = tokio::sync::mpsc::unbounded_channel();
    let fatal = CancellationToken::new();
    let effects = crate::store::writer::Effects {
        registry: registry.clone(),
        committed: committed_tx,
        fatal: fatal.clone(),
    };
    let (writer, writer_done) = postgres::writer::start(url, Some(term), effects).await?;
    let reads = crate::store::read::Reads::on_postgres(postgres::read::Pool::open(url).await?);
    let mut market = crate::market::Market::restore(loaded.snapshot);
    market.set_min_month_ms(config.min_month_ms());
    let (board, board_reader) = crate::board::Board::new();
    let (engine_handle, commands) = crate::engine::channel();
    let engine = crate::engine::Engine::new(
        market,
        writer,
        reads,
        board,
        registry.clone(),
        Duration::from_secs(config.month_secs.max(1)),
    )
    .with_past(loaded.past)
    .with_credentials(loaded.credentials);
    let engine_stop = CancellationToken::new();
    let engine_task = tokio::spawn(engine.run(commands, committed_rx, engine_stop.clone()));
    let term_stop = CancellationToken::new();
    let (answers, outgoing) = tokio::sync::mpsc::unbounded_channel();
    let publisher = tokio::spawn(crate::broker::market::publish(
        bus.clone(),
        term,
        registry,
        board_reader.clone(),
        published,
        outgoing,
        term_stop.clone(),
    ));
    let service = tokio::spawn(crate::broker::market::serve(
        bus,
        engine_handle,
        term,
        sink,
        board_reader,
        answers,
        term_stop.clone(),
    ));
    tracing::info!(
        term,
        ms = started.elapsed().as_millis() as u64,
        "market ready"
    );
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = lease.lost.cancelled() => {}
        _ = fatal.cancelled() => {}
    }
    // No new request reaches the engine once the service has unsubscribed; then the engine stops,
    // and the writer drains what it was given.
    term_stop.cancel();
    let served = service.await;
    engine_stop.cancel();
    let _ = engine_task.await;
    let _ = writer_done.await;
    let _ = publisher.await;
    if let Ok(Err(e)) = served {
        return Err(broker_error(&e));
    }
    if fatal.is_cancelled() {
        return Err(ServerError::Fatal);
    }
    Ok(())
}
