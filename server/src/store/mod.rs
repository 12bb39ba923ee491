//! Persistence in SQLite.
//!
//! - [`schema`]: opening a database file safely, pragmas, and versioned migrations.
//! - [`writer`]: the one thread that owns the write connection and commits in groups.
//! - [`checkouts`]: a batch's checkouts written with multi-row statements.
//! - [`checkpoint`]: when the writer copies the WAL into the main file (after answering a batch).
//! - [`account_orders`]: each account's orders, indexed a batch at a time.
//! - [`read`]: read connections for queries that must not wait on the writer.
//! - [`load`]: rebuilding the market from the database at start-up.
//! - [`history`]: the past months and totals the operator's status starts from.
//! - [`audit`]: the read-only invariant check behind `distributor audit`.
//! - [`logins`]: session tokens with their cap, the login throttle's state, the email key function.
//! - [`ssh_keys`]: SSH key fingerprints that log straight in to an account (`shop serve-ssh`).
//! - [`lifecycle`]: checkpoints, the running/stopped mark, and refusing a file that lost its `-wal`.
//! - [`backend`]: which store a `--db` names (a SQLite file or a `postgres://` URL), and the reads
//!   that work on either.
//! - [`postgres`]: the same schema, group commit, load, reads and audit on a shared PostgreSQL.

pub mod account_orders;
pub mod audit;
pub mod backend;
mod checkouts;
mod checkpoint;
pub mod history;
pub mod lifecycle;
pub mod load;
pub mod logins;
pub mod postgres;
pub mod read;
pub mod schema;
pub mod ssh_keys;
pub mod writer;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is not a database this program wrote.
    #[error("{0}")]
    Foreign(String),
    /// A uniqueness constraint failed (for example a taken email).
    #[error("already exists")]
    Duplicate,
    /// A row that must exist does not.
    #[error("not found")]
    NotFound,
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The writer thread is gone (the server is stopping or hit a fatal error).
    #[error("the store is shutting down")]
    Closed,
    /// PostgreSQL reported an error, or the connection to it is gone.
    #[error("store unavailable: {0}")]
    Postgres(String),
    /// Another node took the lease: this one must not write (see [`crate::node`]).
    #[error("another node took over (this node's lease epoch {0} is stale); stepping down")]
    Fenced(i64),
}

impl StoreError {
    pub(crate) fn from_sqlite(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Duplicate
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An order line's stored status (0 placed, 1 confirmed, 2 dispatched; both stores). Only the writers
/// store these codes, so any other value means the database was changed behind our back: it is
/// refused as corrupt rather than shown to the customer as some status it never had.
pub(crate) fn line_status(code: i64) -> Result<protocol::LineStatus, StoreError> {
    match code {
        0 => Ok(protocol::LineStatus::Placed),
        1 => Ok(protocol::LineStatus::Confirmed),
        2 => Ok(protocol::LineStatus::Dispatched),
        other => Err(StoreError::Corrupt(format!(
            "an order line has status {other}, not 0, 1 or 2"
        ))),
    }
}

/// Checkout ids are stored as 16 big-endian bytes, so index order is time order.
pub(crate) fn checkout_key(id: protocol::CheckoutId) -> [u8; 16] {
    id.0.to_be_bytes()
}

pub(crate) fn checkout_from_key(bytes: &[u8]) -> Result<protocol::CheckoutId, StoreError> {
    let arr: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("checkout id is not 16 bytes".into()))?;
    Ok(protocol::CheckoutId(u128::from_be_bytes(arr)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::LineStatus;

    #[test]
    fn a_line_status_code_no_writer_stores_is_corrupt_not_some_status() {
        assert!(matches!(line_status(0), Ok(LineStatus::Placed)));
        assert!(matches!(line_status(1), Ok(LineStatus::Confirmed)));
        assert!(matches!(line_status(2), Ok(LineStatus::Dispatched)));
        for code in [3, 7, -1, i64::MAX] {
            assert!(
                matches!(line_status(code), Err(StoreError::Corrupt(_))),
                "{code}"
            );
        }
    }
}
