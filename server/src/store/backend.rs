//! Which store a `--db` names, and the reads that work on both.
//!
//! `--db` is a SQLite file path, as it always was, or a `postgres://` (or `postgresql://`) URL. The
//! market and the engine never know which: they talk to the [`Writer`](super::writer::Writer), whose
//! jobs either back end's writer drains, and sessions read through [`Reads`], whose methods here
//! send each query to SQLite's read pool or to PostgreSQL's read connections.

use super::audit::AuditReport;
use super::postgres::read as pg_read;
use super::read::{self, AccountRow, Reads};
use super::{ssh_keys, StoreError};
use protocol::*;
use std::path::Path;

/// The PostgreSQL URL that `db` is, if it is one.
pub fn postgres_url(db: &Path) -> Option<&str> {
    db.to_str().filter(|s| super::postgres::is_url(s))
}

/// `distributor audit` on either store.
pub fn audit(db: &Path, acked: Option<&str>) -> Result<AuditReport, StoreError> {
    let Some(url) = postgres_url(db) else {
        return super::audit::audit(db, acked);
    };
    // On a thread of its own, so that the audit also runs from inside an async caller (tests).
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Postgres(format!("cannot start the runtime: {e}")))?;
                runtime.block_on(super::postgres::audit::audit(url, acked))
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Postgres("the audit thread panicked".into())))
    })
}

impl Reads {
    /// Notices for one manufacturer with `after < seq <= through`, in order, at most `limit`.
    pub async fn notices(
        &self,
        manufacturer: ManufacturerId,
        after: NoticeSeq,
        through: NoticeSeq,
        limit: usize,
    ) -> Result<Vec<Notice>, StoreError> {
        match self.postgres() {
            Some(pool) => {
                pg_read::notices(&*pool.client().await, manufacturer, after, through, limit).await
            }
            None => {
                self.with(move |c| read::notices(c, manufacturer, after, through, limit))
                    .await
            }
        }
    }

    /// An account's orders, newest first, at most `limit`.
    pub async fn orders(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<OrderView>, StoreError> {
        match self.postgres() {
            Some(pool) => {
                pg_read::orders_before(
                    &*pool.client().await,
                    account,
                    OrderId(i64::MAX as u64),
                    limit,
                )
                .await
            }
            None => self.with(move |c| read::orders(c, account, limit)).await,
        }
    }

    /// An account's orders older than `before`, newest first, at most `limit`.
    pub async fn orders_before(
        &self,
        account: AccountId,
        before: OrderId,
        limit: usize,
    ) -> Result<Vec<OrderView>, StoreError> {
        match self.postgres() {
            Some(pool) => {
                pg_read::orders_before(&*pool.client().await, account, before, limit).await
            }
            None => {
                self.with(move |c| read::orders_before(c, account, before, limit))
                    .await
            }
        }
    }

    /// One order with its lines.
    pub async fn order(&self, order: OrderId) -> Result<Option<OrderView>, StoreError> {
        match self.postgres() {
            Some(pool) => pg_read::order(&*pool.client().await, order).await,
            None => self.with(move |c| read::order(c, order)).await,
        }
    }

    /// One order of `account`. Ownership is checked before anything about the order is read, so
    /// another customer's order and a missing one give the same answer (`None`).
    pub async fn order_of(
        &self,
        account: AccountId,
        order: OrderId,
    ) -> Result<Option<OrderView>, StoreError> {
        match self.postgres() {
            Some(pool) => match pg_read::order_owner(&*pool.client().await, order).await? {
                Some(owner) if owner == account => {
                    pg_read::order(&*pool.client().await, order).await
                }
                _ => Ok(None),
            },
            None => {
                self.with(move |c| match read::order_owner(c, order)? {
                    Some(owner) if owner == account => read::order(c, order),
                    _ => Ok(None),
                })
                .await
            }
        }
    }

    /// The account with this email, compared under full case folding.
    pub async fn account_by_email(&self, email: String) -> Result<Option<AccountRow>, StoreError> {
        match self.postgres() {
            Some(pool) => pg_read::account_by_email(&*pool.client().await, &email).await,
            None => self.with(move |c| read::account_by_email(c, &email)).await,
        }
    }

    /// The account with this id.
    pub async fn account_by_id(
        &self,
        account: AccountId,
    ) -> Result<Option<AccountRow>, StoreError> {
        match self.postgres() {
            Some(pool) => pg_read::account_by_id(&*pool.client().await, account).await,
            None => self.with(move |c| read::account_by_id(c, account)).await,
        }
    }

    /// The account and expiry of a live session.
    pub async fn session(
        &self,
        token_hash: [u8; 32],
        now_ms: u64,
    ) -> Result<Option<(AccountId, u64)>, StoreError> {
        match self.postgres() {
            Some(pool) => pg_read::session(&*pool.client().await, &token_hash, now_ms).await,
            None => {
                self.with(move |c| read::session(c, &token_hash, now_ms))
                    .await
            }
        }
    }

    /// The account an SSH key logs in to, if any.
    pub async fn account_by_key(
        &self,
        fingerprint: String,
    ) -> Result<Option<AccountId>, StoreError> {
        match self.postgres() {
            Some(pool) => pg_read::account_by_key(&*pool.client().await, &fingerprint).await,
            None => {
                self.with(move |c| ssh_keys::account_by_key(c, &fingerprint))
                    .await
            }
        }
    }
}
