//! Every node's side of the bus in cluster mode: its sessions' market commands go to the market
//! node, and what the market publishes comes back into this node's [`Board`] and [`Registry`], so
//! sessions work exactly as on a single node.
//!
//! - [`Edge::forward`] takes the commands of this node's [`crate::engine::EngineHandle`] (its
//!   sessions cannot tell) and sends each as a [`MarketRequest`] on its family's subject, in the order
//!   they came, with this node's own inbox as the reply subject. An answer that does not come within
//!   [`ATTEMPT`] is asked again if the request is safe to repeat (a checkout keeps its checkout id,
//!   which the market deduplicates); a request that found no market (no node holds the lease, or the
//!   new holder is still loading) is always asked again. After [`GIVE_UP`] the client gets
//!   [`ErrorCode::Busy`]: retry, with the same checkout id for a checkout.
//! - [`Edge::ingest`] subscribes to every event subject. Catalog and levels are renumbered into this
//!   node's own epochs and versions (a new market node starts its own), so a session always sees them
//!   grow; account pushes, month events and outbox positions go to this node's connections.
//! - Manufacturer links: the market keeps a sender per link as it does for a local one; its pushes
//!   come back on `events.link.<link>`. When a new market node takes over it knows none of the links,
//!   so the edge ends every link admitted by an older one, and the manufacturers connect again.
//!
//! Writes that are not the market's (sign-up, sessions, login throttling, cards, account changes,
//! dispatch reports, SSH keys) go from each node straight to PostgreSQL through an unfenced writer
//! (see [`crate::store::postgres::writer`]): none of them is state the market holds in memory, so a
//! stale market cannot contradict them, and the ones the market must know of (a card's expiry, a
//! login, a deleted account) are forwarded as commands. The fence guards only the market's writes.

use super::wire::{
    Answered, LinkMessage, MarketEvent, MarketReply, MarketRequest, StockMark, Subjects,
};
use super::Bus;
use crate::board::{Board, Levels};
use crate::engine::{Admitted, Command, ReplyTx};
use crate::push::Registry;
use crate::store::writer::Outcome;
use crate::store::StoreError;
use futures::StreamExt;
use protocol::codec::{decode_bus, encode_bus};
use protocol::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long one attempt waits for the market's answer.
pub const ATTEMPT: Duration = Duration::from_secs(2);
/// How long a request is retried in all before the client is told to retry: longer than a
/// fail-over (the lease is free at once after a `kill -9`; a paused holder's after about 2.5 s; then
/// the load).
pub const GIVE_UP: Duration = Duration::from_secs(12);
/// The most accounts in one [`MarketRequest::CustomersActive`].
const ACTIVE_CHUNK: usize = 10_000;
/// The longest an answer waits for this node's board to catch up with it ([`Edge::board_reaches`]).
const CATCH_UP: Duration = Duration::from_secs(1);
/// The pause before asking again when no market answered at all.
const NO_MARKET_PAUSE: Duration = Duration::from_millis(100);

/// One manufacturer link on this node.
struct Link {
    /// The sender its session's events come through; dropping it ends the session's link.
    events: mpsc::UnboundedSender<Event>,
    /// The lease epoch of the market that admitted it; `None` while the hello is on its way.
    term: Option<i64>,
}

/// This node's side of the bus.
pub struct Edge {
    client: async_nats::Client,
    subjects: Subjects,
    /// This node's reply subjects are `<inbox>.<n>`.
    inbox: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<async_nats::Message>>>,
    links: Mutex<HashMap<String, Link>>,
    /// This node's prefix for link names: its name as a subject token and its start time, so a
    /// restarted node never reuses a name.
    link_prefix: String,
    /// The market's levels this node's board holds now: the term, and the market's own position.
    board_at: watch::Sender<(i64, StockMark)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn busy() -> WireError {
    WireError::new(
        ErrorCode::Busy,
        "the market is not reachable right now; try again (a checkout with the same checkout id is applied at most once)",
    )
}

/// Where the market's answer to one command goes.
enum Answer {
    Reply(ReplyTx),
    Status(oneshot::Sender<SystemStatus>),
    Admitted(oneshot::Sender<Result<Admitted, WireError>>, String),
    Deleted(oneshot::Sender<Result<Outcome, StoreError>>),
    Nothing,
}

impl Edge {
    /// Connects this node's inbox; `node` names this node.
    pub async fn start(bus: Bus, node: &str) -> Result<Arc<Edge>, async_nats::SubscribeError> {
        let Bus { client, subjects } = bus;
        let inbox = client.new_inbox();
        let replies = client.subscribe(format!("{inbox}.*")).await?;
        let edge = Arc::new(Edge {
            client,
            subjects,
            inbox,
            next: AtomicU64::new(1),
            waiting: Mutex::default(),
            links: Mutex::default(),
            link_prefix: format!(
                "{}-{}",
                protocol::broker::name_token(node),
                crate::store::now_ms()
            ),
            board_at: watch::channel((0, StockMark::default())).0,
        });
        tokio::spawn(edge.clone().route_replies(replies));
        Ok(edge)
    }

    async fn route_replies(self: Arc<Self>, mut replies: async_nats::Subscriber) {
        while let Some(message) = replies.next().await {
            let n = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            let waiter = n.and_then(|n| lock(&self.waiting).remove(&n));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
            }
        }
    }

    /// Sends this node's market commands to the market node until `commands` closes.
    pub async fn forward(self: Arc<Self>, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            let Some((request, answer)) = self.request_for(command) else {
                continue;
            };
            // Sent here, in order; only the wait for the answer runs apart.
            let first = self.send(&request).await;
            let edge = self.clone();
            tokio::spawn(async move { edge.complete(request, first, answer).await });
        }
    }

    /// The request a command stands for, and where its answer goes.
    fn request_for(&self, command: Command) -> Option<(MarketRequest, Answer)> {
        Some(match command {
            Command::Cart(account, op, tx) => {
                (MarketRequest::Cart { account, op }, Answer::Reply(tx))
            }
            Command::Checkout(account, checkout_id, lines, confirmed, tx) => (
                MarketRequest::Checkout {
                    account,
                    checkout_id,
                    lines,
                    confirmed,
                },
                Answer::Reply(tx),
            ),
            Command::SubmitOffer(manufacturer, month, lines, tx) => (
                MarketRequest::Offer {
                    manufacturer,
                    month,
                    lines,
                },
                Answer::Reply(tx),
            ),
            Command::Ack(manufacturer, through, tx) => (
                MarketRequest::Ack {
                    manufacturer,
                    through,
                },
                Answer::Reply(tx),
            ),
            Command::CloseMonth(tx) => (MarketRequest::CloseMonth, Answer::Reply(tx)),
            Command::SetMonthLength(secs, tx) => {
                (MarketRequest::SetMonthLength { secs }, Answer::Reply(tx))
            }
            Command::RevokeManufacturer(name, tx) => (
                MarketRequest::RevokeManufacturer { name },
                Answer::Reply(tx),
            ),
            Command::Status(tx) => (MarketRequest::Status, Answer::Status(tx)),
            Command::CustomerLoggedIn(account) => {
                (MarketRequest::CustomerLoggedIn { account }, Answer::Nothing)
            }
            Command::CardChanged(account, expiry) => (
                MarketRequest::CardChanged { account, expiry },
                Answer::Nothing,
            ),
            Command::DeleteAccount(account, tx) => (
                MarketRequest::DeleteAccount { account },
                Answer::Deleted(tx),
            ),
            Command::ManufacturerHello {
                name,
                key,
                events,
                reply,
            } => self.hello(name, key, events, reply),
            Command::ManufacturerGone(manufacturer, events) => {
                let link = {
                    let mut links = lock(&self.links);
                    let found = links
                        .iter()
                        .find(|(_, l)| l.events.same_channel(&events))
                        .map(|(k, _)| k.clone())?;
                    links.remove(&found);
                    found
                };
                (
                    MarketRequest::ManufacturerGone { manufacturer, link },
                    Answer::Nothing,
                )
            }
        })
    }

    /// A manufacturer connected here: the link is known before the hello leaves, so that a push the
    /// market sends right after admitting it (`OfferRequested`) is not lost.
    fn hello(
        &self,
        name: String,
        key: Option<String>,
        events: mpsc::UnboundedSender<Event>,
        reply: oneshot::Sender<Result<Admitted, WireError>>,
    ) -> (MarketRequest, Answer) {
        let link = format!(
            "{}-{}",
            self.link_prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        lock(&self.links).insert(link.clone(), Link { events, term: None });
        let request = MarketRequest::ManufacturerHello {
            name,
            key,
            link: link.clone(),
        };
        (request, Answer::Admitted(reply, link))
    }

    /// Publishes one attempt; the receiver gets the answer (or a no-responders status).
    async fn send(
        &self,
        request: &MarketRequest,
    ) -> Option<(u64, oneshot::Receiver<async_nats::Message>)> {
        let payload = match encode_bus(request) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a market request");
                return None;
            }
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(n, tx);
        let reply_to = format!("{}.{n}", self.inbox);
        match self
            .client
            .publish_with_reply(self.subjects.request(request), reply_to, payload.into())
            .await
        {
            Ok(()) => Some((n, rx)),
            Err(e) => {
                lock(&self.waiting).remove(&n);
                tracing::warn!(error = %e, "cannot publish a market request");
                None
            }
        }
    }

    /// Waits for the answer, asking again as the module doc says, and delivers it.
    async fn complete(
        &self,
        request: MarketRequest,
        first: Option<(u64, oneshot::Receiver<async_nats::Message>)>,
        answer: Answer,
    ) {
        let give_up = Instant::now() + GIVE_UP;
        let mut attempt = first;
        loop {
            let retry = match attempt.take() {
                // The publish failed (not connected): it never reached the market.
                None => true,
                Some((n, rx)) => match tokio::time::timeout(ATTEMPT, rx).await {
                    Ok(Ok(message)) if is_no_responders(&message) => true,
                    Ok(Ok(message)) => match decode_bus::<Answered>(&message.payload) {
                        // A market that just lost the lease (a paused old holder, still subscribed
                        // for a moment) answers "store unavailable, nothing was changed": ask the
                        // new one.
                        Ok(answered)
                            if stepped_down(&answered.reply) && request.retry_on_timeout() =>
                        {
                            true
                        }
                        Ok(answered) => {
                            self.board_reaches(answered.term, answered.stock).await;
                            return self.deliver(answered, answer);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "malformed market reply");
                            return answer.fail(busy());
                        }
                    },
                    Ok(Err(_)) => true,
                    Err(_) => {
                        lock(&self.waiting).remove(&n);
                        request.retry_on_timeout()
                    }
                },
            };
            if !retry || Instant::now() >= give_up {
                tracing::warn!(subject = request.subject(), "no answer from the market");
                return answer.fail(busy());
            }
            tokio::time::sleep(NO_MARKET_PAUSE).await;
            attempt = self.send(&request).await;
        }
    }

    /// Holds an answer back until this node's board has the market's levels it names (or
    /// [`CATCH_UP`] passed: the levels were lost on the bus, and the periodic repeat brings them).
    /// A later catalog read on this node then shows the client's own checkout or offer.
    async fn board_reaches(&self, term: i64, stock: Option<StockMark>) {
        let Some(named) = stock else { return };
        let mut board_at = self.board_at.subscribe();
        let reached = board_at.wait_for(|at| *at >= (term, named));
        if tokio::time::timeout(CATCH_UP, reached).await.is_err() {
            tracing::debug!(term, ?named, "answering before the board caught up");
        }
    }

    fn deliver(&self, answered: Answered, answer: Answer) {
        let Answered { term, reply, .. } = answered;
        let mismatch = || WireError::new(ErrorCode::Internal, "the market answered something else");
        match (answer, reply) {
            (Answer::Reply(tx), MarketReply::Answer(result)) => {
                let _ = tx.send(result);
            }
            (Answer::Status(tx), MarketReply::Status(status)) => {
                let _ = tx.send(*status);
            }
            (Answer::Admitted(tx, link), MarketReply::Admitted(result)) => {
                match &result {
                    Ok(_) => {
                        if let Some(entry) = lock(&self.links).get_mut(&link) {
                            entry.term = Some(term);
                        }
                    }
                    Err(_) => {
                        lock(&self.links).remove(&link);
                    }
                }
                let _ = tx.send(result);
            }
            (Answer::Deleted(tx), MarketReply::Deleted(result)) => {
                let _ = tx.send(result.map(|()| Outcome::Done).map_err(StoreError::Foreign));
            }
            (Answer::Nothing, _) => {}
            (answer, MarketReply::Answer(Err(e))) => answer.fail(e),
            (answer, _) => answer.fail(mismatch()),
        }
    }

    /// Sends a request whose answer nobody waits for (retried like any other).
    async fn tell(self: &Arc<Self>, request: MarketRequest) {
        let first = self.send(&request).await;
        let edge = self.clone();
        tokio::spawn(async move { edge.complete(request, first, Answer::Nothing).await });
    }

    /// Feeds what the market publishes into this node's `board` and `registry` until `stop`. At a
    /// new month, the customers logged in here are reported active in it, since the market cannot
    /// see them.
    pub async fn ingest(
        self: Arc<Self>,
        board: Board,
        registry: Arc<Registry>,
        stop: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut events = self.client.subscribe(self.subjects.events()).await?;
        let mut numbering = Numbering::default();
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                message = events.next() => match message {
                    Some(message) => message,
                    None => return Ok(()),
                },
            };
            let event = match decode_bus::<MarketEvent>(&message.payload) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(subject = %message.subject, error = %e, "malformed market event");
                    continue;
                }
            };
            match event {
                MarketEvent::Catalog {
                    term,
                    epoch,
                    part,
                    last,
                    snapshot,
                } => {
                    self.observe_term(term);
                    numbering.catalog_part(&board, (term, epoch), part, last, snapshot);
                }
                MarketEvent::Levels {
                    term,
                    version,
                    epoch,
                    remaining,
                } => {
                    self.observe_term(term);
                    if numbering.levels(&board, term, version, epoch, remaining) {
                        let at = (term, StockMark { epoch, version });
                        self.board_at.send_if_modified(|now| {
                            let newer = at > *now;
                            if newer {
                                *now = at;
                            }
                            newer
                        });
                    }
                }
                MarketEvent::ToAccount { account, event } => {
                    registry.deliver_to_account(account, event)
                }
                MarketEvent::ToEveryone(event) => {
                    if matches!(event, Event::MonthOpened(_)) {
                        // Who is logged in here is active in the new month; in a few big requests.
                        for accounts in registry.logged_in_accounts().chunks(ACTIVE_CHUNK) {
                            let accounts = accounts.to_vec();
                            self.tell(MarketRequest::CustomersActive { accounts }).await;
                        }
                    }
                    registry.broadcast_local(event);
                }
                MarketEvent::OutboxDurable {
                    manufacturer,
                    through,
                } => registry.outbox_durable(manufacturer, through),
                MarketEvent::Status(status) => registry.publish_status(*status),
                MarketEvent::Revoke {
                    account,
                    tokens,
                    all_but,
                } => {
                    registry.revoke_tokens_here(account, &tokens);
                    if let Some(keep) = all_but {
                        registry.revoke_all_but_here(account, keep);
                    }
                }
                MarketEvent::ToLink { link, message } => self.to_link(&link, message),
            }
        }
    }

    fn to_link(&self, link: &str, message: LinkMessage) {
        let mut links = lock(&self.links);
        match message {
            LinkMessage::Event(event) => {
                if let Some(entry) = links.get(link) {
                    let _ = entry.events.send(event);
                }
            }
            LinkMessage::Ended => {
                links.remove(link);
            }
        }
    }

    /// A market of a newer term knows none of the links admitted before it: end them, so that their
    /// manufacturers connect (and say hello) again.
    fn observe_term(&self, term: i64) {
        let mut links = lock(&self.links);
        let before = links.len();
        links.retain(|_, l| l.term.is_none_or(|t| t >= term));
        if links.len() < before {
            tracing::info!(
                term,
                ended = before - links.len(),
                "a new market node: ending the manufacturer links admitted by the old one"
            );
        }
    }
}

impl Answer {
    fn fail(self, e: WireError) {
        match self {
            Answer::Reply(tx) => {
                let _ = tx.send(Err(e));
            }
            Answer::Admitted(tx, _) => {
                let _ = tx.send(Err(e));
            }
            Answer::Deleted(tx) => {
                let _ = tx.send(Err(StoreError::Foreign(e.message)));
            }
            // The session sees its channel close and answers "shutting down", which is retryable.
            Answer::Status(_) | Answer::Nothing => {}
        }
    }
}

/// Whether the answer says the market's store refused the write because it stepped down.
fn stepped_down(reply: &MarketReply) -> bool {
    matches!(reply, MarketReply::Answer(Err(e)) if e.code == ErrorCode::ShuttingDown)
}

fn is_no_responders(message: &async_nats::Message) -> bool {
    message.status == Some(async_nats::StatusCode::NO_RESPONDERS)
}

/// This node's own catalog epochs and level versions, so that what sessions see only grows when
/// the market node changes (each starts its own numbering).
#[derive(Default)]
struct Numbering {
    /// The market term and epoch of the catalog on the board now.
    source: Option<(i64, u64)>,
    /// The newest term seen: anything older is a stale market's.
    term: i64,
    epoch: u64,
    version: u64,
    source_version: Option<u64>,
    /// A catalog arriving in parts: its term and epoch, the next part expected, what came so far.
    assembling: Option<((i64, u64), u32, CatalogSnapshot)>,
}

impl Numbering {
    /// One part of a catalog: kept until the last part completes it. A part out of order (a
    /// message lost while NATS reconnected) drops the assembly; the repeat brings it again.
    fn catalog_part(
        &mut self,
        board: &Board,
        source: (i64, u64),
        part: u32,
        last: bool,
        snapshot: CatalogSnapshot,
    ) {
        if source.0 < self.term || self.source == Some(source) {
            return;
        }
        let assembly = match (part, self.assembling.take()) {
            (0, _) => Some((source, 1, snapshot)),
            (n, Some((key, next, mut whole))) if key == source && n == next => {
                whole.items.extend(snapshot.items);
                Some((key, next + 1, whole))
            }
            _ => None,
        };
        match assembly {
            Some((_, _, whole)) if last => self.catalog(board, source.0, source.1, whole),
            other => self.assembling = other,
        }
    }

    fn catalog(&mut self, board: &Board, term: i64, epoch: u64, mut snapshot: CatalogSnapshot) {
        if term < self.term || self.source == Some((term, epoch)) {
            return;
        }
        self.term = term;
        self.source = Some((term, epoch));
        self.source_version = None;
        self.epoch += 1;
        self.version += 1;
        snapshot.version = self.version;
        board.publish_catalog(self.epoch, snapshot);
    }

    fn levels(
        &mut self,
        board: &Board,
        term: i64,
        version: u64,
        epoch: u64,
        remaining: Vec<(ListingId, u32)>,
    ) -> bool {
        // Levels of a catalog not seen yet wait for it (it is published first, and repeated).
        if self.source != Some((term, epoch)) {
            return false;
        }
        if self.source_version == Some(version) {
            return true;
        }
        self.source_version = Some(version);
        self.version += 1;
        board.publish_levels(Levels {
            version: self.version,
            epoch: self.epoch,
            remaining: remaining.into_iter().collect(),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(listings: std::ops::Range<u32>) -> CatalogSnapshot {
        CatalogSnapshot {
            month: None,
            items: listings
                .map(|id| CatalogItem {
                    listing: ListingId(id),
                    manufacturer: ManufacturerId(1),
                    manufacturer_name: "m".into(),
                    sku: format!("s{id}"),
                    product: format!("p{id}"),
                    category: "c".into(),
                    unit_price: Cents(1),
                    offered: 5,
                    remaining: 5,
                })
                .collect(),
            version: 0,
        }
    }

    #[test]
    fn a_catalog_in_parts_reaches_the_board_whole_and_only_when_complete() {
        let (board, reader) = Board::new();
        let mut numbering = Numbering::default();
        numbering.catalog_part(&board, (1, 7), 0, false, part(0..2));
        numbering.catalog_part(&board, (1, 7), 1, false, part(2..4));
        assert_eq!(reader.catalog.borrow().snapshot.items.len(), 0);
        numbering.catalog_part(&board, (1, 7), 2, true, part(4..5));
        assert_eq!(reader.catalog.borrow().snapshot.items.len(), 5);
        assert_eq!(reader.catalog.borrow().epoch, 1);
        // A part missing: nothing is published until a whole repeat arrives.
        numbering.catalog_part(&board, (1, 8), 0, false, part(0..2));
        numbering.catalog_part(&board, (1, 8), 2, true, part(4..5));
        assert_eq!(reader.catalog.borrow().epoch, 1);
        numbering.catalog_part(&board, (1, 8), 0, true, part(0..1));
        assert_eq!(reader.catalog.borrow().epoch, 2);
    }

    #[test]
    fn a_new_market_node_never_makes_epochs_or_versions_go_back() {
        let (board, reader) = Board::new();
        let mut numbering = Numbering::default();
        numbering.catalog_part(&board, (1, 9), 0, true, part(0..1));
        numbering.levels(&board, 1, 50, 9, vec![(ListingId(0), 4)]);
        let before = (
            reader.catalog.borrow().epoch,
            reader.levels.borrow().version,
        );
        // The new holder starts its own numbering, lower than the old one's.
        numbering.catalog_part(&board, (2, 1), 0, true, part(0..1));
        numbering.levels(&board, 2, 1, 1, vec![(ListingId(0), 3)]);
        let after = (
            reader.catalog.borrow().epoch,
            reader.levels.borrow().version,
        );
        assert!(
            after.0 > before.0 && after.1 > before.1,
            "{before:?} → {after:?}"
        );
        // A stale market's message is ignored.
        numbering.catalog_part(&board, (1, 10), 0, true, part(0..3));
        assert_eq!(reader.catalog.borrow().snapshot.items.len(), 1);
    }
}
