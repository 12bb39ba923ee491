//! The live stock board: what watchers read, without asking the market.
//!
//! The market publishes two things through `watch` channels: the catalog (listings, names, prices;
//! changes when offers arrive or a month turns) and the stock levels (change with every sale). A
//! `watch` keeps only the latest value, so a watcher that falls behind simply reads the newest levels
//! next time: coalescing and bounded memory come for free. Each session diffs what it last sent
//! against the newest levels and sends one [`protocol::StockDelta`] at most every
//! [`crate::Config::stock_interval`].

use protocol::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Stock levels at one moment.
#[derive(Debug, Default, Clone)]
pub struct Levels {
    /// Bumped on every change.
    pub version: u64,
    /// Catalog epoch these levels belong to.
    pub epoch: u64,
    /// Listing → remaining.
    pub remaining: HashMap<ListingId, u32>,
}

/// The catalog at one epoch (levels as they were when it was made).
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Bumped when listings or prices change.
    pub epoch: u64,
    /// The snapshot.
    pub snapshot: CatalogSnapshot,
}

/// The publishing side, held by the engine.
pub struct Board {
    catalog: watch::Sender<Arc<Catalog>>,
    levels: watch::Sender<Arc<Levels>>,
}

/// The reading side, cloned into every session.
#[derive(Clone)]
pub struct BoardReader {
    /// The latest catalog.
    pub catalog: watch::Receiver<Arc<Catalog>>,
    /// The latest levels.
    pub levels: watch::Receiver<Arc<Levels>>,
}

impl Board {
    /// A board with an empty catalog.
    pub fn new() -> (Board, BoardReader) {
        let empty = Catalog {
            epoch: 0,
            snapshot: CatalogSnapshot {
                month: None,
                items: Vec::new(),
                version: 0,
            },
        };
        let (catalog, catalog_rx) = watch::channel(Arc::new(empty));
        let (levels, levels_rx) = watch::channel(Arc::new(Levels::default()));
        (
            Board { catalog, levels },
            BoardReader {
                catalog: catalog_rx,
                levels: levels_rx,
            },
        )
    }

    /// Publishes a new catalog.
    pub fn publish_catalog(&self, epoch: u64, snapshot: CatalogSnapshot) {
        self.catalog
            .send_replace(Arc::new(Catalog { epoch, snapshot }));
    }

    /// Publishes new levels.
    pub fn publish_levels(&self, levels: Levels) {
        self.levels.send_replace(Arc::new(levels));
    }
}

impl BoardReader {
    /// A full snapshot for a client: the catalog with current levels, sold-out items left out.
    pub fn snapshot(&self) -> CatalogSnapshot {
        let catalog = self.catalog.borrow().clone();
        let levels = self.levels.borrow().clone();
        let mut snapshot = catalog.snapshot.clone();
        if levels.epoch == catalog.epoch {
            for item in &mut snapshot.items {
                if let Some(remaining) = levels.remaining.get(&item.listing) {
                    item.remaining = *remaining;
                }
            }
            snapshot.version = levels.version;
        }
        snapshot.items.retain(|i| i.remaining > 0);
        snapshot
    }
}
