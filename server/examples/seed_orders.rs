//! Puts a large order history on disk, for timing a restart (bench row 7).
//!
//! `seed_orders DB ORDERS` creates DB (which must not exist) with one manufacturer ("Seed", all of
//! its notices acked), 10 listings, 1,000 accounts, and ORDERS orders of two lines each, spread over
//! closed months of 10,000 orders in the past. The data keeps every invariant `distributor audit`
//! checks, so the seeded file is a fair one to start on.
//!
//! ```sh
//! cargo build --release -p server --example seed_orders
//! target/release/examples/seed_orders /tmp/big.db 1000000
//! ```

use rusqlite::params;
use std::path::PathBuf;

const LISTINGS: i64 = 10;
const ACCOUNTS: i64 = 1_000;
const PER_MONTH: i64 = 10_000;
const UNITS: i64 = 1_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path: PathBuf = args.next().ok_or("usage: seed_orders DB ORDERS")?.into();
    let orders: i64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    if path.exists() {
        return Err(format!(
            "{} exists; seed_orders only makes new files",
            path.display()
        )
        .into());
    }
    let mut conn = server::store::schema::open_writer(&path)?;
    let months = (orders + PER_MONTH - 1) / PER_MONTH;
    // Month m opened an hour apart, ending a day before now.
    let now = server::store::now_ms() as i64;
    let month_ms = 3_600_000i64;
    let first_open = now - 86_400_000 - months * month_ms;
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO manufacturers (id, name) VALUES (1, 'Seed')",
        [],
    )?;
    for l in 1..=LISTINGS {
        tx.execute(
            "INSERT INTO listings (id, manufacturer_id, sku, product, category) VALUES (?1, 1, ?2, ?3, 'seed')",
            params![l, format!("SEED-{l:02}"), format!("Seeded product {l}")],
        )?;
    }
    for a in 1..=ACCOUNTS {
        tx.execute(
            "INSERT INTO accounts (id, first_name, last_name, email, email_key, password_hash, created_at_ms)
             VALUES (?1, 'Seed', 'Buyer', ?2, ?2, 'x', ?3)",
            params![a, format!("seed{a}@example.com"), first_open],
        )?;
    }
    {
        let mut month = tx.prepare(
            "INSERT INTO months (id, opened_at_ms, ends_at_ms, closed_at_ms, close_reason) VALUES (?1, ?2, ?3, ?3, 2)",
        )?;
        let mut expected = tx.prepare(
            "INSERT INTO month_manufacturers (month_id, manufacturer_id, offered) VALUES (?1, 1, 1)",
        )?;
        let mut offer = tx.prepare(
            "INSERT INTO offers (month_id, listing_id, unit_price, offered, remaining, product)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut order = tx.prepare(
            "INSERT INTO orders (id, checkout_id, account_id, month_id, placed_at_ms, total) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut line = tx.prepare(
            "INSERT INTO order_lines (order_id, listing_id, manufacturer_id, unit_price, quantity, status) VALUES (?1, ?2, 1, ?3, 1, 1)",
        )?;
        let mut notice =
            tx.prepare("INSERT INTO outbox (manufacturer_id, seq, order_id) VALUES (1, ?1, ?2)")?;
        let price = |l: i64| 100 + l;
        let mut id = 0i64;
        for m in 1..=months {
            let opened = first_open + (m - 1) * month_ms;
            month.execute(params![m, opened, opened + month_ms])?;
            expected.execute([m])?;
            let in_month = PER_MONTH.min(orders - id);
            let mut sold = [0i64; LISTINGS as usize + 1];
            for k in 0..in_month {
                id += 1;
                let (a, b) = (1 + id % LISTINGS, 1 + (id + 3) % LISTINGS);
                let checkout =
                    protocol::CheckoutId::from_parts((opened + k / 10) as u64, id as u128);
                order.execute(params![
                    id,
                    &checkout.0.to_be_bytes()[..],
                    1 + id % ACCOUNTS,
                    m,
                    opened + k / 10,
                    price(a) + price(b)
                ])?;
                line.execute(params![id, a, price(a)])?;
                line.execute(params![id, b, price(b)])?;
                notice.execute(params![id, id])?;
                sold[a as usize] += 1;
                sold[b as usize] += 1;
            }
            let revenue: i64 = (1..=LISTINGS).map(|l| sold[l as usize] * price(l)).sum();
            tx.execute(
                "INSERT INTO month_sales (month_id, orders, units, revenue) VALUES (?1, ?2, ?3, ?4)",
                params![m, in_month, 2 * in_month, revenue],
            )?;
            for l in 1..=LISTINGS {
                let left = UNITS - sold[l as usize];
                offer.execute(params![
                    m,
                    l,
                    price(l),
                    UNITS,
                    left,
                    format!("Seeded product {l}")
                ])?;
            }
        }
        tx.execute("UPDATE manufacturers SET acked_seq = ?1 WHERE id = 1", [id])?;
    }
    // Each account's orders, indexed as the writer would have indexed them.
    server::store::account_orders::merge(&tx)?;
    tx.commit()?;
    // A clean stop, as the writer ends: marked stopped and checkpointed.
    server::store::lifecycle::mark(&conn, false)?;
    println!(
        "seeded {orders} orders in {months} months into {}",
        path.display()
    );
    Ok(())
}
