//! Reads that never wait on the writer: a small pool of read-only connections (WAL lets them read
//! while the writer commits), used from blocking threads.

use super::schema::{open_reader, Check};
use super::{checkout_from_key, StoreError};
use crate::card::brand_from_name;
use protocol::*;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A pool of read connections.
#[derive(Clone)]
pub struct Reads {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// On PostgreSQL, its read connections instead (see [`super::backend`]).
    pg: Option<super::postgres::read::Pool>,
}

/// An account row with its password hash.
#[derive(Debug, Clone)]
pub struct AccountRow {
    /// The account as its owner sees it.
    pub view: AccountView,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl Reads {
    /// A pool over the database at `path`. Connections open lazily.
    pub fn new(path: PathBuf) -> Self {
        Reads {
            path,
            idle: Arc::default(),
            pg: None,
        }
    }

    /// Reads from PostgreSQL's read connections.
    pub fn on_postgres(pool: super::postgres::read::Pool) -> Self {
        Reads {
            path: PathBuf::new(),
            idle: Arc::default(),
            pg: Some(pool),
        }
    }

    /// The PostgreSQL read connections, when the store is PostgreSQL.
    pub(crate) fn postgres(&self) -> Option<&super::postgres::read::Pool> {
        self.pg.as_ref()
    }

    /// Runs `f` on a read connection, on a blocking thread.
    pub async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.with_blocking(f))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection on the current thread.
    pub fn with_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path, Check::Identity)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 16 {
            idle.push(conn);
        }
        result
    }
}

/// The columns of an account row, in the order [`account_row`] reads them.
const ACCOUNT_COLUMNS: &str = "SELECT id, first_name, last_name, email, password_hash, card_brand, card_last4, card_exp_month, card_exp_year FROM accounts";

/// The account with this email, compared under full case folding ([`crate::email::key`]).
pub fn account_by_email(conn: &Connection, email: &str) -> Result<Option<AccountRow>, StoreError> {
    let sql = const_format_account("WHERE email_key = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![crate::email::key(email)], account_row)
        .optional()?)
}

/// The account with this id.
pub fn account_by_id(conn: &Connection, id: AccountId) -> Result<Option<AccountRow>, StoreError> {
    let sql = const_format_account("WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id.0 as i64], account_row)
        .optional()?)
}

/// Joins the fixed column list with a fixed condition. Values always travel as parameters.
fn const_format_account(condition: &'static str) -> String {
    format!("{ACCOUNT_COLUMNS} {condition}")
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    let card = match r.get::<_, Option<String>>(5)? {
        Some(brand) => Some(CardView {
            brand: brand_from_name(&brand),
            last4: r.get(6)?,
            exp_month: r.get(7)?,
            exp_year: r.get(8)?,
        }),
        None => None,
    };
    Ok(AccountRow {
        view: AccountView {
            id: AccountId(r.get::<_, i64>(0)? as u64),
            first_name: r.get(1)?,
            last_name: r.get(2)?,
            email: r.get(3)?,
            card,
        },
        password_hash: r.get(4)?,
    })
}

/// The account and expiry of a live session.
pub fn session(
    conn: &Connection,
    token_hash: &[u8; 32],
    now_ms: u64,
) -> Result<Option<(AccountId, u64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT account_id, expires_at_ms FROM sessions WHERE token_hash = ?1 AND expires_at_ms > ?2")?
        .query_row(params![&token_hash[..], now_ms as i64], |r| {
            Ok((AccountId(r.get::<_, i64>(0)? as u64), r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// An account's orders, newest first, at most `limit`.
pub fn orders(
    conn: &Connection,
    account: AccountId,
    limit: usize,
) -> Result<Vec<OrderView>, StoreError> {
    orders_page(conn, account, None, limit)
}

/// An account's orders older than `before` (lower ids), newest first, at most `limit`.
pub fn orders_before(
    conn: &Connection,
    account: AccountId,
    before: OrderId,
    limit: usize,
) -> Result<Vec<OrderView>, StoreError> {
    orders_page(conn, account, Some(before), limit)
}

/// The orders of one history page: their ids from `account_orders`, then each order whole.
fn orders_page(
    conn: &Connection,
    account: AccountId,
    before: Option<OrderId>,
    limit: usize,
) -> Result<Vec<OrderView>, StoreError> {
    super::account_orders::ids(conn, account, before, limit)?
        .into_iter()
        .map(|id| order(conn, OrderId(id as u64)))
        .filter_map(|r| r.transpose())
        .collect()
}

/// One order with its lines.
pub fn order(conn: &Connection, id: OrderId) -> Result<Option<OrderView>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT checkout_id, month_id, placed_at_ms, total FROM orders WHERE id = ?1",
        )?
        .query_row([id.0 as i64], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((checkout, month, placed, total)) = head else {
        return Ok(None);
    };
    let lines = conn
        .prepare_cached(
            // The names as they were at purchase: the month's offer and the maker's stable name.
            // A placed line whose notice its maker acked is confirmed, since the first ack that
            // reached it (migration 8: acks do not rewrite lines).
            "SELECT l.listing_id, f.product, m.name, l.unit_price, l.quantity,
                    CASE WHEN l.status = 0 AND l.notice_seq <= m.acked_seq THEN 1 ELSE l.status END,
                    CASE WHEN l.status = 0 AND l.notice_seq <= m.acked_seq
                         THEN (SELECT a.at_ms FROM acks a WHERE a.manufacturer_id = l.manufacturer_id
                               AND a.through_seq >= l.notice_seq ORDER BY a.through_seq LIMIT 1)
                         ELSE l.status_at_ms END
             FROM order_lines l JOIN orders o ON o.id = l.order_id
             JOIN offers f ON f.month_id = o.month_id AND f.listing_id = l.listing_id
             JOIN manufacturers m ON m.id = l.manufacturer_id
             WHERE l.order_id = ?1 ORDER BY l.listing_id",
        )?
        .query_map([id.0 as i64], |r| {
            let unit_price = Cents(r.get::<_, i64>(3)? as u64);
            let quantity: u32 = r.get(4)?;
            let line = OrderLine {
                listing: ListingId(r.get(0)?),
                product: r.get(1)?,
                manufacturer_name: r.get(2)?,
                unit_price,
                quantity,
                line_total: unit_price.times(quantity).unwrap_or(Cents(u64::MAX)),
                status: LineStatus::Placed, // from the code, checked below
                // Lines bought before the column existed, and lines still placed, changed at checkout.
                status_at_ms: r.get::<_, Option<i64>>(6)?.unwrap_or(placed) as u64,
            };
            Ok((line, r.get::<_, i64>(5)?))
        })?
        .map(|row| {
            let (mut line, code) = row?;
            line.status = super::line_status(code)?;
            Ok(line)
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(OrderView {
        id,
        checkout_id: checkout_from_key(&checkout)?,
        month: MonthId(month),
        placed_at_ms: placed as u64,
        lines,
        total: Cents(total as u64),
    }))
}

/// The account and order of a checkout id, if it was ever made.
pub fn checkout(
    conn: &Connection,
    id: CheckoutId,
) -> Result<Option<(Option<AccountId>, OrderId)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT account_id, id FROM orders WHERE checkout_id = ?1")?
        .query_row([&super::checkout_key(id)[..]], |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?.map(|a| AccountId(a as u64)),
                OrderId(r.get::<_, i64>(1)? as u64),
            ))
        })
        .optional()?)
}

/// The account that placed an order (`None` if deleted or unknown).
pub fn order_owner(conn: &Connection, id: OrderId) -> Result<Option<AccountId>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT account_id FROM orders WHERE id = ?1")?
        .query_row([id.0 as i64], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten()
        .map(|a| AccountId(a as u64)))
}

/// Notices for one manufacturer with `after < seq <= through`, in order, at most `limit`.
pub fn notices(
    conn: &Connection,
    manufacturer: ManufacturerId,
    after: NoticeSeq,
    through: NoticeSeq,
    limit: usize,
) -> Result<Vec<Notice>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, order_id, body FROM outbox WHERE manufacturer_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            manufacturer.0,
            after.0 as i64,
            through.0 as i64,
            limit as i64
        ],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, order, body) = row?;
        let body = match (order, body) {
            (_, Some(body)) => protocol::codec::decode_server_payload(&body)
                .map_err(|e| StoreError::Corrupt(format!("outbox notice {seq}: {e}")))?,
            (Some(order), None) => {
                NoticeBody::Sale(sale_notice(conn, manufacturer, OrderId(order as u64))?)
            }
            (None, None) => {
                return Err(StoreError::Corrupt(format!(
                    "outbox notice {seq}: neither an order nor a body"
                )))
            }
        };
        out.push(Notice {
            seq: NoticeSeq(seq as u64),
            body,
        });
    }
    Ok(out)
}

/// A sale notice as the market made it: the order's lines of this maker, by listing id.
pub fn sale_notice(
    conn: &Connection,
    manufacturer: ManufacturerId,
    order: OrderId,
) -> Result<SaleNotice, StoreError> {
    let mut month = None;
    let mut lines = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT o.month_id, s.sku, l.quantity, l.unit_price
         FROM order_lines l JOIN orders o ON o.id = l.order_id JOIN listings s ON s.id = l.listing_id
         WHERE l.order_id = ?1 AND l.manufacturer_id = ?2 ORDER BY l.listing_id",
    )?;
    let rows = stmt.query_map(params![order.0 as i64, manufacturer.0], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (m, sku, quantity, unit_price) = row?;
        month = Some(MonthId(m));
        lines.push(SaleLine {
            sku,
            quantity,
            unit_price: Cents(unit_price as u64),
        });
    }
    let month = month.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "sale notice for order {} names no line of manufacturer {}",
            order.0, manufacturer.0
        ))
    })?;
    Ok(SaleNotice {
        month,
        order,
        lines,
    })
}

/// (orders, units sold) over all time.
pub fn totals(conn: &Connection) -> Result<(u64, u64), StoreError> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM orders), (SELECT coalesce(sum(quantity), 0) FROM order_lines)",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?)
}
