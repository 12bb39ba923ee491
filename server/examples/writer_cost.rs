//! What the writer costs per checkout, measured the same way on a busy shared machine.
//!
//! Drives the real writer thread (real file, WAL, `synchronous=FULL`) with `N` synthetic checkouts
//! that the real market planned: 10 bulk listings, 256 buyers, 1–3 random lines each, submitted
//! `BATCH` at a time (the writer commits what is waiting, as it does under load). It prints wall-clock
//! checkouts/s. Instructions are the repeatable number: run it under callgrind, collecting only the
//! writer thread's loop, and divide by `N`:
//!
//! ```sh
//! cargo build --release -p server --example writer_cost
//! valgrind --tool=callgrind --toggle-collect='server::store::writer::run' \
//!     --callgrind-out-file=/tmp/wc.out target/release/examples/writer_cost 20000 64
//! callgrind_annotate /tmp/wc.out | head -30   # "PROGRAM TOTALS" / 20000 = instructions per checkout
//! ```

use protocol::*;
use server::market::{Market, Snapshot};
use server::push::Registry;
use server::store::writer::{Done, Effects, Op, Outcome, Writer};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

const BUYERS: u64 = 256;
const LISTINGS: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let dir =
        tempfile::tempdir_in(std::env::var("WRITER_COST_DIR").unwrap_or_else(|_| ".".into()))?;
    let conn = server::store::schema::open_writer(&dir.path().join("cost.db"))?;
    let (committed, _) = tokio::sync::mpsc::unbounded_channel();
    let effects = Effects {
        registry: Arc::new(Registry::default()),
        committed,
        fatal: CancellationToken::new(),
    };
    let (writer, handle) = Writer::start(conn, effects)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let elapsed = runtime.block_on(drive(&writer, n, batch))?;
    drop(writer);
    let _ = handle.join();
    println!(
        "checkouts={n} batch={batch} secs={:.3} checkouts_per_s={:.0}",
        elapsed,
        n as f64 / elapsed
    );
    Ok(())
}

/// Sets up a month with one bulk manufacturer and `BUYERS` accounts, then times `n` checkouts.
async fn drive(writer: &Writer, n: usize, batch: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let now = server::store::now_ms();
    let mut market = Market::restore(Snapshot::default());
    let (maker, _) = market.register_manufacturer("Bulk");
    writer
        .run(Op::RegisterManufacturer(maker, "Bulk".into()))
        .await?;
    market.set_connected(maker, true);
    let month = market.open_next_month(now, 3_600_000);
    writer
        .run(Op::OpenMonth(month.clone(), vec![maker]))
        .await?;
    market.due_offer_requests();
    let lines: Vec<OfferLine> = (0..LISTINGS)
        .map(|i| OfferLine {
            sku: format!("BULK-{i:03}"),
            product: format!("Bulk product number {i}"),
            category: "bulk".into(),
            quantity: 5_000_000,
            unit_price: Cents(100 + i as u64),
        })
        .collect();
    let plan = market.submit_offer(maker, month.id, &lines)?;
    let listings: Vec<ListingId> = plan.reply.iter().map(|(_, l)| *l).collect();
    writer.run(Op::Offer(plan)).await?;
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        let op = Op::CreateAccount {
            first_name: "Buyer".into(),
            last_name: format!("Number {i}"),
            email: format!("buyer{i}@example.com"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        };
        let Outcome::Account(account) = writer.run(op).await? else {
            return Err("no account id".into());
        };
        market.set_card(account, Some((2099, 12)));
        buyers.push(account);
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let mut replies = Vec::with_capacity(batch);
        let mut ids = Vec::with_capacity(batch);
        for i in done..(done + batch).min(n) {
            let account = buyers[i % buyers.len()];
            let count = 1 + (next() % 3) as usize;
            let mut items: Vec<CartItem> = Vec::with_capacity(count);
            for _ in 0..count {
                let listing = listings[(next() % LISTINGS as u64) as usize];
                if !items.iter().any(|l| l.listing == listing) {
                    items.push(CartItem {
                        listing,
                        quantity: 1 + (next() % 2) as u32,
                    });
                }
            }
            let total = market.quote(account, Some(&items)).total;
            // Time-ordered ids, as clients make them: milliseconds in the high bits.
            let id = CheckoutId(((now as u128) << 64) | i as u128);
            let plan = market
                .checkout(account, id, Some(items), total, now)
                .map_err(|e| format!("checkout refused: {e:?}"))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let answer = Reply::Order(plan.order.clone());
            writer.submit(Op::Checkout(Box::new(plan)), Done::Reply(tx, Ok(answer)))?;
            replies.push(rx);
            ids.push(id);
        }
        for rx in replies {
            rx.await?.map_err(|e| format!("checkout failed: {e:?}"))?;
        }
        market.committed(&ids);
        done += ids.len();
    }
    Ok(start.elapsed().as_secs_f64())
}
