//! The operator's view of the running system.
//!
//! - [`tracker`]: what the engine remembers only for operators: sales per second, since when each
//!   manufacturer is (dis)connected, when its oldest unacked notice was written, the last months.
//! - [`watch`]: one operator connection's live feed: coalesced [`protocol::StatusDelta`]s.
//!
//! The engine builds a [`SystemStatus`] with [`snapshot`] for every `Status` request, and, while
//! someone watches, publishes a fresh one through the [`crate::push::Registry`] every
//! [`PUBLISH_EVERY_MS`]; each watching session diffs what it last sent against the newest.

pub mod tracker;
pub mod watch;

use crate::market::Market;
use crate::push::Registry;
use protocol::SystemStatus;
pub use tracker::Tracker;

/// How often the engine rebuilds the published status while an operator watches. Half the push
/// interval, so a push never waits long for fresh numbers.
pub const PUBLISH_EVERY_MS: u64 = protocol::STATUS_PUSH_INTERVAL_MS / 2;

/// The whole status: the market's part, the tracker's, the connection counts and the month length.
pub fn snapshot(
    market: &Market,
    tracker: &Tracker,
    registry: &Registry,
    month_ms: u64,
    now_ms: u64,
) -> SystemStatus {
    let mut status = market.status();
    tracker.fill(&mut status, now_ms);
    let (connected, logged_in) = registry.customer_counts();
    status.customers.connected = connected;
    status.customers.logged_in = logged_in;
    // The registry is this process's: the connections of the node that answers.
    status.node_clients = connected;
    status.month_ms = month_ms;
    status
}
