//! What logins write and read: session tokens (with the per-account cap), the throttle's failure
//! counts and known addresses, and the email key SQL function the migrations use.

use super::StoreError;
use crate::throttle::{Failures, Throttle};
use protocol::*;
use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection};

/// Registers `email_key(text)`, the same folding as [`crate::email::key`], so that a migration can
/// re-key existing accounts.
pub fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    conn.create_scalar_function(
        "email_key",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(crate::email::key(&ctx.get::<String>(0)?)),
    )?;
    Ok(())
}

/// Stores a new session token and evicts the account's oldest beyond `max`; returns the evicted
/// tokens' hashes, so their live connections can be ended too.
pub fn create_session(
    conn: &Connection,
    token_hash: &[u8; 32],
    account: AccountId,
    expires_at_ms: u64,
    max: usize,
    now_ms: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    conn.prepare_cached("DELETE FROM sessions WHERE expires_at_ms < ?1")?
        .execute([now_ms as i64])?;
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, account_id, expires_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        &token_hash[..],
        account.0 as i64,
        expires_at_ms as i64
    ])
    .map_err(StoreError::from_sqlite)?;
    // Every token lives SESSION_TTL, so the earliest expiry is the oldest login.
    let mut evict = conn.prepare_cached(
        "DELETE FROM sessions WHERE account_id = ?1 AND token_hash NOT IN
           (SELECT token_hash FROM sessions WHERE account_id = ?1 ORDER BY expires_at_ms DESC, token_hash LIMIT ?2)
         RETURNING token_hash",
    )?;
    let rows = evict.query_map(params![account.0 as i64, max as i64], |r| {
        r.get::<_, Vec<u8>>(0)
    })?;
    let mut evicted = Vec::new();
    for row in rows {
        let hash: [u8; 32] = row?
            .try_into()
            .map_err(|_| StoreError::Corrupt("a session token hash is not 32 bytes".into()))?;
        evicted.push(hash);
    }
    Ok(evicted)
}

/// Ends every session of an account but `keep` (a password change keeps the session that made it).
pub fn revoke_other_sessions(
    conn: &Connection,
    account: AccountId,
    keep: Option<&[u8; 32]>,
) -> Result<(), StoreError> {
    let keep: &[u8] = keep.map_or(&[], |k| &k[..]);
    conn.prepare_cached("DELETE FROM sessions WHERE account_id = ?1 AND token_hash != ?2")?
        .execute(params![account.0 as i64, keep])?;
    Ok(())
}

/// Records a failed login: the pair's and the account's counts (the account row has address '').
pub fn login_failed(
    conn: &Connection,
    account_key: &str,
    address: &str,
    pair: Failures,
    whole: Failures,
) -> Result<(), StoreError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO login_failures (account_key, address, failures, last_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account_key, address) DO UPDATE SET failures = excluded.failures, last_at_ms = excluded.last_at_ms",
    )?;
    upsert.execute(params![
        account_key,
        address,
        pair.count,
        pair.last_ms as i64
    ])?;
    upsert.execute(params![account_key, "", whole.count, whole.last_ms as i64])?;
    Ok(())
}

/// Records a successful login: the counts start afresh and the address is known to the account.
pub fn login_succeeded(
    conn: &Connection,
    account_key: &str,
    address: &str,
    at_ms: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM login_failures WHERE account_key = ?1 AND (address = ?2 OR address = '')",
    )?
    .execute(params![account_key, address])?;
    conn.prepare_cached(
        "INSERT INTO login_addresses (account_key, address, last_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (account_key, address) DO UPDATE SET last_at_ms = excluded.last_at_ms",
    )?
    .execute(params![account_key, address, at_ms as i64])?;
    Ok(())
}

/// Deletes the failures last counted before `before_ms`: they are past the throttle's window and
/// would count for nothing. Returns how many rows went.
pub fn forget_failures(conn: &Connection, before_ms: u64) -> Result<usize, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM login_failures WHERE last_at_ms < ?1")?
        .execute([before_ms as i64])?;
    Ok(deleted)
}

/// Fills a throttle from the store at start-up, first forgetting failures older than its window.
pub fn load_throttle(
    conn: &Connection,
    throttle: &mut Throttle,
    now_ms: u64,
) -> Result<(), StoreError> {
    forget_failures(conn, now_ms.saturating_sub(throttle.limits().window_ms))?;
    let mut failures =
        conn.prepare("SELECT account_key, address, failures, last_at_ms FROM login_failures")?;
    let rows = failures.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (account, address, count, last) = row?;
        let failures = Failures {
            count,
            last_ms: u64::try_from(last).unwrap_or(0),
        };
        throttle.restore_failures(&account, &address, failures);
    }
    let mut known = conn.prepare("SELECT account_key, address FROM login_addresses")?;
    let rows = known.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (account, address) = row?;
        throttle.restore_known(&account, &address);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(count: u32, last_ms: u64) -> Failures {
        Failures { count, last_ms }
    }

    fn rows(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT account_key, address FROM login_failures ORDER BY account_key, address",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn forgetting_failures_deletes_only_those_last_counted_before_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::schema::open_writer(&dir.path().join("d.db")).unwrap();
        login_failed(
            &conn,
            "old@x",
            "10.0.0.1",
            failures(3, 1_000),
            failures(3, 1_000),
        )
        .unwrap();
        login_failed(
            &conn,
            "new@x",
            "10.0.0.2",
            failures(1, 5_000),
            failures(1, 5_000),
        )
        .unwrap();
        assert_eq!(forget_failures(&conn, 5_000).unwrap(), 2);
        let kept = |k: &str, a: &str| (k.to_string(), a.to_string());
        assert_eq!(
            rows(&conn),
            vec![kept("new@x", ""), kept("new@x", "10.0.0.2")]
        );
        assert_eq!(forget_failures(&conn, 5_000).unwrap(), 0);
    }
}
