//! The store on a shared PostgreSQL 15: the same schema meaning, group commit, start-up load, reads
//! and audit as the SQLite store, so that several distributor nodes can run on one database and a
//! standby can take over (see [`crate::node`]).
//!
//! - [`schema`]: the DDL, created once by the first node to hold the lease.
//! - [`writer`]: one task owns the write connection; one transaction per batch, checkouts written with
//!   multi-row `UNNEST` statements, the lease epoch checked inside every transaction.
//! - [`load`]: the market, history, throttle and credentials at start-up (and at every takeover).
//! - [`read`]: a few pipelined read connections for sessions.
//! - [`audit`]: `distributor audit --db postgres://…`, the same checks and JSON as on SQLite.

pub mod audit;
pub mod load;
pub mod read;
pub mod schema;
pub mod writer;

use super::StoreError;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Maps a PostgreSQL error: a unique violation is [`StoreError::Duplicate`] (a taken email), the rest
/// says the store is unavailable, with PostgreSQL's own words.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        return StoreError::Duplicate;
    }
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    StoreError::Postgres(detail)
}

/// What a connection is for: it decides the keepalives and the session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The lease: short keepalives, so a silent holder loses it within about 5 s.
    Lease,
    /// The writer or a reader.
    Work,
}

/// Opens one connection to `url` and drives it on its own task. The task ends (and later queries
/// fail) when the connection breaks.
pub async fn connect(url: &str, purpose: Purpose) -> Result<Client, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Foreign(format!("{url}: not a PostgreSQL URL ({e})")))?;
    config.connect_timeout(Duration::from_secs(3));
    config.application_name("distributor");
    // Idle 2 s, then a probe every second, two probes: a dead machine is noticed in about 4 s.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(2);
    if purpose == Purpose::Lease {
        config.tcp_user_timeout(Duration::from_secs(4));
    }
    let (client, connection) = config.connect(NoTls).await.map_err(pg)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}
