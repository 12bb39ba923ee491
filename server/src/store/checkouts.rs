//! Checkouts written a run at a time: the writer hands over every checkout of a batch that sits
//! between two other jobs, and they are written with a few statements instead of a few per checkout.
//!
//! - orders, order lines and sale notices go in with multi-row `INSERT`s (a sale notice is only its
//!   sequence number and order: its lines are the order's lines of that maker);
//! - each listing's stock is written once per run, with its last level (the market only ever lowers
//!   it, so the last plan holds the newest level);
//! - each month's sales (`month_sales`) once per run.
//!
//! Each row costs SQLite the same B-tree work as before; what goes is the per-statement overhead
//! (binding, `sqlite3_step`, resetting, the statement cache look-up), which was most of the cost.

use super::{checkout_key, StoreError};
use crate::market::CheckoutPlan;
use protocol::{ListingId, MonthId};
use rusqlite::{Connection, Statement};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Rows per multi-row statement, largest first. A run is cut into chunks of these sizes, so only a
/// handful of distinct statements are ever prepared (and then found in the statement cache).
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// One multi-row `INSERT`: its head and how many values a row binds. The SQL for each chunk size is
/// built once per process.
struct MultiInsert {
    head: &'static str,
    columns: usize,
    sql: OnceLock<Vec<String>>,
}

impl MultiInsert {
    const fn new(head: &'static str, columns: usize) -> Self {
        MultiInsert {
            head,
            columns,
            sql: OnceLock::new(),
        }
    }

    /// The statement text for `CHUNKS[size]` rows.
    fn sql(&self, size: usize) -> &str {
        let all = self.sql.get_or_init(|| {
            CHUNKS
                .iter()
                .map(|rows| {
                    let row = format!("({})", vec!["?"; self.columns].join(","));
                    format!("{} VALUES {}", self.head, vec![row; *rows].join(","))
                })
                .collect()
        });
        &all[size]
    }

    /// Inserts `rows`, binding each with `bind(statement, first parameter index, row)`.
    fn run<T>(
        &self,
        conn: &Connection,
        rows: &[T],
        bind: impl Fn(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let mut rest = rows;
        for (size, rows_per) in CHUNKS.iter().enumerate() {
            while rest.len() >= *rows_per {
                let (chunk, tail) = rest.split_at(*rows_per);
                let mut stmt = conn.prepare_cached(self.sql(size))?;
                for (i, row) in chunk.iter().enumerate() {
                    bind(&mut stmt, 1 + i * self.columns, row)?;
                }
                stmt.raw_execute().map_err(StoreError::from_sqlite)?;
                rest = tail;
            }
        }
        Ok(())
    }
}

static ORDERS: MultiInsert = MultiInsert::new(
    "INSERT INTO orders (id, checkout_id, account_id, month_id, placed_at_ms, total)",
    6,
);
static ORDER_LINES: MultiInsert = MultiInsert::new(
    "INSERT INTO order_lines (order_id, listing_id, manufacturer_id, unit_price, quantity, status_at_ms, notice_seq)",
    7,
);
static SALE_NOTICES: MultiInsert =
    MultiInsert::new("INSERT INTO outbox (manufacturer_id, seq, order_id)", 3);

/// Writes a run of checkouts, in the order the market planned them.
pub(super) fn write(conn: &Connection, plans: &[&CheckoutPlan]) -> Result<(), StoreError> {
    ORDERS.run(conn, plans, |s, at, plan| {
        let order = &plan.order;
        s.raw_bind_parameter(at, order.id.0 as i64)?;
        s.raw_bind_parameter(at + 1, &checkout_key(order.checkout_id)[..])?;
        s.raw_bind_parameter(at + 2, plan.account.0 as i64)?;
        s.raw_bind_parameter(at + 3, order.month.0)?;
        s.raw_bind_parameter(at + 4, order.placed_at_ms as i64)?;
        s.raw_bind_parameter(at + 5, order.total.0 as i64)
    })?;

    let lines: Vec<_> = plans
        .iter()
        .flat_map(|plan| {
            let lines = plan.order.lines.iter().zip(&plan.line_manufacturers);
            lines.map(move |(line, maker)| (&plan.order, line, *maker, notice_seq(plan, *maker)))
        })
        .collect();
    // Each line names its maker's notice, which confirms it once acked without touching the line
    // (migration 8). Its status time is its checkout's, written now so that the dispatch report,
    // which does rewrite the line, overwrites a value of the same size in place instead of growing
    // the row and its page.
    ORDER_LINES.run(conn, &lines, |s, at, (order, line, maker, seq)| {
        s.raw_bind_parameter(at, order.id.0 as i64)?;
        s.raw_bind_parameter(at + 1, line.listing.0)?;
        s.raw_bind_parameter(at + 2, maker.0)?;
        s.raw_bind_parameter(at + 3, line.unit_price.0 as i64)?;
        s.raw_bind_parameter(at + 4, line.quantity)?;
        s.raw_bind_parameter(at + 5, order.placed_at_ms as i64)?;
        s.raw_bind_parameter(at + 6, seq.map(|seq| seq.0 as i64))
    })?;

    // A sale notice is its order's lines of that maker: only the sequence number is stored.
    let notices: Vec<_> = plans
        .iter()
        .flat_map(|plan| {
            let notices = plan.notices.iter();
            notices.map(move |(maker, notice)| (*maker, notice.seq, plan.order.id))
        })
        .collect();
    SALE_NOTICES.run(conn, &notices, |s, at, (maker, seq, order)| {
        s.raw_bind_parameter(at, maker.0)?;
        s.raw_bind_parameter(at + 1, seq.0 as i64)?;
        s.raw_bind_parameter(at + 2, order.0 as i64)
    })?;

    // The last level of each listing in the run is its level after the run.
    let mut levels: BTreeMap<(MonthId, ListingId), u32> = BTreeMap::new();
    for plan in plans {
        for (listing, remaining) in &plan.stock {
            levels.insert((plan.order.month, *listing), *remaining);
        }
    }
    let mut update = conn.prepare_cached(
        "UPDATE offers SET remaining = ?3 WHERE month_id = ?1 AND listing_id = ?2",
    )?;
    for ((month, listing), remaining) in levels {
        if update.execute((month.0, listing.0, remaining))? != 1 {
            return Err(StoreError::NotFound);
        }
    }

    // Each month's running sales, for the operator's history (one row per month, not per order).
    let mut sales: BTreeMap<MonthId, (i64, i64, i64)> = BTreeMap::new();
    for plan in plans {
        let month = sales.entry(plan.order.month).or_default();
        month.0 += 1;
        month.1 += plan.order.units() as i64;
        month.2 += plan.order.total.0 as i64;
    }
    let mut add = conn.prepare_cached(
        "INSERT INTO month_sales (month_id, orders, units, revenue) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(month_id) DO UPDATE SET orders = orders + excluded.orders,
           units = units + excluded.units, revenue = revenue + excluded.revenue",
    )?;
    for (month, (orders, units, revenue)) in sales {
        add.execute((month.0, orders, units, revenue))?;
    }

    for plan in plans.iter().filter(|p| p.clears_cart) {
        conn.prepare_cached("DELETE FROM cart_lines WHERE account_id = ?1")?
            .execute([plan.account.0 as i64])?;
    }
    Ok(())
}

/// The sequence number of the sale notice a checkout sends `maker` (one per maker of its lines).
fn notice_seq(plan: &CheckoutPlan, maker: protocol::ManufacturerId) -> Option<protocol::NoticeSeq> {
    plan.notices
        .iter()
        .find(|(m, _)| *m == maker)
        .map(|(_, notice)| notice.seq)
}
