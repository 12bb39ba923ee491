//! Start-up: rebuild the market's live state from the database, so a restart restores carts, the
//! current month, stock and the outbox positions exactly. Orders stay on disk: only the last month's
//! checkout ids are loaded (older ones are looked up when a retry brings one).

use super::writer::close_reason_from_code;
use super::{checkout_from_key, checkout_key, StoreError};
use crate::market::{Customer, Listing, Manufacturer, Month, Snapshot, Stock};
use protocol::*;
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};

/// How long before the last month opened a checkout id may be and still be held in memory at start.
pub const CHECKOUT_FLOOR_SLACK_MS: u64 = 3_600_000;

/// Loads everything the market keeps in memory.
pub fn snapshot(conn: &Connection) -> Result<Snapshot, StoreError> {
    let listings = conn
        .prepare("SELECT id, manufacturer_id, sku, product, category FROM listings")?
        .query_map([], |r| {
            Ok(Listing {
                id: ListingId(r.get(0)?),
                manufacturer: ManufacturerId(r.get(1)?),
                sku: r.get(2)?,
                product: r.get(3)?,
                category: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;

    let manufacturers = conn
        .prepare(
            "SELECT m.id, m.name, m.acked_seq, (SELECT coalesce(max(seq), 0) FROM outbox o WHERE o.manufacturer_id = m.id)
             FROM manufacturers m",
        )?
        .query_map([], |r| {
            Ok((
                ManufacturerId(r.get(0)?),
                Manufacturer {
                    name: r.get(1)?,
                    acked_seq: NoticeSeq(r.get::<_, i64>(2)? as u64),
                    last_seq: NoticeSeq(r.get::<_, i64>(3)? as u64),
                    connected: false,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;

    let mut customers: HashMap<AccountId, Customer> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT id, card_exp_year, card_exp_month FROM accounts WHERE card_last4 IS NOT NULL",
    )?;
    let cards = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    for row in cards {
        let (id, year, month) = row?;
        // A card row without a readable expiry cannot be trusted to pay: stop, as for any corrupt row.
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
    let mut stmt = conn.prepare(
        "SELECT account_id, listing_id, quantity FROM cart_lines ORDER BY account_id, position",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))? {
        let (account, listing, quantity) = row?;
        customers
            .entry(AccountId(account as u64))
            .or_default()
            .cart
            .push(CartItem {
                listing: ListingId(listing),
                quantity,
            });
    }
    let mut snap = Snapshot {
        listings,
        manufacturers,
        customers: customers.into_iter().collect(),
        ..Snapshot::default()
    };

    let month = conn
        .query_row(
            "SELECT id, opened_at_ms, ends_at_ms, closed_at_ms, close_reason FROM months ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if let Some((id, opened, ends, closed_at, reason)) = month {
        let mut expected = BTreeSet::new();
        let mut offered = BTreeSet::new();
        let mut stmt = conn.prepare(
            "SELECT manufacturer_id, offered FROM month_manufacturers WHERE month_id = ?1",
        )?;
        for row in stmt.query_map([id], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, bool>(1)?)))? {
            let (m, did_offer) = row?;
            expected.insert(ManufacturerId(m));
            if did_offer {
                offered.insert(ManufacturerId(m));
            }
        }
        snap.last_month = MonthId(id);
        snap.month = Some(Month {
            id: MonthId(id),
            opened_at_ms: opened as u64,
            ends_at_ms: ends as u64,
            closed: closed_at.map(|at| (at as u64, close_reason_from_code(reason.unwrap_or(2)))),
            expected,
            // Whoever was asked before the restart is asked again if it has not offered.
            requested: offered.clone(),
            offered,
            // Customers count as active again as their sessions resume.
            seen: Default::default(),
            bought: Default::default(),
        });
        snap.stock = conn
            .prepare(
                "SELECT listing_id, unit_price, offered, remaining FROM offers WHERE month_id = ?1",
            )?
            .query_map([id], |r| {
                Ok((
                    ListingId(r.get(0)?),
                    Stock {
                        unit_price: Cents(r.get::<_, i64>(1)? as u64),
                        offered: r.get(2)?,
                        remaining: r.get(3)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
    }

    // A restart cuts every connection, and customers come back one by one. Until they do, count
    // everyone still holding a valid session as logged in to the open month, so that a customer
    // who had bought cannot close it for those who have not reconnected yet.
    if let Some(open) = snap.month.as_mut().filter(|m| m.is_open()) {
        let mut stmt =
            conn.prepare("SELECT DISTINCT account_id FROM sessions WHERE expires_at_ms > ?1")?;
        for account in stmt.query_map([super::now_ms() as i64], |r| r.get::<_, i64>(0))? {
            open.seen.insert(AccountId(account? as u64));
        }
    }

    snap.last_order = OrderId(conn.query_row(
        "SELECT coalesce(max(id), 0) FROM orders",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64);
    // Who already bought in a month that is still open keeps counting as having bought. Order ids
    // grow and only the open month sells, so its orders are the newest ones.
    if let Some(open) = snap.month.as_mut().filter(|m| m.is_open()) {
        let mut stmt = conn.prepare("SELECT account_id, month_id FROM orders ORDER BY id DESC")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if row.get::<_, i64>(1)? != i64::from(open.id.0) {
                break;
            }
            if let Some(a) = row.get::<_, Option<i64>>(0)? {
                open.seen.insert(AccountId(a as u64));
                open.bought.insert(AccountId(a as u64));
            }
        }
    }
    // Only the checkout ids a retry can plausibly carry are held in memory: those made from an hour
    // before the last month opened on (ids are time-ordered). An older id is looked up on disk when
    // it comes (see `Market::checkout_is_on_disk_only`), so a restart does not read every order.
    if let Some(month) = &snap.month {
        let floor_ms = month.opened_at_ms.saturating_sub(CHECKOUT_FLOOR_SLACK_MS);
        snap.checkout_floor = CheckoutId::from_parts(floor_ms, 0);
    }
    let mut stmt =
        conn.prepare("SELECT checkout_id, account_id, id FROM orders WHERE checkout_id >= ?1")?;
    let rows = stmt.query_map([&checkout_key(snap.checkout_floor)[..]], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (checkout, account, order) = row?;
        snap.checkouts.push((
            checkout_from_key(&checkout)?,
            account.map(|a| AccountId(a as u64)),
            OrderId(order as u64),
        ));
    }
    Ok(snap)
}
