//! One operator connection's live feed. After a `Status` request the session holds a
//! [`StatusWatch`]; [`StatusWatch::next`] resolves with the next delta, never sooner than
//! [`STATUS_PUSH_INTERVAL_MS`] after the previous one. The engine publishes through a `watch`
//! channel that keeps only the newest status, so a slow operator costs no memory: it simply gets a
//! bigger delta next time.
//!
//! `node_clients` is the one field that is not the market's: it counts the connections of the node
//! this operator is connected to (in a cluster the market may be another node), so the watch fills
//! it in from this node's registry.

use crate::push::Registry;
use protocol::{StatusDelta, SystemStatus, STATUS_PUSH_INTERVAL_MS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What one operator connection was last told, and the channel of newer statuses.
pub struct StatusWatch {
    newest: watch::Receiver<Arc<SystemStatus>>,
    sent: SystemStatus,
    sent_at: Instant,
    /// This node's connections, for `node_clients`.
    local: Arc<Registry>,
    /// A change arrived that is not pushed yet. Kept across cancellations of [`Self::next`], which
    /// the session's `select!` drops whenever another branch fires.
    due: bool,
}

impl StatusWatch {
    /// Starts watching after `sent` was given to the client.
    pub fn new(
        mut newest: watch::Receiver<Arc<SystemStatus>>,
        sent: SystemStatus,
        local: Arc<Registry>,
    ) -> Self {
        newest.mark_unchanged();
        StatusWatch {
            newest,
            sent,
            sent_at: Instant::now(),
            local,
            due: false,
        }
    }

    /// The next delta to push. Cancel-safe.
    pub async fn next(&mut self) -> StatusDelta {
        loop {
            if !self.due {
                if self.newest.changed().await.is_err() {
                    // The engine stopped: nothing more will change.
                    std::future::pending::<()>().await;
                }
                self.due = true;
            }
            tokio::time::sleep_until(self.sent_at + Duration::from_millis(STATUS_PUSH_INTERVAL_MS))
                .await;
            self.due = false;
            let mut newest = (**self.newest.borrow_and_update()).clone();
            newest.node_clients = self.local.customer_counts().0;
            if let Some(delta) = self.sent.delta_to(&newest) {
                self.sent = newest;
                self.sent_at = Instant::now();
                return delta;
            }
        }
    }
}

/// The next delta of an optional watch; never resolves without one.
pub async fn next_delta(watch: &mut Option<StatusWatch>) -> StatusDelta {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
