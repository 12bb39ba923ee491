//! The market node's side of the bus: while this node holds the lease it answers the market
//! requests that edges forward ([`serve`]), and publishes what edges fan out ([`publish`]).
//!
//! [`serve`] holds one queue subscription on [`REQUESTS`] and handles its messages in arrival order:
//! each becomes the [`Command`] it stands for and is sent to the engine at once (so the engine sees
//! one edge's commands in the order that edge sent them); the answer is awaited in a task of its own
//! and published to the request's reply subject. The subscription is dropped (unsubscribed) at
//! step-down, and the next holder subscribes under the same subjects, so edges never need to know
//! which node is the market.

use super::wire::{
    Answered, LinkMessage, MarketEvent, MarketReply, MarketRequest, StockMark, CATALOG_PART_ITEMS,
    MARKET_QUEUE,
};
use super::Bus;
use crate::board::BoardReader;
use crate::engine::{Command, EngineHandle};
use futures::StreamExt;
use protocol::codec::{decode_bus, encode_bus};
use protocol::*;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

/// Stock levels go out at most this often: well under a session's own 50 ms coalescing, so the bus
/// adds little to the cross-node delay, and a burst of sales costs one message per period. (25 ms
/// gave a cross-node fan-out p99 of 165 ms with 1,000 watchers on two cores, 10 ms 112 and 78 ms: bench
/// row 13, 2026-12-03; one run at 25 ms, two at 10 ms, on a shared 2-core box: treat as a hint.)
const LEVELS_EVERY: Duration = Duration::from_millis(10);
/// The catalog and the levels are published again this often, so that an edge that started (or
/// lost its link to NATS) after the last change catches up.
const REPEAT_EVERY: Duration = Duration::from_secs(2);
/// At step-down, how long the answers of commits still draining may take to go out. An answer
/// that misses it is asked again of the next market, which finds the checkout id.
const DRAIN_ANSWERS: Duration = Duration::from_secs(5);

/// Answers forwarded market requests until `stop`. `sink` is the market's publishing path: the
/// pushes of manufacturer links on edges go out through it.
pub async fn serve(
    bus: Bus,
    engine: EngineHandle,
    term: i64,
    sink: mpsc::UnboundedSender<MarketEvent>,
    board: BoardReader,
    answers: mpsc::UnboundedSender<Outgoing>,
    stop: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = bus
        .client
        .queue_subscribe(bus.subjects.requests(), MARKET_QUEUE.to_string())
        .await?;
    let mut service = Service {
        engine,
        term,
        sink,
        board,
        answers,
        links: HashMap::new(),
    };
    tracing::info!(term, "market: serving forwarded requests");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            message = requests.next() => match message {
                Some(message) => service.on_request(message),
                None => break,
            },
        }
    }
    let _ = requests.unsubscribe().await;
    tracing::info!(term, "market: stopped serving forwarded requests");
    Ok(())
}

/// An answer on its way to the request's reply subject, through [`publish`] (see [`Answered::stock`]).
pub type Outgoing = (async_nats::Subject, Answered);

struct Service {
    engine: EngineHandle,
    term: i64,
    sink: mpsc::UnboundedSender<MarketEvent>,
    /// This market's own board: where an answer's [`StockMark`] is read.
    board: BoardReader,
    /// To [`publish`], which sends each answer after the levels it names.
    answers: mpsc::UnboundedSender<Outgoing>,
    /// Each manufacturer link on an edge: the sender the engine holds (weak, so that the engine
    /// dropping it ends the link).
    links: HashMap<String, mpsc::WeakUnboundedSender<Event>>,
}

/// Where a command's answer comes back on this node.
enum Pending {
    Answer(oneshot::Receiver<Result<Reply, WireError>>),
    Status(oneshot::Receiver<SystemStatus>),
    Admitted(oneshot::Receiver<Result<crate::engine::Admitted, WireError>>),
    Deleted(oneshot::Receiver<Result<crate::store::writer::Outcome, crate::store::StoreError>>),
    Taken,
}

impl Service {
    fn on_request(&mut self, message: async_nats::Message) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "market request without a reply subject");
            return;
        };
        let request = match decode_bus::<MarketRequest>(&message.payload) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "malformed market request");
                return;
            }
        };
        let marks = request.changes_the_board();
        let pending = match self.enter(request) {
            Ok(pending) => pending,
            Err(e) => {
                let answered = Answered {
                    term: self.term,
                    reply: MarketReply::Answer(Err(e)),
                    stock: None,
                };
                let _ = self.answers.send((reply_to, answered));
                return;
            }
        };
        let (answers, term, board) = (self.answers.clone(), self.term, self.board.clone());
        tokio::spawn(async move {
            let shutting = || WireError::new(ErrorCode::ShuttingDown, "the market is stopping");
            let reply = match pending {
                Pending::Answer(rx) => {
                    MarketReply::Answer(rx.await.unwrap_or_else(|_| Err(shutting())))
                }
                Pending::Status(rx) => match rx.await {
                    Ok(status) => MarketReply::Status(Box::new(status)),
                    Err(_) => MarketReply::Answer(Err(shutting())),
                },
                Pending::Admitted(rx) => {
                    MarketReply::Admitted(rx.await.unwrap_or_else(|_| Err(shutting())))
                }
                Pending::Deleted(rx) => MarketReply::Deleted(match rx.await {
                    Ok(Ok(_)) | Ok(Err(crate::store::StoreError::NotFound)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the market is stopping".into()),
                }),
                Pending::Taken => MarketReply::Taken,
            };
            // The engine put the command's effect on the board before it was answered.
            let stock = marks.then(|| mark(&board.levels.borrow()));
            let _ = answers.send((reply_to, Answered { term, reply, stock }));
        });
    }

    /// Where a forwarded command enters the market: it becomes the [`Command`] it stands for and
    /// goes to [`crate::engine::Engine::handle`] like a local session's.
    fn enter(&mut self, request: MarketRequest) -> Result<Pending, WireError> {
        let request = match request {
            MarketRequest::CustomersActive { accounts } => {
                for account in accounts {
                    self.engine.send(Command::CustomerLoggedIn(account))?;
                }
                return Ok(Pending::Taken);
            }
            other => other,
        };
        let (command, pending) = match request {
            MarketRequest::Cart { account, op } => answer(|tx| Command::Cart(account, op, tx)),
            MarketRequest::Checkout {
                account,
                checkout_id,
                lines,
                confirmed,
            } => answer(|tx| Command::Checkout(account, checkout_id, lines, confirmed, tx)),
            MarketRequest::Offer {
                manufacturer,
                month,
                lines,
            } => answer(|tx| Command::SubmitOffer(manufacturer, month, lines, tx)),
            MarketRequest::Ack {
                manufacturer,
                through,
            } => answer(|tx| Command::Ack(manufacturer, through, tx)),
            MarketRequest::CloseMonth => answer(Command::CloseMonth),
            MarketRequest::SetMonthLength { secs } => {
                answer(|tx| Command::SetMonthLength(secs, tx))
            }
            MarketRequest::RevokeManufacturer { name } => {
                answer(|tx| Command::RevokeManufacturer(name, tx))
            }
            MarketRequest::Status => {
                let (tx, rx) = oneshot::channel();
                (Command::Status(tx), Pending::Status(rx))
            }
            MarketRequest::CustomerLoggedIn { account } => {
                (Command::CustomerLoggedIn(account), Pending::Taken)
            }
            MarketRequest::CardChanged { account, expiry } => {
                (Command::CardChanged(account, expiry), Pending::Taken)
            }
            MarketRequest::DeleteAccount { account } => {
                let (tx, rx) = oneshot::channel();
                (Command::DeleteAccount(account, tx), Pending::Deleted(rx))
            }
            MarketRequest::ManufacturerHello { name, key, link } => self.hello(name, key, link),
            MarketRequest::CustomersActive { .. } => unreachable!("taken above"),
            MarketRequest::ManufacturerGone { manufacturer, link } => {
                let Some(events) = self.links.remove(&link).and_then(|w| w.upgrade()) else {
                    return Ok(Pending::Taken);
                };
                (
                    Command::ManufacturerGone(manufacturer, events),
                    Pending::Taken,
                )
            }
        };
        self.engine.send(command)?;
        Ok(pending)
    }

    /// A manufacturer on an edge: the engine gets a sender like a local link's, and a pump task
    /// publishes what the engine pushes into it, then [`LinkMessage::Ended`] when the engine drops it.
    fn hello(&mut self, name: String, key: Option<String>, link: String) -> (Command, Pending) {
        let (events, mut pushes) = mpsc::unbounded_channel();
        self.links.retain(|_, w| w.strong_count() > 0);
        self.links.insert(link.clone(), events.downgrade());
        let sink = self.sink.clone();
        tokio::spawn(async move {
            while let Some(event) = pushes.recv().await {
                let message = LinkMessage::Event(event);
                let _ = sink.send(MarketEvent::ToLink {
                    link: link.clone(),
                    message,
                });
            }
            let _ = sink.send(MarketEvent::ToLink {
                link,
                message: LinkMessage::Ended,
            });
        });
        let (tx, rx) = oneshot::channel();
        let command = Command::ManufacturerHello {
            name,
            key,
            events,
            reply: tx,
        };
        (command, Pending::Admitted(rx))
    }
}

fn answer(make: impl FnOnce(crate::engine::ReplyTx) -> Command) -> (Command, Pending) {
    let (tx, rx) = oneshot::channel();
    (make(tx), Pending::Answer(rx))
}

async fn publish_answer(
    client: &async_nats::Client,
    reply_to: async_nats::Subject,
    answered: Answered,
) {
    match encode_bus(&answered) {
        Ok(payload) => {
            if let Err(e) = client.publish(reply_to, payload.into()).await {
                tracing::warn!(error = %e, "cannot publish a market reply");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a market reply"),
    }
}

/// Publishes the market's board (catalog on change, levels coalesced to [`LEVELS_EVERY`], both again
/// every [`REPEAT_EVERY`]) and everything its publishing registries hand to `sink`, until `stop`.
/// Every outbox's durable position in `registry` is repeated too: an edge's relay that missed one
/// (NATS restarted) would otherwise wait for the manufacturer's next sale.
///
/// Answers go out here too, after what the engine pushed before them and after the levels their
/// [`Answered::stock`] names: when an answer names levels not yet sent, the board is sent at once,
/// ahead of the period. Both travel on this one client connection, so an edge receives the levels
/// before the answer.
pub async fn publish(
    bus: Bus,
    term: i64,
    registry: std::sync::Arc<crate::push::Registry>,
    mut board: BoardReader,
    mut sink: mpsc::UnboundedReceiver<MarketEvent>,
    mut answers: mpsc::UnboundedReceiver<Outgoing>,
    stop: CancellationToken,
) {
    let mut levels_due: Option<Instant> = None;
    let mut last_levels = Instant::now() - LEVELS_EVERY;
    let mut sent = StockMark {
        epoch: 0,
        version: 0,
    };
    let mut repeat = tokio::time::interval(REPEAT_EVERY);
    repeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            event = sink.recv() => match event {
                Some(event) => send(&bus, &event).await,
                None => break,
            },
            Some((reply_to, answered)) = answers.recv() => {
                if answered.stock.is_some_and(|named| named > sent) {
                    if board.catalog.has_changed().unwrap_or(false) {
                        board.catalog.borrow_and_update();
                        send_catalog(&bus, term, &board).await;
                    }
                    levels_due = None;
                    last_levels = Instant::now();
                    sent = send_levels(&bus, term, &mut board).await;
                }
                publish_answer(&bus.client, reply_to, answered).await;
            }
            changed = board.catalog.changed() => {
                if changed.is_err() { break }
                send_catalog(&bus, term, &board).await;
                levels_due.get_or_insert(Instant::now());
            }
            changed = board.levels.changed(), if levels_due.is_none() => {
                if changed.is_err() { break }
                levels_due = Some((last_levels + LEVELS_EVERY).max(Instant::now()));
            }
            _ = sleep_until(levels_due.unwrap_or_else(Instant::now)), if levels_due.is_some() => {
                levels_due = None;
                last_levels = Instant::now();
                sent = send_levels(&bus, term, &mut board).await;
            }
            _ = repeat.tick() => {
                send_catalog(&bus, term, &board).await;
                sent = send_levels(&bus, term, &mut board).await;
                for (manufacturer, through) in registry.outbox_positions() {
                    send(&bus, &MarketEvent::OutboxDurable { manufacturer, through }).await;
                }
            }
        }
    }
    // What the engine pushed last (a month closing at step-down) still goes out, and so do the
    // answers of what the writer commits while it drains (the service stopped taking requests).
    while let Ok(event) = sink.try_recv() {
        send(&bus, &event).await;
    }
    let deadline = Instant::now() + DRAIN_ANSWERS;
    while let Ok(Some((reply_to, answered))) =
        tokio::time::timeout_at(deadline, answers.recv()).await
    {
        if answered.stock.is_some_and(|named| named > sent) {
            sent = send_levels(&bus, term, &mut board).await;
        }
        publish_answer(&bus.client, reply_to, answered).await;
    }
    let _ = bus.client.flush().await;
}

/// The catalog on the board, in parts of at most [`CATALOG_PART_ITEMS`] listings.
async fn send_catalog(bus: &Bus, term: i64, board: &BoardReader) {
    let catalog = board.catalog.borrow().clone();
    let items = &catalog.snapshot.items;
    let parts = items.len().div_ceil(CATALOG_PART_ITEMS).max(1);
    for part in 0..parts {
        let start = part * CATALOG_PART_ITEMS;
        let end = (start + CATALOG_PART_ITEMS).min(items.len());
        let event = MarketEvent::Catalog {
            term,
            epoch: catalog.epoch,
            part: part as u32,
            last: part + 1 == parts,
            snapshot: CatalogSnapshot {
                month: catalog.snapshot.month.clone(),
                items: items[start..end].to_vec(),
                version: catalog.snapshot.version,
            },
        };
        send(bus, &event).await;
    }
}

/// Sends the levels on the board now, and says which they were.
async fn send_levels(bus: &Bus, term: i64, board: &mut BoardReader) -> StockMark {
    let levels = board.levels.borrow_and_update().clone();
    let event = MarketEvent::Levels {
        term,
        version: levels.version,
        epoch: levels.epoch,
        remaining: levels.remaining.iter().map(|(l, r)| (*l, *r)).collect(),
    };
    send(bus, &event).await;
    mark(&levels)
}

/// Where these levels stand on the market's board.
fn mark(levels: &crate::board::Levels) -> StockMark {
    StockMark {
        epoch: levels.epoch,
        version: levels.version,
    }
}

async fn send(bus: &Bus, event: &MarketEvent) {
    match encode_bus(event) {
        Ok(payload) => {
            if let Err(e) = bus
                .client
                .publish(bus.subjects.event(event), payload.into())
                .await
            {
                tracing::warn!(error = %e, "cannot publish a market event");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, subject = %event.subject(), "cannot encode a market event")
        }
    }
}

/// Publishes what an edge's own writes push (a dispatch report's order status) until `stop`.
pub async fn publish_only(
    bus: Bus,
    mut sink: mpsc::UnboundedReceiver<MarketEvent>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            event = sink.recv() => match event {
                Some(event) => send(&bus, &event).await,
                None => break,
            },
        }
    }
}
