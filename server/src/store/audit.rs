//! `distributor audit`: a read-only check of the invariants in ARCHITECTURE.md.
//!
//! It opens the database read-only, so it can run while the server is serving, and reads everything
//! inside one read transaction, so it sees one consistent moment.

use super::schema::{open_reader, Check};
use super::{checkout_key, StoreError};
use protocol::{CheckoutId, NoticeBody};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// The audit's findings. Printed as the last line of `distributor audit`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditReport {
    /// True when there are no violations.
    pub ok: bool,
    /// Every broken invariant, in words.
    pub violations: Vec<String>,
    /// Units sold over all time.
    pub sold_units: u64,
    /// Orders over all time.
    pub orders: u64,
    /// Notices not yet acked, over all manufacturers.
    pub outbox_pending: u64,
    /// Months opened.
    pub months: u64,
    /// Checkouts listed in `--acked` and verified.
    pub acked_checked: u64,
}

/// The most violations listed; more are counted in the last entry.
const MAX_LISTED: usize = 50;

/// One line of a client's acked log: a checkout the client was told is durable, with its order and
/// units.
pub(crate) struct AckedLine {
    pub(crate) checkout: CheckoutId,
    order: i64,
    units: i64,
}

/// The acked log's lines (`<checkout hex> <order> <units>`, blank lines skipped), each parsed or a
/// violation naming the line that could not be. The same for both stores' audits.
pub(crate) fn acked_lines(text: &str) -> impl Iterator<Item = Result<AckedLine, String>> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let parsed = match parts.as_slice() {
                [c, o, u] => CheckoutId::from_hex(c)
                    .zip(o.parse::<i64>().ok())
                    .zip(u.parse::<i64>().ok()),
                _ => None,
            };
            match parsed {
                Some(((checkout, order), units)) => Ok(AckedLine {
                    checkout,
                    order,
                    units,
                }),
                None => Err(format!("acked line {}: cannot parse {line:?}", n + 1)),
            }
        })
}

impl AckedLine {
    /// The violation, if the store's `(order, units)` for this checkout is not what the client was
    /// told, or the checkout is missing.
    pub(crate) fn mismatch(&self, found: Option<(i64, i64)>) -> Option<String> {
        let (checkout, order, units) = (self.checkout, self.order, self.units);
        match found {
            Some((o, u)) if o == order && u == units => None,
            Some((o, u)) => Some(format!(
                "acked checkout {checkout}: expected order {order} with {units} units, found order {o} with {u}"
            )),
            None => Some(format!("acked checkout {checkout} (order {order}) is missing")),
        }
    }
}

/// Keeps the report readable: at most [`MAX_LISTED`] violations, then how many more.
pub(crate) fn cap_listed(v: &mut Vec<String>) {
    if v.len() > MAX_LISTED {
        let more = v.len() - MAX_LISTED;
        v.truncate(MAX_LISTED);
        v.push(format!("... and {more} more"));
    }
}

/// Runs the audit. `acked` is the content of an `--acked` file, if given.
pub fn audit(db: &Path, acked: Option<&str>) -> Result<AuditReport, StoreError> {
    let conn = open_reader(db, Check::Deep)?;
    conn.execute_batch("BEGIN")?;
    let mut v: Vec<String> = Vec::new();

    // offered = remaining + sold, remaining >= 0, per month and listing.
    let mut stmt = conn.prepare(
        "SELECT o.month_id, o.listing_id, o.offered, o.remaining,
                (SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders d ON d.id = l.order_id
                  WHERE d.month_id = o.month_id AND l.listing_id = o.listing_id)
         FROM offers o",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (month, listing, offered, remaining, sold) = row?;
        if remaining < 0 {
            v.push(format!(
                "month {month} listing {listing}: remaining {remaining} < 0"
            ));
        }
        if offered != remaining + sold {
            v.push(format!(
                "month {month} listing {listing}: offered {offered} != remaining {remaining} + sold {sold}"
            ));
        }
    }
    // Every order line belongs to an offer of its month.
    let orphans: i64 = conn.query_row(
        "SELECT count(*) FROM order_lines l JOIN orders d ON d.id = l.order_id
         WHERE NOT EXISTS (SELECT 1 FROM offers o WHERE o.month_id = d.month_id AND o.listing_id = l.listing_id)",
        [],
        |r| r.get(0),
    )?;
    if orphans > 0 {
        v.push(format!(
            "{orphans} order lines sell listings that were not offered that month"
        ));
    }
    // An order's total is the sum of price × quantity, and has at least one line.
    let mut stmt = conn.prepare(
        "SELECT d.id, d.total, coalesce(sum(l.unit_price * l.quantity), 0), count(l.order_id)
         FROM orders d LEFT JOIN order_lines l ON l.order_id = d.id GROUP BY d.id
         HAVING d.total != coalesce(sum(l.unit_price * l.quantity), 0) OR count(l.order_id) = 0",
    )?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (order, total, sum) = row?;
        v.push(format!(
            "order {order}: total {total} != sum of lines {sum} (or no lines)"
        ));
    }
    // Each account's orders up to the mark are in `account_orders`, and nothing else is.
    let (missing, stray): (i64, i64) = conn.query_row(
        "SELECT
           (SELECT count(*) FROM orders d WHERE d.id <= (SELECT through FROM account_orders_mark)
              AND d.account_id IS NOT NULL AND NOT EXISTS
              (SELECT 1 FROM account_orders a WHERE a.account_id = d.account_id AND a.order_id = d.id)),
           (SELECT count(*) FROM account_orders a WHERE NOT EXISTS
              (SELECT 1 FROM orders d WHERE d.id = a.order_id AND d.account_id = a.account_id))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if missing > 0 || stray > 0 {
        v.push(format!(
            "account_orders: {missing} orders missing from the index, {stray} entries name no such order of that account"
        ));
    }
    // Every (maker, order) with lines has exactly one sale notice, and every notice names lines. A
    // sale notice is derived from those lines (`read::notices`); a body is kept for settlements only
    // (and for sales written before migration 6, which are checked against the lines).
    let mut sold_lines: HashMap<(i64, i64), i64> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT l.manufacturer_id, l.order_id, sum(l.quantity) FROM order_lines l GROUP BY l.manufacturer_id, l.order_id",
    )?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (m, order, units) = row?;
        sold_lines.insert((m, order), units);
    }
    let mut noticed: HashMap<(i64, i64), u32> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT manufacturer_id, seq, order_id, body FROM outbox ORDER BY manufacturer_id, seq",
    )?;
    let mut last_seq: HashMap<i64, i64> = HashMap::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<Vec<u8>>>(3)?,
        ))
    })?;
    for row in rows {
        let (m, seq, order, body) = row?;
        let expected = last_seq.get(&m).copied().unwrap_or(0) + 1;
        if seq != expected {
            v.push(format!(
                "manufacturer {m}: outbox jumps from {} to {seq}",
                expected - 1
            ));
        }
        last_seq.insert(m, seq);
        match (
            order,
            body.map(|b| protocol::codec::decode_server_payload::<NoticeBody>(&b)),
        ) {
            (Some(order), None) => *noticed.entry((m, order)).or_default() += 1,
            (Some(order), Some(Ok(NoticeBody::Sale(sale)))) => {
                let units: i64 = sale.lines.iter().map(|l| i64::from(l.quantity)).sum();
                if sale.order.0 as i64 != order || sold_lines.get(&(m, order)) != Some(&units) {
                    v.push(format!(
                        "manufacturer {m} notice {seq}: its body disagrees with order {order}"
                    ));
                }
                *noticed.entry((m, order)).or_default() += 1;
            }
            (None, Some(Ok(NoticeBody::Settlement(_)))) => {}
            (_, Some(Err(e))) => {
                v.push(format!("manufacturer {m} notice {seq}: undecodable ({e})"))
            }
            (_, _) => v.push(format!(
                "manufacturer {m} notice {seq}: neither a sale with an order nor a settlement"
            )),
        }
    }
    for (key, units) in &sold_lines {
        if noticed.get(key) != Some(&1) {
            v.push(format!(
                "manufacturer {} order {}: sold {units} but the outbox has {} notices for it",
                key.0,
                key.1,
                noticed.get(key).copied().unwrap_or(0)
            ));
        }
    }
    for key in noticed.keys() {
        if !sold_lines.contains_key(key) {
            v.push(format!(
                "manufacturer {} order {}: notice without an order",
                key.0, key.1
            ));
        }
    }
    // The per-month sums the operator's history starts from match the order lines.
    let mut stmt = conn.prepare(
        "WITH sold AS (
             SELECT o.month_id AS month_id, count(DISTINCT o.id) AS orders, sum(l.quantity) AS units,
                    sum(l.quantity * l.unit_price) AS revenue
             FROM orders o JOIN order_lines l ON l.order_id = o.id GROUP BY o.month_id)
         SELECT sold.month_id, sold.orders, sold.units, sold.revenue, s.orders, s.units, s.revenue
         FROM sold LEFT JOIN month_sales s ON s.month_id = sold.month_id
         WHERE s.month_id IS NULL OR s.orders <> sold.orders OR s.units <> sold.units OR s.revenue <> sold.revenue
         UNION ALL
         SELECT s.month_id, 0, 0, 0, s.orders, s.units, s.revenue FROM month_sales s
         WHERE s.orders > 0 AND s.month_id NOT IN (SELECT month_id FROM sold)",
    )?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            [
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ],
            [
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ],
        ))
    })? {
        let (month, sold, kept) = row?;
        v.push(format!(
            "month {month}: sold (orders, units, revenue) {sold:?} but month_sales says {kept:?}"
        ));
    }

    let mut outbox_pending = 0u64;
    let mut stmt = conn.prepare("SELECT id, acked_seq FROM manufacturers")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
        let (m, acked) = row?;
        let last = last_seq.get(&m).copied().unwrap_or(0);
        if acked > last {
            v.push(format!(
                "manufacturer {m}: acked {acked} beyond the last notice {last}"
            ));
        }
        outbox_pending += (last - acked).max(0) as u64;
    }

    let mut acked_checked = 0;
    if let Some(acked) = acked {
        let mut stmt = conn.prepare(
            "SELECT d.id, (SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE order_id = d.id)
             FROM orders d WHERE d.checkout_id = ?1",
        )?;
        for line in acked_lines(acked) {
            let line = match line {
                Ok(line) => line,
                Err(unparsed) => {
                    v.push(unparsed);
                    continue;
                }
            };
            acked_checked += 1;
            let checkout = line.checkout;
            let found = stmt
                .query_row([&checkout_key(checkout)[..]], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            v.extend(line.mismatch(found));
        }
    }

    let (orders, sold_units) = super::read::totals(&conn)?;
    let months: i64 = conn.query_row("SELECT count(*) FROM months", [], |r| r.get(0))?;
    conn.execute_batch("COMMIT")?;
    cap_listed(&mut v);
    Ok(AuditReport {
        ok: v.is_empty(),
        violations: v,
        sold_units,
        orders,
        outbox_pending,
        months: months as u64,
        acked_checked,
    })
}
