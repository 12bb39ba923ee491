//! A simulated customer's own view of the stock, and the random choices it makes from it.
//!
//! The view starts from the catalog's pages and is kept fresh by the live `StockDelta`s the server
//! pushes (the `Catalog` request subscribed the connection) and by the shortages in `OutOfStock`
//! rejections. Choices are pure functions of the view and a seeded rng, so a seed replays the same
//! decisions against the same stock.

use protocol::{CartItem, CatalogSnapshot, Cents, ListingId, Shortage, StockDelta};
use rand::Rng;
use std::collections::BTreeMap;

/// Listings and what is left of each, as far as this customer knows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StockView {
    /// Sorted by listing id. Sold-out listings stay with 0 so that indices are stable and a pick is
    /// O(1): a random index, then a short probe forward past sold-out entries.
    levels: Vec<(ListingId, u32)>,
    /// How many entries have stock.
    in_stock: usize,
    /// The catalog version the levels belong to; older deltas are ignored.
    version: u64,
    /// This month's unit price of every listing in the last snapshot: what a checkout confirms.
    prices: BTreeMap<ListingId, Cents>,
}

impl StockView {
    /// A view of one catalog snapshot.
    pub fn from_snapshot(snapshot: &CatalogSnapshot) -> Self {
        let mut view = StockView::default();
        view.replace(snapshot);
        view
    }

    /// Forgets everything and takes the snapshot's levels.
    pub fn replace(&mut self, snapshot: &CatalogSnapshot) {
        self.levels = snapshot
            .items
            .iter()
            .map(|item| (item.listing, item.remaining))
            .collect();
        self.levels.sort_unstable_by_key(|(listing, _)| *listing);
        self.levels.dedup_by_key(|(listing, _)| *listing);
        self.prices = snapshot
            .items
            .iter()
            .map(|item| (item.listing, item.unit_price))
            .collect();
        self.version = snapshot.version;
        self.recount();
    }

    /// Adds a later catalog page: its listings join the view, and their levels replace what the view
    /// held. The version stays the first page's, so every delta sent after that page still applies.
    pub fn merge_page(&mut self, page: &CatalogSnapshot) {
        for item in &page.items {
            self.set(item.listing, item.remaining);
        }
    }

    /// Applies a live delta, unless it is older than what the view already holds.
    pub fn apply_delta(&mut self, delta: &StockDelta) {
        if delta.version < self.version {
            return;
        }
        self.version = delta.version;
        for &(listing, remaining) in &delta.levels {
            self.set(listing, remaining);
        }
    }

    /// Takes the levels an `OutOfStock` rejection reported.
    pub fn apply_shortages(&mut self, shortages: &[Shortage]) {
        for shortage in shortages {
            self.set(shortage.listing, shortage.available);
        }
    }

    /// What is left of one listing (0 when unknown or sold out).
    pub fn remaining(&self, listing: ListingId) -> u32 {
        match self.levels.binary_search_by_key(&listing, |(l, _)| *l) {
            Ok(i) => self.levels[i].1,
            Err(_) => 0,
        }
    }

    /// What `lines` cost at this month's prices as far as this customer knows (a listing it has no
    /// price for counts as free; the server then refuses the checkout and says the real total).
    pub fn total_of(&self, lines: &[CartItem]) -> Cents {
        lines
            .iter()
            .filter_map(|line| self.prices.get(&line.listing)?.times(line.quantity))
            .fold(Cents(0), |sum, cost| sum.plus(cost).unwrap_or(sum))
    }

    /// Takes the prices a `PriceChanged` refusal reported.
    pub fn apply_prices(&mut self, lines: &[protocol::CartLine]) {
        for line in lines {
            self.prices.insert(line.listing, line.unit_price);
        }
    }

    /// How many listings have stock.
    pub fn in_stock(&self) -> usize {
        self.in_stock
    }

    /// The catalog version of the view.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The in-stock listing with the smallest id: what "the first listing in the catalog" means here,
    /// so every customer agrees on it whatever order the snapshot listed items in.
    pub fn first_listing(&self) -> Option<ListingId> {
        self.levels
            .iter()
            .find(|(_, remaining)| *remaining > 0)
            .map(|(listing, _)| *listing)
    }

    /// One random in-stock listing that is not in `exclude`, with its level.
    pub fn pick_listing<R: Rng>(
        &self,
        rng: &mut R,
        exclude: &[ListingId],
    ) -> Option<(ListingId, u32)> {
        self.pick_listing_except(rng, |listing| exclude.contains(&listing))
    }

    /// One random in-stock listing for which `excluded` is false, with its level.
    fn pick_listing_except<R: Rng>(
        &self,
        rng: &mut R,
        excluded: impl Fn(ListingId) -> bool,
    ) -> Option<(ListingId, u32)> {
        if self.in_stock == 0 {
            return None;
        }
        let start = rng.random_range(0..self.levels.len());
        // Probe forward from a random start: bounded by the number of listings.
        (0..self.levels.len())
            .map(|step| self.levels[(start + step) % self.levels.len()])
            .find(|(listing, remaining)| *remaining > 0 && !excluded(*listing))
    }

    /// Up to `max_lines` distinct random in-stock lines (at least one if any listing is available),
    /// each for 1 to `max_quantity` units but never more than the view says is left. Listings in
    /// `exclude` are never picked.
    pub fn pick_lines<R: Rng>(
        &self,
        rng: &mut R,
        max_lines: usize,
        max_quantity: u32,
        exclude: &[ListingId],
    ) -> Vec<CartItem> {
        let wanted = rng.random_range(1..=max_lines.max(1));
        let mut lines: Vec<CartItem> = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            // Lines already chosen are excluded too; no list of "taken" is built for it (this runs
            // once per checkout).
            let taken = |l: ListingId| exclude.contains(&l) || lines.iter().any(|c| c.listing == l);
            let Some((listing, remaining)) = self.pick_listing_except(rng, taken) else {
                break;
            };
            let quantity = rng.random_range(1..=max_quantity.max(1).min(remaining));
            lines.push(CartItem { listing, quantity });
        }
        lines
    }

    fn set(&mut self, listing: ListingId, remaining: u32) {
        match self.levels.binary_search_by_key(&listing, |(l, _)| *l) {
            Ok(i) => {
                let before = self.levels[i].1;
                self.levels[i].1 = remaining;
                match (before > 0, remaining > 0) {
                    (true, false) => self.in_stock -= 1,
                    (false, true) => self.in_stock += 1,
                    _ => {}
                }
            }
            Err(i) => {
                // A listing the snapshot did not have (new offers usually come as a full catalog).
                self.levels.insert(i, (listing, remaining));
                if remaining > 0 {
                    self.in_stock += 1;
                }
            }
        }
    }

    fn recount(&mut self) {
        self.in_stock = self.levels.iter().filter(|(_, r)| *r > 0).count();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use protocol::{CatalogItem, Cents, ManufacturerId};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A catalog with one listing per `(listing, remaining)`; shared with the customer tests.
    pub(crate) fn snapshot(levels: &[(u32, u32)], version: u64) -> CatalogSnapshot {
        CatalogSnapshot {
            month: None,
            items: levels
                .iter()
                .map(|&(listing, remaining)| CatalogItem {
                    listing: ListingId(listing),
                    manufacturer: ManufacturerId(1),
                    manufacturer_name: "m".into(),
                    sku: format!("sku-{listing}"),
                    product: "p".into(),
                    category: "c".into(),
                    unit_price: Cents(100),
                    offered: remaining,
                    remaining,
                })
                .collect(),
            version,
        }
    }

    #[test]
    fn the_same_seed_picks_the_same_lines_from_the_same_stock() {
        let view = StockView::from_snapshot(&snapshot(&[(5, 3), (2, 10), (9, 1), (7, 4)], 1));
        let picks = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| view.pick_lines(&mut rng, 3, 2, &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(42), picks(42));
        assert_ne!(picks(42), picks(43));
    }

    #[test]
    fn picked_lines_are_distinct_in_stock_within_levels_and_never_excluded() {
        let view = StockView::from_snapshot(&snapshot(&[(1, 1), (2, 0), (3, 5), (4, 2)], 1));
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let lines = view.pick_lines(&mut rng, 3, 3, &[ListingId(4)]);
            assert!(!lines.is_empty() && lines.len() <= 2, "{lines:?}");
            let mut ids: Vec<_> = lines.iter().map(|l| l.listing).collect();
            ids.dedup();
            assert_eq!(ids.len(), lines.len());
            for line in &lines {
                assert_ne!(line.listing, ListingId(2), "sold out");
                assert_ne!(line.listing, ListingId(4), "excluded");
                assert!(line.quantity >= 1 && line.quantity <= view.remaining(line.listing));
            }
        }
    }

    #[test]
    fn deltas_and_shortages_update_levels_but_stale_deltas_are_ignored() {
        let mut view = StockView::from_snapshot(&snapshot(&[(1, 5), (2, 5)], 10));
        view.apply_delta(&StockDelta {
            version: 12,
            levels: vec![(ListingId(1), 0), (ListingId(3), 4)],
        });
        assert_eq!((view.remaining(ListingId(1)), view.in_stock()), (0, 2));
        view.apply_delta(&StockDelta {
            version: 11,
            levels: vec![(ListingId(1), 5)],
        });
        assert_eq!(view.remaining(ListingId(1)), 0, "stale delta applied");
        view.apply_shortages(&[Shortage {
            listing: ListingId(2),
            product: "p".into(),
            manufacturer: "m".into(),
            requested: 3,
            available: 0,
        }]);
        assert_eq!(view.in_stock(), 1);
        assert_eq!(view.first_listing(), Some(ListingId(3)));
    }

    #[test]
    fn an_empty_or_sold_out_view_picks_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let empty = StockView::default();
        assert!(empty.pick_lines(&mut rng, 3, 2, &[]).is_empty());
        let sold_out = StockView::from_snapshot(&snapshot(&[(1, 0), (2, 0)], 1));
        assert!(sold_out.pick_listing(&mut rng, &[]).is_none());
        assert_eq!(sold_out.first_listing(), None);
    }
}
