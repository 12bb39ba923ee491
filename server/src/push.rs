//! Who to push to: customers' sessions by account, manufacturers' relays, and everyone.
//!
//! Pushes never block the sender. A customer session's queue is bounded; if it is full the push is
//! dropped, and the client catches up on its next request. Stock levels do not travel through here at
//! all (see [`crate::board`]), so a slow client cannot build up a queue of them.
//!
//! In cluster mode (`--nats`) the market's registry and the edge writer's are *publishing*
//! registries ([`Registry::publishing`]): what they would push (to an account, to everyone, an
//! outbox's durable position) goes to the message bus instead, and every node's own registry
//! delivers it to its connections ([`Registry::deliver_to_account`], [`Registry::broadcast_local`]).

use crate::broker::wire::MarketEvent;
use protocol::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How many pushes wait for one customer session before more are dropped.
pub const SESSION_QUEUE: usize = 64;

/// One logged-in connection: its id, the token it logged in with, its push queue, and the signal
/// that ends it when its token is revoked (a password change elsewhere, or the session cap).
struct SessionQueue {
    session: u64,
    token_hash: [u8; 32],
    pushes: mpsc::Sender<Event>,
    revoked: CancellationToken,
}

/// The registry of live connections to push to.
pub struct Registry {
    customers: Mutex<HashMap<AccountId, Vec<SessionQueue>>>,
    /// Month opened / closed, to every connection.
    everyone: broadcast::Sender<Event>,
    /// Per manufacturer: how far its outbox is durable, and the newest committed notices.
    outbox: Mutex<HashMap<ManufacturerId, OutboxFeed>>,
    /// Customer connections open now, logged in or not (for the operator's status).
    customer_connections: AtomicU64,
    /// The newest operator status, published by the engine while someone watches.
    status: watch::Sender<Arc<SystemStatus>>,
    /// In cluster mode: where pushes go instead of this process's connections (see the module doc).
    sink: Option<mpsc::UnboundedSender<MarketEvent>>,
    /// In cluster mode, on a node's own registry: revocations also go to the other nodes, where the
    /// account may have connections too.
    peers: Option<mpsc::UnboundedSender<MarketEvent>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            customers: Mutex::default(),
            everyone: broadcast::channel(16).0,
            outbox: Mutex::default(),
            customer_connections: AtomicU64::new(0),
            status: watch::channel(Arc::default()).0,
            sink: None,
            peers: None,
        }
    }
}

/// How many committed notices are kept in memory per manufacturer. Beyond the relay's window of 512
/// unacked notices, so that a relay that keeps up never reads the outbox table.
pub const RECENT_NOTICES: usize = 4096;

/// One manufacturer's outbox as the relay sees it.
struct OutboxFeed {
    /// The highest notice sequence that is durable.
    durable: watch::Sender<NoticeSeq>,
    /// The newest committed notices, with consecutive sequence numbers.
    recent: std::collections::VecDeque<Notice>,
}

impl OutboxFeed {
    fn new(start: NoticeSeq) -> Self {
        OutboxFeed {
            durable: watch::channel(start).0,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Keeps a committed notice; a gap (never expected) starts the run afresh.
    fn keep(&mut self, notice: Notice) {
        if self
            .recent
            .back()
            .is_some_and(|n| n.seq.0 + 1 != notice.seq.0)
        {
            self.recent.clear();
        }
        if self.recent.len() == RECENT_NOTICES {
            self.recent.pop_front();
        }
        self.recent.push_back(notice);
    }

    fn newest(&self) -> NoticeSeq {
        self.recent.back().map_or(NoticeSeq(0), |n| n.seq)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// A registry whose pushes go to `sink`, for the bus (cluster mode).
    pub fn publishing(sink: mpsc::UnboundedSender<MarketEvent>) -> Registry {
        Registry {
            sink: Some(sink),
            ..Registry::default()
        }
    }

    /// A node's own registry whose revocations reach the other nodes through `peers`.
    pub fn with_peers(peers: mpsc::UnboundedSender<MarketEvent>) -> Registry {
        Registry {
            peers: Some(peers),
            ..Registry::default()
        }
    }

    fn publish(&self, event: MarketEvent) -> bool {
        match &self.sink {
            Some(sink) => {
                let _ = sink.send(event);
                true
            }
            None => false,
        }
    }

    /// Registers a customer session logged in with `token_hash`; returns the receiver of its pushes
    /// and the signal that its token was revoked.
    pub fn attach_customer(
        &self,
        account: AccountId,
        session: u64,
        token_hash: [u8; 32],
    ) -> (mpsc::Receiver<Event>, CancellationToken) {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let revoked = CancellationToken::new();
        lock(&self.customers)
            .entry(account)
            .or_default()
            .push(SessionQueue {
                session,
                token_hash,
                pushes: tx,
                revoked: revoked.clone(),
            });
        (rx, revoked)
    }

    /// Unregisters a customer session.
    pub fn detach_customer(&self, account: AccountId, session: u64) {
        let mut map = lock(&self.customers);
        if let Some(list) = map.get_mut(&account) {
            list.retain(|q| q.session != session);
            if list.is_empty() {
                map.remove(&account);
            }
        }
    }

    /// Ends the live connections of an account whose token is not `keep` (after a password change),
    /// on every node.
    pub fn revoke_all_but(&self, account: AccountId, keep: [u8; 32]) {
        self.tell_peers(account, Vec::new(), Some(keep));
        self.revoke_all_but_here(account, keep);
    }

    /// Ends this process's connections of an account whose token is not `keep`.
    pub fn revoke_all_but_here(&self, account: AccountId, keep: [u8; 32]) {
        if let Some(list) = lock(&self.customers).get(&account) {
            for q in list.iter().filter(|q| q.token_hash != keep) {
                q.revoked.cancel();
            }
        }
    }

    /// Ends the live connections that use one of these tokens (evicted by the session cap), on every
    /// node.
    pub fn revoke_tokens(&self, account: AccountId, tokens: &[[u8; 32]]) {
        if !tokens.is_empty() {
            self.tell_peers(account, tokens.to_vec(), None);
        }
        self.revoke_tokens_here(account, tokens);
    }

    fn tell_peers(&self, account: AccountId, tokens: Vec<[u8; 32]>, all_but: Option<[u8; 32]>) {
        if let Some(peers) = &self.peers {
            let _ = peers.send(MarketEvent::Revoke {
                account,
                tokens,
                all_but,
            });
        }
    }

    /// Ends this process's connections that use one of these tokens.
    pub fn revoke_tokens_here(&self, account: AccountId, tokens: &[[u8; 32]]) {
        if let Some(list) = lock(&self.customers).get(&account) {
            for q in list.iter().filter(|q| tokens.contains(&q.token_hash)) {
                q.revoked.cancel();
            }
        }
    }

    /// Every account with at least one logged-in session now.
    pub fn logged_in_accounts(&self) -> Vec<AccountId> {
        lock(&self.customers).keys().copied().collect()
    }

    /// Pushes an event to every session of one account (through the bus, on a publishing registry).
    pub fn push_to_account(&self, account: AccountId, event: Event) {
        if !self.publish(MarketEvent::ToAccount {
            account,
            event: event.clone(),
        }) {
            self.deliver_to_account(account, event);
        }
    }

    /// Pushes an event to this process's sessions of one account.
    pub fn deliver_to_account(&self, account: AccountId, event: Event) {
        if let Some(list) = lock(&self.customers).get(&account) {
            for q in list {
                let _ = q.pushes.try_send(event.clone());
            }
        }
    }

    /// Pushes an event to every connection (through the bus, on a publishing registry).
    pub fn broadcast(&self, event: Event) {
        if !self.publish(MarketEvent::ToEveryone(event.clone())) {
            self.broadcast_local(event);
        }
    }

    /// Pushes an event to every connection of this process.
    pub fn broadcast_local(&self, event: Event) {
        let _ = self.everyone.send(event);
    }

    /// Subscribes to events for everyone.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Event> {
        self.everyone.subscribe()
    }

    /// Watches how far a manufacturer's outbox is durable. `start` seeds a new watch.
    pub fn watch_outbox(&self, id: ManufacturerId, start: NoticeSeq) -> watch::Receiver<NoticeSeq> {
        lock(&self.outbox)
            .entry(id)
            .or_insert_with(|| OutboxFeed::new(start))
            .durable
            .subscribe()
    }

    /// Everything through `seq` is durable (the engine says so when a manufacturer connects).
    pub fn outbox_durable(&self, id: ManufacturerId, seq: NoticeSeq) {
        self.publish(MarketEvent::OutboxDurable {
            manufacturer: id,
            through: seq,
        });
        let mut map = lock(&self.outbox);
        let feed = map.entry(id).or_insert_with(|| OutboxFeed::new(seq));
        feed.durable.send_if_modified(|current| {
            if seq > *current {
                *current = seq;
                true
            } else {
                false
            }
        });
    }

    /// How far each manufacturer's outbox is durable, as this registry knows it.
    pub fn outbox_positions(&self) -> Vec<(ManufacturerId, NoticeSeq)> {
        lock(&self.outbox)
            .iter()
            .map(|(id, feed)| (*id, *feed.durable.borrow()))
            .collect()
    }

    /// The writer hands over notices that just committed, in sequence order per manufacturer.
    pub fn outbox_committed(&self, notices: Vec<(ManufacturerId, Notice)>) {
        let mut map = lock(&self.outbox);
        let mut touched: Vec<ManufacturerId> = Vec::new();
        for (id, notice) in notices {
            let feed = map.entry(id).or_insert_with(|| OutboxFeed::new(notice.seq));
            feed.keep(notice);
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        for id in touched {
            if let Some(feed) = map.get(&id) {
                let newest = feed.newest();
                self.publish(MarketEvent::OutboxDurable {
                    manufacturer: id,
                    through: newest,
                });
                feed.durable.send_if_modified(|current| {
                    if newest > *current {
                        *current = newest;
                        true
                    } else {
                        false
                    }
                });
            }
        }
    }

    /// The committed notices with `after < seq <= through` (at most `limit`), if they are all still
    /// held in memory; `None` means the caller reads them from the outbox table.
    pub fn recent_notices(
        &self,
        id: ManufacturerId,
        after: NoticeSeq,
        through: NoticeSeq,
        limit: usize,
    ) -> Option<Vec<Notice>> {
        let map = lock(&self.outbox);
        let recent = &map.get(&id)?.recent;
        let first = recent.front()?.seq.0;
        let skip = usize::try_from((after.0 + 1).checked_sub(first)?).ok()?;
        if skip >= recent.len() {
            return None;
        }
        let wanted = usize::try_from(through.0.saturating_sub(after.0)).unwrap_or(usize::MAX);
        Some(
            recent
                .iter()
                .skip(skip)
                .take(wanted.min(limit))
                .cloned()
                .collect(),
        )
    }

    /// A customer connection finished its handshake.
    pub fn customer_connected(&self) {
        self.customer_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A customer connection ended.
    pub fn customer_disconnected(&self) {
        self.customer_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Customer connections open now, and how many of them are logged in.
    pub fn customer_counts(&self) -> (u64, u64) {
        let logged_in = lock(&self.customers).values().map(|l| l.len() as u64).sum();
        (self.customer_connections.load(Ordering::Relaxed), logged_in)
    }

    /// Whether any operator connection watches the status (on a publishing registry, an operator
    /// on any node may: always).
    pub fn status_watched(&self) -> bool {
        self.sink.is_some() || self.status.receiver_count() > 0
    }

    /// The engine's newest status for watchers (through the bus, on a publishing registry).
    pub fn publish_status(&self, status: SystemStatus) {
        if !self.publish(MarketEvent::Status(Box::new(status.clone()))) {
            self.status.send_replace(Arc::new(status));
        }
    }

    /// Watches the operator status.
    pub fn watch_status(&self) -> watch::Receiver<Arc<SystemStatus>> {
        self.status.subscribe()
    }
}
