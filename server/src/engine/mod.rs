//! The engine: the one task that owns the [`Market`] and carries out its plans.
//!
//! Sessions send [`Command`]s over a channel. The engine applies them one after another, hands what
//! must be persisted to the [`Writer`] (which answers the client after the commit), publishes stock to
//! the [`Board`], and runs the month clock. Nothing here waits on I/O, so one core keeps up with the
//! whole market.

use crate::board::{Board, Levels};
use crate::market::Market;
use crate::push::Registry;
use crate::store::now_ms;
use crate::store::read::Reads;
use crate::store::writer::{Done, Op, Writer};
use protocol::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod commands;
mod identity;

/// The answer channel for a client request.
pub type ReplyTx = oneshot::Sender<Result<Reply, WireError>>;

/// How many queued commands the engine applies before it publishes stock and checks the month.
const DRAIN_LIMIT: usize = 256;

/// A cart operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CartOp {
    /// View (and cut to stock).
    View,
    /// Add to a line.
    Add(ListingId, u32),
    /// Set a line.
    Set(ListingId, u32),
    /// Remove a line.
    Remove(ListingId),
    /// Empty the cart.
    Clear,
}

/// What sessions ask of the engine.
pub enum Command {
    /// A manufacturer connected under `name`.
    ManufacturerHello {
        /// Its stable name.
        name: String,
        /// The credential it presented, if any.
        key: Option<String>,
        /// Where to push `OfferRequested`.
        events: mpsc::UnboundedSender<Event>,
        /// Its id, the last notice it acked, and its credential if one was just issued; once durable.
        reply: oneshot::Sender<Result<Admitted, WireError>>,
    },
    /// A manufacturer's connection ended.
    ManufacturerGone(ManufacturerId, mpsc::UnboundedSender<Event>),
    /// An offer.
    SubmitOffer(ManufacturerId, MonthId, Vec<OfferLine>, ReplyTx),
    /// An ack.
    Ack(ManufacturerId, NoticeSeq, ReplyTx),
    /// A cart operation.
    Cart(AccountId, CartOp, ReplyTx),
    /// A checkout: the buyer, the checkout id, the lines (`None`: the cart) and the confirmed total.
    Checkout(AccountId, CheckoutId, Option<Vec<CartItem>>, Cents, ReplyTx),
    /// A card was attached (with its expiry year and month) or removed (`None`).
    CardChanged(AccountId, Option<(u16, u8)>),
    /// Delete an account: the engine forgets it, then queues the delete, and answers after the commit.
    DeleteAccount(
        AccountId,
        oneshot::Sender<Result<crate::store::writer::Outcome, crate::store::StoreError>>,
    ),
    /// An operator closes the month.
    CloseMonth(ReplyTx),
    /// An operator asks for the system's status.
    Status(oneshot::Sender<SystemStatus>),
    /// An operator sets the length of the months that open from now on, in seconds.
    SetMonthLength(u64, ReplyTx),
    /// A customer logged in or resumed a session: they are active in the open month.
    CustomerLoggedIn(AccountId),
    /// An operator revokes the credential of the manufacturer with this name.
    RevokeManufacturer(String, ReplyTx),
}

/// A manufacturer the engine let in: its id, the last notice it acked, and the credential issued to
/// it if it just registered.
pub type Admitted = (ManufacturerId, NoticeSeq, Option<String>);

/// The sending side, cloned into every session.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl EngineHandle {
    /// Sends a command. Fails only when the engine has stopped.
    pub fn send(&self, command: Command) -> Result<(), WireError> {
        self.tx
            .send(command)
            .map_err(|_| WireError::new(ErrorCode::ShuttingDown, "the server is shutting down"))
    }

    /// Sends a command that answers through a [`ReplyTx`] and waits for the answer.
    pub async fn ask(&self, make: impl FnOnce(ReplyTx) -> Command) -> Result<Reply, WireError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await
            .map_err(|_| WireError::new(ErrorCode::ShuttingDown, "the server is shutting down"))?
    }
}

/// The engine's state.
pub struct Engine {
    market: Market,
    writer: Writer,
    reads: Reads,
    board: Board,
    registry: Arc<Registry>,
    month_ms: u64,
    manufacturers: HashMap<ManufacturerId, mpsc::UnboundedSender<Event>>,
    /// Accounts deleted while this process runs. Their other sessions may still send requests; those
    /// must never reach the writer, whose rows for the account are gone.
    deleted: std::collections::HashSet<AccountId>,
    /// Retries of a checkout whose first attempt is still being committed.
    waiting: HashMap<CheckoutId, Vec<ReplyTx>>,
    /// Writes planned since the last publish, handed to the writer only after it (see [`Engine::run`]).
    planned: Vec<(Op, Done)>,
    published_version: u64,
    published_epoch: u64,
    /// When the market next forgets old checkout ids (see [`Engine::forget_old_checkouts`]).
    next_forget_ms: u64,
    /// Checkouts whose ids were looked up on PostgreSQL come back here (taken by [`Engine::run`]).
    looked_up_tx: mpsc::UnboundedSender<commands::LookedUp>,
    looked_up_rx: Option<mpsc::UnboundedReceiver<commands::LookedUp>>,
    /// What only operators need remembered.
    ops: crate::operator::Tracker,
    /// Each manufacturer name's credential hash (see [`crate::identity::credentials`]).
    credentials: crate::identity::credentials::Credentials,
}

impl Engine {
    /// Builds the engine around a restored market.
    pub fn new(
        market: Market,
        writer: Writer,
        reads: Reads,
        board: Board,
        registry: Arc<Registry>,
        month: Duration,
    ) -> Self {
        let (looked_up_tx, looked_up_rx) = mpsc::unbounded_channel();
        Engine {
            market,
            writer,
            reads,
            board,
            registry,
            month_ms: month.as_millis() as u64,
            manufacturers: HashMap::new(),
            deleted: Default::default(),
            waiting: HashMap::new(),
            planned: Vec::new(),
            published_version: u64::MAX,
            published_epoch: u64::MAX,
            next_forget_ms: 0,
            looked_up_tx,
            looked_up_rx: Some(looked_up_rx),
            credentials: Default::default(),
            ops: Default::default(),
        }
    }

    /// Starts the operator's history and totals from what the store remembers.
    pub fn with_past(mut self, past: crate::store::history::Past) -> Self {
        self.ops = crate::operator::Tracker::new(past);
        self
    }

    /// The manufacturers' credentials, as loaded from the database.
    pub fn with_credentials(
        mut self,
        credentials: crate::identity::credentials::Credentials,
    ) -> Self {
        self.credentials = credentials;
        self
    }

    /// Runs until `shutdown` is cancelled or every handle is dropped.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut committed: mpsc::UnboundedReceiver<crate::market::Committed>,
        shutdown: CancellationToken,
    ) {
        if self.market.open_month().is_none() {
            self.open_month();
        }
        self.publish();
        self.release_writes();
        // `run` consumes the engine, so the receiver is always still here.
        let mut looked_up =
            (self.looked_up_rx.take()).unwrap_or_else(|| mpsc::unbounded_channel().1);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(batch) = committed.recv() => self.on_committed(batch),
                Some(checkout) = looked_up.recv() => self.on_looked_up(checkout),
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command);
                    for _ in 0..DRAIN_LIMIT {
                        match commands.try_recv() {
                            Ok(command) => self.handle(command),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {}
            }
            self.check_month();
            self.forget_old_checkouts();
            self.publish();
            self.publish_status();
            // Only now, with the stock they sold on the board: a client told "ok" after the commit
            // then reads its own purchase in the catalog, however late this task ran.
            self.release_writes();
            debug_assert_eq!(self.market.check_invariants(), Ok(()));
        }
        self.release_writes();
    }

    /// Plans a write: it goes to the writer at the end of this turn, after the publish.
    fn submit(&mut self, op: Op, done: Done) {
        self.planned.push((op, done));
    }

    fn release_writes(&mut self) {
        for (op, done) in self.planned.drain(..) {
            if let Err(e) = self.writer.submit(op, done) {
                tracing::warn!(error = %e, "writer is gone; dropping a write");
            }
        }
    }

    /// **The one entry of the market.** Every command enters here, in the order it arrived, whether
    /// a session on this node sent it or [`crate::broker::market`] turned a request forwarded by an
    /// edge over NATS into it. One arm per command; the work is in [`commands`] and [`identity`].
    pub(crate) fn handle(&mut self, command: Command) {
        match command {
            Command::ManufacturerHello {
                name,
                key,
                events,
                reply,
            } => self.on_manufacturer_hello(name, key, events, reply),
            Command::RevokeManufacturer(name, reply) => self.on_revoke_manufacturer(name, reply),
            Command::ManufacturerGone(id, events) => self.on_manufacturer_gone(id, events),
            Command::SubmitOffer(id, month, lines, reply) => self.on_offer(id, month, lines, reply),
            Command::Ack(id, through, reply) => self.on_ack(id, through, reply),
            Command::Cart(account, _, reply) | Command::Checkout(account, _, _, _, reply)
                if self.deleted.contains(&account) =>
            {
                deleted(reply)
            }
            Command::Cart(account, op, reply) => self.on_cart(account, op, reply),
            Command::Checkout(account, id, lines, confirmed, reply) => {
                self.on_checkout(account, id, lines, confirmed, reply)
            }
            Command::CardChanged(account, expiry) => self.market.set_card(account, expiry),
            Command::DeleteAccount(account, reply) => self.on_delete_account(account, reply),
            Command::CloseMonth(reply) => self.on_close_month(reply),
            Command::Status(reply) => self.on_status(reply),
            Command::SetMonthLength(secs, reply) => self.set_month_length(secs, reply),
            Command::CustomerLoggedIn(account) if self.deleted.contains(&account) => {}
            Command::CustomerLoggedIn(account) => self.market.customer_seen(account),
        }
    }

    fn answer_with_order(&self, order: OrderId, reply: ReplyTx) {
        let reads = self.reads.clone();
        tokio::spawn(async move {
            let result = match reads.order(order).await {
                Ok(Some(view)) => Ok(Reply::Order(view)),
                Ok(None) => Err(WireError::new(ErrorCode::NotFound, "order not found")),
                Err(e) => Err(WireError::new(ErrorCode::Internal, e.to_string())),
            };
            let _ = reply.send(result);
        });
    }

    fn on_committed(&mut self, batch: crate::market::Committed) {
        self.market.committed(&batch.checkouts);
        for id in &batch.checkouts {
            if let Some(waiters) = self.waiting.remove(id) {
                if let Some(order) = self.market.checkouts.get(id).map(|r| r.order) {
                    for reply in waiters {
                        self.answer_with_order(order, reply);
                    }
                }
            }
        }
    }

    fn request_offers(&mut self) {
        for (id, month) in self.market.due_offer_requests() {
            let expect = Op::ExpectOffer {
                month,
                manufacturer: id,
            };
            self.submit(expect, Done::Nothing);
            if let Some(tx) = self.manufacturers.get(&id) {
                tracing::info!(
                    manufacturer = self.market.manufacturer_name(id),
                    month = month.0,
                    "requesting offer"
                );
                let _ = tx.send(Event::OfferRequested { month });
            }
        }
    }

    fn open_month(&mut self) {
        let view = self.market.open_next_month(now_ms(), self.month_ms);
        let expected = self
            .market
            .open_month()
            .map(|m| m.expected.iter().copied().collect())
            .unwrap_or_default();
        tracing::info!(month = view.id.0, "month opened");
        self.ops.month_opened();
        // Customers logged in now are active in the new month, like those who log in during it.
        for account in self.registry.logged_in_accounts() {
            if !self.deleted.contains(&account) {
                self.market.customer_seen(account);
            }
        }
        self.submit(Op::OpenMonth(view.clone(), expected), Done::Nothing);
        self.registry.broadcast(Event::MonthOpened(view));
        self.request_offers();
    }

    fn close_month(&mut self, reason: CloseReason) {
        let Some(month) = self.market.open_month().map(|m| m.id) else {
            return;
        };
        let at = now_ms();
        let sales = self.market.status().month_sales;
        let settlements = self.market.close_month(reason, at);
        if let Some(opened_at_ms) = self.market.month_view().map(|m| m.opened_at_ms) {
            self.ops.month_closed(MonthRecord {
                id: month,
                opened_at_ms,
                closed_at_ms: at,
                reason,
                units: sales.units,
                revenue: sales.revenue,
            });
        }
        tracing::info!(
            month = month.0,
            ?reason,
            manufacturers = settlements.len(),
            "month closed"
        );
        let settlements = settlements
            .into_iter()
            .map(|s| (s.manufacturer, s.notice))
            .collect();
        self.submit(
            Op::CloseMonth {
                month,
                at_ms: at,
                reason,
                settlements,
            },
            Done::Nothing,
        );
        self.registry
            .broadcast(Event::MonthClosed { month, reason });
    }

    /// Once a second, the market forgets the checkout ids too old for a retry to be likely; a late
    /// retry is then looked up on disk ([`Engine::on_checkout`]).
    fn forget_old_checkouts(&mut self) {
        let now = now_ms();
        if now < self.next_forget_ms {
            return;
        }
        self.market.forget_old_checkouts(now);
        self.next_forget_ms = now + 1000;
    }

    fn check_month(&mut self) {
        if let Some(reason) = self.market.close_reason(now_ms()) {
            self.close_month(reason);
            self.open_month();
        }
    }

    fn status(&self, now: u64) -> SystemStatus {
        crate::operator::snapshot(&self.market, &self.ops, &self.registry, self.month_ms, now)
    }

    /// While an operator watches, publishes a fresh status every [`crate::operator::PUBLISH_EVERY_MS`].
    fn publish_status(&mut self) {
        let now = now_ms();
        self.ops.observe(&self.market, now);
        if self.registry.status_watched()
            && now.saturating_sub(self.ops.published_at_ms) >= crate::operator::PUBLISH_EVERY_MS
        {
            self.registry.publish_status(self.status(now));
            self.ops.published_at_ms = now;
        }
    }

    fn set_month_length(&mut self, secs: u64, reply: ReplyTx) {
        if !MONTH_SECS_RANGE.contains(&secs) {
            let _ = reply.send(Err(WireError::new(
                ErrorCode::InvalidInput,
                format!(
                    "a month lasts {} to {} seconds",
                    MONTH_SECS_RANGE.start(),
                    MONTH_SECS_RANGE.end()
                ),
            )));
            return;
        }
        self.month_ms = secs * 1000;
        tracing::info!(secs, "month length set for the next months");
        let _ = reply.send(Ok(Reply::Done));
    }

    fn publish(&mut self) {
        let epoch = self.market.catalog_epoch();
        if epoch != self.published_epoch {
            self.board.publish_catalog(epoch, self.market.catalog());
            self.published_epoch = epoch;
        }
        let version = self.market.stock_version();
        if version != self.published_version {
            self.board.publish_levels(Levels {
                version,
                epoch,
                remaining: self.market.levels().into_iter().collect(),
            });
            self.published_version = version;
        }
    }
}

/// Creates the engine's command channel.
pub fn channel() -> (EngineHandle, mpsc::UnboundedReceiver<Command>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EngineHandle { tx }, rx)
}

/// The answer to a cart or checkout command for an account deleted while this process runs.
fn deleted(reply: ReplyTx) {
    let _ = reply.send(Err(WireError::new(
        ErrorCode::SessionExpired,
        "this account was deleted",
    )));
}
