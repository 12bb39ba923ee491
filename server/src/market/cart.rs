//! Carts: kept per customer, checked against stock when something is added and when viewed.

use super::Market;
use protocol::*;

/// What a cart operation changed: the lines to persist and the view to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartOutcome {
    /// The account.
    pub account: AccountId,
    /// Lines whose quantity changed (0 = deleted), to persist.
    pub writes: Vec<CartItem>,
    /// The cart as the customer should see it now.
    pub view: CartView,
}

impl Market {
    /// Adds `quantity` to a line. The new total must be between 1 and what is available.
    pub fn add_to_cart(
        &mut self,
        account: AccountId,
        listing: ListingId,
        quantity: u32,
    ) -> Result<CartOutcome, WireError> {
        let current = self.cart_quantity(account, listing);
        let wanted = current.saturating_add(quantity);
        self.check_quantity(listing, quantity, wanted)?;
        if current == 0 {
            self.check_room_for_a_line(account)?;
        }
        self.set_line(account, listing, wanted);
        Ok(self.cart_outcome(
            account,
            vec![CartItem {
                listing,
                quantity: wanted,
            }],
            Vec::new(),
        ))
    }

    /// Sets a line's quantity; 0 removes it.
    pub fn set_cart_quantity(
        &mut self,
        account: AccountId,
        listing: ListingId,
        quantity: u32,
    ) -> Result<CartOutcome, WireError> {
        if quantity > 0 {
            self.check_quantity(listing, quantity, quantity)?;
            if self.cart_quantity(account, listing) == 0 {
                self.check_room_for_a_line(account)?;
            }
        }
        self.set_line(account, listing, quantity);
        Ok(self.cart_outcome(account, vec![CartItem { listing, quantity }], Vec::new()))
    }

    /// Empties the cart.
    pub fn clear_cart(&mut self, account: AccountId) -> CartOutcome {
        let removed: Vec<CartItem> = std::mem::take(&mut self.customer_mut(account).cart)
            .into_iter()
            .map(|l| CartItem { quantity: 0, ..l })
            .collect();
        self.cart_outcome(account, removed, Vec::new())
    }

    /// The cart, with every line cut to what is available now. Cuts are persisted and reported.
    pub fn view_cart(&mut self, account: AccountId) -> CartOutcome {
        let (writes, adjustments) = self.cut_cart(account);
        self.cart_outcome(account, writes, adjustments)
    }

    /// Cuts lines that cannot be filled down to what is available. Returns (writes, adjustments).
    pub(crate) fn cut_cart(&mut self, account: AccountId) -> (Vec<CartItem>, Vec<CartAdjustment>) {
        let lines = self
            .customers
            .get(&account)
            .map(|c| c.cart.clone())
            .unwrap_or_default();
        let mut writes = Vec::new();
        let mut adjustments = Vec::new();
        for line in lines {
            let available = self.available(line.listing);
            if line.quantity > available {
                writes.push(CartItem {
                    listing: line.listing,
                    quantity: available,
                });
                adjustments.push(self.adjustment(line.listing, line.quantity, available));
                self.set_line(account, line.listing, available);
            }
        }
        (writes, adjustments)
    }

    pub(crate) fn adjustment(&self, listing: ListingId, from: u32, to: u32) -> CartAdjustment {
        let (product, manufacturer_name) = self.names(listing);
        CartAdjustment {
            listing,
            product,
            manufacturer_name,
            from,
            to,
        }
    }

    pub(crate) fn names(&self, listing: ListingId) -> (String, String) {
        match self.listings.get(&listing) {
            Some(l) => (
                l.product.clone(),
                self.manufacturer_name(l.manufacturer).to_string(),
            ),
            None => (format!("listing {}", listing.0), "unknown".to_string()),
        }
    }

    fn cart_quantity(&self, account: AccountId, listing: ListingId) -> u32 {
        self.customers
            .get(&account)
            .and_then(|c| c.cart.iter().find(|l| l.listing == listing))
            .map_or(0, |l| l.quantity)
    }

    /// A new line fits only while the cart holds fewer than [`MAX_CART_LINES`]: what one checkout
    /// can buy, so every cart can be checked out.
    fn check_room_for_a_line(&self, account: AccountId) -> Result<(), WireError> {
        let lines = self.customers.get(&account).map_or(0, |c| c.cart.len());
        if lines < MAX_CART_LINES {
            return Ok(());
        }
        Err(WireError::field(
            ErrorCode::InvalidInput,
            Field::Listing,
            format!(
                "your cart is full: it holds at most {MAX_CART_LINES} lines, as many as one \
                 checkout can buy; check out or remove a line first"
            ),
        ))
    }

    fn check_quantity(&self, listing: ListingId, asked: u32, total: u32) -> Result<(), WireError> {
        if asked == 0 {
            return Err(WireError::field(
                ErrorCode::InvalidInput,
                Field::Quantity,
                "quantity must be at least 1",
            ));
        }
        let Some(stock) = self.stock(listing) else {
            return Err(WireError::field(
                ErrorCode::NotFound,
                Field::Listing,
                "this item is not on sale this month",
            ));
        };
        if total > MAX_LINE_QUANTITY {
            return Err(super::confirm::too_many_units());
        }
        if total > stock.remaining {
            let (product, _) = self.names(listing);
            return Err(WireError::field(
                ErrorCode::InvalidInput,
                Field::Quantity,
                format!(
                    "only {} {} left; your cart would hold {}",
                    stock.remaining, product, total
                ),
            ));
        }
        Ok(())
    }

    /// Sets a line without checks; 0 removes it. Marks the customer active this month.
    pub(crate) fn set_line(&mut self, account: AccountId, listing: ListingId, quantity: u32) {
        let customer = self.customer_mut(account);
        match customer.cart.iter().position(|l| l.listing == listing) {
            Some(i) if quantity == 0 => {
                customer.cart.remove(i);
            }
            Some(i) => customer.cart[i].quantity = quantity,
            None if quantity > 0 => customer.cart.push(CartItem { listing, quantity }),
            None => {}
        }
        self.customer_seen(account);
    }

    /// The cart view: every line with this month's price and availability.
    pub fn cart_view(&self, account: AccountId, adjustments: Vec<CartAdjustment>) -> CartView {
        let cart = self
            .customers
            .get(&account)
            .map(|c| c.cart.as_slice())
            .unwrap_or_default();
        self.lines_view(cart, adjustments)
    }

    /// Any lines priced as the cart is: this month's price and availability, and their total.
    pub(crate) fn lines_view(
        &self,
        items: &[CartItem],
        adjustments: Vec<CartAdjustment>,
    ) -> CartView {
        let mut total = Cents(0);
        let lines = items
            .iter()
            .map(|line| {
                let (product, manufacturer_name) = self.names(line.listing);
                let unit_price = self.stock(line.listing).map_or(Cents(0), |s| s.unit_price);
                total = unit_price
                    .times(line.quantity)
                    .and_then(|t| total.plus(t))
                    .unwrap_or(Cents(u64::MAX));
                CartLine {
                    listing: line.listing,
                    product,
                    manufacturer_name,
                    unit_price,
                    quantity: line.quantity,
                    available: self.available(line.listing),
                }
            })
            .collect();
        CartView {
            lines,
            total,
            adjustments,
        }
    }

    fn cart_outcome(
        &self,
        account: AccountId,
        writes: Vec<CartItem>,
        adjustments: Vec<CartAdjustment>,
    ) -> CartOutcome {
        CartOutcome {
            account,
            writes,
            view: self.cart_view(account, adjustments),
        }
    }
}
