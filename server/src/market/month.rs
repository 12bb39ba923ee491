//! The monthly cycle: open, take offers, decide when to close, settle.

use super::{Listing, Market, Stock};
use protocol::*;
use std::collections::{BTreeSet, HashSet};

/// How long after opening a month waits for the expected offers before "sold out" may close it.
/// Without this grace, a month whose first offer sells out would close before the others arrive.
pub const OFFER_GRACE_MS: u64 = 5_000;

/// The cap on the default shortest month (`--min-month-secs`), in ms.
pub const MIN_MONTH_CAP_MS: u64 = 30_000;

/// The default shortest month for months of at most `month_ms`: a quarter of it, capped at 30 s.
pub fn default_min_month_ms(month_ms: u64) -> u64 {
    (month_ms / 4).min(MIN_MONTH_CAP_MS)
}

/// A selling month.
#[derive(Debug, Clone)]
pub struct Month {
    /// Its id.
    pub id: MonthId,
    /// Unix ms when it opened.
    pub opened_at_ms: u64,
    /// Unix ms when its time is up.
    pub ends_at_ms: u64,
    /// `None` while open; the close time and reason afterwards.
    pub closed: Option<(u64, CloseReason)>,
    /// Manufacturers expected to offer: those connected when it opened, and any asked later (one
    /// that connects, or catches up on its acks, while the month is open).
    pub expected: BTreeSet<ManufacturerId>,
    /// Manufacturers that were sent `OfferRequested`.
    pub requested: BTreeSet<ManufacturerId>,
    /// Manufacturers whose offer was accepted.
    pub offered: BTreeSet<ManufacturerId>,
    /// Customers logged in at any time while it was open (or who used a cart or bought in it).
    pub seen: HashSet<AccountId>,
    /// Customers who checked out in it. Always a subset of `seen`.
    pub bought: HashSet<AccountId>,
}

impl Month {
    /// Whether the month is selling.
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// As clients see it.
    pub fn view(&self) -> MonthView {
        MonthView {
            id: self.id,
            state: if self.is_open() {
                MonthState::Open
            } else {
                MonthState::Closed
            },
            opened_at_ms: self.opened_at_ms,
            ends_at_ms: self.ends_at_ms,
        }
    }
}

/// What accepting an offer changes.
#[derive(Debug, Clone)]
pub struct OfferPlan {
    /// The month.
    pub month: MonthId,
    /// The manufacturer.
    pub manufacturer: ManufacturerId,
    /// Listings created or renamed by this offer (to persist).
    pub listings: Vec<Listing>,
    /// The offer lines: listing → stock.
    pub stock: Vec<(ListingId, Stock)>,
    /// SKU → listing, for the reply.
    pub reply: Vec<(String, ListingId)>,
}

/// A settlement to send to one manufacturer.
#[derive(Debug, Clone)]
pub struct SettlementPlan {
    /// Who gets it.
    pub manufacturer: ManufacturerId,
    /// The notice (sequence number already taken).
    pub notice: Notice,
}

impl Market {
    /// Opens the next month. `connected` manufacturers are expected to offer.
    pub fn open_next_month(&mut self, now_ms: u64, month_ms: u64) -> MonthView {
        let id = MonthId(self.last_month.0 + 1);
        self.last_month = id;
        let expected = self
            .manufacturers
            .iter()
            .filter(|(_, m)| m.connected)
            .map(|(id, _)| *id)
            .collect();
        let month = Month {
            id,
            opened_at_ms: now_ms,
            ends_at_ms: now_ms.saturating_add(month_ms),
            closed: None,
            expected,
            requested: BTreeSet::new(),
            offered: BTreeSet::new(),
            seen: HashSet::new(),
            bought: HashSet::new(),
        };
        let view = month.view();
        self.month = Some(month);
        self.stock.clear();
        self.stock_version += 1;
        self.catalog_epoch += 1;
        view
    }

    /// Manufacturers that should be sent `OfferRequested` now: connected, drained (every earlier
    /// notice acked), not yet asked and not yet offered in the open month. That includes one that
    /// connected after the month opened: its goods join the open month. Marks them as asked and
    /// expected.
    pub fn due_offer_requests(&mut self) -> Vec<(ManufacturerId, MonthId)> {
        let Some(month) = self.month.as_mut().filter(|m| m.is_open()) else {
            return Vec::new();
        };
        let due: Vec<(ManufacturerId, MonthId)> = self
            .manufacturers
            .iter()
            .filter(|(id, m)| {
                m.connected
                    && m.drained()
                    && !month.requested.contains(id)
                    && !month.offered.contains(id)
            })
            .map(|(id, _)| (*id, month.id))
            .collect();
        for (id, _) in &due {
            month.requested.insert(*id);
            month.expected.insert(*id);
        }
        due
    }

    /// A manufacturer reconnected: if it was asked but never offered, it may be asked again.
    pub fn reset_offer_request(&mut self, id: ManufacturerId) {
        if let Some(month) = self.month.as_mut().filter(|m| m.is_open()) {
            if !month.offered.contains(&id) {
                month.requested.remove(&id);
            }
        }
    }

    /// Validates and applies an offer.
    pub fn submit_offer(
        &mut self,
        manufacturer: ManufacturerId,
        month_id: MonthId,
        lines: &[OfferLine],
    ) -> Result<OfferPlan, WireError> {
        let Some(month) = self.month.as_ref().filter(|m| m.is_open()) else {
            return Err(WireError::new(ErrorCode::Conflict, "no month is open"));
        };
        if month.id != month_id {
            return Err(WireError::new(
                ErrorCode::Conflict,
                format!("the open month is {}, not {}", month.id.0, month_id.0),
            ));
        }
        if month.offered.contains(&manufacturer) {
            return Err(WireError::new(
                ErrorCode::Conflict,
                "an offer for this month was already accepted",
            ));
        }
        if !month.requested.contains(&manufacturer) {
            return Err(WireError::new(
                ErrorCode::Conflict,
                "no offer was asked of you this month; acknowledge every notice, then wait to be asked",
            ));
        }
        if lines.len() > MAX_OFFER_LINES {
            return Err(WireError::new(
                ErrorCode::InvalidInput,
                format!("an offer may have at most {MAX_OFFER_LINES} lines"),
            ));
        }
        let mut skus = BTreeSet::new();
        for line in lines {
            if line.sku.is_empty()
                || line.sku.len() > MAX_SKU_BYTES
                || line.product.len() > MAX_PRODUCT_BYTES
            {
                return Err(WireError::new(
                    ErrorCode::InvalidInput,
                    format!("each line needs a SKU of 1-{MAX_SKU_BYTES} bytes and a product name of up to {MAX_PRODUCT_BYTES}"),
                ));
            }
            if line.category.len() > MAX_CATEGORY_BYTES
                || line.unit_price.0 == 0
                || line.unit_price.0 > 1 << 40
            {
                return Err(WireError::new(
                    ErrorCode::InvalidInput,
                    format!("{}: bad category or unit price", line.sku),
                ));
            }
            if !skus.insert(line.sku.as_str()) {
                return Err(WireError::new(
                    ErrorCode::InvalidInput,
                    format!("{}: SKU listed twice", line.sku),
                ));
            }
        }
        let products = self.offered_product_names(manufacturer, lines)?;
        let mut plan = OfferPlan {
            month: month_id,
            manufacturer,
            listings: Vec::new(),
            stock: Vec::new(),
            reply: Vec::new(),
        };
        for (line, product) in lines.iter().zip(products) {
            let key = (manufacturer, line.sku.clone());
            let id = match self.listing_by_sku.get(&key) {
                Some(id) => *id,
                None => {
                    let id = ListingId(self.next_listing);
                    self.next_listing += 1;
                    self.listing_by_sku.insert(key, id);
                    id
                }
            };
            let listing = Listing {
                id,
                manufacturer,
                sku: line.sku.clone(),
                product,
                category: line.category.clone(),
            };
            let changed = self.listings.get(&id).is_none_or(|old| {
                old.product != listing.product || old.category != listing.category
            });
            if changed {
                plan.listings.push(listing.clone());
                self.listings.insert(id, listing);
            }
            let stock = Stock {
                unit_price: line.unit_price,
                offered: line.quantity,
                remaining: line.quantity,
            };
            self.stock.insert(id, stock);
            plan.stock.push((id, stock));
            plan.reply.push((line.sku.clone(), id));
        }
        if let Some(month) = self.month.as_mut() {
            month.offered.insert(manufacturer);
        }
        self.stock_version += 1;
        self.catalog_epoch += 1;
        Ok(plan)
    }

    /// Whether the open month should close now, and why.
    pub fn close_reason(&self, now_ms: u64) -> Option<CloseReason> {
        let month = self.open_month()?;
        if now_ms >= month.ends_at_ms {
            return Some(CloseReason::TimeUp);
        }
        let offered: u64 = self.stock.values().map(|s| u64::from(s.offered)).sum();
        let remaining: u64 = self.stock.values().map(|s| u64::from(s.remaining)).sum();
        let offers_in = month.expected.is_subset(&month.offered)
            || now_ms >= month.opened_at_ms.saturating_add(OFFER_GRACE_MS);
        if offered > 0 && remaining == 0 && offers_in {
            return Some(CloseReason::SoldOut);
        }
        if self.every_customer_bought(month, now_ms) {
            return Some(CloseReason::AllCustomersDone);
        }
        None
    }

    /// The "every customer has bought" rule: the month has run its minimum length, someone was
    /// active in it, every customer active in it has checked out in it, and nobody holds a
    /// non-empty cart. The cart scan runs last, only when the cheap checks pass.
    fn every_customer_bought(&self, month: &Month, now_ms: u64) -> bool {
        now_ms >= month.opened_at_ms.saturating_add(self.min_month_ms)
            && !month.seen.is_empty()
            && month.bought.len() >= month.seen.len()
            && self.customers.values().all(|c| c.cart.is_empty())
    }

    /// A customer logged in (or resumed a session, or was logged in when the month opened): they
    /// are active in the open month.
    pub fn customer_seen(&mut self, account: AccountId) {
        if let Some(month) = self.month.as_mut().filter(|m| m.is_open()) {
            month.seen.insert(account);
        }
    }

    /// Sets the shortest time a month stays open before "every customer has bought" may close it.
    pub fn set_min_month_ms(&mut self, ms: u64) {
        self.min_month_ms = ms;
    }

    /// Closes the open month and writes a settlement notice for each manufacturer that offered.
    pub fn close_month(&mut self, reason: CloseReason, now_ms: u64) -> Vec<SettlementPlan> {
        let Some(month) = self.month.as_mut().filter(|m| m.is_open()) else {
            return Vec::new();
        };
        month.closed = Some((now_ms, reason));
        let month_id = month.id;
        let offered: Vec<ManufacturerId> = month.offered.iter().copied().collect();
        let mut plans = Vec::new();
        for manufacturer in offered {
            let lines = self
                .stock
                .iter()
                .filter_map(|(id, s)| {
                    let listing = self.listings.get(id)?;
                    (listing.manufacturer == manufacturer).then(|| SettlementLine {
                        sku: listing.sku.clone(),
                        offered: s.offered,
                        sold: s.offered - s.remaining,
                        unsold: s.remaining,
                    })
                })
                .collect();
            let seq = self.next_seq(manufacturer);
            plans.push(SettlementPlan {
                manufacturer,
                notice: Notice {
                    seq,
                    body: NoticeBody::Settlement(Settlement {
                        month: month_id,
                        reason,
                        lines,
                    }),
                },
            });
        }
        self.stock_version += 1;
        self.catalog_epoch += 1;
        plans
    }
}
