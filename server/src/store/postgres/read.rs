//! Reads for sessions on PostgreSQL: a few connections, each pipelining the queries of many
//! sessions (tokio-postgres sends a query without waiting for the one before), taken in turn. The
//! queries are those of [`crate::store::read`].

use super::{pg, StoreError};
use crate::card::brand_from_name;
use crate::store::read::AccountRow;
use crate::store::{checkout_from_key, checkout_key};
use protocol::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_postgres::{Client, GenericClient};

/// How many read connections a node opens.
const CONNECTIONS: usize = 4;

/// The read connections. One that closed (PostgreSQL restarted, or ended it) is replaced by the
/// first read that finds it closed, so a node that outlives the store's restart serves reads again
/// once it is back.
#[derive(Clone)]
pub struct Pool {
    slots: Arc<Vec<Slot>>,
    next: Arc<AtomicUsize>,
    url: Arc<str>,
}

struct Slot {
    client: std::sync::RwLock<Arc<Client>>,
    /// Held while a replacement is being connected, so that only one is.
    reconnect: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Arc<Client> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Pool {
    /// Opens the connections.
    pub async fn open(url: &str) -> Result<Pool, StoreError> {
        let mut slots = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let client = super::connect(url, super::Purpose::Work).await?;
            slots.push(Slot {
                client: std::sync::RwLock::new(Arc::new(client)),
                reconnect: tokio::sync::Mutex::new(()),
            });
        }
        Ok(Pool {
            slots: Arc::new(slots),
            next: Arc::default(),
            url: url.into(),
        })
    }

    /// The next connection in turn, connected again first if it closed.
    pub async fn client(&self) -> Arc<Client> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[n];
        let current = slot.current();
        if !current.is_closed() {
            return current;
        }
        let _one = slot.reconnect.lock().await;
        let current = slot.current();
        if !current.is_closed() {
            return current;
        }
        let connect = super::connect(&self.url, super::Purpose::Work);
        match tokio::time::timeout(std::time::Duration::from_secs(2), connect).await {
            Ok(Ok(client)) => {
                let client = Arc::new(client);
                *slot.client.write().unwrap_or_else(|p| p.into_inner()) = client.clone();
                tracing::info!(slot = n, "read connection to the store replaced");
                client
            }
            // The store is still away: this read fails, and the next one tries again.
            _ => current,
        }
    }
}

fn i(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

const ACCOUNT_COLUMNS: &str = "SELECT id, first_name, last_name, email, password_hash, card_brand, card_last4, card_exp_month, card_exp_year FROM accounts";

fn account_row(r: &tokio_postgres::Row) -> AccountRow {
    let card = r.get::<_, Option<String>>(5).map(|brand| CardView {
        brand: brand_from_name(&brand),
        last4: r.get::<_, Option<String>>(6).unwrap_or_default(),
        exp_month: r
            .get::<_, Option<i64>>(7)
            .and_then(|m| u8::try_from(m).ok())
            .unwrap_or(0),
        exp_year: r
            .get::<_, Option<i64>>(8)
            .and_then(|y| u16::try_from(y).ok())
            .unwrap_or(0),
    });
    AccountRow {
        view: AccountView {
            id: AccountId(r.get::<_, i64>(0) as u64),
            first_name: r.get(1),
            last_name: r.get(2),
            email: r.get(3),
            card,
        },
        password_hash: r.get(4),
    }
}

/// The account with this email, under full case folding.
pub async fn account_by_email(c: &Client, email: &str) -> Result<Option<AccountRow>, StoreError> {
    let sql = format!("{ACCOUNT_COLUMNS} WHERE email_key = $1");
    let row = c
        .query_opt(&sql, &[&crate::email::key(email)])
        .await
        .map_err(pg)?;
    Ok(row.as_ref().map(account_row))
}

/// The account with this id.
pub async fn account_by_id(c: &Client, id: AccountId) -> Result<Option<AccountRow>, StoreError> {
    let sql = format!("{ACCOUNT_COLUMNS} WHERE id = $1");
    let row = c.query_opt(&sql, &[&i(id.0)]).await.map_err(pg)?;
    Ok(row.as_ref().map(account_row))
}

/// The account and expiry of a live session.
pub async fn session(
    c: &Client,
    token_hash: &[u8; 32],
    now_ms: u64,
) -> Result<Option<(AccountId, u64)>, StoreError> {
    let row = c
        .query_opt(
            "SELECT account_id, expires_at_ms FROM sessions WHERE token_hash = $1 AND expires_at_ms > $2",
            &[&token_hash.to_vec(), &i(now_ms)],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| {
        (
            AccountId(r.get::<_, i64>(0) as u64),
            r.get::<_, i64>(1) as u64,
        )
    }))
}

/// An account's orders older than `before`, newest first, at most `limit`.
pub async fn orders_before(
    c: &Client,
    account: AccountId,
    before: OrderId,
    limit: usize,
) -> Result<Vec<OrderView>, StoreError> {
    let rows = c
        .query(
            "SELECT id FROM orders WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            &[&i(account.0), &i(before.0), &i(limit)],
        )
        .await
        .map_err(pg)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(view) = order(c, OrderId(r.get::<_, i64>(0) as u64)).await? {
            out.push(view);
        }
    }
    Ok(out)
}

/// One order with its lines.
pub async fn order(c: &Client, id: OrderId) -> Result<Option<OrderView>, StoreError> {
    let Some(head) = c
        .query_opt(
            "SELECT checkout_id, month_id, placed_at_ms, total FROM orders WHERE id = $1",
            &[&i(id.0)],
        )
        .await
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let placed: i64 = head.get(2);
    let lines = c
        .query(
            "SELECT listing_id, product, manufacturer_name, unit_price, quantity, status, status_at_ms
             FROM order_lines WHERE order_id = $1 ORDER BY listing_id",
            &[&i(id.0)],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            let unit_price = Cents(r.get::<_, i64>(3) as u64);
            let quantity = u32::try_from(r.get::<_, i64>(4)).unwrap_or(u32::MAX);
            Ok(OrderLine {
                listing: ListingId(r.get::<_, i64>(0) as u32),
                product: r.get(1),
                manufacturer_name: r.get(2),
                unit_price,
                quantity,
                line_total: unit_price.times(quantity).unwrap_or(Cents(u64::MAX)),
                status: crate::store::line_status(r.get(5))?,
                status_at_ms: r.get::<_, Option<i64>>(6).unwrap_or(placed) as u64,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(OrderView {
        id,
        checkout_id: checkout_from_key(head.get::<_, &[u8]>(0))?,
        month: MonthId(head.get::<_, i64>(1) as u32),
        placed_at_ms: placed as u64,
        lines,
        total: Cents(head.get::<_, i64>(3) as u64),
    }))
}

/// The account that placed an order (`None` if deleted or unknown).
pub async fn order_owner(c: &Client, id: OrderId) -> Result<Option<AccountId>, StoreError> {
    let row = c
        .query_opt("SELECT account_id FROM orders WHERE id = $1", &[&i(id.0)])
        .await
        .map_err(pg)?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(|a| AccountId(a as u64)))
}

/// Notices for one manufacturer with `after < seq <= through`, in order, at most `limit`.
pub async fn notices(
    c: &Client,
    manufacturer: ManufacturerId,
    after: NoticeSeq,
    through: NoticeSeq,
    limit: usize,
) -> Result<Vec<Notice>, StoreError> {
    let rows = c
        .query(
            "SELECT seq, body FROM outbox WHERE manufacturer_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            &[&i64::from(manufacturer.0), &i(after.0), &i(through.0), &i(limit)],
        )
        .await
        .map_err(pg)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.get(0);
        let body: NoticeBody = protocol::codec::decode_server_payload(r.get::<_, &[u8]>(1))
            .map_err(|e| StoreError::Corrupt(format!("outbox notice {seq}: {e}")))?;
        out.push(Notice {
            seq: NoticeSeq(seq as u64),
            body,
        });
    }
    Ok(out)
}

/// The account an SSH key logs in to, if any.
pub async fn account_by_key(
    c: &Client,
    fingerprint: &str,
) -> Result<Option<AccountId>, StoreError> {
    let row = c
        .query_opt(
            "SELECT account_id FROM ssh_keys WHERE fingerprint = $1",
            &[&fingerprint],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| AccountId(r.get::<_, i64>(0) as u64)))
}

/// The account and order of a checkout id, if it was ever made (a late retry's look-up).
pub async fn checkout(
    c: &Client,
    id: CheckoutId,
) -> Result<Option<(Option<AccountId>, OrderId)>, StoreError> {
    let row = c
        .query_opt(
            "SELECT account_id, id FROM orders WHERE checkout_id = $1",
            &[&checkout_key(id).to_vec()],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| {
        (
            r.get::<_, Option<i64>>(0).map(|a| AccountId(a as u64)),
            OrderId(r.get::<_, i64>(1) as u64),
        )
    }))
}

/// (orders, units sold) over all time.
pub async fn totals<C: GenericClient + Sync>(c: &C) -> Result<(u64, u64), StoreError> {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM orders), (SELECT coalesce(sum(quantity), 0)::bigint FROM order_lines)",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
}
