//! The writer: one thread owns the write connection and commits in groups.
//!
//! It takes every job that is waiting (up to [`MAX_BATCH`]), runs them all in one `BEGIN IMMEDIATE`
//! transaction, each inside its own savepoint, and answers each job only after `COMMIT`. One fsync
//! then covers a whole batch, which is what makes durable checkouts fast.
//!
//! Jobs from the market (checkouts, carts, offers, months, acks) were already validated against the
//! market's live state. If one of them fails anyway, memory and disk disagree, and the writer stops the
//! server rather than carry on with wrong data; a restart rebuilds memory from disk.

use super::account_orders::Index;
use super::{now_ms, ssh_keys, StoreError};
use crate::market::{CheckoutPlan, Committed, OfferPlan};
use crate::push::Registry;
use protocol::*;
use rusqlite::{params, Connection};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The most jobs in one transaction. Measured on the 2-core bench box with 256 customers: 64 gave
/// 10.0k checkouts/s, 256 gave 11.3k/s at a lower p50 and the same p99 (see bench/README.md).
pub const MAX_BATCH: usize = 256;

/// One unit of work for the writer.
pub struct Job {
    /// What to write.
    pub op: Op,
    /// Whom to tell after the commit.
    pub done: Done,
}

/// What to write.
#[derive(Debug)]
pub enum Op {
    /// A checkout: order, lines, stock, outbox notices, and the cart if it was bought.
    Checkout(Box<CheckoutPlan>),
    /// Cart lines to upsert (quantity 0 deletes).
    Cart {
        /// Whose cart.
        account: AccountId,
        /// The lines.
        writes: Vec<CartItem>,
    },
    /// An accepted offer.
    Offer(OfferPlan),
    /// A month opened.
    OpenMonth(MonthView, Vec<ManufacturerId>),
    /// A month closed, with one settlement notice per manufacturer that offered.
    CloseMonth {
        /// Which month.
        month: MonthId,
        /// When.
        at_ms: u64,
        /// Why.
        reason: CloseReason,
        /// The settlements.
        settlements: Vec<(ManufacturerId, Notice)>,
    },
    /// A new manufacturer name.
    RegisterManufacturer(ManufacturerId, String),
    /// A manufacturer acked notices `(after, through]`: confirm the order lines they cover.
    Ack {
        /// Who.
        manufacturer: ManufacturerId,
        /// Previously acked.
        after: NoticeSeq,
        /// Newly acked.
        through: NoticeSeq,
    },
    /// A manufacturer dispatched its lines of these orders. Answers [`Outcome::Dispatched`].
    Dispatch {
        /// Who.
        manufacturer: ManufacturerId,
        /// Which orders.
        orders: Vec<OrderId>,
    },
    /// A new account. Answers [`Outcome::Account`].
    CreateAccount {
        /// First name.
        first_name: String,
        /// Last name.
        last_name: String,
        /// Email as typed.
        email: String,
        /// argon2id PHC string.
        password_hash: String,
    },
    /// Changes to an account.
    UpdateAccount {
        /// Which.
        account: AccountId,
        /// New first name.
        first_name: Option<String>,
        /// New last name.
        last_name: Option<String>,
        /// New email.
        email: Option<String>,
        /// New password hash.
        password_hash: Option<String>,
        /// With a new password: the one session that survives it (the one that changed it).
        keep_session: Option<[u8; 32]>,
    },
    /// Attach, replace (`Some`) or remove (`None`) the card.
    SetCard(AccountId, Option<CardView>),
    /// Delete an account; its orders stay, detached.
    DeleteAccount(AccountId),
    /// Store a session token's hash.
    CreateSession {
        /// sha256 of the token.
        token_hash: [u8; 32],
        /// Whose.
        account: AccountId,
        /// Expiry.
        expires_at_ms: u64,
    },
    /// Revoke a session.
    DeleteSession([u8; 32]),
    /// A wrong password: the throttle's counts for the pair and the account, as they are now.
    LoginFailed {
        /// The email key that was tried.
        account_key: String,
        /// The client's address.
        address: String,
        /// The pair's failures.
        pair: crate::throttle::Failures,
        /// The account's failures.
        account: crate::throttle::Failures,
    },
    /// Failures last counted before `before_ms` are past the throttle's window: delete them, so that a
    /// spray of made-up emails does not grow the table for as long as the server runs.
    ForgetLoginFailures {
        /// The cut: now minus the window.
        before_ms: u64,
    },
    /// A successful login: the counts start afresh and the address becomes known to the account.
    LoginSucceeded {
        /// The email key.
        account_key: String,
        /// The client's address.
        address: String,
        /// When.
        at_ms: u64,
    },
    /// A manufacturer was asked for its offer in an open month: it is expected to offer in it
    /// (a no-op for one that was connected when the month opened).
    ExpectOffer {
        /// The month.
        month: MonthId,
        /// Who was asked.
        manufacturer: ManufacturerId,
    },
    /// Link an SSH key fingerprint to an account ([`StoreError::Duplicate`] if another has it).
    LinkKey(String, AccountId),
    /// Unlink an SSH key fingerprint from an account ([`StoreError::NotFound`] if not linked to it).
    UnlinkKey(String, AccountId),
    /// Store (`Some`) or forget (`None`) the hash of a manufacturer's credential.
    SetCredential(ManufacturerId, Option<[u8; 32]>),
}

/// What a job produced, for callers that wait on [`Done::Outcome`].
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to report.
    Done,
    /// The new account's id.
    Account(AccountId),
    /// A new session, and the hashes of the older tokens it evicted (the account's cap).
    Session {
        /// Evicted token hashes.
        evicted: Vec<[u8; 32]>,
    },
    /// The orders of a dispatch report that hold none of the manufacturer's lines.
    Dispatched {
        /// Those orders; nothing was written for them.
        unknown: Vec<OrderId>,
    },
}

/// Whom to tell after the commit.
pub enum Done {
    /// Nobody.
    Nothing,
    /// A client: send this answer once the job is durable.
    Reply(
        oneshot::Sender<Result<Reply, WireError>>,
        Result<Reply, WireError>,
    ),
    /// A caller that wants the outcome (or the error) of its own job.
    Outcome(oneshot::Sender<Result<Outcome, StoreError>>),
}

/// Where the writer reports committed work.
#[derive(Clone)]
pub struct Effects {
    /// Pushes to customers and manufacturer relays.
    pub registry: Arc<Registry>,
    /// Reports committed checkouts back to the market.
    pub committed: mpsc::UnboundedSender<Committed>,
    /// Cancelled on a fatal error, to stop the server.
    pub fatal: CancellationToken,
}

/// A handle for submitting jobs.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the writer thread on an open connection.
    pub fn start(
        conn: Connection,
        effects: Effects,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, effects))?;
        Ok((Writer { tx }, handle))
    }

    /// A handle whose jobs another back end's writer drains from `tx`'s receiver (PostgreSQL's).
    pub(crate) fn over(tx: mpsc::UnboundedSender<Job>) -> Writer {
        Writer { tx }
    }

    /// Queues a job. Fails only when the writer has stopped.
    pub fn submit(&self, op: Op, done: Done) -> Result<(), StoreError> {
        self.tx
            .send(Job { op, done })
            .map_err(|_| StoreError::Closed)
    }

    /// Runs one job and waits for its outcome.
    pub async fn run(&self, op: Op) -> Result<Outcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(op, Done::Outcome(tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Per-batch side effects, applied after the commit (by either store's writer).
#[derive(Default)]
pub(crate) struct After {
    pub(crate) committed: Committed,
    pub(crate) statuses: Vec<(AccountId, OrderId, ListingId, LineStatus)>,
}

fn run(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>, effects: Effects) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut index = Index::new();
    // `schema::open_writer` turns them on.
    let mut foreign_keys = true;
    let mut checkpoints = super::checkpoint::Checkpoints::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Foreign keys guard what sessions write (accounts, sessions, keys, and the cascades of a
        // deleted account). A batch of market jobs only was validated against the market's live
        // state, and the CHECK constraints stay as the backstop, so it skips the parent look-ups
        // (about 6k instructions per checkout). The pragma only takes effect outside a transaction,
        // and every change of it expires every prepared statement, so only jobs that need the keys
        // switch them on (see `needs_foreign_keys`).
        let want_keys = batch.iter().any(needs_foreign_keys);
        if want_keys != foreign_keys {
            if let Err(e) = conn.pragma_update(None, "foreign_keys", want_keys) {
                tracing::error!(error = %e, "cannot switch foreign keys; stopping the server");
                effects.fatal.cancel();
                for job in batch.drain(..) {
                    fail(job.done, StoreError::Closed);
                }
                break;
            }
            foreign_keys = want_keys;
        }
        if let Err(e) = commit_batch(&mut conn, &mut batch, &mut index, &effects) {
            tracing::error!(error = %e, "commit failed; stopping the server to keep memory and disk in step");
            effects.fatal.cancel();
            for job in batch.drain(..) {
                fail(job.done, StoreError::Closed);
            }
            break;
        }
        // The batch is answered: copying the WAL into the main file now delays none of it.
        if let Err(e) = checkpoints.committed(&conn) {
            tracing::warn!(error = %e, "checkpoint failed; the WAL still holds every commit");
        }
    }
    // Answer anything still queued so no client waits forever.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        fail(job.done, StoreError::Closed);
    }
    if !effects.fatal.is_cancelled() {
        // A clean stop: mark it and checkpoint, so the main file holds everything (see `lifecycle`).
        if let Err(e) = super::lifecycle::mark(&conn, false) {
            tracing::error!(error = %e, "cannot mark the database stopped; the -wal file still holds every commit");
        }
    }
}

fn fail(done: Done, e: StoreError) {
    match done {
        Done::Nothing => {}
        Done::Reply(tx, _) => {
            let _ = tx.send(Err(WireError::new(
                ErrorCode::Internal,
                format!("nothing was changed: {e}"),
            )));
        }
        Done::Outcome(tx) => {
            let _ = tx.send(Err(e));
        }
    }
}

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    index: &mut Index,
    effects: &Effects,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Rides on this batch's commit: no fsync of its own.
    index
        .merge_if_due(&tx)
        .map_err(|e| StoreError::Corrupt(format!("indexing orders failed: {e}")))?;
    let mut after = After::default();
    let mut results: Vec<Result<Outcome, StoreError>> = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let job = &batch[i];
        if market_job(job) && matches!(job.op, Op::Checkout(_)) {
            // A run of checkouts between two other jobs is written with a few statements in all.
            let run: Vec<&CheckoutPlan> = batch[i..]
                .iter()
                .take_while(|job| market_job(job))
                .map_while(|job| match &job.op {
                    Op::Checkout(plan) => Some(&**plan),
                    _ => None,
                })
                .collect();
            super::checkouts::write(&tx, &run)
                .map_err(|e| StoreError::Corrupt(format!("market job failed: {e}")))?;
            for plan in &run {
                after.checkout(plan);
                results.push(Ok(Outcome::Done));
            }
            i += run.len();
            continue;
        }
        i += 1;
        if market_job(job) {
            // From the market, validated against live state: a failure means memory and disk
            // disagree, and the whole batch is abandoned (see the module docs). No savepoint needed.
            apply(&tx, &job.op, &mut after)
                .map_err(|e| StoreError::Corrupt(format!("market job failed: {e}")))?;
            results.push(Ok(Outcome::Done));
            continue;
        }
        // From a session (sign-up, account changes): a failure such as a taken email is an
        // answer for that client alone, so it runs in a savepoint the batch can roll back to.
        tx.prepare_cached("SAVEPOINT job")?.execute([])?;
        match apply(&tx, &job.op, &mut after) {
            Ok(outcome) => {
                tx.prepare_cached("RELEASE job")?.execute([])?;
                results.push(Ok(outcome));
            }
            Err(e) => {
                tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
                tx.prepare_cached("RELEASE job")?.execute([])?;
                results.push(Err(e));
            }
        }
    }
    tx.commit()?;
    index.wrote(after.committed.checkouts.len());
    deliver(batch, results, after, effects);
    Ok(())
}

/// A job from the market, validated against live state: it cannot fail unless memory and disk
/// disagree.
fn market_job(job: &Job) -> bool {
    matches!(job.done, Done::Reply(..) | Done::Nothing)
}

/// Whether a job needs SQLite to check foreign keys: a session's job that inserts rows naming a
/// parent, or deletes a parent whose children cascade. A dispatch report only rewrites the status of
/// lines it first found, never a key column, so it is left out: manufacturers report one per order,
/// and switching the pragma for each would re-prepare every statement of the next market batch
/// (measured: `sqlite3Reprepare` was 13 % of the writer's CPU in row 3).
fn needs_foreign_keys(job: &Job) -> bool {
    !market_job(job) && !matches!(job.op, Op::Dispatch { .. })
}

/// Durable now: tell everyone. Both stores' writers call this after their COMMIT. The notices go to
/// the relays in memory, so that delivering them does not read and rebuild them from the database
/// (`read::notices` is for catching up).
pub(crate) fn deliver(
    batch: &mut Vec<Job>,
    results: Vec<Result<Outcome, StoreError>>,
    after: After,
    effects: &Effects,
) {
    let mut notices = Vec::new();
    for (job, result) in batch.drain(..).zip(results) {
        match job.op {
            Op::Checkout(plan) if result.is_ok() => notices.extend(plan.notices),
            Op::CloseMonth { settlements, .. } if result.is_ok() => notices.extend(settlements),
            _ => {}
        }
        match (job.done, result) {
            (Done::Nothing, _) => {}
            (Done::Reply(tx, reply), _) => {
                let _ = tx.send(reply);
            }
            (Done::Outcome(tx), result) => {
                let _ = tx.send(result);
            }
        }
    }
    if !after.committed.checkouts.is_empty() {
        let _ = effects.committed.send(after.committed);
    }
    if !notices.is_empty() {
        effects.registry.outbox_committed(notices);
    }
    // One push per order and status, naming its lines: an ack confirms all of a maker's lines of an
    // order at once (row 3, three interleaved pairs: 47.7k → 48.9k/s against one push per line).
    let mut moved: BTreeMap<(AccountId, OrderId, LineStatus), Vec<ListingId>> = BTreeMap::new();
    for (account, order, listing, status) in after.statuses {
        moved
            .entry((account, order, status))
            .or_default()
            .push(listing);
    }
    for ((account, order, status), listings) in moved {
        effects.registry.push_to_account(
            account,
            Event::OrderStatus {
                order,
                listings,
                status,
            },
        );
    }
}

impl After {
    fn checkout(&mut self, plan: &CheckoutPlan) {
        self.committed.checkouts.push(plan.order.checkout_id);
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::from_sqlite(e)
}

fn apply(conn: &Connection, op: &Op, after: &mut After) -> Result<Outcome, StoreError> {
    match op {
        Op::Checkout(plan) => {
            super::checkouts::write(conn, &[plan])?;
            after.checkout(plan);
        }
        Op::Cart { account, writes } => write_cart(conn, *account, writes)?,
        Op::Offer(plan) => {
            for listing in &plan.listings {
                conn.prepare_cached(
                    "INSERT INTO listings (id, manufacturer_id, sku, product, category) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id) DO UPDATE SET product = excluded.product, category = excluded.category",
                )?
                .execute(params![listing.id.0, listing.manufacturer.0, listing.sku, listing.product, listing.category])
                .map_err(sql)?;
            }
            for (listing, stock) in &plan.stock {
                conn.prepare_cached(
                    "INSERT INTO offers (month_id, listing_id, unit_price, offered, remaining, product)
                     VALUES (?1, ?2, ?3, ?4, ?5, (SELECT product FROM listings WHERE id = ?2))",
                )?
                .execute(params![plan.month.0, listing.0, stock.unit_price.0 as i64, stock.offered, stock.remaining])
                .map_err(sql)?;
            }
            conn.prepare_cached(
                "UPDATE month_manufacturers SET offered = 1 WHERE month_id = ?1 AND manufacturer_id = ?2",
            )?
            .execute(params![plan.month.0, plan.manufacturer.0])?;
        }
        Op::OpenMonth(month, expected) => {
            conn.prepare_cached(
                "INSERT INTO months (id, opened_at_ms, ends_at_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                month.id.0,
                month.opened_at_ms as i64,
                month.ends_at_ms as i64
            ])
            .map_err(sql)?;
            for m in expected {
                conn.prepare_cached(
                    "INSERT INTO month_manufacturers (month_id, manufacturer_id) VALUES (?1, ?2)",
                )?
                .execute(params![month.id.0, m.0])?;
            }
        }
        Op::CloseMonth {
            month,
            at_ms,
            reason,
            settlements,
        } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE months SET closed_at_ms = ?2, close_reason = ?3 WHERE id = ?1 AND closed_at_ms IS NULL",
                )?
                .execute(params![month.0, *at_ms as i64, close_reason_code(*reason)])?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
            for (manufacturer, notice) in settlements {
                insert_settlement(conn, *manufacturer, notice)?;
            }
        }
        Op::SetCredential(id, hash) => {
            crate::identity::credentials::write(conn, *id, hash.as_ref())?
        }
        Op::RegisterManufacturer(id, name) => {
            conn.prepare_cached("INSERT INTO manufacturers (id, name) VALUES (?1, ?2)")?
                .execute(params![id.0, name])
                .map_err(sql)?;
        }
        Op::Ack {
            manufacturer,
            after: from,
            through,
        } => {
            conn.prepare_cached("UPDATE manufacturers SET acked_seq = ?2 WHERE id = ?1")?
                .execute(params![manufacturer.0, through.0 as i64])?;
            // The lines stay as they are: `acked_seq` and this row confirm them (migration 8).
            conn.prepare_cached(
                "INSERT OR IGNORE INTO acks (manufacturer_id, through_seq, at_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![manufacturer.0, through.0 as i64, now_ms() as i64])?;
            // Whom to tell: the buyers of the lines these notices confirm (read, not rewritten).
            let mut stmt = conn.prepare_cached(
                "SELECT l.order_id, l.listing_id, d.account_id
                 FROM outbox o JOIN order_lines l ON l.order_id = o.order_id AND l.manufacturer_id = o.manufacturer_id
                 JOIN orders d ON d.id = o.order_id
                 WHERE o.manufacturer_id = ?1 AND o.seq > ?2 AND o.seq <= ?3 AND l.status = 0",
            )?;
            let rows = stmt.query_map(
                params![manufacturer.0, from.0 as i64, through.0 as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )?;
            for row in rows {
                let (order, listing, account) = row?;
                if let Some(account) = account {
                    after.statuses.push((
                        AccountId(account as u64),
                        OrderId(order as u64),
                        ListingId(listing as u32),
                        LineStatus::Confirmed,
                    ));
                }
            }
        }
        Op::Dispatch {
            manufacturer,
            orders,
        } => {
            let unknown = dispatch(conn, *manufacturer, orders, after)?;
            return Ok(Outcome::Dispatched { unknown });
        }
        Op::CreateAccount {
            first_name,
            last_name,
            email,
            password_hash,
        } => {
            conn.prepare_cached(
                "INSERT INTO accounts (first_name, last_name, email, email_key, password_hash, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![first_name, last_name, email, crate::email::key(email), password_hash, now_ms() as i64])
            .map_err(sql)?;
            return Ok(Outcome::Account(AccountId(conn.last_insert_rowid() as u64)));
        }
        Op::UpdateAccount {
            account,
            first_name,
            last_name,
            email,
            password_hash,
            keep_session,
        } => {
            // The key is folded here, the same way as at sign-up and login (SQLite's lower() folds
            // only ASCII).
            let email_key = email.as_deref().map(crate::email::key);
            let changed = conn
                .prepare_cached(
                    "UPDATE accounts SET first_name = coalesce(?2, first_name), last_name = coalesce(?3, last_name),
                       email = coalesce(?4, email), email_key = coalesce(?6, email_key),
                       password_hash = coalesce(?5, password_hash)
                     WHERE id = ?1",
                )?
                .execute(params![account.0 as i64, first_name, last_name, email, password_hash, email_key])
                .map_err(sql)?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
            if password_hash.is_some() {
                super::logins::revoke_other_sessions(conn, *account, keep_session.as_ref())?;
            }
        }
        Op::SetCard(account, card) => {
            let (brand, last4, month, year) = match card {
                Some(c) => (
                    Some(crate::card::brand_name(c.brand)),
                    Some(c.last4.as_str()),
                    Some(c.exp_month),
                    Some(c.exp_year),
                ),
                None => (None, None, None, None),
            };
            conn.prepare_cached(
                "UPDATE accounts SET card_brand = ?2, card_last4 = ?3, card_exp_month = ?4, card_exp_year = ?5 WHERE id = ?1",
            )?
            .execute(params![account.0 as i64, brand, last4, month, year])?;
        }
        Op::DeleteAccount(account) => {
            conn.prepare_cached("DELETE FROM cart_lines WHERE account_id = ?1")?
                .execute([account.0 as i64])?;
            conn.prepare_cached("DELETE FROM sessions WHERE account_id = ?1")?
                .execute([account.0 as i64])?;
            super::account_orders::detach(conn, *account)?;
            let changed = conn
                .prepare_cached("DELETE FROM accounts WHERE id = ?1")?
                .execute([account.0 as i64])?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
        }
        Op::CreateSession {
            token_hash,
            account,
            expires_at_ms,
        } => {
            let evicted = super::logins::create_session(
                conn,
                token_hash,
                *account,
                *expires_at_ms,
                crate::auth::MAX_SESSIONS,
                now_ms(),
            )?;
            return Ok(Outcome::Session { evicted });
        }
        Op::DeleteSession(token_hash) => {
            conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute([&token_hash[..]])?;
        }
        Op::LoginFailed {
            account_key,
            address,
            pair,
            account,
        } => super::logins::login_failed(conn, account_key, address, *pair, *account)?,
        Op::ForgetLoginFailures { before_ms } => {
            super::logins::forget_failures(conn, *before_ms)?;
        }
        Op::LoginSucceeded {
            account_key,
            address,
            at_ms,
        } => super::logins::login_succeeded(conn, account_key, address, *at_ms)?,
        Op::ExpectOffer {
            month,
            manufacturer,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO month_manufacturers (month_id, manufacturer_id) VALUES (?1, ?2)",
            )?
            .execute(params![month.0, manufacturer.0])?;
        }
        Op::LinkKey(fingerprint, account) => ssh_keys::link(conn, fingerprint, *account, now_ms())?,
        Op::UnlinkKey(fingerprint, account) => ssh_keys::unlink(conn, fingerprint, *account)?,
    }
    Ok(Outcome::Done)
}

/// Marks `maker`'s lines of each order dispatched and queues the buyers' pushes. Returns the orders
/// that hold none of its lines (nothing is written for them).
fn dispatch(
    conn: &Connection,
    maker: ManufacturerId,
    orders: &[OrderId],
    after: &mut After,
) -> Result<Vec<OrderId>, StoreError> {
    let mut mine = conn.prepare_cached(
        "SELECT count(*) FROM order_lines WHERE order_id = ?1 AND manufacturer_id = ?2",
    )?;
    let mut mark = conn.prepare_cached(
        "UPDATE order_lines SET status = 2, status_at_ms = ?3
         WHERE order_id = ?1 AND manufacturer_id = ?2 AND status < 2
         RETURNING listing_id, (SELECT account_id FROM orders WHERE orders.id = order_id)",
    )?;
    let now = now_ms() as i64;
    let mut unknown = Vec::new();
    for order in orders {
        let rows = mark.query_map(params![order.0 as i64, maker.0, now], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        let mut marked = false;
        for row in rows {
            let (listing, account) = row?;
            marked = true;
            if let Some(account) = account {
                after.statuses.push((
                    AccountId(account as u64),
                    *order,
                    ListingId(listing as u32),
                    LineStatus::Dispatched,
                ));
            }
        }
        // Nothing marked: a repeat (a no-op), or an order without this maker's lines. Only then is
        // the second statement needed.
        if !marked && mine.query_row(params![order.0 as i64, maker.0], |r| r.get::<_, i64>(0))? == 0
        {
            unknown.push(*order);
        }
    }
    Ok(unknown)
}

fn write_cart(
    conn: &Connection,
    account: AccountId,
    writes: &[CartItem],
) -> Result<(), StoreError> {
    for line in writes {
        if line.quantity == 0 {
            conn.prepare_cached(
                "DELETE FROM cart_lines WHERE account_id = ?1 AND listing_id = ?2",
            )?
            .execute(params![account.0 as i64, line.listing.0])?;
        } else {
            conn.prepare_cached(
                "INSERT INTO cart_lines (account_id, listing_id, quantity, position)
                 VALUES (?1, ?2, ?3, (SELECT coalesce(max(position), 0) + 1 FROM cart_lines WHERE account_id = ?1))
                 ON CONFLICT(account_id, listing_id) DO UPDATE SET quantity = excluded.quantity",
            )?
            .execute(params![account.0 as i64, line.listing.0, line.quantity])
            .map_err(sql)?;
        }
    }
    Ok(())
}

/// A settlement keeps its encoded body (a sale's notice is written by `checkouts`).
fn insert_settlement(
    conn: &Connection,
    manufacturer: ManufacturerId,
    notice: &Notice,
) -> Result<(), StoreError> {
    let body = protocol::codec::encode_payload(&notice.body, usize::MAX)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached("INSERT INTO outbox (manufacturer_id, seq, body) VALUES (?1, ?2, ?3)")?
        .execute(params![manufacturer.0, notice.seq.0 as i64, body])
        .map_err(sql)?;
    Ok(())
}

/// The stored code of a close reason.
pub fn close_reason_code(reason: CloseReason) -> i64 {
    match reason {
        CloseReason::SoldOut => 0,
        CloseReason::AllCustomersDone => 1,
        CloseReason::TimeUp => 2,
        CloseReason::Operator => 3,
    }
}

/// The close reason of a stored code.
pub fn close_reason_from_code(code: i64) -> CloseReason {
    match code {
        0 => CloseReason::SoldOut,
        1 => CloseReason::AllCustomersDone,
        3 => CloseReason::Operator,
        _ => CloseReason::TimeUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(op: Op, from_session: bool) -> Job {
        let done = match from_session {
            true => Done::Outcome(oneshot::channel().0),
            false => Done::Nothing,
        };
        Job { op, done }
    }

    #[test]
    fn only_session_jobs_that_write_keys_switch_foreign_keys_on_and_dispatch_reports_do_not() {
        let (account, maker) = (AccountId(1), ManufacturerId(1));
        let dispatch = Op::Dispatch {
            manufacturer: maker,
            orders: vec![OrderId(1)],
        };
        assert!(!needs_foreign_keys(&job(dispatch, true)));
        let cart = Op::Cart {
            account,
            writes: vec![],
        };
        assert!(!needs_foreign_keys(&job(cart, false)));
        let session = Op::CreateSession {
            token_hash: [0; 32],
            account,
            expires_at_ms: 0,
        };
        assert!(needs_foreign_keys(&job(session, true)));
        assert!(needs_foreign_keys(&job(Op::DeleteAccount(account), true)));
        let key = Op::LinkKey("SHA256:x".into(), account);
        assert!(needs_foreign_keys(&job(key, true)));
    }
}
