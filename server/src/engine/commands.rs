//! What each market command does: one function per [`super::Command`], called from the one entry,
//! [`super::Engine::handle`]. Each applies the command to the [`crate::market::Market`] and hands
//! what must be persisted to the writer, which answers the client after the commit.

use super::{Engine, ReplyTx};
use crate::engine::CartOp;
use crate::market::CheckoutError;
use crate::store::now_ms;
use crate::store::read;
use crate::store::writer::{Done, Op, Outcome};
use crate::store::StoreError;
use protocol::*;
use tokio::sync::{mpsc, oneshot};

/// A checkout held while its id is looked up on disk.
pub(crate) struct Pending {
    account: AccountId,
    checkout_id: CheckoutId,
    lines: Option<Vec<CartItem>>,
    confirmed: Cents,
    reply: ReplyTx,
}

/// A held checkout with what the look-up found: the id's account and order, if it was ever made.
pub(crate) struct LookedUp {
    checkout: Pending,
    found: Result<Option<(Option<AccountId>, OrderId)>, StoreError>,
}

impl Engine {
    /// A manufacturer's connection ended; only the current link of that id counts.
    pub(super) fn on_manufacturer_gone(
        &mut self,
        id: ManufacturerId,
        events: mpsc::UnboundedSender<Event>,
    ) {
        let current = self
            .manufacturers
            .get(&id)
            .is_some_and(|tx| tx.same_channel(&events));
        if current {
            self.manufacturers.remove(&id);
            self.market.set_connected(id, false);
            self.ops.link_changed(id, now_ms());
            tracing::info!(id = id.0, "manufacturer disconnected");
        }
    }

    pub(super) fn on_offer(
        &mut self,
        id: ManufacturerId,
        month: MonthId,
        lines: Vec<OfferLine>,
        reply: ReplyTx,
    ) {
        match self.market.submit_offer(id, month, &lines) {
            Ok(plan) => {
                self.ops.offered(id, month);
                let answer = Reply::OfferAccepted {
                    month,
                    listings: plan.reply.clone(),
                };
                tracing::info!(
                    manufacturer = self.market.manufacturer_name(id),
                    month = month.0,
                    lines = lines.len(),
                    units = lines.iter().map(|l| u64::from(l.quantity)).sum::<u64>(),
                    "offer accepted"
                );
                self.submit(Op::Offer(plan), Done::Reply(reply, Ok(answer)));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// A cumulative ack: a repeat (or an older one) changes nothing and is answered at once.
    pub(super) fn on_ack(&mut self, id: ManufacturerId, through: NoticeSeq, reply: ReplyTx) {
        let before = self
            .market
            .manufacturer(id)
            .map_or(NoticeSeq(0), |m| m.acked_seq);
        match self.market.ack(id, through) {
            Ok(true) => {
                let op = Op::Ack {
                    manufacturer: id,
                    after: before,
                    through,
                };
                self.submit(op, Done::Reply(reply, Ok(Reply::Done)));
                self.request_offers();
            }
            Ok(false) => {
                let _ = reply.send(Ok(Reply::Done));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    pub(super) fn on_cart(&mut self, account: AccountId, op: CartOp, reply: ReplyTx) {
        let outcome = match op {
            CartOp::View => Ok(self.market.view_cart(account)),
            CartOp::Add(listing, q) => self.market.add_to_cart(account, listing, q),
            CartOp::Set(listing, q) => self.market.set_cart_quantity(account, listing, q),
            CartOp::Remove(listing) => self.market.set_cart_quantity(account, listing, 0),
            CartOp::Clear => Ok(self.market.clear_cart(account)),
        };
        match outcome {
            Ok(outcome) if outcome.writes.is_empty() => {
                let _ = reply.send(Ok(Reply::Cart(outcome.view)));
            }
            Ok(outcome) => {
                let op = Op::Cart {
                    account,
                    writes: outcome.writes,
                };
                self.submit(op, Done::Reply(reply, Ok(Reply::Cart(outcome.view))));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// A checkout. A retry under the same checkout id (a client's, or an edge's after a NATS
    /// timeout) is answered with the first attempt's order, once that is committed.
    pub(super) fn on_checkout(
        &mut self,
        account: AccountId,
        checkout_id: CheckoutId,
        lines: Option<Vec<CartItem>>,
        confirmed: Cents,
        reply: ReplyTx,
    ) {
        let checkout = Pending {
            account,
            checkout_id,
            lines,
            confirmed,
            reply,
        };
        if self.market.checkout_is_on_disk_only(checkout_id) {
            // Rare: an id older than what the market keeps (a late retry, or a client whose ids
            // are not time-ordered). One indexed read: on SQLite here, on a read connection that
            // never waits on the writer; on PostgreSQL, whose reads are asynchronous, in a task
            // whose answer comes back through `LookedUp`.
            match self.reads.postgres() {
                None => {
                    let found = self.reads.with_blocking(|c| read::checkout(c, checkout_id));
                    self.on_looked_up(LookedUp { checkout, found });
                }
                Some(pool) => {
                    let (pool, back) = (pool.clone(), self.looked_up_tx.clone());
                    tokio::spawn(async move {
                        let client = pool.client().await;
                        let found =
                            crate::store::postgres::read::checkout(&client, checkout_id).await;
                        let _ = back.send(LookedUp { checkout, found });
                    });
                }
            }
            return;
        }
        self.checkout_now(checkout);
    }

    /// A checkout whose id was looked up on disk: remembered if found, then carried out.
    pub(super) fn on_looked_up(&mut self, looked_up: LookedUp) {
        let LookedUp { checkout: c, found } = looked_up;
        if self.deleted.contains(&c.account) {
            return super::deleted(c.reply);
        }
        match found {
            Ok(Some((owner, order))) => self.market.remember_checkout(c.checkout_id, owner, order),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot look up a checkout id");
                let _ = c.reply.send(Err(WireError::new(
                    ErrorCode::Internal,
                    "something went wrong on the server; nothing was changed",
                )));
                return;
            }
        }
        self.checkout_now(c);
    }

    /// A checkout whose id the market knows, or knows to be new.
    fn checkout_now(&mut self, checkout: Pending) {
        let Pending {
            account,
            checkout_id,
            lines,
            confirmed,
            reply,
        } = checkout;
        match self
            .market
            .checkout(account, checkout_id, lines, confirmed, now_ms())
        {
            Ok(plan) => {
                self.ops.sale(now_ms(), plan.order.units());
                let answer = Reply::Order(plan.order.clone());
                self.submit(Op::Checkout(Box::new(plan)), Done::Reply(reply, Ok(answer)));
            }
            Err(CheckoutError::Rejected(e)) => {
                let _ = reply.send(Err(e));
            }
            Err(CheckoutError::OutOfStock { error, cart_writes }) => {
                if cart_writes.is_empty() {
                    let _ = reply.send(Err(error));
                } else {
                    let op = Op::Cart {
                        account,
                        writes: cart_writes,
                    };
                    self.submit(op, Done::Reply(reply, Err(error)));
                }
            }
            Err(CheckoutError::Duplicate { order, committed }) => {
                if committed {
                    self.answer_with_order(order, reply);
                } else {
                    self.waiting.entry(checkout_id).or_default().push(reply);
                }
            }
        }
    }

    /// The engine forgets the account, then queues the delete, and answers after the commit.
    pub(super) fn on_delete_account(
        &mut self,
        account: AccountId,
        reply: oneshot::Sender<Result<Outcome, StoreError>>,
    ) {
        self.market.forget_customer(account);
        self.deleted.insert(account);
        self.submit(Op::DeleteAccount(account), Done::Outcome(reply));
    }

    pub(super) fn on_close_month(&mut self, reply: ReplyTx) {
        if self.market.open_month().is_some() {
            self.close_month(CloseReason::Operator);
            self.open_month();
            let _ = reply.send(Ok(Reply::Done));
        } else {
            let _ = reply.send(Err(WireError::new(ErrorCode::Conflict, "no month is open")));
        }
    }

    pub(super) fn on_status(&mut self, reply: oneshot::Sender<SystemStatus>) {
        self.ops.observe(&self.market, now_ms());
        let _ = reply.send(self.status(now_ms()));
    }
}
