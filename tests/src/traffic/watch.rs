//! Live stock fan-out: how long after a sale do watching customers see the new stock level?
//!
//! Method. A `StockDelta` carries no timestamp, so the sale's commit time is approximated from the
//! buyer's side:
//! - One probe customer owns one listing (the in-stock listing with the smallest id; the other buyers
//!   never pick it). Every probe interval (100 ms by default) it buys one unit of it with a one-line
//!   "buy now" checkout. Just before sending, it notes `t0` against the level the listing will have
//!   afterwards (`remaining - 1`).
//! - Each watcher (a signed-up customer that sent `Catalog` and then only listens) records, for every
//!   push that lowers the probe listing's level, `now - t0` of the probe that produced that level.
//! - The reported figure is the distribution of `t_seen - t0` over all watchers and probes. Because
//!   `t0` is taken before the checkout is even sent, it is an upper bound on commit-to-screen time: it
//!   includes the checkout's own round trip and commit, the server's coalescing window, the fan-out to
//!   every watcher, and this process's scheduling of 1,000 watcher tasks on the same machine.
//!
//! Pushes are coalesced by the server, so two probes landing in one window yield one sample per
//! watcher (for the later level); `samples` versus `expected_samples` shows how many were merged or
//! missed.

use super::customer::{Customer, Outcome};
use super::stats::percentile_ms;
use super::Shared;
use protocol::{CartItem, ErrorCode, Event, ListingId};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the probe notes when it sent each purchase, keyed by the level it leaves behind.
#[derive(Debug)]
pub struct ProbeBoard {
    /// The probe's listing.
    pub listing: ListingId,
    sent: Mutex<HashMap<u32, Instant>>,
    probes_ok: AtomicU64,
}

/// The fan-out part of a `watch` run's summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FanoutReport {
    /// The probe's listing.
    pub listing: u32,
    /// Watching customers.
    pub watchers: usize,
    /// Probe checkouts the server confirmed.
    pub probes_ok: u64,
    /// (watcher, probe) pairs measured.
    pub samples: u64,
    /// `probes_ok × watchers`: what `samples` would be with no coalescing or loss.
    pub expected_samples: u64,
    /// Median of `t_seen - t0`, ms.
    pub p50_ms: f64,
    /// 99th percentile of `t_seen - t0`, ms.
    pub p99_ms: f64,
    /// Largest `t_seen - t0`, ms.
    pub max_ms: f64,
}

impl ProbeBoard {
    /// A board for a probe that buys `listing`.
    pub fn new(listing: ListingId) -> Self {
        ProbeBoard {
            listing,
            sent: Mutex::new(HashMap::new()),
            probes_ok: AtomicU64::new(0),
        }
    }

    fn note_sent(&self, level_after: u32, at: Instant) {
        self.lock().insert(level_after, at);
    }

    fn sent_at(&self, level: u32) -> Option<Instant> {
        self.lock().get(&level).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Instant>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The report, from the shared fan-out histogram.
    pub fn report(&self, shared: &Shared, watchers: usize) -> FanoutReport {
        let h = shared.stats.fanout_histogram();
        let probes_ok = self.probes_ok.load(Ordering::Relaxed);
        FanoutReport {
            listing: self.listing.0,
            watchers,
            probes_ok,
            samples: h.len(),
            expected_samples: probes_ok * watchers as u64,
            p50_ms: percentile_ms(&h, 50.0),
            p99_ms: percentile_ms(&h, 99.0),
            max_ms: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1000.0
            },
        }
    }
}

/// The probe: one unit of the board's listing every `interval` until `deadline` or sold out.
pub async fn run_probe(
    customer: &mut Customer,
    shared: &Shared,
    deadline: Instant,
    board: &ProbeBoard,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only the probe buys this listing, so it knows the level exactly after its own purchases.
    let mut remaining = customer.stock().remaining(board.listing);
    while !customer.is_broken() && remaining > 0 {
        ticker.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        // Not needed for the probe's choices, but keeps its event queue from growing.
        customer.drain_events();
        let level_after = remaining - 1;
        board.note_sent(level_after, Instant::now());
        let line = CartItem {
            listing: board.listing,
            quantity: 1,
        };
        match customer.checkout(shared, Some(vec![line])).await {
            Outcome::Bought(_) => {
                remaining = level_after;
                board.probes_ok.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected(ErrorCode::OutOfStock) => {
                remaining = customer.stock().remaining(board.listing);
            }
            Outcome::Rejected(_) | Outcome::Failed => {}
        }
    }
}

/// A watcher: listens to pushes until `deadline` and times each drop of the probe listing's level.
pub async fn run_watcher(
    customer: &mut Customer,
    shared: &Shared,
    deadline: Instant,
    board: &ProbeBoard,
) {
    // Pushes that arrived during setup (for example the new month's catalog) come first.
    customer.drain_events();
    let mut last_level = match customer.stock().remaining(board.listing) {
        // Not in this watcher's view yet: any level seen later counts as a change.
        0 => u32::MAX,
        level => level,
    };
    loop {
        let event = match tokio::time::timeout_at(deadline.into(), customer.next_event()).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                // The connection closed under a watcher: that is a failure of the fan-out.
                shared.stats.error();
                return;
            }
            Err(_) => return,
        };
        let seen = Instant::now();
        let level = match &event {
            Event::Stock(delta) => delta
                .levels
                .iter()
                .find(|(listing, _)| *listing == board.listing)
                .map(|(_, level)| *level),
            Event::Catalog(snapshot) => snapshot
                .items
                .iter()
                .find(|item| item.listing == board.listing)
                .map(|item| item.remaining),
            _ => None,
        };
        if let Some(level) = level.filter(|level| *level < last_level) {
            last_level = level;
            if let Some(t0) = board.sent_at(level) {
                shared.stats.fanout(seen.saturating_duration_since(t0));
            }
        }
    }
}
