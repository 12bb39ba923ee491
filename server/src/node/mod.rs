//! One market node, any number of others: the lease on a shared PostgreSQL.
//!
//! With `--nats` every node serves clients (it is an edge) and the holder is also the market: see
//! [`cluster`]. Without it, the holder alone serves and the others wait, as described below.
//!
//! Every node started on the same database competes for a session-level `pg_try_advisory_lock`, held
//! on a connection of its own. The holder is the active node: it creates the schema if there is none,
//! increments the lease row's epoch, loads the market (the same load as a restart), and only then
//! listens. The others poll for the lock every 100 ms and do not listen, so a load balancer's health
//! check passes only the active node.
//!
//! How the lease is lost:
//! - the holder dies: its connection closes and PostgreSQL drops the lock at once;
//! - the holder is paused (SIGSTOP) or hangs: it stops sending its 250 ms heartbeat, and PostgreSQL
//!   ends the lease connection after `idle_session_timeout` (2.5 s), which drops the lock;
//! - the holder's machine or network goes silent: TCP keepalives (idle 2 s, every 1 s, 2 probes) drop
//!   it within about 5 s.
//!
//! Every node needs `--nats` ([`crate::ServerError::ClusterNeedsNats`] otherwise): the nodes of a
//! cluster reach each other, and the manufacturers, through the broker.
//!
//! **Fencing.** A node that lost the lease may not know it yet (it was paused). Every write
//! transaction checks, under a share lock on the lease row, the epoch the node took; a takeover's
//! increment waits for that lock. So the old holder's next commit fails without writing anything
//! (see [`crate::store::postgres::writer`]), and the node stops serving and becomes a standby. The
//! lease connection's failed heartbeat does the same when nothing was being written.

pub mod cluster;

use crate::store::postgres::{self, pg, Purpose};
use crate::store::StoreError;
use crate::{Config, ServerError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// The advisory lock's key: "CDS1", the same tag as the SQLite file's `application_id`.
pub const LOCK_KEY: i64 = 0x4344_5331;

/// How often a standby tries to take the lease.
const POLL: Duration = Duration::from_millis(100);

/// How often the holder shows PostgreSQL it is alive.
const HEARTBEAT: Duration = Duration::from_millis(250);

/// Where a node listens: once it holds the lease, or (with `--nats`, see [`cluster`]) from the start.
pub enum Listen {
    /// Already bound (tests, `shop --demo`): the node serves on it once and returns when it loses
    /// the lease, since a listener that was bound before cannot be given back and taken again.
    Bound(TcpListener),
    /// Bound at every takeover, and closed at every step-down.
    Addr(SocketAddr),
}

/// The lease, while held. Dropping it closes the lease connection, which releases the lock.
pub struct Lease {
    /// The epoch this node took; every write transaction checks it.
    pub epoch: i64,
    /// Cancelled when the lease connection fails: this node may no longer be the holder.
    pub lost: CancellationToken,
    _client: Arc<Client>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Waits until this node holds the lease; `None` when `shutdown` comes first.
pub async fn acquire(url: &str, node: &str, shutdown: &CancellationToken) -> Option<Lease> {
    let mut client: Option<Client> = None;
    let mut complained = false;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match try_acquire(url, node, &mut client).await {
            Ok(Some(lease)) => return Some(lease),
            Ok(None) => complained = false,
            Err(e) => {
                client = None;
                if !complained {
                    tracing::warn!(node, error = %e, "store unavailable; retrying for the lease");
                    complained = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn try_acquire(
    url: &str,
    node: &str,
    slot: &mut Option<Client>,
) -> Result<Option<Lease>, StoreError> {
    if slot.is_none() {
        let client = postgres::connect(url, Purpose::Lease).await?;
        // Server-side keepalives for this connection, and the timeout that ends the session of a
        // holder that stopped its heartbeat (paused or hung), releasing the lock.
        client
            .batch_execute(
                "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; \
                 SET tcp_keepalives_count = 2; SET idle_session_timeout = '2500ms'",
            )
            .await
            .map_err(pg)?;
        *slot = Some(client);
    }
    let Some(client) = slot.as_ref() else {
        return Ok(None);
    };
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(pg)?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let Some(client) = slot.take() else {
        return Ok(None);
    };
    // Only the holder creates the schema, so two nodes never race for it.
    postgres::schema::ensure(&client).await?;
    let epoch: i64 = client
        .query_one(
            "UPDATE lease SET epoch = epoch + 1, holder = $1, taken_at_ms = $2 WHERE id = 1 RETURNING epoch",
            &[&node, &(crate::store::now_ms() as i64)],
        )
        .await
        .map_err(pg)?
        .get(0);
    let client = Arc::new(client);
    let lost = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(client.clone(), lost.clone()));
    Ok(Some(Lease {
        epoch,
        lost,
        _client: client,
        heartbeat,
    }))
}

async fn heartbeat(client: Arc<Client>, lost: CancellationToken) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let alive = tokio::time::timeout(Duration::from_secs(2), client.simple_query("SELECT 1"))
            .await
            .is_ok_and(|r| r.is_ok());
        if !alive {
            lost.cancel();
            return;
        }
    }
}

/// This node's name: `--node`, else host and listen address.
pub fn name(config: &Config, listen: &Listen) -> String {
    if let Some(name) = &config.node {
        return name.clone();
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let addr = match listen {
        Listen::Bound(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        Listen::Addr(a) => a.to_string(),
    };
    format!("{host}/{addr}")
}

/// Runs a node on the PostgreSQL database in `config.db` until `shutdown`: standby until it takes
/// the lease, then active until it loses it, then standby again.
pub async fn run(
    mut config: Config,
    listen: Listen,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let Some(url) = crate::store::backend::postgres_url(&config.db).map(str::to_string) else {
        return Err(ServerError::Store(StoreError::Foreign(
            "a node needs a postgres:// database".into(),
        )));
    };
    // Before anything is opened: a node that cannot reach the others' traffic must not run at all.
    if config.nats.is_none() {
        return Err(ServerError::ClusterNeedsNats);
    }
    let node = name(&config, &listen);
    config.node = Some(node.clone());
    let key_file =
        match (&config.data_dir, &config.peer_key) {
            (Some(dir), _) => dir.join(protocol::operator_key::FILE_NAME),
            (None, Some(_)) => std::path::PathBuf::new(),
            (None, None) => return Err(ServerError::Store(StoreError::Foreign(
                "with a postgres:// database, give --data-dir DIR (where the operator key that \
                 every node shares lives) or --peer-key"
                    .into(),
            ))),
        };
    if let Some(dir) = &config.data_dir {
        std::fs::create_dir_all(dir).map_err(ServerError::Start)?;
    }
    let operator_key =
        crate::identity::operator::OperatorKey::establish_at(key_file, config.peer_key.as_deref())?;
    if let Some(nats) = config.nats.clone() {
        return cluster::run(config, url, nats, listen, operator_key, shutdown).await;
    }
    let (mut bound, addr) = match listen {
        Listen::Bound(l) => (Some(l), None),
        Listen::Addr(a) => (None, Some(a)),
    };
    loop {
        tracing::info!(node, "standby: waiting for the lease");
        let Some(lease) = acquire(&url, &node, &shutdown).await else {
            return Ok(());
        };
        tracing::info!(
            node,
            epoch = lease.epoch,
            "took the lease; loading the market"
        );
        let result = active(
            &config,
            &url,
            &lease,
            bound.take(),
            addr,
            &operator_key,
            &shutdown,
        )
        .await;
        if shutdown.is_cancelled() {
            return result;
        }
        match &result {
            Ok(()) => tracing::warn!(node, epoch = lease.epoch, "lost the lease; stepping down"),
            Err(e) => {
                tracing::warn!(node, epoch = lease.epoch, error = %e, "stopped serving; stepping down")
            }
        }
        drop(lease);
        if addr.is_none() {
            // A listener bound by the caller serves once.
            return result.and(Err(ServerError::Fatal));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Serves while holding `lease`: load, start the writer under its epoch, listen.
async fn active(
    config: &Config,
    url: &str,
    lease: &Lease,
    listener: Option<TcpListener>,
    addr: Option<SocketAddr>,
    operator_key: &crate::identity::operator::OperatorKey,
    shutdown: &CancellationToken,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let mut throttle = crate::throttle::Throttle::new(config.limits);
    let mut client = postgres::connect(url, Purpose::Work).await?;
    let loaded = postgres::load::load(&mut client, &mut throttle, protocol::HISTORY_MONTHS).await?;
    drop(client);
    let wiring = crate::Wiring::new();
    let (writer, writer_done) =
        postgres::writer::start(url, Some(lease.epoch), wiring.effects()).await?;
    let reads = crate::store::read::Reads::on_postgres(postgres::read::Pool::open(url).await?);
    let listener = match (listener, addr) {
        (Some(listener), _) => listener,
        (None, Some(addr)) => TcpListener::bind(addr).await.map_err(ServerError::Start)?,
        (None, None) => return Err(ServerError::Fatal),
    };
    let ready = crate::Ready {
        started,
        operator_key: operator_key.clone(),
        // With --nats, [`cluster::run`] serves instead: this node has no broker.
        broker: None,
        snapshot: loaded.snapshot,
        past: loaded.past,
        throttle,
        credentials: loaded.credentials,
        writer,
        writer_done,
        reads,
        wiring,
    };
    let serving = CancellationToken::new();
    let stop = {
        let serving = serving.clone();
        let shutdown = shutdown.clone();
        let lost = lease.lost.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
            }
            serving.cancel();
        })
    };
    let result = crate::serve(config.clone(), ready, listener, serving).await;
    stop.abort();
    result
}
