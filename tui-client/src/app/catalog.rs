//! The live catalog: stock that moves in place, filters, search, sort, and choosing a quantity.
//!
//! The catalog arrives in pages (a `Catalog` reply or an `Event::Catalog` first, then `CatalogPage`
//! replies). Each page is the truth for its range of listing ids, so a page replaces exactly the
//! listings in that range: the rest stays on screen until its own page comes, and the catalog never
//! flickers down to one page while the others load.

use super::{App, Cmd, FlashKind, ReqKind, RequestError, HIGHLIGHT_MS};
use crate::keys::{self, Nav};
use crate::strings;
use crate::widgets::text_input::{InputKind, TextInput};
use crossterm::event::{KeyCode, KeyEvent};
use protocol::paging::next_catalog_page;
use protocol::{
    CatalogItem, CatalogSnapshot, ListingId, Reply, RequestBody, StockDelta, MAX_CART_LINES,
    MAX_LINE_QUANTITY,
};
use std::collections::HashMap;

/// Samples kept per listing for its sparkline.
pub const HISTORY: usize = 60;
/// How often stock levels are sampled for the sparklines.
pub const SAMPLE_MS: u64 = 1_000;

/// Sort orders, cycled with `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Grouped by manufacturer, then category, then product.
    #[default]
    Maker,
    /// Grouped by category, then product.
    Category,
    /// Cheapest first.
    Price,
    /// Fewest left first (what sells out next).
    Scarce,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Maker => Sort::Category,
            Sort::Category => Sort::Price,
            Sort::Price => Sort::Scarce,
            Sort::Scarce => Sort::Maker,
        }
    }

    /// As shown in the title.
    pub fn label(self) -> &'static str {
        match self {
            Sort::Maker => "maker",
            Sort::Category => "category",
            Sort::Price => "price",
            Sort::Scarce => "fewest left",
        }
    }
}

/// A recent change of a listing's stock, for the highlight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub until_ms: u64,
    pub up: bool,
}

/// The catalog screen.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    /// Listings with stock.
    pub items: Vec<CatalogItem>,
    /// The catalog version the items are at; older deltas are ignored.
    pub version: u64,
    /// Whether a snapshot has arrived.
    pub loaded: bool,
    /// Sampled stock levels per listing, oldest first.
    pub history: HashMap<ListingId, Vec<u64>>,
    /// Listings whose stock just changed.
    pub changed: HashMap<ListingId, Change>,
    /// Row index into [`CatalogState::visible`].
    pub selected: usize,
    /// The selected listing, so the selection follows it when rows move.
    pub selected_id: Option<ListingId>,
    /// The quantity to add, 1 to what is left.
    pub qty: u32,
    pub search: TextInput,
    pub searching: bool,
    pub maker: Option<String>,
    pub category: Option<String>,
    pub sort: Sort,
    next_sample_ms: u64,
    /// The catalog page request in flight (its tag's sequence number and its cursor): only its
    /// reply is applied, so a chain of pages started before a newer first page cannot bring back
    /// older listings.
    pub page_request: Option<(u64, ListingId)>,
}

impl CatalogState {
    /// The rows to show: filtered, searched and sorted.
    pub fn visible(&self) -> Vec<&CatalogItem> {
        let needle = self.search.value().to_lowercase();
        let mut rows: Vec<&CatalogItem> = self
            .items
            .iter()
            .filter(|i| i.remaining > 0)
            .filter(|i| {
                self.maker
                    .as_ref()
                    .is_none_or(|m| &i.manufacturer_name == m)
            })
            .filter(|i| self.category.as_ref().is_none_or(|c| &i.category == c))
            .filter(|i| {
                needle.is_empty()
                    || i.product.to_lowercase().contains(&needle)
                    || i.category.to_lowercase().contains(&needle)
                    || i.manufacturer_name.to_lowercase().contains(&needle)
                    || i.sku.to_lowercase().contains(&needle)
            })
            .collect();
        match self.sort {
            Sort::Maker => rows.sort_by(|a, b| {
                (&a.manufacturer_name, &a.category, &a.product, a.listing).cmp(&(
                    &b.manufacturer_name,
                    &b.category,
                    &b.product,
                    b.listing,
                ))
            }),
            Sort::Category => rows.sort_by(|a, b| {
                (&a.category, &a.product, &a.manufacturer_name, a.listing).cmp(&(
                    &b.category,
                    &b.product,
                    &b.manufacturer_name,
                    b.listing,
                ))
            }),
            Sort::Price => rows.sort_by_key(|i| (i.unit_price, i.listing)),
            Sort::Scarce => rows.sort_by_key(|i| (i.remaining, i.listing)),
        }
        rows
    }

    /// The selected item, if any row is visible.
    pub fn current(&self) -> Option<&CatalogItem> {
        self.visible().get(self.selected).copied()
    }

    /// Every manufacturer name, sorted.
    pub fn makers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .items
            .iter()
            .map(|i| i.manufacturer_name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every category, sorted.
    pub fn categories(&self) -> Vec<String> {
        let mut v: Vec<String> = self.items.iter().map(|i| i.category.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Keeps the selection on the same listing when rows move, or on the same row when it left,
    /// and keeps the quantity within what is left.
    fn reselect(&mut self) {
        let (index, id, remaining) = {
            let rows = self.visible();
            let index = self
                .selected_id
                .and_then(|id| rows.iter().position(|i| i.listing == id))
                .unwrap_or_else(|| self.selected.min(rows.len().saturating_sub(1)));
            let item = rows.get(index);
            (
                index,
                item.map(|i| i.listing),
                item.map_or(0, |i| i.remaining),
            )
        };
        if id.is_none() {
            // Nothing to show (a month between offers, a filter with no match): keep the choice
            // so it comes back with the rows.
            self.selected = index;
            return;
        }
        if id != self.selected_id {
            self.qty = 1;
        }
        self.selected = index;
        self.selected_id = id;
        self.qty = self.qty.clamp(1, remaining.max(1));
    }

    fn select(&mut self, index: usize) {
        let id = self.visible().get(index).map(|i| i.listing);
        self.selected = index;
        if id != self.selected_id {
            self.selected_id = id;
            self.qty = 1;
        }
        self.reselect();
    }

    /// A full snapshot: replaces the items, keeps history and selection.
    pub fn replace(&mut self, snapshot: CatalogSnapshot, now_ms: u64) {
        self.take_page(snapshot, None, now_ms);
    }

    /// One page, the listings after `after` (from the first for `None`): replaces the listings in
    /// the range the page covers (up to its last listing, or to the end when it is the last page)
    /// and keeps history and selection. Returns the request for the next page, if there is one.
    pub fn take_page(
        &mut self,
        snapshot: CatalogSnapshot,
        after: Option<ListingId>,
        now_ms: u64,
    ) -> Option<RequestBody> {
        let next = next_catalog_page(&snapshot);
        let through = match &next {
            Some(_) => snapshot.items.last().map(|i| i.listing),
            None => None, // The last page: everything after `after`.
        };
        let covers = |listing: ListingId| {
            after.is_none_or(|a| listing > a) && through.is_none_or(|t| listing <= t)
        };
        for item in &snapshot.items {
            let old = self.items.iter().find(|i| i.listing == item.listing);
            if let Some(old) = old.filter(|o| o.remaining != item.remaining) {
                self.changed.insert(
                    item.listing,
                    Change {
                        until_ms: now_ms + HIGHLIGHT_MS,
                        up: item.remaining > old.remaining,
                    },
                );
            }
        }
        self.items.retain(|i| !covers(i.listing));
        self.items.extend(snapshot.items);
        self.items.retain(|i| i.remaining > 0);
        self.items.sort_by_key(|i| i.listing);
        if after.is_none() {
            // Later pages keep the first page's version, so every delta sent after it applies.
            self.version = snapshot.version;
        }
        self.loaded = true;
        self.sample();
        self.reselect();
        next
    }

    /// A live stock change. Levels of 0 remove the listing (sold out).
    pub fn apply_delta(&mut self, delta: StockDelta, now_ms: u64) {
        if delta.version < self.version {
            return;
        }
        self.version = delta.version;
        for (listing, remaining) in delta.levels {
            if let Some(item) = self.items.iter_mut().find(|i| i.listing == listing) {
                if item.remaining != remaining {
                    self.changed.insert(
                        listing,
                        Change {
                            until_ms: now_ms + HIGHLIGHT_MS,
                            up: remaining > item.remaining,
                        },
                    );
                    item.remaining = remaining;
                }
            }
        }
        self.items.retain(|i| i.remaining > 0);
        self.reselect();
    }

    /// Expires highlights and takes a stock sample once a second.
    pub fn on_tick(&mut self, now_ms: u64) {
        self.changed.retain(|_, c| c.until_ms > now_ms);
        if now_ms >= self.next_sample_ms {
            self.next_sample_ms = now_ms + SAMPLE_MS;
            self.sample();
        }
    }

    fn sample(&mut self) {
        for item in &self.items {
            let h = self.history.entry(item.listing).or_default();
            h.push(u64::from(item.remaining));
            if h.len() > HISTORY {
                h.remove(0);
            }
        }
    }
}

fn cycle(options: &[String], current: &Option<String>) -> Option<String> {
    match current {
        None => options.first().cloned(),
        Some(c) => {
            let i = options.iter().position(|o| o == c);
            i.and_then(|i| options.get(i + 1)).cloned()
        }
    }
}

impl App {
    /// A first catalog page, from a `Catalog` reply or an `Event::Catalog` push: cart lines in its
    /// range learn what is left, and the next page is asked for.
    pub(super) fn catalog_first_page(&mut self, snapshot: CatalogSnapshot) -> Vec<Cmd> {
        // A cart listing in the page's range but missing from it is sold out (or not offered).
        let through =
            next_catalog_page(&snapshot).and_then(|_| snapshot.items.last().map(|i| i.listing));
        let levels: Vec<_> = self
            .cart
            .view
            .lines
            .iter()
            .filter(|l| through.is_none_or(|t| l.listing <= t))
            .map(|l| {
                let left = snapshot
                    .items
                    .iter()
                    .find(|i| i.listing == l.listing)
                    .map_or(0, |i| i.remaining);
                (l.listing, left)
            })
            .collect();
        self.cart.apply_levels(&levels);
        self.cart.apply_prices(&snapshot.items);
        if snapshot.month.is_some() {
            self.month = snapshot.month.clone();
        }
        let next = self.catalog.take_page(snapshot, None, self.now_ms);
        self.request_catalog_page(next)
    }

    /// The reply to a `CatalogPage` request.
    pub(super) fn catalog_page_reply(
        &mut self,
        seq: u64,
        result: Result<Reply, RequestError>,
    ) -> Vec<Cmd> {
        let after = match self.catalog.page_request {
            Some((pending, after)) if pending == seq => after,
            _ => return Vec::new(), // A newer first page started a new chain.
        };
        self.catalog.page_request = None;
        let Ok(Reply::Catalog(page)) = result else {
            return Vec::new(); // Lost: the reconnect fetches the catalog again from its start.
        };
        let levels: Vec<_> = page
            .items
            .iter()
            .map(|i| (i.listing, i.remaining))
            .collect();
        let in_cart = |l: &(ListingId, u32)| self.cart.view.lines.iter().any(|c| c.listing == l.0);
        let levels: Vec<_> = levels.into_iter().filter(in_cart).collect();
        self.cart.apply_levels(&levels);
        self.cart.apply_prices(&page.items);
        let next = self.catalog.take_page(page, Some(after), self.now_ms);
        self.request_catalog_page(next)
    }

    fn request_catalog_page(&mut self, next: Option<RequestBody>) -> Vec<Cmd> {
        let Some(RequestBody::CatalogPage { after }) = next else {
            self.catalog.page_request = None;
            return Vec::new();
        };
        let cmd = self.request(ReqKind::CatalogPage, RequestBody::CatalogPage { after });
        if let Cmd::Send { tag, .. } = &cmd {
            self.catalog.page_request = Some((tag.seq, after));
        }
        vec![cmd]
    }

    pub(super) fn catalog_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let cat = &mut self.catalog;
        if cat.searching {
            match key.code {
                KeyCode::Enter => cat.searching = false,
                KeyCode::Esc => {
                    cat.searching = false;
                    cat.search = TextInput::new(InputKind::Text);
                }
                KeyCode::Up => cat.select(cat.selected.saturating_sub(1)),
                KeyCode::Down => cat.select(cat.selected + 1),
                _ => {
                    cat.search.handle_key(key);
                }
            }
            cat.reselect();
            return Vec::new();
        }
        if keys::is_char(&key, '/') {
            cat.searching = true;
            return Vec::new();
        }
        if keys::is_char(&key, 'm') {
            cat.maker = cycle(&cat.makers(), &cat.maker);
            cat.reselect();
            return Vec::new();
        }
        if keys::is_char(&key, 'c') {
            cat.category = cycle(&cat.categories(), &cat.category);
            cat.reselect();
            return Vec::new();
        }
        if keys::is_char(&key, 's') {
            cat.sort = cat.sort.next();
            cat.reselect();
            return Vec::new();
        }
        if keys::is_char(&key, 'x') {
            cat.maker = None;
            cat.category = None;
            cat.search = TextInput::new(InputKind::Text);
            cat.reselect();
            return Vec::new();
        }
        if keys::is_char(&key, 'a') {
            return self.add_selected();
        }
        if keys::is_char(&key, 'L') {
            cat.qty = cat.current().map_or(1, most_per_line);
            return Vec::new();
        }
        if keys::is_char(&key, 'H') {
            cat.qty = 1;
            return Vec::new();
        }
        let rows = cat.visible().len();
        match keys::nav(&key) {
            Some(Nav::Up) => cat.select(cat.selected.saturating_sub(1)),
            Some(Nav::Down) => cat.select((cat.selected + 1).min(rows.saturating_sub(1))),
            Some(Nav::PageUp) => cat.select(cat.selected.saturating_sub(10)),
            Some(Nav::PageDown) => cat.select((cat.selected + 10).min(rows.saturating_sub(1))),
            Some(Nav::Top) => cat.select(0),
            Some(Nav::Bottom) => cat.select(rows.saturating_sub(1)),
            Some(Nav::Left) => cat.qty = cat.qty.saturating_sub(1).max(1),
            Some(Nav::Right) => {
                let max = cat.current().map_or(1, most_per_line);
                cat.qty = (cat.qty + 1).min(max);
            }
            Some(Nav::Enter) => return self.add_selected(),
            Some(Nav::Back) => {}
            None => {}
        }
        Vec::new()
    }

    fn add_selected(&mut self) -> Vec<Cmd> {
        let Some(item) = self.catalog.current() else {
            return Vec::new();
        };
        let (listing, quantity) = (item.listing, self.catalog.qty.clamp(1, most_per_line(item)));
        let text = format!("Adding {} x {}...", quantity, item.product);
        // A new line beyond what one checkout can buy: say the limit instead of asking the server.
        let lines = &self.cart.view.lines;
        if lines.len() >= MAX_CART_LINES && !lines.iter().any(|l| l.listing == listing) {
            self.flash(FlashKind::Error, strings::cart_full());
            return Vec::new();
        }
        self.flash(FlashKind::Info, text);
        self.catalog.qty = 1;
        vec![self.request(
            ReqKind::AddToCart,
            RequestBody::AddToCart { listing, quantity },
        )]
    }
}

/// The most units of `item` one cart line can take: what is left, within [`MAX_LINE_QUANTITY`].
fn most_per_line(item: &CatalogItem) -> u32 {
    item.remaining.clamp(1, MAX_LINE_QUANTITY)
}
