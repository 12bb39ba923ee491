//! A manufacturer's own books: one SQLite file (WAL, `synchronous=FULL`), every table keyed by
//! manufacturer name so that several manufacturers can share a file.
//!
//! The books answer three questions durably:
//! - **What is in stock?** `products.in_stock` grows with production, shrinks when units are
//!   offered (they are then with the distributor) and grows again by the unsold units on settlement.
//! - **Which notices have been applied?** `manufacturers.high_water` is the last applied sequence
//!   number. A notice is applied in the same transaction that moves the mark, so after any crash a
//!   notice is either fully in the books (and skipped when delivered again) or not at all.
//! - **What was offered for month M?** The offer is written before it is sent, so a distributor that
//!   asks again for the same month gets the same offer, not a second helping.
//!
//! Invariant, per product: `starting + produced = in_stock + offered - returned`.

use crate::catalog::Catalog;
use crate::pricing::month_price;
use protocol::{
    Cents, CloseReason, MonthId, Notice, NoticeBody, NoticeSeq, OfferLine, OrderId, SaleNotice,
    Settlement,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// Why the books could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    /// SQLite failed (disk, lock, corruption).
    #[error("books database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Another process has these books open, or their lock file cannot be made.
    #[error(transparent)]
    Lock(#[from] protocol::lock_file::LockError),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS manufacturers (
    name        TEXT PRIMARY KEY,
    high_water  INTEGER NOT NULL DEFAULT 0   -- last applied notice seq
);
CREATE TABLE IF NOT EXISTS products (
    manufacturer TEXT NOT NULL,
    sku          TEXT NOT NULL,
    name         TEXT NOT NULL,
    category     TEXT NOT NULL,
    base_price   INTEGER NOT NULL CHECK (base_price >= 1),
    capacity     INTEGER NOT NULL,
    starting     INTEGER NOT NULL,
    produced     INTEGER NOT NULL DEFAULT 0,
    offered      INTEGER NOT NULL DEFAULT 0,
    sold         INTEGER NOT NULL DEFAULT 0,
    returned     INTEGER NOT NULL DEFAULT 0,  -- unsold units back from the distributor
    revenue      INTEGER NOT NULL DEFAULT 0,  -- cents
    in_stock     INTEGER NOT NULL CHECK (in_stock >= 0),
    PRIMARY KEY (manufacturer, sku)
);
CREATE TABLE IF NOT EXISTS offers (
    manufacturer TEXT NOT NULL,
    month        INTEGER NOT NULL,
    -- recorded: written, maybe sent; accepted: the distributor took it;
    -- settled: the month's settlement is applied; lapsed: the distributor moved on without it.
    state        TEXT NOT NULL CHECK (state IN ('recorded', 'accepted', 'settled', 'lapsed')),
    high_water_at_offer INTEGER NOT NULL,     -- proves every earlier notice was in the books
    recorded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (manufacturer, month)
);
CREATE TABLE IF NOT EXISTS offer_lines (
    manufacturer TEXT NOT NULL,
    month        INTEGER NOT NULL,
    sku          TEXT NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity >= 0),
    unit_price   INTEGER NOT NULL CHECK (unit_price >= 1),
    sold         INTEGER NOT NULL DEFAULT 0,
    returned     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (manufacturer, month, sku)
);
CREATE TABLE IF NOT EXISTS notices (
    manufacturer TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('sale', 'settlement')),
    month        INTEGER NOT NULL,
    order_id     INTEGER,
    units        INTEGER NOT NULL,
    applied_at_ms INTEGER NOT NULL,
    PRIMARY KEY (manufacturer, seq)          -- backstop: a notice can never be stored twice
);
CREATE TABLE IF NOT EXISTS dispatches (
    manufacturer TEXT NOT NULL,
    order_id     INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    reported_at_ms INTEGER,                  -- NULL until the distributor took the report
    PRIMARY KEY (manufacturer, order_id)
);
CREATE INDEX IF NOT EXISTS dispatches_pending ON dispatches (manufacturer, seq)
    WHERE reported_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS credentials (     -- what the distributor issued when the name registered
    manufacturer TEXT PRIMARY KEY,
    token        TEXT NOT NULL,              -- the secret itself: these books are the manufacturer's own
    issued_at_ms INTEGER NOT NULL
);
";

/// One manufacturer's view of a books file. Not shared between threads; wrap it in a mutex.
pub struct Books {
    conn: Connection,
    name: String,
    /// Keeps other processes off these books for as long as they are open.
    _lock: std::sync::Arc<protocol::lock_file::LockFile>,
}

/// The offer for one month, as recorded in the books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOffer {
    /// The month.
    pub month: MonthId,
    /// What to send in `SubmitOffer`. Lines with zero units are left out.
    pub lines: Vec<OfferLine>,
    /// `false` when the month had already been offered and this is the same offer again.
    pub fresh: bool,
    /// Earlier offers that never got a settlement; their unsold units went back to stock.
    pub lapsed: Vec<MonthId>,
}

/// What one batch of notices did to the books.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The high-water mark after the batch: ack through this.
    pub high_water: NoticeSeq,
    /// The notices that were new, in order.
    pub notices: Vec<AppliedNotice>,
    /// Notices already in the books (delivered again), skipped.
    pub duplicates: usize,
    /// Notices whose seq skipped ahead of the mark (the distributor lost or we lost history).
    pub gaps: Vec<NoticeSeq>,
}

/// One notice that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedNotice {
    /// Goods were sold.
    Sale {
        /// Its sequence number.
        seq: NoticeSeq,
        /// The month.
        month: MonthId,
        /// The order, for dispatch.
        order: OrderId,
        /// `(sku, units)` per line.
        lines: Vec<(String, u32)>,
    },
    /// A month was settled.
    Settlement {
        /// Its sequence number.
        seq: NoticeSeq,
        /// The month.
        month: MonthId,
        /// Why it closed.
        reason: CloseReason,
        /// Units sold in that month, by the distributor's count.
        sold: u64,
        /// Units that came back to stock.
        returned: u64,
        /// Disagreements between the settlement and our own counts, as sentences.
        mismatches: Vec<String>,
    },
}

/// One product's stock, for log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    /// SKU.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Units in stock.
    pub in_stock: u64,
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| int(d.as_millis() as u64))
        .unwrap_or(0)
}

impl Books {
    /// Opens (creating if needed) the books file and this manufacturer's row in it.
    /// Refuses at once if another process has the file open.
    pub fn open(path: &Path, name: &str) -> Result<Books, BooksError> {
        let lock = crate::books_lock::lock(path)?;
        let conn = Connection::open(path)?;
        // Several manufacturers may share one file, each with its own connection.
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT INTO manufacturers (name) VALUES (?1) ON CONFLICT DO NOTHING",
            [name],
        )?;
        Ok(Books {
            conn,
            name: name.to_string(),
            _lock: lock,
        })
    }

    /// The credential the distributor issued to this name, if it registered from these books.
    pub fn credential(&self) -> Result<Option<String>, BooksError> {
        Ok(self
            .conn
            .query_row(
                "SELECT token FROM credentials WHERE manufacturer = ?1",
                [&self.name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps a credential the distributor just issued (replacing an older one).
    pub fn set_credential(&mut self, token: &str) -> Result<(), BooksError> {
        self.conn.execute(
            "INSERT INTO credentials (manufacturer, token, issued_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(manufacturer) DO UPDATE SET token = excluded.token, issued_at_ms = excluded.issued_at_ms",
            params![self.name, token, now_ms()],
        )?;
        Ok(())
    }

    /// The manufacturer these books belong to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds the catalog's products. A product seen for the first time starts with its starting
    /// stock; a known one keeps its counters and takes the catalog's name, price and capacity.
    pub fn sync_catalog(&mut self, catalog: &Catalog) -> Result<(), BooksError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO products (manufacturer, sku, name, category, base_price, capacity,
                                       starting, in_stock)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (manufacturer, sku) DO UPDATE SET
                    name = excluded.name, category = excluded.category,
                    base_price = excluded.base_price, capacity = excluded.capacity",
            )?;
            for p in &catalog.products {
                upsert.execute(params![
                    self.name,
                    p.sku,
                    p.name,
                    p.category,
                    int(p.unit_price_cents),
                    int(p.capacity),
                    int(p.starting_stock),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The last applied notice.
    pub fn high_water(&self) -> Result<NoticeSeq, BooksError> {
        let hw: i64 = self.conn.query_row(
            "SELECT high_water FROM manufacturers WHERE name = ?1",
            [&self.name],
            |r| r.get(0),
        )?;
        Ok(NoticeSeq(uint(hw)))
    }

    /// Adds newly made units, up to each product's capacity. Returns what was actually added.
    pub fn add_production(&mut self, made: &[(String, u64)]) -> Result<Vec<u64>, BooksError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut added = Vec::with_capacity(made.len());
        {
            let mut room = tx.prepare_cached(
                "SELECT MAX(capacity - in_stock, 0) FROM products WHERE manufacturer = ?1 AND sku = ?2",
            )?;
            let mut add = tx.prepare_cached(
                "UPDATE products SET produced = produced + ?3, in_stock = in_stock + ?3
                 WHERE manufacturer = ?1 AND sku = ?2",
            )?;
            for (sku, units) in made {
                let room: Option<i64> = room
                    .query_row(params![self.name, sku], |r| r.get(0))
                    .optional()?;
                let units = (*units).min(uint(room.unwrap_or(0)));
                if units > 0 {
                    add.execute(params![self.name, sku, int(units)])?;
                }
                added.push(units);
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// The offer for `month`: the one already recorded, or a new one of `share` of each product's
    /// stock at this month's price, recorded (stock moved out) before this returns.
    ///
    /// Earlier offers still waiting for a settlement are closed first: the distributor asks for a
    /// new month only after every earlier notice is acked, so no settlement is coming for them (it
    /// never took them). Their unsold units come back to stock.
    pub fn offer_for(&mut self, month: MonthId, share: f64) -> Result<RecordedOffer, BooksError> {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let lapsed: Vec<MonthId> = {
            let mut stmt = tx.prepare_cached(
                "SELECT month FROM offers WHERE manufacturer = ?1 AND month < ?2
                 AND state IN ('recorded', 'accepted') ORDER BY month",
            )?;
            let rows = stmt.query_map(params![self.name, month.0], |r| r.get::<_, u32>(0))?;
            rows.map(|m| m.map(MonthId))
                .collect::<Result<_, rusqlite::Error>>()?
        };
        for m in &lapsed {
            close_offer(&tx, &self.name, *m, &[], "lapsed")?;
        }
        let existing: Option<i64> = tx
            .query_row(
                "SELECT high_water_at_offer FROM offers WHERE manufacturer = ?1 AND month = ?2",
                params![self.name, month.0],
                |r| r.get(0),
            )
            .optional()?;
        let fresh = existing.is_none();
        if fresh {
            let hw: i64 = tx.query_row(
                "SELECT high_water FROM manufacturers WHERE name = ?1",
                [&self.name],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO offers (manufacturer, month, state, high_water_at_offer, recorded_at_ms)
                 VALUES (?1, ?2, 'recorded', ?3, ?4)",
                params![self.name, month.0, hw, now_ms()],
            )?;
            let products: Vec<(String, i64, i64)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT sku, base_price, in_stock FROM products WHERE manufacturer = ?1 ORDER BY sku",
                )?;
                let rows =
                    stmt.query_map([&self.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect::<Result<_, rusqlite::Error>>()?
            };
            let mut line = tx.prepare_cached(
                "INSERT INTO offer_lines (manufacturer, month, sku, quantity, unit_price)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut take = tx.prepare_cached(
                "UPDATE products SET in_stock = in_stock - ?3, offered = offered + ?3
                 WHERE manufacturer = ?1 AND sku = ?2",
            )?;
            for (sku, base, in_stock) in products {
                let quantity = ((uint(in_stock) as f64 * share).floor() as u64)
                    .min(u64::from(u32::MAX))
                    .min(uint(in_stock));
                if quantity == 0 {
                    continue;
                }
                let price = month_price(Cents(uint(base)), &self.name, &sku, month);
                line.execute(params![
                    self.name,
                    month.0,
                    sku,
                    int(quantity),
                    int(price.0)
                ])?;
                take.execute(params![self.name, sku, int(quantity)])?;
            }
        }
        let lines = {
            let mut stmt = tx.prepare_cached(
                "SELECT l.sku, p.name, p.category, l.quantity, l.unit_price
                 FROM offer_lines l JOIN products p ON p.manufacturer = l.manufacturer AND p.sku = l.sku
                 WHERE l.manufacturer = ?1 AND l.month = ?2 AND l.quantity > 0 ORDER BY l.sku",
            )?;
            let rows = stmt.query_map(params![self.name, month.0], |r| {
                Ok(OfferLine {
                    sku: r.get(0)?,
                    product: r.get(1)?,
                    category: r.get(2)?,
                    quantity: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                    unit_price: Cents(uint(r.get(4)?)),
                })
            })?;
            rows.collect::<Result<Vec<_>, rusqlite::Error>>()?
        };
        tx.commit()?;
        Ok(RecordedOffer {
            month,
            lines,
            fresh,
            lapsed,
        })
    }

    /// The distributor took the offer for `month`.
    pub fn mark_offer_accepted(&mut self, month: MonthId) -> Result<(), BooksError> {
        self.conn.execute(
            "UPDATE offers SET state = 'accepted'
             WHERE manufacturer = ?1 AND month = ?2 AND state = 'recorded'",
            params![self.name, month.0],
        )?;
        Ok(())
    }

    /// Applies every notice above the high-water mark, in seq order, and moves the mark, all in one
    /// transaction. Only after this returns may the caller ack `Applied::high_water`.
    pub fn apply_notices(&mut self, batch: &[Notice]) -> Result<Applied, BooksError> {
        let mut sorted: Vec<&Notice> = batch.iter().collect();
        sorted.sort_by_key(|n| n.seq);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut hw = NoticeSeq(uint(tx.query_row(
            "SELECT high_water FROM manufacturers WHERE name = ?1",
            [&self.name],
            |r| r.get(0),
        )?));
        let mut applied = Applied::default();
        let mut tally = SalesTally::default();
        for notice in sorted {
            if notice.seq <= hw {
                applied.duplicates += 1;
                continue;
            }
            if notice.seq.0 != hw.0 + 1 {
                applied.gaps.push(notice.seq);
            }
            let done = match &notice.body {
                NoticeBody::Sale(sale) => {
                    apply_sale(&tx, &self.name, notice.seq, sale, &mut tally)?
                }
                NoticeBody::Settlement(s) => {
                    // A settlement reads what its month sold: the sales before it must be written.
                    tally.write(&tx, &self.name)?;
                    apply_settlement(&tx, &self.name, notice.seq, s)?
                }
            };
            applied.notices.push(done);
            hw = notice.seq;
        }
        tally.write(&tx, &self.name)?;
        tx.execute(
            "UPDATE manufacturers SET high_water = ?2 WHERE name = ?1",
            params![self.name, int(hw.0)],
        )?;
        tx.commit()?;
        applied.high_water = hw;
        Ok(applied)
    }

    /// Orders whose dispatch the distributor has not yet taken, oldest first.
    pub fn pending_dispatches(&self) -> Result<Vec<OrderId>, BooksError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT order_id FROM dispatches
             WHERE manufacturer = ?1 AND reported_at_ms IS NULL ORDER BY seq",
        )?;
        let rows = stmt.query_map([&self.name], |r| r.get::<_, i64>(0))?;
        rows.map(|o| o.map(|o| OrderId(uint(o))))
            .collect::<Result<_, rusqlite::Error>>()
            .map_err(Into::into)
    }

    /// The distributor took these dispatch reports.
    pub fn mark_dispatched(&mut self, orders: &[OrderId]) -> Result<(), BooksError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE dispatches SET reported_at_ms = ?3
                 WHERE manufacturer = ?1 AND order_id = ?2 AND reported_at_ms IS NULL",
            )?;
            let now = now_ms();
            for o in orders {
                stmt.execute(params![self.name, int(o.0), now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every product's stock now.
    pub fn stock(&self) -> Result<Vec<StockLevel>, BooksError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sku, name, in_stock FROM products WHERE manufacturer = ?1 ORDER BY sku",
        )?;
        let rows = stmt.query_map([&self.name], |r| {
            Ok(StockLevel {
                sku: r.get(0)?,
                name: r.get(1)?,
                in_stock: uint(r.get(2)?),
            })
        })?;
        rows.collect::<Result<_, rusqlite::Error>>()
            .map_err(Into::into)
    }
}

/// What a batch's sales add to each product and each month's offer line, summed in memory and
/// written once per product at the end of the batch (or before a settlement, which reads them): a
/// batch of hundreds of sales of a few products is a few `UPDATE`s, not three per line.
#[derive(Default)]
struct SalesTally {
    /// Per SKU: units, revenue, and the last unit price (for a SKU we no longer make).
    products: std::collections::BTreeMap<String, (i64, u64, u64)>,
    /// Per (month, SKU): units.
    offer_lines: std::collections::BTreeMap<(u32, String), i64>,
}

impl SalesTally {
    fn add(&mut self, month: MonthId, sale: &SaleNotice) {
        for line in &sale.lines {
            let revenue = line
                .unit_price
                .times(line.quantity)
                .unwrap_or(Cents(u64::MAX));
            let product = self.products.entry(line.sku.clone()).or_default();
            product.0 += i64::from(line.quantity);
            product.1 = product.1.saturating_add(revenue.0);
            product.2 = line.unit_price.0;
            *self
                .offer_lines
                .entry((month.0, line.sku.clone()))
                .or_default() += i64::from(line.quantity);
        }
    }

    fn write(&mut self, tx: &rusqlite::Transaction<'_>, name: &str) -> Result<(), BooksError> {
        let mut product = tx.prepare_cached(
            "UPDATE products SET sold = sold + ?3, revenue = revenue + ?4
             WHERE manufacturer = ?1 AND sku = ?2",
        )?;
        let mut unknown = tx.prepare_cached(
            "INSERT INTO products (manufacturer, sku, name, category, base_price, capacity, starting,
                                   in_stock, sold, revenue)
             VALUES (?1, ?2, ?2, 'unknown', MAX(?5, 1), 0, 0, 0, ?3, ?4)",
        )?;
        for (sku, (units, revenue, price)) in std::mem::take(&mut self.products) {
            if product.execute(params![name, sku, units, int(revenue)])? == 0 {
                // A SKU we no longer make (the catalog changed): still count the sale.
                unknown.execute(params![name, sku, units, int(revenue), int(price)])?;
            }
        }
        let mut month_line = tx.prepare_cached(
            "UPDATE offer_lines SET sold = sold + ?4 WHERE manufacturer = ?1 AND month = ?2 AND sku = ?3",
        )?;
        for ((month, sku), units) in std::mem::take(&mut self.offer_lines) {
            month_line.execute(params![name, month, sku, units])?;
        }
        Ok(())
    }
}

/// Records one sale notice; its units go into `tally`, written by the caller.
fn apply_sale(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    seq: NoticeSeq,
    sale: &SaleNotice,
    tally: &mut SalesTally,
) -> Result<AppliedNotice, BooksError> {
    let units: u64 = sale.lines.iter().map(|l| u64::from(l.quantity)).sum();
    tx.prepare_cached(
        "INSERT INTO notices (manufacturer, seq, kind, month, order_id, units, applied_at_ms)
         VALUES (?1, ?2, 'sale', ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        name,
        int(seq.0),
        sale.month.0,
        int(sale.order.0),
        int(units),
        now_ms()
    ])?;
    tally.add(sale.month, sale);
    tx.prepare_cached(
        "INSERT INTO dispatches (manufacturer, order_id, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![name, int(sale.order.0), int(seq.0)])?;
    Ok(AppliedNotice::Sale {
        seq,
        month: sale.month,
        order: sale.order,
        lines: sale
            .lines
            .iter()
            .map(|l| (l.sku.clone(), l.quantity))
            .collect(),
    })
}

fn apply_settlement(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    seq: NoticeSeq,
    settlement: &Settlement,
) -> Result<AppliedNotice, BooksError> {
    let unsold: u64 = settlement.lines.iter().map(|l| u64::from(l.unsold)).sum();
    let sold: u64 = settlement.lines.iter().map(|l| u64::from(l.sold)).sum();
    tx.prepare_cached(
        "INSERT INTO notices (manufacturer, seq, kind, month, order_id, units, applied_at_ms)
         VALUES (?1, ?2, 'settlement', ?3, NULL, ?4, ?5)",
    )?
    .execute(params![
        name,
        int(seq.0),
        settlement.month.0,
        int(unsold),
        now_ms()
    ])?;
    let (returned, mismatches) =
        close_offer(tx, name, settlement.month, &settlement.lines, "settled")?;
    Ok(AppliedNotice::Settlement {
        seq,
        month: settlement.month,
        reason: settlement.reason,
        sold,
        returned,
        mismatches,
    })
}

/// Closes the offer for `month`: every line's units minus the units sold go back to stock.
/// `sold` comes from the settlement line when there is one, else from our own sale notices.
/// Idempotent in effect: each line tracks what it has returned, and only the difference moves.
fn close_offer(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    month: MonthId,
    settled: &[protocol::SettlementLine],
    state: &str,
) -> Result<(u64, Vec<String>), BooksError> {
    let lines: Vec<(String, i64, i64, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT sku, quantity, sold, returned FROM offer_lines
             WHERE manufacturer = ?1 AND month = ?2 ORDER BY sku",
        )?;
        let rows = stmt.query_map(params![name, month.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<Result<_, rusqlite::Error>>()?
    };
    let mut mismatches = Vec::new();
    for s in settled {
        if !lines.iter().any(|(sku, ..)| *sku == s.sku) {
            mismatches.push(format!(
                "{month}: settlement names {} which we did not offer",
                s.sku
            ));
        }
    }
    let mut returned_total = 0u64;
    let mut line_update = tx.prepare_cached(
        "UPDATE offer_lines SET returned = ?4 WHERE manufacturer = ?1 AND month = ?2 AND sku = ?3",
    )?;
    let mut stock_update = tx.prepare_cached(
        "UPDATE products SET in_stock = MAX(in_stock + ?3, 0), returned = returned + ?3
         WHERE manufacturer = ?1 AND sku = ?2",
    )?;
    for (sku, quantity, our_sold, returned) in lines {
        let sold = match settled.iter().find(|s| s.sku == sku) {
            Some(s) => {
                if i64::from(s.sold) != our_sold {
                    mismatches.push(format!(
                        "{month} {sku}: distributor says {} sold, our notices say {our_sold}",
                        s.sold
                    ));
                }
                if i64::from(s.offered) != quantity {
                    mismatches.push(format!(
                        "{month} {sku}: distributor says {} offered, we recorded {quantity}",
                        s.offered
                    ));
                }
                i64::from(s.sold)
            }
            None => our_sold,
        };
        let target = (quantity - sold).max(0);
        let delta = target - returned;
        if delta != 0 {
            line_update.execute(params![name, month.0, sku, target])?;
            stock_update.execute(params![name, sku, delta])?;
        }
        returned_total += uint(target);
    }
    tx.execute(
        "UPDATE offers SET state = ?3 WHERE manufacturer = ?1 AND month = ?2",
        params![name, month.0, state],
    )?;
    Ok((returned_total, mismatches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::preset;
    use protocol::{SaleLine, SettlementLine};

    fn books(dir: &tempfile::TempDir, name: &str) -> Books {
        let mut b = Books::open(&dir.path().join("books.db"), name).unwrap();
        b.sync_catalog(&preset("orchard").unwrap()).unwrap();
        b
    }

    fn sale(seq: u64, month: u32, order: u64, sku: &str, quantity: u32) -> Notice {
        Notice {
            seq: NoticeSeq(seq),
            body: NoticeBody::Sale(SaleNotice {
                month: MonthId(month),
                order: OrderId(order),
                lines: vec![SaleLine {
                    sku: sku.into(),
                    quantity,
                    unit_price: Cents(100),
                }],
            }),
        }
    }

    fn sold(b: &Books, sku: &str) -> i64 {
        b.conn
            .query_row(
                "SELECT sold FROM products WHERE manufacturer = ?1 AND sku = ?2",
                params![b.name, sku],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn in_stock(b: &Books, sku: &str) -> u64 {
        b.stock()
            .unwrap()
            .into_iter()
            .find(|s| s.sku == sku)
            .unwrap()
            .in_stock
    }

    #[test]
    fn a_notice_delivered_twice_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(&dir, "orchard");
        let first = b.apply_notices(&[sale(1, 1, 10, "APL", 3)]).unwrap();
        assert_eq!(first.high_water, NoticeSeq(1));
        assert_eq!(first.notices.len(), 1);
        // Redelivery after a reconnect: the same notice again, plus the next one.
        let again = b
            .apply_notices(&[sale(1, 1, 10, "APL", 3), sale(2, 1, 11, "APL", 2)])
            .unwrap();
        assert_eq!(again.duplicates, 1);
        assert_eq!(again.notices.len(), 1);
        assert_eq!(again.high_water, NoticeSeq(2));
        assert_eq!(sold(&b, "APL"), 5);
        // A batch that is entirely old changes nothing but still reports the mark to ack.
        let old = b.apply_notices(&[sale(2, 1, 11, "APL", 2)]).unwrap();
        assert_eq!((old.duplicates, old.high_water), (1, NoticeSeq(2)));
        assert_eq!(sold(&b, "APL"), 5);
    }

    #[test]
    fn reopening_the_books_keeps_the_high_water_mark_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = books(&dir, "orchard");
            b.apply_notices(&[sale(1, 1, 10, "PER", 4), sale(2, 1, 11, "PER", 1)])
                .unwrap();
        }
        let mut b = books(&dir, "orchard");
        assert_eq!(b.high_water().unwrap(), NoticeSeq(2));
        let applied = b.apply_notices(&[sale(2, 1, 11, "PER", 1)]).unwrap();
        assert_eq!(applied.duplicates, 1);
        assert_eq!(sold(&b, "PER"), 5);
        assert_eq!(
            b.pending_dispatches().unwrap(),
            vec![OrderId(10), OrderId(11)]
        );
    }

    #[test]
    fn manufacturers_sharing_a_file_keep_separate_books() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = books(&dir, "orchard-1");
        let b = books(&dir, "orchard-2");
        a.apply_notices(&[sale(1, 1, 10, "APL", 3)]).unwrap();
        assert_eq!(a.high_water().unwrap(), NoticeSeq(1));
        assert_eq!(b.high_water().unwrap(), NoticeSeq(0));
        assert_eq!(sold(&b, "APL"), 0);
    }

    #[test]
    fn an_offer_moves_stock_out_and_is_the_same_when_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(&dir, "orchard");
        let before = in_stock(&b, "APL");
        let offer = b.offer_for(MonthId(1), 0.5).unwrap();
        assert!(offer.fresh);
        let apl = offer.lines.iter().find(|l| l.sku == "APL").unwrap();
        assert_eq!(u64::from(apl.quantity), before / 2);
        assert_eq!(in_stock(&b, "APL"), before - before / 2);
        // Production in between must not change a re-sent offer.
        b.add_production(&[("APL".into(), 50)]).unwrap();
        let again = b.offer_for(MonthId(1), 0.5).unwrap();
        assert!(!again.fresh);
        assert_eq!(again.lines, offer.lines);
        assert_eq!(in_stock(&b, "APL"), before - before / 2 + 50);
    }

    /// Offers month 1 and returns how many units of `sku` went into it.
    fn offered_in_month_1(b: &mut Books, sku: &str) -> u32 {
        let offer = b.offer_for(MonthId(1), 1.0).unwrap();
        offer.lines.iter().find(|l| l.sku == sku).unwrap().quantity
    }

    /// Month 1's settlement, as notice `seq`, of one line: `sold` of the `offered` units of `sku`.
    fn settlement(seq: u64, sku: &str, offered: u32, sold: u32) -> Notice {
        Notice {
            seq: NoticeSeq(seq),
            body: NoticeBody::Settlement(Settlement {
                month: MonthId(1),
                reason: CloseReason::TimeUp,
                lines: vec![SettlementLine {
                    sku: sku.into(),
                    offered,
                    sold,
                    unsold: offered - sold,
                }],
            }),
        }
    }

    #[test]
    fn settlement_returns_unsold_units_to_stock_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(&dir, "orchard");
        let start = in_stock(&b, "BAN");
        let offered = offered_in_month_1(&mut b, "BAN");
        assert_eq!(in_stock(&b, "BAN"), 0);
        b.apply_notices(&[sale(1, 1, 10, "BAN", 7)]).unwrap();
        let settle = settlement(2, "BAN", offered, 7);
        let applied = b.apply_notices(std::slice::from_ref(&settle)).unwrap();
        match &applied.notices[0] {
            AppliedNotice::Settlement { mismatches, .. } => assert!(mismatches.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(in_stock(&b, "BAN"), start - 7);
        // Delivered again: no second return.
        b.apply_notices(&[settle]).unwrap();
        assert_eq!(in_stock(&b, "BAN"), start - 7);
        // Lines the settlement did not name (APL etc.) came back whole.
        assert_eq!(
            in_stock(&b, "APL"),
            preset("orchard").unwrap().products[0].starting_stock
        );
    }

    #[test]
    fn sales_and_their_settlement_in_one_delivery_settle_what_was_sold() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(&dir, "orchard");
        let start = in_stock(&b, "BAN");
        let offered = offered_in_month_1(&mut b, "BAN");
        let settle = settlement(3, "BAN", offered, 7);
        // The settlement reads the month's sales from the books: the two sales before it in the same
        // batch must already be there.
        let applied = b
            .apply_notices(&[sale(1, 1, 10, "BAN", 4), sale(2, 1, 11, "BAN", 3), settle])
            .unwrap();
        match &applied.notices[2] {
            AppliedNotice::Settlement { mismatches, .. } => {
                assert!(mismatches.is_empty(), "{mismatches:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(in_stock(&b, "BAN"), start - 7);
    }

    #[test]
    fn an_offer_never_settled_lapses_when_the_next_month_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(&dir, "orchard");
        let start = in_stock(&b, "ORA");
        b.offer_for(MonthId(3), 1.0).unwrap();
        b.apply_notices(&[sale(1, 3, 10, "ORA", 5)]).unwrap();
        let next = b.offer_for(MonthId(4), 0.0).unwrap();
        assert_eq!(next.lapsed, vec![MonthId(3)]);
        assert!(next.lines.is_empty());
        assert_eq!(in_stock(&b, "ORA"), start - 5);
    }

    #[test]
    fn production_stops_at_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(&dir, "orchard");
        let apl = &preset("orchard").unwrap().products[0];
        let added = b.add_production(&[("APL".into(), 1_000_000)]).unwrap();
        assert_eq!(added, vec![apl.capacity - apl.starting_stock]);
        assert_eq!(in_stock(&b, "APL"), apl.capacity);
        assert_eq!(b.add_production(&[("APL".into(), 5)]).unwrap(), vec![0]);
    }
}
