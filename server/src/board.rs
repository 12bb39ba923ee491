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
    /// One catalog page for a client: the listings after `after` (all, from the first, for `None`)
    /// with current levels, sold-out ones left out, at most [`CATALOG_PAGE_LEN`]. Only the page is
    /// copied, so a big catalog costs a request no more than a small one.
    pub fn page(&self, after: Option<ListingId>) -> CatalogSnapshot {
        let catalog = self.catalog.borrow().clone();
        let levels = self.levels.borrow().clone();
        let current = levels.epoch == catalog.epoch;
        let items = &catalog.snapshot.items;
        // Listings are published in id order (the market keeps them in a BTreeMap).
        let start = after.map_or(0, |a| items.partition_point(|i| i.listing <= a));
        let page = items[start..]
            .iter()
            .map(|item| {
                let mut item = item.clone();
                if let Some(remaining) = levels.remaining.get(&item.listing).filter(|_| current) {
                    item.remaining = *remaining;
                }
                item
            })
            .filter(|i| i.remaining > 0)
            .take(CATALOG_PAGE_LEN)
            .collect();
        CatalogSnapshot {
            month: catalog.snapshot.month.clone(),
            items: page,
            version: if current {
                levels.version
            } else {
                catalog.snapshot.version
            },
        }
    }

    /// Every listing's level now, sold-out ones left out: what a new watcher counts as told, since
    /// pages it has not fetched yet will carry these levels or newer ones.
    pub fn levels_now(&self) -> HashMap<ListingId, u32> {
        let catalog = self.catalog.borrow().clone();
        let levels = self.levels.borrow().clone();
        catalog
            .snapshot
            .items
            .iter()
            .map(|item| {
                let remaining = match levels.epoch == catalog.epoch {
                    true => levels.remaining.get(&item.listing).copied(),
                    false => None,
                };
                (item.listing, remaining.unwrap_or(item.remaining))
            })
            .filter(|(_, remaining)| *remaining > 0)
            .collect()
    }
}
