//! Who to push to: customers' sessions by account, manufacturers' relays, and everyone.
//!
//! Pushes never block the sender. A customer session's queue is bounded; if it is full the push is
//! dropped, and the client catches up on its next request. Stock levels do not travel through here at
//! all (see [`crate::board`]), so a slow client cannot build up a queue of them.

use protocol::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, watch};

/// How many pushes wait for one customer session before more are dropped.
pub const SESSION_QUEUE: usize = 64;

/// A session id and its push queue.
type SessionQueue = (u64, mpsc::Sender<Event>);

/// The registry of live connections to push to.
pub struct Registry {
    customers: Mutex<HashMap<AccountId, Vec<SessionQueue>>>,
    /// Month opened / closed, to every connection.
    everyone: broadcast::Sender<Event>,
    /// Per manufacturer: the highest notice sequence that is durable in the outbox.
    outbox: Mutex<HashMap<ManufacturerId, watch::Sender<NoticeSeq>>>,
    /// Customer connections open now, logged in or not (for the operator's status).
    customer_connections: AtomicU64,
    /// The newest operator status, published by the engine while someone watches.
    status: watch::Sender<Arc<SystemStatus>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            customers: Mutex::default(),
            everyone: broadcast::channel(16).0,
            outbox: Mutex::default(),
            customer_connections: AtomicU64::new(0),
            status: watch::channel(Arc::default()).0,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Registers a customer session; returns the receiver of its pushes.
    pub fn attach_customer(&self, account: AccountId, session: u64) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        lock(&self.customers)
            .entry(account)
            .or_default()
            .push((session, tx));
        rx
    }

    /// Unregisters a customer session.
    pub fn detach_customer(&self, account: AccountId, session: u64) {
        let mut map = lock(&self.customers);
        if let Some(list) = map.get_mut(&account) {
            list.retain(|(id, _)| *id != session);
            if list.is_empty() {
                map.remove(&account);
            }
        }
    }

    /// Every account with at least one logged-in session now.
    pub fn logged_in_accounts(&self) -> Vec<AccountId> {
        lock(&self.customers).keys().copied().collect()
    }

    /// Pushes an event to every session of one account.
    pub fn push_to_account(&self, account: AccountId, event: Event) {
        if let Some(list) = lock(&self.customers).get(&account) {
            for (_, tx) in list {
                let _ = tx.try_send(event.clone());
            }
        }
    }

    /// Pushes an event to every connection.
    pub fn broadcast(&self, event: Event) {
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
            .or_insert_with(|| watch::channel(start).0)
            .subscribe()
    }

    /// The writer reports notices durable through `seq`.
    pub fn outbox_durable(&self, id: ManufacturerId, seq: NoticeSeq) {
        let mut map = lock(&self.outbox);
        let tx = map.entry(id).or_insert_with(|| watch::channel(seq).0);
        tx.send_if_modified(|current| {
            if seq > *current {
                *current = seq;
                true
            } else {
                false
            }
        });
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

    /// Whether any operator connection watches the status.
    pub fn status_watched(&self) -> bool {
        self.status.receiver_count() > 0
    }

    /// The engine's newest status for watchers.
    pub fn publish_status(&self, status: SystemStatus) {
        self.status.send_replace(Arc::new(status));
    }

    /// Watches the operator status.
    pub fn watch_status(&self) -> watch::Receiver<Arc<SystemStatus>> {
        self.status.subscribe()
    }
}
