//! Start-up (and takeover) on PostgreSQL: the same market snapshot, operator history, throttle state
//! and credentials that [`crate::store::load`], [`crate::store::history`] and
//! [`crate::store::logins::load_throttle`] read from SQLite, read inside one repeatable-read
//! transaction so that they describe one moment.

use super::{pg, StoreError};
use crate::identity::credentials::Credentials;
use crate::market::{Customer, Listing, Manufacturer, Month, Snapshot, Stock};
use crate::store::history::Past;
use crate::store::load::CHECKOUT_FLOOR_SLACK_MS;
use crate::store::writer::close_reason_from_code;
use crate::store::{checkout_from_key, checkout_key, now_ms};
use crate::throttle::{Failures, Throttle};
use protocol::*;
use std::collections::{BTreeSet, HashMap};
use tokio_postgres::{Client, Transaction};

/// Everything a node needs from the store before it serves.
pub struct Loaded {
    /// The market's live state.
    pub snapshot: Snapshot,
    /// The operator's view of the past.
    pub past: Past,
    /// Each manufacturer's credential hash.
    pub credentials: Credentials,
}

/// Reads everything; fills `throttle` with the failures and known addresses still in its window.
pub async fn load(
    client: &mut Client,
    throttle: &mut Throttle,
    history_months: usize,
) -> Result<Loaded, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    let snapshot = snapshot(&tx).await?;
    let past = past(&tx, history_months).await?;
    let credentials = credentials(&tx).await?;
    load_throttle(&tx, throttle).await?;
    tx.commit().await.map_err(pg)?;
    Ok(Loaded {
        snapshot,
        past,
        credentials,
    })
}

/// Fills `throttle` only: what an edge needs at start (in cluster mode every node throttles the
/// logins it serves, from the failures every node records).
pub async fn throttle(client: &mut Client, throttle: &mut Throttle) -> Result<(), StoreError> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    load_throttle(&tx, throttle).await?;
    tx.commit().await.map_err(pg)
}

fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is out of range")))
}

async fn snapshot(tx: &Transaction<'_>) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    for r in tx
        .query(
            "SELECT id, manufacturer_id, sku, product, category FROM listings",
            &[],
        )
        .await
        .map_err(pg)?
    {
        snap.listings.push(Listing {
            id: ListingId(u32_of(r.get(0), "listing id")?),
            manufacturer: ManufacturerId(u32_of(r.get(1), "manufacturer id")?),
            sku: r.get(2),
            product: r.get(3),
            category: r.get(4),
        });
    }
    for r in tx
        .query(
            "SELECT m.id, m.name, m.acked_seq, (SELECT coalesce(max(seq), 0) FROM outbox o WHERE o.manufacturer_id = m.id)
             FROM manufacturers m",
            &[],
        )
        .await
        .map_err(pg)?
    {
        snap.manufacturers.push((
            ManufacturerId(u32_of(r.get(0), "manufacturer id")?),
            Manufacturer {
                name: r.get(1),
                acked_seq: NoticeSeq(r.get::<_, i64>(2) as u64),
                last_seq: NoticeSeq(r.get::<_, i64>(3) as u64),
                connected: false,
            },
        ));
    }
    let mut customers: HashMap<AccountId, Customer> = HashMap::new();
    for r in tx
        .query(
            "SELECT id, card_exp_year, card_exp_month FROM accounts WHERE card_last4 IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let id: i64 = r.get(0);
        let (year, month): (Option<i64>, Option<i64>) = (r.get(1), r.get(2));
        let expiry = match (year.map(u16::try_from), month.map(u8::try_from)) {
            (Some(Ok(year)), Some(Ok(month))) if (1..=12).contains(&month) => (year, month),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "account {id} has a card without a valid expiry"
                )))
            }
        };
        customers
            .entry(AccountId(id as u64))
            .or_default()
            .card_expiry = Some(expiry);
    }
    for r in tx
        .query(
            "SELECT account_id, listing_id, quantity FROM cart_lines ORDER BY account_id, position",
            &[],
        )
        .await
        .map_err(pg)?
    {
        customers
            .entry(AccountId(r.get::<_, i64>(0) as u64))
            .or_default()
            .cart
            .push(CartItem {
                listing: ListingId(u32_of(r.get(1), "listing id")?),
                quantity: u32_of(r.get(2), "cart quantity")?,
            });
    }
    snap.customers = customers.into_iter().collect();

    let month = tx
        .query_opt(
            "SELECT id, opened_at_ms, ends_at_ms, closed_at_ms, close_reason FROM months ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(pg)?;
    if let Some(r) = month {
        let id: i64 = r.get(0);
        let closed_at: Option<i64> = r.get(3);
        let reason: Option<i64> = r.get(4);
        let mut expected = BTreeSet::new();
        let mut offered = BTreeSet::new();
        for m in tx
            .query(
                "SELECT manufacturer_id, offered FROM month_manufacturers WHERE month_id = $1",
                &[&id],
            )
            .await
            .map_err(pg)?
        {
            let maker = ManufacturerId(u32_of(m.get(0), "manufacturer id")?);
            expected.insert(maker);
            if m.get::<_, i64>(1) != 0 {
                offered.insert(maker);
            }
        }
        let month_id = MonthId(u32_of(id, "month id")?);
        snap.last_month = month_id;
        snap.month = Some(Month {
            id: month_id,
            opened_at_ms: r.get::<_, i64>(1) as u64,
            ends_at_ms: r.get::<_, i64>(2) as u64,
            closed: closed_at.map(|at| (at as u64, close_reason_from_code(reason.unwrap_or(2)))),
            expected,
            requested: offered.clone(),
            offered,
            seen: Default::default(),
            bought: Default::default(),
        });
        for s in tx
            .query(
                "SELECT listing_id, unit_price, offered, remaining FROM offers WHERE month_id = $1",
                &[&id],
            )
            .await
            .map_err(pg)?
        {
            snap.stock.push((
                ListingId(u32_of(s.get(0), "listing id")?),
                Stock {
                    unit_price: Cents(s.get::<_, i64>(1) as u64),
                    offered: u32_of(s.get(2), "offered")?,
                    remaining: u32_of(s.get(3), "remaining")?,
                },
            ));
        }
    }
    // As on SQLite: everyone with a live session counts as logged in to the open month until they
    // reconnect, so one quick buyer cannot close it for those still on their way back.
    if let Some(open) = snap.month.as_mut().filter(|m| m.is_open()) {
        for r in tx
            .query(
                "SELECT DISTINCT account_id FROM sessions WHERE expires_at_ms > $1",
                &[&(now_ms() as i64)],
            )
            .await
            .map_err(pg)?
        {
            open.seen.insert(AccountId(r.get::<_, i64>(0) as u64));
        }
    }
    let last_order: Option<i64> = tx
        .query_one("SELECT max(id) FROM orders", &[])
        .await
        .map_err(pg)?
        .get(0);
    snap.last_order = OrderId(last_order.unwrap_or(0) as u64);
    if let Some(open) = snap.month.as_mut().filter(|m| m.is_open()) {
        open_month_buyers(tx, open).await?;
    }
    // As on SQLite (`store::load`): only the checkout ids a retry can plausibly carry, those from an
    // hour before the last month opened on; an older one is looked up when a retry brings it. A
    // takeover then reads the newest orders, not every order ever made.
    if let Some(month) = &snap.month {
        let floor_ms = month.opened_at_ms.saturating_sub(CHECKOUT_FLOOR_SLACK_MS);
        snap.checkout_floor = CheckoutId::from_parts(floor_ms, 0);
    }
    for r in tx
        .query(
            "SELECT checkout_id, account_id, id FROM orders WHERE checkout_id >= $1",
            &[&checkout_key(snap.checkout_floor).to_vec()],
        )
        .await
        .map_err(pg)?
    {
        let checkout: &[u8] = r.get(0);
        let account: Option<i64> = r.get(1);
        snap.checkouts.push((
            checkout_from_key(checkout)?,
            account.map(|a| AccountId(a as u64)),
            OrderId(r.get::<_, i64>(2) as u64),
        ));
    }
    Ok(snap)
}

/// Who bought in the open month. Order ids grow and only the open month sells, so its orders are the
/// newest: they are read newest first, a page at a time, down the primary key, until an order of an
/// earlier month.
async fn open_month_buyers(tx: &Transaction<'_>, open: &mut Month) -> Result<(), StoreError> {
    const PAGE: i32 = 1024;
    let portal = tx
        .bind(
            "SELECT account_id, month_id FROM orders ORDER BY id DESC",
            &[],
        )
        .await
        .map_err(pg)?;
    loop {
        let rows = tx.query_portal(&portal, PAGE).await.map_err(pg)?;
        for r in &rows {
            if r.get::<_, i64>(1) != i64::from(open.id.0) {
                return Ok(());
            }
            if let Some(a) = r.get::<_, Option<i64>>(0) {
                open.seen.insert(AccountId(a as u64));
                open.bought.insert(AccountId(a as u64));
            }
        }
        if rows.len() < PAGE as usize {
            return Ok(());
        }
    }
}

async fn past(tx: &Transaction<'_>, limit: usize) -> Result<Past, StoreError> {
    let (orders, units) = super::read::totals(tx).await?;
    let last_month_orders: i64 = tx
        .query_one(
            "SELECT count(*) FROM orders WHERE month_id = (SELECT max(id) FROM months)",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    let mut last_offered = HashMap::new();
    for r in tx
        .query(
            "SELECT manufacturer_id, max(month_id) FROM month_manufacturers WHERE offered = 1 GROUP BY manufacturer_id",
            &[],
        )
        .await
        .map_err(pg)?
    {
        last_offered.insert(
            ManufacturerId(u32_of(r.get(0), "manufacturer id")?),
            MonthId(u32_of(r.get(1), "month id")?),
        );
    }
    let mut months = Vec::new();
    for r in tx
        .query(
            "WITH sales AS (
                 SELECT o.month_id AS month_id, sum(l.quantity)::bigint AS units, sum(l.quantity * l.unit_price)::bigint AS revenue
                 FROM orders o JOIN order_lines l ON l.order_id = o.id
                 GROUP BY o.month_id)
             SELECT m.id, m.opened_at_ms, m.closed_at_ms, m.close_reason,
                    coalesce(s.units, 0), coalesce(s.revenue, 0)
             FROM months m LEFT JOIN sales s ON s.month_id = m.id
             WHERE m.closed_at_ms IS NOT NULL
             ORDER BY m.id DESC LIMIT $1",
            &[&(limit as i64)],
        )
        .await
        .map_err(pg)?
    {
        let id: i64 = r.get(0);
        let reason = match r.get::<_, Option<i64>>(3) {
            Some(code @ 0..=3) => close_reason_from_code(code),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "month {id} closed with unknown reason {other:?}"
                )))
            }
        };
        months.push(MonthRecord {
            id: MonthId(u32_of(id, "month id")?),
            opened_at_ms: r.get::<_, i64>(1) as u64,
            closed_at_ms: r.get::<_, i64>(2) as u64,
            reason,
            units: r.get::<_, i64>(4) as u64,
            revenue: Cents(r.get::<_, i64>(5) as u64),
        });
    }
    Ok(Past {
        months,
        orders,
        units,
        last_month_orders: last_month_orders as u64,
        last_offered,
    })
}

async fn credentials(tx: &Transaction<'_>) -> Result<Credentials, StoreError> {
    let mut credentials = Credentials::default();
    for r in tx
        .query(
            "SELECT id, credential_hash FROM manufacturers WHERE credential_hash IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let id: i64 = r.get(0);
        let hash: [u8; 32] = r.get::<_, &[u8]>(1).try_into().map_err(|_| {
            StoreError::Corrupt(format!(
                "manufacturer {id}: credential hash is not 32 bytes"
            ))
        })?;
        credentials.set(ManufacturerId(u32_of(id, "manufacturer id")?), hash);
    }
    Ok(credentials)
}

/// Failures older than the throttle's window are skipped here (the read-only load cannot delete them;
/// they are harmless and overwritten on the next failure).
async fn load_throttle(tx: &Transaction<'_>, throttle: &mut Throttle) -> Result<(), StoreError> {
    let oldest = now_ms().saturating_sub(throttle.limits().window_ms) as i64;
    for r in tx
        .query(
            "SELECT account_key, address, failures, last_at_ms FROM login_failures WHERE last_at_ms >= $1",
            &[&oldest],
        )
        .await
        .map_err(pg)?
    {
        let account: String = r.get(0);
        let address: String = r.get(1);
        let failures = Failures {
            count: u32::try_from(r.get::<_, i64>(2)).unwrap_or(u32::MAX),
            last_ms: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
        };
        throttle.restore_failures(&account, &address, failures);
    }
    for r in tx
        .query("SELECT account_key, address FROM login_addresses", &[])
        .await
        .map_err(pg)?
    {
        let account: String = r.get(0);
        let address: String = r.get(1);
        throttle.restore_known(&account, &address);
    }
    Ok(())
}
