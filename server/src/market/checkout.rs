//! Checkout: all or nothing, idempotent by the client's checkout id, prices frozen into the order.

use super::confirm::{check_line_count, check_line_quantities};
use super::Market;
use protocol::*;
use std::collections::BTreeMap;

/// How long after its id's time a checkout id is kept in memory: a retry within it is answered from
/// memory, a later one with one indexed read (a shop retries within seconds, after a reconnect).
pub const RETRY_IN_MEMORY_MS: u64 = 120_000;

/// What the market remembers of a checkout id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub account: Option<AccountId>,
    pub order: OrderId,
    /// False until the writer reports the transaction committed.
    pub committed: bool,
}

/// Everything one successful checkout changes, for the writer to persist in one transaction.
#[derive(Debug, Clone)]
pub struct CheckoutPlan {
    /// The buyer.
    pub account: AccountId,
    /// The order, with prices frozen. Also the reply.
    pub order: OrderView,
    /// The manufacturer of each order line, in the same order as `order.lines`.
    pub line_manufacturers: Vec<ManufacturerId>,
    /// One sale notice per manufacturer involved.
    pub notices: Vec<(ManufacturerId, Notice)>,
    /// New stock levels: listing → remaining.
    pub stock: Vec<(ListingId, u32)>,
    /// Whether the cart was bought (and so must be cleared in the store).
    pub clears_cart: bool,
}

/// Why a checkout did not create an order.
#[derive(Debug, Clone)]
pub enum CheckoutError {
    /// Refused; nothing changed.
    Rejected(WireError),
    /// Some lines could not be filled; nothing was bought. For a cart checkout the cart was cut to
    /// what is available, and `cart_writes` must be persisted.
    OutOfStock {
        /// The error with every shortage.
        error: WireError,
        /// Cart lines to persist (quantity 0 = deleted).
        cart_writes: Vec<CartItem>,
    },
    /// The checkout id was used before by this account: answer with that order.
    Duplicate {
        /// The original order.
        order: OrderId,
        /// False while its transaction is still in flight.
        committed: bool,
    },
}

/// The writer's report that a batch of checkouts is durable.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The checkout ids in the batch.
    pub checkouts: Vec<CheckoutId>,
}

impl Market {
    /// Buys the cart (`lines == None`) or exactly `lines`, all or nothing, and only for the
    /// `confirmed_total` the customer agreed to.
    pub fn checkout(
        &mut self,
        account: AccountId,
        checkout_id: CheckoutId,
        lines: Option<Vec<CartItem>>,
        confirmed_total: Cents,
        now_ms: u64,
    ) -> Result<CheckoutPlan, CheckoutError> {
        if let Some(record) = self.checkouts.get(&checkout_id) {
            if record.account != Some(account) {
                return Err(CheckoutError::Rejected(WireError::new(
                    ErrorCode::Conflict,
                    "this checkout id was already used; generate a new one",
                )));
            }
            return Err(CheckoutError::Duplicate {
                order: record.order,
                committed: record.committed,
            });
        }
        let reject = |code, msg: &str| Err(CheckoutError::Rejected(WireError::new(code, msg)));
        let Some(month_id) = self.open_month().map(|m| m.id) else {
            return reject(
                ErrorCode::MonthClosed,
                "the month is closed; the next one opens shortly",
            );
        };
        let from_cart = lines.is_none();
        let wanted = match lines {
            Some(lines) => lines,
            None => self
                .customers
                .get(&account)
                .map(|c| c.cart.clone())
                .unwrap_or_default(),
        };
        if wanted.is_empty() {
            return reject(ErrorCode::EmptyCart, "your cart is empty");
        }
        check_line_count(wanted.len()).map_err(CheckoutError::Rejected)?;
        self.check_card(account, now_ms)
            .map_err(CheckoutError::Rejected)?;
        // Same-product lines are merged before they are checked, so two lines of 1 cannot both
        // take the last unit.
        let mut merged: BTreeMap<ListingId, u32> = BTreeMap::new();
        for line in &wanted {
            if line.quantity == 0 {
                return Err(CheckoutError::Rejected(WireError::field(
                    ErrorCode::InvalidInput,
                    Field::Quantity,
                    "every line needs a quantity of at least 1",
                )));
            }
            let q = merged.entry(line.listing).or_insert(0);
            *q = q.checked_add(line.quantity).ok_or_else(|| {
                CheckoutError::Rejected(WireError::field(
                    ErrorCode::InvalidInput,
                    Field::Quantity,
                    "the order total is larger than one order can be; buy fewer, or split the order",
                ))
            })?;
        }
        check_line_quantities(&merged).map_err(CheckoutError::Rejected)?;
        // A listing that never existed is not "sold out": say what adding it to a cart says.
        if let Some(unknown) = merged.keys().find(|l| !self.listings.contains_key(l)) {
            return Err(CheckoutError::Rejected(WireError::field(
                ErrorCode::NotFound,
                Field::Listing,
                format!("listing {} not found", unknown.0),
            )));
        }
        let shortages: Vec<Shortage> = merged
            .iter()
            .filter_map(|(listing, quantity)| {
                let available = self.available(*listing);
                (*quantity > available).then(|| {
                    let (product, manufacturer) = self.names(*listing);
                    Shortage {
                        listing: *listing,
                        product,
                        manufacturer,
                        requested: *quantity,
                        available,
                    }
                })
            })
            .collect();
        if !shortages.is_empty() {
            let names: Vec<String> = shortages
                .iter()
                .map(|s| match s.available {
                    0 if self.stock(s.listing).is_none() => {
                        format!(
                            "{} from {} is not on sale this month",
                            s.product, s.manufacturer
                        )
                    }
                    0 => format!("{} from {} is sold out", s.product, s.manufacturer),
                    n => format!("only {} {} from {} left", n, s.product, s.manufacturer),
                })
                .collect();
            let mut error = WireError::new(
                ErrorCode::OutOfStock,
                format!("nothing was bought: {}", names.join("; ")),
            );
            error.shortages = shortages;
            let cart_writes = if from_cart {
                let (writes, adjustments) = self.cut_cart(account);
                error.repriced = Some(Box::new(self.cart_view(account, adjustments)));
                writes
            } else {
                Vec::new()
            };
            return Err(CheckoutError::OutOfStock { error, cart_writes });
        }

        // Everything fits: take the stock and freeze the prices.
        let order_id = OrderId(self.next_order);
        let mut order_lines = Vec::with_capacity(merged.len());
        let mut line_manufacturers = Vec::with_capacity(merged.len());
        let mut stock_levels = Vec::with_capacity(merged.len());
        let mut sales: BTreeMap<ManufacturerId, Vec<SaleLine>> = BTreeMap::new();
        let mut total = Cents(0);
        for (listing_id, quantity) in &merged {
            let (Some(listing), Some(stock)) = (
                self.listings.get(listing_id),
                self.stock.get(listing_id).copied(),
            ) else {
                continue; // Unreachable: availability was checked above.
            };
            let Some(line_total) = stock.unit_price.times(*quantity) else {
                return reject(ErrorCode::InvalidInput, "the order total is larger than one order can be; buy fewer, or split the order");
            };
            // SQLite stores integers as i64: anything larger cannot be written, so refuse it here.
            let Some(new_total) = total.plus(line_total).filter(|t| t.0 <= i64::MAX as u64) else {
                return reject(ErrorCode::InvalidInput, "the order total is larger than one order can be; buy fewer, or split the order");
            };
            total = new_total;
            order_lines.push(OrderLine {
                listing: *listing_id,
                product: listing.product.clone(),
                manufacturer_name: self.manufacturer_name(listing.manufacturer).to_string(),
                unit_price: stock.unit_price,
                quantity: *quantity,
                line_total,
                status: LineStatus::Placed,
                status_at_ms: now_ms,
            });
            line_manufacturers.push(listing.manufacturer);
            sales
                .entry(listing.manufacturer)
                .or_default()
                .push(SaleLine {
                    sku: listing.sku.clone(),
                    quantity: *quantity,
                    unit_price: stock.unit_price,
                });
            stock_levels.push((*listing_id, stock.remaining - quantity));
        }
        if total != confirmed_total {
            let error = self.price_changed(account, from_cart, &merged, confirmed_total, total);
            return Err(CheckoutError::Rejected(error));
        }
        for (listing, remaining) in &stock_levels {
            if let Some(stock) = self.stock.get_mut(listing) {
                stock.remaining = *remaining;
            }
        }
        self.next_order += 1;
        self.stock_version += 1;
        let notices = sales
            .into_iter()
            .map(|(manufacturer, lines)| {
                let seq = self.next_seq(manufacturer);
                let body = NoticeBody::Sale(SaleNotice {
                    month: month_id,
                    order: order_id,
                    lines,
                });
                (manufacturer, Notice { seq, body })
            })
            .collect();
        if from_cart {
            self.customer_mut(account).cart.clear();
        }
        if let Some(month) = self.month.as_mut() {
            month.seen.insert(account);
            month.bought.insert(account);
        }
        self.checkouts.insert(
            checkout_id,
            Record {
                account: Some(account),
                order: order_id,
                committed: false,
            },
        );
        Ok(CheckoutPlan {
            account,
            order: OrderView {
                id: order_id,
                checkout_id,
                month: month_id,
                placed_at_ms: now_ms,
                lines: order_lines,
                total,
            },
            line_manufacturers,
            notices,
            stock: stock_levels,
            clears_cart: from_cart,
        })
    }

    /// True when a checkout id may belong to an order made before this process started that was
    /// not loaded (it is older than the loaded window): the caller looks it up on disk and, if found,
    /// tells the market with [`Market::remember_checkout`] before calling [`Market::checkout`].
    pub fn checkout_is_on_disk_only(&self, id: CheckoutId) -> bool {
        id < self.checkout_floor && !self.checkouts.contains_key(&id)
    }

    /// Forgets the committed checkout ids from before `now_ms - RETRY_IN_MEMORY_MS` and raises the
    /// floor to there, so that a retry of one is looked up on disk
    /// ([`Market::checkout_is_on_disk_only`]). Ids still being committed stay until they are.
    ///
    /// Without it the map held every checkout since the process started: at 50k checkouts/s, about
    /// 180 million entries (10 GB) an hour. The floor is a time, not an id seen, so a client that
    /// picks ids from the far future cannot push every other checkout onto the disk path.
    pub fn forget_old_checkouts(&mut self, now_ms: u64) {
        let floor = CheckoutId::from_parts(now_ms.saturating_sub(RETRY_IN_MEMORY_MS), 0);
        if floor <= self.checkout_floor {
            return;
        }
        let newer = self.checkouts.split_off(&floor);
        let older = std::mem::replace(&mut self.checkouts, newer);
        self.checkouts
            .extend(older.into_iter().filter(|(_, record)| !record.committed));
        self.checkout_floor = floor;
    }

    /// A committed checkout found on disk.
    pub fn remember_checkout(
        &mut self,
        id: CheckoutId,
        account: Option<AccountId>,
        order: OrderId,
    ) {
        self.checkouts.insert(
            id,
            Record {
                account,
                order,
                committed: true,
            },
        );
    }

    /// Marks checkouts durable, so retries get their order straight away.
    pub fn committed(&mut self, checkouts: &[CheckoutId]) {
        for id in checkouts {
            if let Some(record) = self.checkouts.get_mut(id) {
                record.committed = true;
            }
        }
    }
}
