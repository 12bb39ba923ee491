//! The market: live stock, carts, checkouts, months and outbox sequence numbers.
//!
//! Pure domain logic, no I/O. One task ([`crate::engine`]) owns the only `Market` and applies commands
//! one after another, so two buyers can never take the same unit: overselling is impossible by
//! construction, not by locking. Each operation returns a plan (what to persist, what to tell whom);
//! the engine carries the plan out.

mod cart;
mod checkout;
mod confirm;
mod month;
mod names;
mod status;

pub use cart::CartOutcome;
pub use checkout::{CheckoutError, CheckoutPlan, Committed, RETRY_IN_MEMORY_MS};
pub use month::{default_min_month_ms, Month, OfferPlan, MIN_MONTH_CAP_MS};

use protocol::*;
use std::collections::{BTreeMap, HashMap};

/// One product from one manufacturer. Its id is stable across months.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Its id.
    pub id: ListingId,
    /// Who makes it.
    pub manufacturer: ManufacturerId,
    /// The manufacturer's SKU.
    pub sku: String,
    /// Product name (latest offered).
    pub product: String,
    /// Category (latest offered).
    pub category: String,
}

/// This month's offer of one listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    /// The frozen price for this month.
    pub unit_price: Cents,
    /// Units offered.
    pub offered: u32,
    /// Units left. Invariant: `remaining <= offered`.
    pub remaining: u32,
}

/// A manufacturer as the market tracks it.
#[derive(Debug, Clone)]
pub struct Manufacturer {
    /// Its stable name.
    pub name: String,
    /// The last notice written to its outbox.
    pub last_seq: NoticeSeq,
    /// The last notice it acked.
    pub acked_seq: NoticeSeq,
    /// Whether it is connected now.
    pub connected: bool,
}

impl Manufacturer {
    /// True when every notice written so far has been acked.
    pub fn drained(&self) -> bool {
        self.acked_seq >= self.last_seq
    }
}

/// A customer as the market tracks it: the cart and the expiry of the card on file.
#[derive(Debug, Clone, Default)]
pub struct Customer {
    /// Cart lines in the order they were added. Never two lines for one listing.
    pub cart: Vec<CartItem>,
    /// The (year, month) the card on file expires, or `None` without a card. Kept so that a card that
    /// expired while on file is refused at checkout.
    pub card_expiry: Option<(u16, u8)>,
}

/// Everything the market needs at start-up, loaded from the store.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every listing ever offered.
    pub listings: Vec<Listing>,
    /// Every manufacturer ever seen, with its outbox positions.
    pub manufacturers: Vec<(ManufacturerId, Manufacturer)>,
    /// Every customer with a cart or a card.
    pub customers: Vec<(AccountId, Customer)>,
    /// The last month, open or closed.
    pub month: Option<Month>,
    /// The offers of that month.
    pub stock: Vec<(ListingId, Stock)>,
    /// The checkouts with ids from `checkout_floor` on: id → (account, order).
    pub checkouts: Vec<(CheckoutId, Option<AccountId>, OrderId)>,
    /// Checkouts with smaller ids were not loaded; they are on disk only.
    pub checkout_floor: CheckoutId,
    /// The highest order id.
    pub last_order: OrderId,
    /// The highest month id.
    pub last_month: MonthId,
}

/// The live state of the distributor.
#[derive(Debug)]
pub struct Market {
    pub(crate) listings: HashMap<ListingId, Listing>,
    pub(crate) listing_by_sku: HashMap<(ManufacturerId, String), ListingId>,
    pub(crate) next_listing: u32,
    pub(crate) manufacturers: BTreeMap<ManufacturerId, Manufacturer>,
    pub(crate) next_manufacturer: u32,
    pub(crate) customers: HashMap<AccountId, Customer>,
    pub(crate) month: Option<Month>,
    pub(crate) last_month: MonthId,
    pub(crate) stock: BTreeMap<ListingId, Stock>,
    /// Checkout id → (account, order, committed). Lets a retry return the original order. Ordered by
    /// id (ids are time-ordered), so that [`Market::forget_old_checkouts`] cuts the old ones off at once.
    pub(crate) checkouts: BTreeMap<CheckoutId, checkout::Record>,
    /// Ids below this that are not in `checkouts` may still be on disk (see [`Market::checkout_is_on_disk_only`]).
    pub(crate) checkout_floor: CheckoutId,
    pub(crate) next_order: u64,
    /// Bumped whenever a stock level changes, so watchers can tell stale deltas from new ones.
    pub(crate) stock_version: u64,
    /// Bumped whenever the set of listings on sale or their prices change.
    pub(crate) catalog_epoch: u64,
    /// How long a month stays open at least before "every customer has bought" may close it.
    pub(crate) min_month_ms: u64,
}

impl Market {
    /// Rebuilds the market from what the store loaded.
    pub fn restore(snapshot: Snapshot) -> Self {
        let mut market = Market {
            listings: HashMap::new(),
            listing_by_sku: HashMap::new(),
            next_listing: 1,
            manufacturers: BTreeMap::new(),
            next_manufacturer: 1,
            customers: snapshot.customers.into_iter().collect(),
            month: snapshot.month,
            last_month: snapshot.last_month,
            stock: snapshot.stock.into_iter().collect(),
            checkouts: BTreeMap::new(),
            checkout_floor: snapshot.checkout_floor,
            next_order: snapshot.last_order.0 + 1,
            stock_version: 1,
            catalog_epoch: 1,
            min_month_ms: 0,
        };
        for listing in snapshot.listings {
            market.next_listing = market.next_listing.max(listing.id.0 + 1);
            market
                .listing_by_sku
                .insert((listing.manufacturer, listing.sku.clone()), listing.id);
            market.listings.insert(listing.id, listing);
        }
        for (id, mut manufacturer) in snapshot.manufacturers {
            manufacturer.connected = false;
            market.next_manufacturer = market.next_manufacturer.max(id.0 + 1);
            market.manufacturers.insert(id, manufacturer);
        }
        for (checkout, account, order) in snapshot.checkouts {
            market.checkouts.insert(
                checkout,
                checkout::Record {
                    account,
                    order,
                    committed: true,
                },
            );
        }
        market
    }

    /// The open month, if any.
    pub fn open_month(&self) -> Option<&Month> {
        self.month.as_ref().filter(|m| m.is_open())
    }

    /// The current (last) month as clients see it.
    pub fn month_view(&self) -> Option<MonthView> {
        self.month.as_ref().map(Month::view)
    }

    /// The listing with this id.
    pub fn listing(&self, id: ListingId) -> Option<&Listing> {
        self.listings.get(&id)
    }

    /// This month's stock of a listing, if it is on sale in the open month.
    pub fn stock(&self, id: ListingId) -> Option<&Stock> {
        self.open_month()?;
        self.stock.get(&id)
    }

    /// Units available now (0 when not on sale).
    pub fn available(&self, id: ListingId) -> u32 {
        self.stock(id).map_or(0, |s| s.remaining)
    }

    /// The manufacturer's name, or a placeholder that never panics.
    pub fn manufacturer_name(&self, id: ManufacturerId) -> &str {
        self.manufacturers
            .get(&id)
            .map_or("unknown manufacturer", |m| m.name.as_str())
    }

    /// The manufacturers the market knows.
    pub fn manufacturers(&self) -> impl Iterator<Item = (ManufacturerId, &Manufacturer)> {
        self.manufacturers.iter().map(|(id, m)| (*id, m))
    }

    /// A manufacturer by id.
    pub fn manufacturer(&self, id: ManufacturerId) -> Option<&Manufacturer> {
        self.manufacturers.get(&id)
    }

    /// The id for a manufacturer name, registering a new one if needed. Returns `(id, is_new)`.
    pub fn register_manufacturer(&mut self, name: &str) -> (ManufacturerId, bool) {
        if let Some((id, _)) = self.manufacturers.iter().find(|(_, m)| m.name == name) {
            return (*id, false);
        }
        let id = ManufacturerId(self.next_manufacturer);
        self.next_manufacturer += 1;
        self.manufacturers.insert(
            id,
            Manufacturer {
                name: name.to_string(),
                last_seq: NoticeSeq(0),
                acked_seq: NoticeSeq(0),
                connected: false,
            },
        );
        (id, true)
    }

    /// Marks a manufacturer connected or gone.
    pub fn set_connected(&mut self, id: ManufacturerId, connected: bool) {
        if let Some(m) = self.manufacturers.get_mut(&id) {
            m.connected = connected;
        }
    }

    /// Records an ack. Returns false if `through` is beyond what was ever written (a lying peer).
    pub fn ack(&mut self, id: ManufacturerId, through: NoticeSeq) -> Result<bool, WireError> {
        let m = self
            .manufacturers
            .get_mut(&id)
            .ok_or_else(|| WireError::new(ErrorCode::NotFound, "unknown manufacturer"))?;
        if through > m.last_seq {
            return Err(WireError::new(
                ErrorCode::InvalidInput,
                format!(
                    "ack through {} but the last notice is {}",
                    through.0, m.last_seq.0
                ),
            ));
        }
        if through <= m.acked_seq {
            return Ok(false);
        }
        m.acked_seq = through;
        Ok(true)
    }

    /// Takes the next outbox sequence number for a manufacturer.
    pub(crate) fn next_seq(&mut self, id: ManufacturerId) -> NoticeSeq {
        match self.manufacturers.get_mut(&id) {
            Some(m) => {
                m.last_seq = NoticeSeq(m.last_seq.0 + 1);
                m.last_seq
            }
            // Unreachable by construction: listings only exist for registered manufacturers.
            None => NoticeSeq(0),
        }
    }

    /// The customer record, created empty on first use.
    pub(crate) fn customer_mut(&mut self, account: AccountId) -> &mut Customer {
        self.customers.entry(account).or_default()
    }

    /// Records the expiry (year, month) of an account's card; `None` when it has none.
    pub fn set_card(&mut self, account: AccountId, expiry: Option<(u16, u8)>) {
        self.customer_mut(account).card_expiry = expiry;
    }

    /// Forgets a deleted account's cart and month activity.
    pub fn forget_customer(&mut self, account: AccountId) {
        self.customers.remove(&account);
        if let Some(month) = self.month.as_mut() {
            month.seen.remove(&account);
            month.bought.remove(&account);
        }
    }

    /// The catalog as it is now: listings on sale with stock left.
    pub fn catalog(&self) -> CatalogSnapshot {
        let items = match self.open_month() {
            Some(_) => self
                .stock
                .iter()
                .filter(|(_, s)| s.remaining > 0)
                .filter_map(|(id, s)| self.catalog_item(*id, s))
                .collect(),
            None => Vec::new(),
        };
        CatalogSnapshot {
            month: self.month_view(),
            items,
            version: self.stock_version,
        }
    }

    fn catalog_item(&self, id: ListingId, stock: &Stock) -> Option<CatalogItem> {
        let listing = self.listings.get(&id)?;
        Some(CatalogItem {
            listing: id,
            manufacturer: listing.manufacturer,
            manufacturer_name: self.manufacturer_name(listing.manufacturer).to_string(),
            sku: listing.sku.clone(),
            product: listing.product.clone(),
            category: listing.category.clone(),
            unit_price: stock.unit_price,
            offered: stock.offered,
            remaining: stock.remaining,
        })
    }

    /// Current stock levels of every listing in the open month, for the live board.
    pub fn levels(&self) -> Vec<(ListingId, u32)> {
        if self.open_month().is_none() {
            return Vec::new();
        }
        self.stock
            .iter()
            .map(|(id, s)| (*id, s.remaining))
            .collect()
    }

    /// The stock version (bumped on every change).
    pub fn stock_version(&self) -> u64 {
        self.stock_version
    }

    /// The catalog epoch (bumped when listings or prices change).
    pub fn catalog_epoch(&self) -> u64 {
        self.catalog_epoch
    }

    /// Checks the market's own invariants. Called in debug builds after every command and by tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, s) in &self.stock {
            if s.remaining > s.offered {
                return Err(format!(
                    "{id}: remaining {} > offered {}",
                    s.remaining, s.offered
                ));
            }
            if !self.listings.contains_key(id) {
                return Err(format!("{id}: stock for an unknown listing"));
            }
        }
        for (account, c) in &self.customers {
            let mut seen = std::collections::HashSet::new();
            for line in &c.cart {
                if line.quantity == 0 || !seen.insert(line.listing) {
                    return Err(format!("{account}: bad cart line {line:?}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
