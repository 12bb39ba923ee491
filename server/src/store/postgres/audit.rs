//! `distributor audit --db postgres://…`: the checks of [`crate::store::audit`] on PostgreSQL, with
//! the same report. Everything is read in one repeatable-read, read-only transaction, so the audit
//! sees one moment while nodes keep writing.

use super::{pg, StoreError};
use crate::store::audit::{acked_lines, cap_listed, AuditReport};
use crate::store::checkout_key;
use protocol::NoticeBody;
use std::collections::HashMap;

/// Runs the audit on the database at `url`. `acked` is the content of an `--acked` file, if given.
pub async fn audit(url: &str, acked: Option<&str>) -> Result<AuditReport, StoreError> {
    let mut client = super::connect(url, super::Purpose::Work).await?;
    if super::schema::version(&client).await?.is_none() {
        return Err(StoreError::Foreign(format!(
            "{}: database has no distributor schema",
            redact(url)
        )));
    }
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    let mut v: Vec<String> = Vec::new();
    for r in tx
        .query(
            "SELECT o.month_id, o.listing_id, o.offered, o.remaining,
                    (SELECT coalesce(sum(l.quantity), 0)::bigint FROM order_lines l JOIN orders d ON d.id = l.order_id
                      WHERE d.month_id = o.month_id AND l.listing_id = o.listing_id)
             FROM offers o",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let (month, listing, offered, remaining, sold): (i64, i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
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
    let orphans: i64 = tx
        .query_one(
            "SELECT count(*) FROM order_lines l JOIN orders d ON d.id = l.order_id
             WHERE NOT EXISTS (SELECT 1 FROM offers o WHERE o.month_id = d.month_id AND o.listing_id = l.listing_id)",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    if orphans > 0 {
        v.push(format!(
            "{orphans} order lines sell listings that were not offered that month"
        ));
    }
    for r in tx
        .query(
            "SELECT d.id, d.total, coalesce(sum(l.unit_price * l.quantity), 0)::bigint
             FROM orders d LEFT JOIN order_lines l ON l.order_id = d.id GROUP BY d.id
             HAVING d.total != coalesce(sum(l.unit_price * l.quantity), 0) OR count(l.order_id) = 0",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let (order, total, sum): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        v.push(format!(
            "order {order}: total {total} != sum of lines {sum} (or no lines)"
        ));
    }
    let mut sold_lines: HashMap<(i64, i64), i64> = HashMap::new();
    for r in tx
        .query(
            "SELECT manufacturer_id, order_id, sum(quantity)::bigint FROM order_lines GROUP BY manufacturer_id, order_id",
            &[],
        )
        .await
        .map_err(pg)?
    {
        sold_lines.insert((r.get(0), r.get(1)), r.get(2));
    }
    let mut noticed: HashMap<(i64, i64), i64> = HashMap::new();
    let mut last_seq: HashMap<i64, i64> = HashMap::new();
    for r in tx
        .query(
            "SELECT manufacturer_id, seq, order_id, body FROM outbox ORDER BY manufacturer_id, seq",
            &[],
        )
        .await
        .map_err(pg)?
    {
        let (m, seq, order): (i64, i64, Option<i64>) = (r.get(0), r.get(1), r.get(2));
        let expected = last_seq.get(&m).copied().unwrap_or(0) + 1;
        if seq != expected {
            v.push(format!(
                "manufacturer {m}: outbox jumps from {} to {seq}",
                expected - 1
            ));
        }
        last_seq.insert(m, seq);
        match protocol::codec::decode_server_payload::<NoticeBody>(r.get::<_, &[u8]>(3)) {
            Ok(NoticeBody::Sale(sale)) => {
                let units: i64 = sale.lines.iter().map(|l| i64::from(l.quantity)).sum();
                if order != Some(sale.order.0 as i64) {
                    v.push(format!(
                        "manufacturer {m} notice {seq}: order column disagrees with body"
                    ));
                }
                *noticed.entry((m, sale.order.0 as i64)).or_default() += units;
            }
            Ok(NoticeBody::Settlement(_)) => {}
            Err(e) => v.push(format!("manufacturer {m} notice {seq}: undecodable ({e})")),
        }
    }
    for (key, units) in &sold_lines {
        if noticed.get(key) != Some(units) {
            v.push(format!(
                "manufacturer {} order {}: sold {units} but the outbox says {:?}",
                key.0,
                key.1,
                noticed.get(key)
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
    let mut outbox_pending = 0u64;
    for r in tx
        .query("SELECT id, acked_seq FROM manufacturers", &[])
        .await
        .map_err(pg)?
    {
        let (m, acked): (i64, i64) = (r.get(0), r.get(1));
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
        let lookup = tx
            .prepare(
                "SELECT d.id, (SELECT coalesce(sum(quantity), 0)::bigint FROM order_lines WHERE order_id = d.id)
                 FROM orders d WHERE d.checkout_id = $1",
            )
            .await
            .map_err(pg)?;
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
            let found = tx
                .query_opt(&lookup, &[&checkout_key(checkout).to_vec()])
                .await
                .map_err(pg)?
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
            v.extend(line.mismatch(found));
        }
    }
    let (orders, sold_units) = super::read::totals(&tx).await?;
    let months: i64 = tx
        .query_one("SELECT count(*) FROM months", &[])
        .await
        .map_err(pg)?
        .get(0);
    tx.commit().await.map_err(pg)?;
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

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
