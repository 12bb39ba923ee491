//! SSH keys that log straight in: fingerprint → account. Only the fingerprint is stored.

use super::StoreError;
use protocol::AccountId;
use rusqlite::{params, Connection, OptionalExtension};

/// Links `fingerprint` to `account`. Linking it again to the same account is a no-op;
/// [`StoreError::Duplicate`] if another account holds it.
pub fn link(
    conn: &Connection,
    fingerprint: &str,
    account: AccountId,
    now_ms: u64,
) -> Result<(), StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO ssh_keys (fingerprint, account_id, created_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (fingerprint) DO NOTHING",
        )?
        .execute(params![fingerprint, account.0 as i64, now_ms as i64])?;
    if inserted == 1 || account_by_key(conn, fingerprint)? == Some(account) {
        return Ok(());
    }
    Err(StoreError::Duplicate)
}

/// Unlinks `fingerprint` from `account`. [`StoreError::NotFound`] if it was not linked to it.
pub fn unlink(conn: &Connection, fingerprint: &str, account: AccountId) -> Result<(), StoreError> {
    let removed = conn
        .prepare_cached("DELETE FROM ssh_keys WHERE fingerprint = ?1 AND account_id = ?2")?
        .execute(params![fingerprint, account.0 as i64])?;
    match removed {
        1 => Ok(()),
        _ => Err(StoreError::NotFound),
    }
}

/// The account this key logs in to, if any.
pub fn account_by_key(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Option<AccountId>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT account_id FROM ssh_keys WHERE fingerprint = ?1")?
        .query_row([fingerprint], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|id| AccountId(id as u64)))
}
