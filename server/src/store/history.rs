//! What the operator's status needs from the past, read once at start-up: the last closed months
//! (from `months` plus the sums in `month_sales`), the running totals, and the last
//! month each manufacturer offered in. After start-up the engine keeps these current in memory.

use super::StoreError;
use protocol::*;
use rusqlite::{params, Connection};
use std::collections::HashMap;

/// The operator's view of the past.
#[derive(Debug, Default, Clone)]
pub struct Past {
    /// The last closed months, newest first.
    pub months: Vec<MonthRecord>,
    /// Orders ever placed.
    pub orders: u64,
    /// Units ever sold.
    pub units: u64,
    /// Orders placed in the last month (open or closed).
    pub last_month_orders: u64,
    /// Manufacturer → the last month it offered in.
    pub last_offered: HashMap<ManufacturerId, MonthId>,
}

/// Reads [`Past`], keeping at most `months` closed months.
pub fn load(conn: &Connection, months: usize) -> Result<Past, StoreError> {
    // From the per-month sums the writer keeps, not from every order line ever sold.
    let (orders, units) = conn.query_row(
        "SELECT coalesce(sum(orders), 0), coalesce(sum(units), 0) FROM month_sales",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?;
    let last_month_orders = conn.query_row(
        "SELECT coalesce((SELECT orders FROM month_sales WHERE month_id = (SELECT max(id) FROM months)), 0)",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    let mut last_offered = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT manufacturer_id, max(month_id) FROM month_manufacturers WHERE offered = 1 GROUP BY manufacturer_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (m, month) = row?;
        last_offered.insert(ManufacturerId(m as u32), MonthId(month as u32));
    }
    Ok(Past {
        months: closed_months(conn, months)?,
        orders,
        units,
        last_month_orders,
        last_offered,
    })
}

/// The last `limit` closed months, newest first, with their units and revenue (from `month_sales`).
pub fn closed_months(conn: &Connection, limit: usize) -> Result<Vec<MonthRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "WITH sales AS (SELECT month_id, units, revenue FROM month_sales)
         SELECT m.id, m.opened_at_ms, m.closed_at_ms, m.close_reason,
                coalesce(s.units, 0), coalesce(s.revenue, 0)
         FROM months m LEFT JOIN sales s ON s.month_id = m.id
         WHERE m.closed_at_ms IS NOT NULL
         ORDER BY m.id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut months = Vec::new();
    for row in rows {
        let (id, opened, closed, reason, units, revenue) = row?;
        months.push(MonthRecord {
            id: MonthId(id as u32),
            opened_at_ms: opened as u64,
            closed_at_ms: closed as u64,
            reason: reason_from_code(id, reason)?,
            units: units as u64,
            revenue: Cents(revenue as u64),
        });
    }
    Ok(months)
}

/// The stored close reason; a closed month without a known reason is a corrupt row.
fn reason_from_code(month: i64, code: Option<i64>) -> Result<CloseReason, StoreError> {
    match code {
        Some(0) => Ok(CloseReason::SoldOut),
        Some(1) => Ok(CloseReason::AllCustomersDone),
        Some(2) => Ok(CloseReason::TimeUp),
        Some(3) => Ok(CloseReason::Operator),
        other => Err(StoreError::Corrupt(format!(
            "month {month} closed with unknown reason {other:?}"
        ))),
    }
}
