//! The PostgreSQL writer: one task owns the write connection and commits in groups, as the SQLite
//! writer does (see [`crate::store::writer`], whose jobs it takes unchanged).
//!
//! A batch is one transaction. It starts by checking, under a share lock on the lease row, that this
//! node's epoch is still the current one: a node that lost the lease (it was paused, or cut off) fails
//! its next commit without writing anything, and stops serving. A takeover's epoch increment waits for
//! that share lock, so no transaction of the old holder can commit after it.
//!
//! In cluster mode every node also runs an *unfenced* writer (`epoch` `None`) for the writes that
//! are not the market's: sign-ups, sessions, login throttling, cards, account changes, dispatch
//! reports and SSH keys (see [`crate::broker::edge`] for why they need no fence).
//!
//! Consecutive checkouts in a batch become five multi-row statements over `UNNEST` arrays (orders,
//! lines, stock, outbox, carts), so a batch of 256 checkouts costs a handful of round trips and one
//! fsync. Replies go out only after `COMMIT`.

use super::{pg, StoreError};
use crate::market::CheckoutPlan;
use crate::store::writer::{
    close_reason_code, deliver, After, Done, Effects, Job, Op, Outcome, Writer, MAX_BATCH,
};
use crate::store::{checkout_key, now_ms};
use protocol::*;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement, Transaction};

const FENCE: &str = "SELECT 1 FROM lease WHERE id = 1 AND epoch = $1 FOR SHARE";
const ORDERS: &str = "INSERT INTO orders (id, checkout_id, account_id, month_id, placed_at_ms, total)
     SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])";
const LINES: &str = "INSERT INTO order_lines (order_id, listing_id, manufacturer_id, product, manufacturer_name, unit_price, quantity)
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])";
const STOCK: &str = "UPDATE offers SET remaining = s.remaining
     FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS s(month_id, listing_id, remaining)
     WHERE offers.month_id = s.month_id AND offers.listing_id = s.listing_id";
const OUTBOX: &str = "INSERT INTO outbox (manufacturer_id, seq, order_id, body)
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[])";
const CLEAR_CARTS: &str = "DELETE FROM cart_lines WHERE account_id = ANY($1::bigint[])";

/// The statements every batch runs, parsed and planned once per connection (a statement sent as text
/// costs an extra round trip and a parse each time).
struct Prepared {
    fence: Statement,
    orders: Statement,
    lines: Statement,
    stock: Statement,
    outbox: Statement,
    clear_carts: Statement,
}

impl Prepared {
    async fn on(client: &Client) -> Result<Prepared, StoreError> {
        let prepare = |sql: &'static str| async move { client.prepare(sql).await.map_err(pg) };
        Ok(Prepared {
            fence: prepare(FENCE).await?,
            orders: prepare(ORDERS).await?,
            lines: prepare(LINES).await?,
            stock: prepare(STOCK).await?,
            outbox: prepare(OUTBOX).await?,
            clear_carts: prepare(CLEAR_CARTS).await?,
        })
    }
}

/// Starts the writer task on a new connection to `url`, writing under lease epoch `epoch` (`None`:
/// unfenced, for an edge's own writes).
pub async fn start(
    url: &str,
    epoch: Option<i64>,
    effects: Effects,
) -> Result<(Writer, tokio::task::JoinHandle<()>), StoreError> {
    let client = super::connect(url, super::Purpose::Work).await?;
    // A commit is acknowledged only once it is on disk. A writer paused inside a transaction holds
    // the lease row's share lock; PostgreSQL ends it after 2 s so that a standby can take over.
    client
        .batch_execute(
            "SET synchronous_commit = on; SET idle_in_transaction_session_timeout = '2s'",
        )
        .await
        .map_err(pg)?;
    let prepared = Prepared::on(&client).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(client, prepared, rx, effects, epoch, url.to_string()));
    Ok((Writer::over(tx), task))
}

async fn run(
    mut client: Client,
    mut prepared: Prepared,
    mut rx: mpsc::UnboundedReceiver<Job>,
    effects: Effects,
    epoch: Option<i64>,
    url: String,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if epoch.is_none() && client.is_closed() {
            // The store restarted since the last batch: connect again before writing this one.
            (client, prepared) = reconnect(&url, &mut rx).await;
        }
        if let Err(e) = commit_batch(&mut client, &prepared, &mut batch, &effects, epoch).await {
            if epoch.is_none() {
                // An edge's writer holds no state to keep in step with the store: answer the
                // batch with the error (nothing was written) and connect again.
                tracing::warn!(error = %e, "commit failed; the edge's writer reconnects");
                for job in batch.drain(..) {
                    fail(job.done, &e);
                }
                (client, prepared) = reconnect(&url, &mut rx).await;
                continue;
            }
            match &e {
                StoreError::Fenced(_) => {
                    tracing::warn!(error = %e, "the lease moved to another node; nothing of this batch was written")
                }
                _ => {
                    tracing::error!(error = %e, "commit failed; this node stops serving and reloads from the store")
                }
            }
            effects.fatal.cancel();
            for job in batch.drain(..) {
                fail(job.done, &e);
            }
            break;
        }
    }
    rx.close();
    while let Ok(job) = rx.try_recv() {
        fail(job.done, &StoreError::Closed);
    }
}

/// Connects again (an unfenced writer, after a failed commit), refusing the jobs that arrive
/// meanwhile so that no client waits on a store that is away.
async fn reconnect(url: &str, rx: &mut mpsc::UnboundedReceiver<Job>) -> (Client, Prepared) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        while let Ok(job) = rx.try_recv() {
            fail(job.done, &StoreError::Closed);
        }
        let Ok(client) = super::connect(url, super::Purpose::Work).await else {
            continue;
        };
        if client
            .batch_execute(
                "SET synchronous_commit = on; SET idle_in_transaction_session_timeout = '2s'",
            )
            .await
            .is_err()
        {
            continue;
        }
        if let Ok(prepared) = Prepared::on(&client).await {
            tracing::info!("the edge's writer reconnected");
            return (client, prepared);
        }
    }
}

/// Answers a job whose batch did not commit. The client may retry (a checkout under the same id).
fn fail(done: Done, e: &StoreError) {
    match done {
        Done::Nothing => {}
        Done::Reply(tx, _) => {
            let _ = tx.send(Err(WireError::new(
                ErrorCode::ShuttingDown,
                format!("store unavailable, nothing was changed; retry shortly ({e})"),
            )));
        }
        Done::Outcome(tx) => {
            let _ = tx.send(Err(match e {
                StoreError::Fenced(epoch) => StoreError::Fenced(*epoch),
                _ => StoreError::Postgres(e.to_string()),
            }));
        }
    }
}

async fn commit_batch(
    client: &mut Client,
    st: &Prepared,
    batch: &mut Vec<Job>,
    effects: &Effects,
    epoch: Option<i64>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    if let Some(epoch) = epoch {
        let current = tx.query_opt(&st.fence, &[&epoch]).await.map_err(pg)?;
        if current.is_none() {
            return Err(StoreError::Fenced(epoch));
        }
    }
    let mut after = After::default();
    let mut results: Vec<Result<Outcome, StoreError>> = Vec::with_capacity(batch.len());
    let mut checkouts: Vec<&CheckoutPlan> = Vec::new();
    for job in batch.iter() {
        if let Op::Checkout(plan) = &job.op {
            checkouts.push(plan);
            after.committed.checkouts.push(plan.order.checkout_id);
            results.push(Ok(Outcome::Done));
            continue;
        }
        // Jobs apply in the market's order: the checkouts queued so far go first.
        write_checkouts(&tx, st, &checkouts)
            .await
            .map_err(market_failed)?;
        checkouts.clear();
        if matches!(job.done, Done::Reply(..) | Done::Nothing) {
            apply(&tx, st, &job.op, &mut after)
                .await
                .map_err(market_failed)?;
            results.push(Ok(Outcome::Done));
            continue;
        }
        // A session's job (sign-up, account changes) may fail on its own, for example on a taken
        // email: a savepoint keeps the rest of the batch.
        tx.batch_execute("SAVEPOINT job").await.map_err(pg)?;
        match apply(&tx, st, &job.op, &mut after).await {
            Ok(outcome) => {
                tx.batch_execute("RELEASE SAVEPOINT job")
                    .await
                    .map_err(pg)?;
                results.push(Ok(outcome));
            }
            Err(e @ (StoreError::Postgres(_) | StoreError::Fenced(_))) => return Err(e),
            Err(e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")
                    .await
                    .map_err(pg)?;
                results.push(Err(e));
            }
        }
    }
    write_checkouts(&tx, st, &checkouts)
        .await
        .map_err(market_failed)?;
    tx.commit().await.map_err(pg)?;
    tracing::debug!(
        jobs = batch.len(),
        checkouts = after.committed.checkouts.len(),
        "batch committed"
    );
    deliver(batch, results, after, effects);
    Ok(())
}

/// A market job that fails means memory and disk disagree, unless the store itself is gone.
fn market_failed(e: StoreError) -> StoreError {
    match e {
        StoreError::Postgres(_) | StoreError::Fenced(_) => e,
        other => StoreError::Corrupt(format!("market job failed: {other}")),
    }
}

fn i(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Writes a run of checkouts with one statement per table.
async fn write_checkouts(
    tx: &Transaction<'_>,
    st: &Prepared,
    plans: &[&CheckoutPlan],
) -> Result<(), StoreError> {
    if plans.is_empty() {
        return Ok(());
    }
    let n = plans.len();
    let (mut o_id, mut o_checkout, mut o_account, mut o_month, mut o_at, mut o_total) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut l_order, mut l_listing, mut l_maker, mut l_product, mut l_maker_name) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut l_price, mut l_quantity) = (Vec::new(), Vec::new());
    // Absolute stock levels: the last plan for a listing holds its level after the whole run.
    let mut stock: HashMap<(i64, i64), i64> = HashMap::new();
    let (mut n_maker, mut n_seq, mut n_order, mut n_body) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut clears: Vec<i64> = Vec::new();
    for plan in plans {
        let order = &plan.order;
        let month = i64::from(order.month.0);
        o_id.push(i(order.id.0));
        o_checkout.push(checkout_key(order.checkout_id).to_vec());
        o_account.push(i(plan.account.0));
        o_month.push(month);
        o_at.push(i(order.placed_at_ms));
        o_total.push(i(order.total.0));
        for (line, maker) in order.lines.iter().zip(&plan.line_manufacturers) {
            l_order.push(i(order.id.0));
            l_listing.push(i64::from(line.listing.0));
            l_maker.push(i64::from(maker.0));
            l_product.push(line.product.as_str());
            l_maker_name.push(line.manufacturer_name.as_str());
            l_price.push(i(line.unit_price.0));
            l_quantity.push(i64::from(line.quantity));
        }
        for (listing, remaining) in &plan.stock {
            stock.insert((month, i64::from(listing.0)), i64::from(*remaining));
        }
        for (maker, notice) in &plan.notices {
            n_maker.push(i64::from(maker.0));
            n_seq.push(i(notice.seq.0));
            n_order.push(Some(i(order.id.0)));
            n_body.push(encode_notice(notice)?);
        }
        if plan.clears_cart {
            clears.push(i(plan.account.0));
        }
    }
    let (mut s_month, mut s_listing, mut s_remaining) = (Vec::new(), Vec::new(), Vec::new());
    for ((month, listing), remaining) in &stock {
        s_month.push(*month);
        s_listing.push(*listing);
        s_remaining.push(*remaining);
    }
    // Sent together, in this order, without waiting for each answer: one round trip, not five.
    type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let p_orders: [Param; 6] = [&o_id, &o_checkout, &o_account, &o_month, &o_at, &o_total];
    let p_lines: [Param; 7] = [
        &l_order,
        &l_listing,
        &l_maker,
        &l_product,
        &l_maker_name,
        &l_price,
        &l_quantity,
    ];
    let p_stock: [Param; 3] = [&s_month, &s_listing, &s_remaining];
    let p_outbox: [Param; 4] = [&n_maker, &n_seq, &n_order, &n_body];
    let orders = tx.execute(&st.orders, &p_orders);
    let lines = tx.execute(&st.lines, &p_lines);
    let levels = tx.execute(&st.stock, &p_stock);
    let outbox = tx.execute(&st.outbox, &p_outbox);
    let carts = async {
        match clears.is_empty() {
            true => Ok(0),
            false => tx.execute(&st.clear_carts, &[&clears]).await,
        }
    };
    let (_, _, changed, _, _) =
        futures::try_join!(orders, lines, levels, outbox, carts).map_err(pg)?;
    if changed != stock.len() as u64 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

fn encode_notice(notice: &Notice) -> Result<Vec<u8>, StoreError> {
    protocol::codec::encode_payload(&notice.body, usize::MAX)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

async fn insert_notice(
    tx: &Transaction<'_>,
    maker: ManufacturerId,
    notice: &Notice,
    order: Option<OrderId>,
) -> Result<(), StoreError> {
    let body = encode_notice(notice)?;
    tx.execute(
        "INSERT INTO outbox (manufacturer_id, seq, order_id, body) VALUES ($1, $2, $3, $4)",
        &[
            &i64::from(maker.0),
            &i(notice.seq.0),
            &order.map(|o| i(o.0)),
            &body,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// One job other than a checkout. Each arm is one call or one statement.
async fn apply(
    tx: &Transaction<'_>,
    st: &Prepared,
    op: &Op,
    after: &mut After,
) -> Result<Outcome, StoreError> {
    match op {
        Op::Checkout(plan) => write_checkouts(tx, st, &[plan.as_ref()]).await?,
        Op::Cart { account, writes } => write_cart(tx, *account, writes).await?,
        Op::Offer(plan) => write_offer(tx, plan).await?,
        Op::OpenMonth(month, expected) => open_month(tx, month, expected).await?,
        Op::CloseMonth {
            month,
            at_ms,
            reason,
            settlements,
        } => {
            let changed = tx
                .execute(
                    "UPDATE months SET closed_at_ms = $2, close_reason = $3 WHERE id = $1 AND closed_at_ms IS NULL",
                    &[&i64::from(month.0), &i(*at_ms), &close_reason_code(*reason)],
                )
                .await
                .map_err(pg)?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
            for (maker, notice) in settlements {
                insert_notice(tx, *maker, notice, None).await?;
            }
        }
        Op::SetCredential(id, hash) => {
            let changed = tx
                .execute(
                    "UPDATE manufacturers SET credential_hash = $2 WHERE id = $1",
                    &[&i64::from(id.0), &hash.map(|h| h.to_vec())],
                )
                .await
                .map_err(pg)?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
        }
        Op::RegisterManufacturer(id, name) => {
            tx.execute(
                "INSERT INTO manufacturers (id, name) VALUES ($1, $2)",
                &[&i64::from(id.0), name],
            )
            .await
            .map_err(pg)?;
        }
        Op::Ack {
            manufacturer,
            after: from,
            through,
        } => ack(tx, *manufacturer, *from, *through, after).await?,
        Op::Dispatch {
            manufacturer,
            orders,
        } => {
            let unknown = dispatch(tx, *manufacturer, orders, after).await?;
            return Ok(Outcome::Dispatched { unknown });
        }
        Op::CreateAccount {
            first_name,
            last_name,
            email,
            password_hash,
        } => {
            let row = tx
                .query_one(
                    "INSERT INTO accounts (first_name, last_name, email, email_key, password_hash, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[first_name, last_name, email, &crate::email::key(email), password_hash, &i(now_ms())],
                )
                .await
                .map_err(pg)?;
            return Ok(Outcome::Account(AccountId(row.get::<_, i64>(0) as u64)));
        }
        Op::UpdateAccount {
            account,
            first_name,
            last_name,
            email,
            password_hash,
            keep_session,
        } => {
            let email_key = email.as_deref().map(crate::email::key);
            let changed = tx
                .execute(
                    "UPDATE accounts SET first_name = coalesce($2, first_name), last_name = coalesce($3, last_name),
                       email = coalesce($4, email), email_key = coalesce($6, email_key),
                       password_hash = coalesce($5, password_hash)
                     WHERE id = $1",
                    &[&i(account.0), first_name, last_name, email, password_hash, &email_key],
                )
                .await
                .map_err(pg)?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
            if password_hash.is_some() {
                let keep: Vec<u8> = keep_session.map(|k| k.to_vec()).unwrap_or_default();
                tx.execute(
                    "DELETE FROM sessions WHERE account_id = $1 AND token_hash != $2",
                    &[&i(account.0), &keep],
                )
                .await
                .map_err(pg)?;
            }
        }
        Op::SetCard(account, card) => {
            let (brand, last4, month, year) = match card {
                Some(c) => (
                    Some(crate::card::brand_name(c.brand)),
                    Some(c.last4.as_str()),
                    Some(i64::from(c.exp_month)),
                    Some(i64::from(c.exp_year)),
                ),
                None => (None, None, None, None),
            };
            tx.execute(
                "UPDATE accounts SET card_brand = $2, card_last4 = $3, card_exp_month = $4, card_exp_year = $5 WHERE id = $1",
                &[&i(account.0), &brand, &last4, &month, &year],
            )
            .await
            .map_err(pg)?;
        }
        Op::DeleteAccount(account) => {
            let id = i(account.0);
            tx.execute("DELETE FROM cart_lines WHERE account_id = $1", &[&id])
                .await
                .map_err(pg)?;
            tx.execute("DELETE FROM sessions WHERE account_id = $1", &[&id])
                .await
                .map_err(pg)?;
            tx.execute(
                "UPDATE orders SET account_id = NULL WHERE account_id = $1",
                &[&id],
            )
            .await
            .map_err(pg)?;
            let changed = tx
                .execute("DELETE FROM accounts WHERE id = $1", &[&id])
                .await
                .map_err(pg)?;
            if changed != 1 {
                return Err(StoreError::NotFound);
            }
        }
        Op::CreateSession {
            token_hash,
            account,
            expires_at_ms,
        } => {
            let evicted = create_session(tx, token_hash, *account, *expires_at_ms).await?;
            return Ok(Outcome::Session { evicted });
        }
        Op::DeleteSession(token_hash) => {
            tx.execute(
                "DELETE FROM sessions WHERE token_hash = $1",
                &[&token_hash.to_vec()],
            )
            .await
            .map_err(pg)?;
        }
        Op::LoginFailed {
            account_key,
            address,
            pair,
            account,
        } => {
            let upsert = "INSERT INTO login_failures (account_key, address, failures, last_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_key, address) DO UPDATE SET failures = excluded.failures, last_at_ms = excluded.last_at_ms";
            tx.execute(
                upsert,
                &[
                    account_key,
                    address,
                    &i64::from(pair.count),
                    &i(pair.last_ms),
                ],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                upsert,
                &[
                    account_key,
                    &"",
                    &i64::from(account.count),
                    &i(account.last_ms),
                ],
            )
            .await
            .map_err(pg)?;
        }
        Op::ForgetLoginFailures { before_ms } => {
            tx.execute(
                "DELETE FROM login_failures WHERE last_at_ms < $1",
                &[&i(*before_ms)],
            )
            .await
            .map_err(pg)?;
        }
        Op::LoginSucceeded {
            account_key,
            address,
            at_ms,
        } => {
            tx.execute(
                "DELETE FROM login_failures WHERE account_key = $1 AND (address = $2 OR address = '')",
                &[account_key, address],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO login_addresses (account_key, address, last_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (account_key, address) DO UPDATE SET last_at_ms = excluded.last_at_ms",
                &[account_key, address, &i(*at_ms)],
            )
            .await
            .map_err(pg)?;
        }
        Op::ExpectOffer {
            month,
            manufacturer,
        } => {
            tx.execute(
                "INSERT INTO month_manufacturers (month_id, manufacturer_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&i64::from(month.0), &i64::from(manufacturer.0)],
            )
            .await
            .map_err(pg)?;
        }
        Op::LinkKey(fingerprint, account) => link_key(tx, fingerprint, *account).await?,
        Op::UnlinkKey(fingerprint, account) => {
            let removed = tx
                .execute(
                    "DELETE FROM ssh_keys WHERE fingerprint = $1 AND account_id = $2",
                    &[fingerprint, &i(account.0)],
                )
                .await
                .map_err(pg)?;
            if removed != 1 {
                return Err(StoreError::NotFound);
            }
        }
    }
    Ok(Outcome::Done)
}

async fn write_cart(
    tx: &Transaction<'_>,
    account: AccountId,
    writes: &[CartItem],
) -> Result<(), StoreError> {
    for line in writes {
        let (account, listing) = (i(account.0), i64::from(line.listing.0));
        if line.quantity == 0 {
            tx.execute(
                "DELETE FROM cart_lines WHERE account_id = $1 AND listing_id = $2",
                &[&account, &listing],
            )
            .await
            .map_err(pg)?;
        } else {
            tx.execute(
                "INSERT INTO cart_lines (account_id, listing_id, quantity, position)
                 VALUES ($1, $2, $3, (SELECT coalesce(max(position), 0) + 1 FROM cart_lines WHERE account_id = $1))
                 ON CONFLICT (account_id, listing_id) DO UPDATE SET quantity = excluded.quantity",
                &[&account, &listing, &i64::from(line.quantity)],
            )
            .await
            .map_err(pg)?;
        }
    }
    Ok(())
}

async fn write_offer(
    tx: &Transaction<'_>,
    plan: &crate::market::OfferPlan,
) -> Result<(), StoreError> {
    for listing in &plan.listings {
        tx.execute(
            "INSERT INTO listings (id, manufacturer_id, sku, product, category) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET product = excluded.product, category = excluded.category",
            &[
                &i64::from(listing.id.0),
                &i64::from(listing.manufacturer.0),
                &listing.sku,
                &listing.product,
                &listing.category,
            ],
        )
        .await
        .map_err(pg)?;
    }
    let month = i64::from(plan.month.0);
    let (mut listing, mut price, mut offered, mut remaining) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, stock) in &plan.stock {
        listing.push(i64::from(id.0));
        price.push(i(stock.unit_price.0));
        offered.push(i64::from(stock.offered));
        remaining.push(i64::from(stock.remaining));
    }
    tx.execute(
        "INSERT INTO offers (month_id, listing_id, unit_price, offered, remaining)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])",
        &[&month, &listing, &price, &offered, &remaining],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "UPDATE month_manufacturers SET offered = 1 WHERE month_id = $1 AND manufacturer_id = $2",
        &[&month, &i64::from(plan.manufacturer.0)],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn open_month(
    tx: &Transaction<'_>,
    month: &MonthView,
    expected: &[ManufacturerId],
) -> Result<(), StoreError> {
    let id = i64::from(month.id.0);
    tx.execute(
        "INSERT INTO months (id, opened_at_ms, ends_at_ms) VALUES ($1, $2, $3)",
        &[&id, &i(month.opened_at_ms), &i(month.ends_at_ms)],
    )
    .await
    .map_err(pg)?;
    let makers: Vec<i64> = expected.iter().map(|m| i64::from(m.0)).collect();
    tx.execute(
        "INSERT INTO month_manufacturers (month_id, manufacturer_id) SELECT $1, * FROM UNNEST($2::bigint[])",
        &[&id, &makers],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn ack(
    tx: &Transaction<'_>,
    maker: ManufacturerId,
    from: NoticeSeq,
    through: NoticeSeq,
    after: &mut After,
) -> Result<(), StoreError> {
    let m = i64::from(maker.0);
    tx.execute(
        "UPDATE manufacturers SET acked_seq = $2 WHERE id = $1",
        &[&m, &i(through.0)],
    )
    .await
    .map_err(pg)?;
    let rows = tx
        .query(
            "UPDATE order_lines SET status = 1, status_at_ms = $4
             WHERE manufacturer_id = $1 AND status = 0 AND order_id IN
               (SELECT order_id FROM outbox WHERE manufacturer_id = $1 AND seq > $2 AND seq <= $3 AND order_id IS NOT NULL)
             RETURNING order_id, listing_id, (SELECT account_id FROM orders WHERE orders.id = order_lines.order_id)",
            &[&m, &i(from.0), &i(through.0), &i(now_ms())],
        )
        .await
        .map_err(pg)?;
    for row in rows {
        if let Some(account) = row.get::<_, Option<i64>>(2) {
            after.statuses.push((
                AccountId(account as u64),
                OrderId(row.get::<_, i64>(0) as u64),
                ListingId(row.get::<_, i64>(1) as u32),
                LineStatus::Confirmed,
            ));
        }
    }
    Ok(())
}

async fn dispatch(
    tx: &Transaction<'_>,
    maker: ManufacturerId,
    orders: &[OrderId],
    after: &mut After,
) -> Result<Vec<OrderId>, StoreError> {
    let (m, now) = (i64::from(maker.0), i(now_ms()));
    let mut unknown = Vec::new();
    for order in orders {
        let o = i(order.0);
        let rows = tx
            .query(
                "UPDATE order_lines SET status = 2, status_at_ms = $3
                 WHERE order_id = $1 AND manufacturer_id = $2 AND status < 2
                 RETURNING listing_id, (SELECT account_id FROM orders WHERE orders.id = order_lines.order_id)",
                &[&o, &m, &now],
            )
            .await
            .map_err(pg)?;
        // Nothing marked: a repeat (a no-op), or an order without this maker's lines.
        if rows.is_empty() {
            let mine: i64 = tx
                .query_one(
                    "SELECT count(*) FROM order_lines WHERE order_id = $1 AND manufacturer_id = $2",
                    &[&o, &m],
                )
                .await
                .map_err(pg)?
                .get(0);
            if mine == 0 {
                unknown.push(*order);
            }
        }
        for row in rows {
            if let Some(account) = row.get::<_, Option<i64>>(1) {
                after.statuses.push((
                    AccountId(account as u64),
                    *order,
                    ListingId(row.get::<_, i64>(0) as u32),
                    LineStatus::Dispatched,
                ));
            }
        }
    }
    Ok(unknown)
}

/// As [`crate::store::logins::create_session`]: stores the token, evicts the oldest beyond the cap.
async fn create_session(
    tx: &Transaction<'_>,
    token_hash: &[u8; 32],
    account: AccountId,
    expires_at_ms: u64,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let account = i(account.0);
    tx.execute(
        "DELETE FROM sessions WHERE expires_at_ms < $1",
        &[&i(now_ms())],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        "INSERT INTO sessions (token_hash, account_id, expires_at_ms) VALUES ($1, $2, $3)",
        &[&token_hash.to_vec(), &account, &i(expires_at_ms)],
    )
    .await
    .map_err(pg)?;
    let rows = tx
        .query(
            "DELETE FROM sessions WHERE account_id = $1 AND token_hash NOT IN
               (SELECT token_hash FROM sessions WHERE account_id = $1 ORDER BY expires_at_ms DESC, token_hash LIMIT $2)
             RETURNING token_hash",
            &[&account, &i(crate::auth::MAX_SESSIONS)],
        )
        .await
        .map_err(pg)?;
    rows.iter()
        .map(|r| {
            r.get::<_, Vec<u8>>(0)
                .try_into()
                .map_err(|_| StoreError::Corrupt("a session token hash is not 32 bytes".into()))
        })
        .collect()
}

async fn link_key(
    tx: &Transaction<'_>,
    fingerprint: &str,
    account: AccountId,
) -> Result<(), StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO ssh_keys (fingerprint, account_id, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (fingerprint) DO NOTHING",
            &[&fingerprint, &i(account.0), &i(now_ms())],
        )
        .await
        .map_err(pg)?;
    if inserted == 1 {
        return Ok(());
    }
    let holder = tx
        .query_opt(
            "SELECT account_id FROM ssh_keys WHERE fingerprint = $1",
            &[&fingerprint],
        )
        .await
        .map_err(pg)?
        .map(|r| r.get::<_, i64>(0));
    if holder == Some(i(account.0)) {
        return Ok(());
    }
    Err(StoreError::Duplicate)
}
