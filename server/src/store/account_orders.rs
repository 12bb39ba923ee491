//! An account's orders, indexed a batch at a time rather than as each order is written.
//!
//! An index on `orders(account_id, id)` puts every new order in its buyer's own leaf: a commit of 256
//! checkouts by 256 buyers dirtied 256 leaves at random, most of the pages the WAL wrote and fsynced
//! (bench row 3: 31k checkouts/s with that index, 44k/s without it).
//!
//! So `account_orders` holds `(account_id, order_id)` for every order up to a mark
//! (`account_orders_mark.through`), and the orders after the mark are found by a range scan of the
//! newest rows of `orders`, which is short and contiguous. The writer moves the tail into the index
//! inside a batch it commits anyway ([`Index::merge_if_due`]): thousands of orders at a time, sorted by
//! account, so each account's new entries land together in one or two leaves. The mark moves in the
//! same transaction as the rows, so an order is found in exactly one of the two places.

use super::StoreError;
use protocol::{AccountId, OrderId};
use rusqlite::{params, Connection};
use std::time::{Duration, Instant};

/// Merge once this many orders wait past the mark: at 44k checkouts/s about ten merges a second, and
/// a tail short enough for a history read to scan. Measured at 1,024 / 4,096 / 16,384: 36.5k / 38.4k /
/// 40.7k checkouts/s, p99 17 / 21 / 23 ms (bench/README.md).
const MERGE_AT: usize = 4096;

/// A tail smaller than [`MERGE_AT`] is merged after this long, so a quiet system's tail stays short.
const MERGE_AFTER: Duration = Duration::from_millis(500);

/// The writer's view of how many orders wait past the mark.
pub(super) struct Index {
    pending: usize,
    since: Instant,
}

impl Index {
    /// At start-up the tail may hold whatever a crash left unmerged: merge it with the first batch.
    pub(super) fn new() -> Self {
        Index {
            pending: MERGE_AT,
            since: Instant::now(),
        }
    }

    /// `orders` more orders were written past the mark.
    pub(super) fn wrote(&mut self, orders: usize) {
        if self.pending == 0 {
            self.since = Instant::now();
        }
        self.pending += orders;
    }

    /// Inside the writer's transaction: moves the tail into the index when it is long or old enough.
    pub(super) fn merge_if_due(&mut self, conn: &Connection) -> Result<(), StoreError> {
        if self.pending < MERGE_AT && (self.pending == 0 || self.since.elapsed() < MERGE_AFTER) {
            return Ok(());
        }
        merge(conn)?;
        self.pending = 0;
        Ok(())
    }
}

/// Moves every order past the mark into the index and advances the mark to the newest order.
pub fn merge(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO account_orders (account_id, order_id)
         SELECT account_id, id FROM orders
         WHERE id > (SELECT through FROM account_orders_mark) AND account_id IS NOT NULL
         ORDER BY account_id, id",
    )?
    .execute([])?;
    conn.prepare_cached(
        "UPDATE account_orders_mark SET through = (SELECT coalesce(max(id), 0) FROM orders)",
    )?
    .execute([])?;
    Ok(())
}

/// An account's order ids below `before`, newest first, at most `limit`: from the index up to the
/// mark and from the tail of `orders` after it, read in one statement so both parts see one snapshot.
pub(super) fn ids(
    conn: &Connection,
    account: AccountId,
    before: Option<OrderId>,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    let before = before.map_or(i64::MAX, |b| i64::try_from(b.0).unwrap_or(i64::MAX));
    let ids = conn
        .prepare_cached(
            "SELECT order_id FROM account_orders WHERE account_id = ?1 AND order_id < ?2
             UNION ALL
             SELECT id FROM orders
             WHERE id > (SELECT through FROM account_orders_mark) AND account_id = ?1 AND id < ?2
             ORDER BY 1 DESC LIMIT ?3",
        )?
        .query_map(params![account.0 as i64, before, limit as i64], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// A deleted account's orders stay, detached from it: in the index and in the tail.
pub(super) fn detach(conn: &Connection, account: AccountId) -> Result<(), StoreError> {
    let account = account.0 as i64;
    conn.prepare_cached(
        "UPDATE orders SET account_id = NULL
         WHERE id IN (SELECT order_id FROM account_orders WHERE account_id = ?1)",
    )?
    .execute([account])?;
    conn.prepare_cached(
        "UPDATE orders SET account_id = NULL
         WHERE id > (SELECT through FROM account_orders_mark) AND account_id = ?1",
    )?
    .execute([account])?;
    conn.prepare_cached("DELETE FROM account_orders WHERE account_id = ?1")?
        .execute([account])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database with two accounts and one month, foreign keys off so orders can be written
    /// bare (the writer's checkouts are tested end to end).
    fn database(dir: &tempfile::TempDir) -> Connection {
        let conn = crate::store::schema::open_writer(&dir.path().join("d.db")).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO months (id, opened_at_ms, ends_at_ms) VALUES (1, 0, 1);",
        )
        .unwrap();
        conn
    }

    fn order(conn: &Connection, id: i64, account: i64) {
        conn.execute(
            "INSERT INTO orders (id, checkout_id, account_id, month_id, placed_at_ms, total)
             VALUES (?1, ?2, ?3, 1, 0, 0)",
            params![id, id.to_be_bytes().to_vec(), account],
        )
        .unwrap();
    }

    fn of(conn: &Connection, account: u64, before: Option<u64>, limit: usize) -> Vec<i64> {
        ids(conn, AccountId(account), before.map(OrderId), limit).unwrap()
    }

    #[test]
    fn an_accounts_orders_are_found_whole_on_both_sides_of_the_mark_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(&dir);
        for id in 1..=6 {
            order(&conn, id, 1 + id % 2);
        }
        merge(&conn).unwrap();
        for id in 7..=10 {
            order(&conn, id, 1 + id % 2);
        }
        // Account 1 has the even orders: 2, 4, 6 indexed, 8 and 10 in the tail.
        assert_eq!(of(&conn, 1, None, 10), vec![10, 8, 6, 4, 2]);
        assert_eq!(of(&conn, 2, None, 10), vec![9, 7, 5, 3, 1]);
        assert_eq!(of(&conn, 1, None, 3), vec![10, 8, 6]);
        assert_eq!(of(&conn, 1, Some(8), 2), vec![6, 4]);
        assert_eq!(of(&conn, 3, None, 10), Vec::<i64>::new());
        // Merging again moves the tail and nothing twice.
        merge(&conn).unwrap();
        assert_eq!(of(&conn, 1, None, 10), vec![10, 8, 6, 4, 2]);
        let indexed: i64 = conn
            .query_row("SELECT count(*) FROM account_orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 10);
    }

    #[test]
    fn orders_written_before_the_index_existed_are_found_after_migrating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        {
            let conn = crate::store::schema::create_at_version(&path, 6).unwrap();
            conn.execute_batch(
                "PRAGMA foreign_keys = OFF;
                 INSERT INTO months (id, opened_at_ms, ends_at_ms) VALUES (1, 0, 1);",
            )
            .unwrap();
            for id in 1..=5 {
                order(&conn, id, 1 + id % 2);
            }
        }
        let conn = crate::store::schema::open_writer(&path).unwrap();
        assert_eq!(of(&conn, 1, None, 10), vec![4, 2]);
        assert_eq!(of(&conn, 2, None, 10), vec![5, 3, 1]);
        let through: i64 = conn
            .query_row("SELECT through FROM account_orders_mark", [], |r| r.get(0))
            .unwrap();
        assert_eq!(through, 5, "everything migrated is behind the mark");
    }

    #[test]
    fn a_deleted_accounts_orders_stay_but_are_nobodys_in_the_index_and_in_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(&dir);
        order(&conn, 1, 1);
        order(&conn, 2, 2);
        merge(&conn).unwrap();
        order(&conn, 3, 1);
        detach(&conn, AccountId(1)).unwrap();
        assert_eq!(of(&conn, 1, None, 10), Vec::<i64>::new());
        assert_eq!(of(&conn, 2, None, 10), vec![2]);
        let detached: i64 = conn
            .query_row(
                "SELECT count(*) FROM orders WHERE account_id IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(detached, 2);
        // A later merge does not bring the detached tail order back.
        merge(&conn).unwrap();
        assert_eq!(of(&conn, 1, None, 10), Vec::<i64>::new());
    }

    #[test]
    fn the_writer_merges_a_long_tail_at_once_and_a_short_one_only_after_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(&dir);
        let mut index = Index::new();
        order(&conn, 1, 1);
        index.merge_if_due(&conn).unwrap(); // the start-up merge
        order(&conn, 2, 1);
        index.wrote(1);
        index.merge_if_due(&conn).unwrap();
        let through = |c: &Connection| -> i64 {
            c.query_row("SELECT through FROM account_orders_mark", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(through(&conn), 1, "a short, fresh tail waits");
        index.since = Instant::now() - MERGE_AFTER;
        index.merge_if_due(&conn).unwrap();
        assert_eq!(through(&conn), 2, "an old tail is merged");
        for id in 3..3 + MERGE_AT as i64 {
            order(&conn, id, 2);
        }
        index.wrote(MERGE_AT);
        index.merge_if_due(&conn).unwrap();
        assert_eq!(
            through(&conn),
            2 + MERGE_AT as i64,
            "a long tail is merged at once"
        );
    }
}
