//! What a checkout must match before it takes anything: the limits of one checkout, a card that is
//! still good this month, and the total the customer confirmed.
//!
//! A customer is never charged differently from what they were shown: a new month's price or a line
//! cut to what is in stock both end in [`ErrorCode::PriceChanged`], carrying the lines and the total as
//! they are now, and nothing is bought.

use super::Market;
use protocol::*;
use std::collections::BTreeMap;

/// Refuses a checkout of more lines than [`MAX_CHECKOUT_LINES`], saying the limit.
pub(super) fn check_line_count(lines: usize) -> Result<(), WireError> {
    if lines <= MAX_CHECKOUT_LINES {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::InvalidInput,
        format!(
            "too many lines in one checkout: {lines}; one checkout holds at most {MAX_CHECKOUT_LINES}"
        ),
    ))
}

/// Refuses a (merged) line above [`MAX_LINE_QUANTITY`] units.
pub(super) fn check_line_quantities(merged: &BTreeMap<ListingId, u32>) -> Result<(), WireError> {
    if merged.values().all(|q| *q <= MAX_LINE_QUANTITY) {
        return Ok(());
    }
    Err(too_many_units())
}

/// The error for a line above [`MAX_LINE_QUANTITY`].
pub(super) fn too_many_units() -> WireError {
    WireError::field(
        ErrorCode::InvalidInput,
        Field::Quantity,
        format!("one line holds at most {MAX_LINE_QUANTITY} units"),
    )
}

impl Market {
    /// A checkout needs a card on file that has not expired by `now_ms` (a card is good through the
    /// last day of its expiry month, UTC).
    pub(super) fn check_card(&self, account: AccountId, now_ms: u64) -> Result<(), WireError> {
        let expiry = self.customers.get(&account).and_then(|c| c.card_expiry);
        let Some((year, month)) = expiry else {
            return Err(WireError::new(
                ErrorCode::CardRequired,
                "attach a payment card before checking out",
            ));
        };
        if protocol::card::is_expired(year, month, protocol::card::year_month(now_ms)) {
            return Err(WireError::field(
                ErrorCode::CardInvalid,
                Field::CardExpiry,
                format!(
                    "the card on file expired at the end of {month:02}/{year}; add a new card to pay"
                ),
            ));
        }
        Ok(())
    }

    /// The refusal of a checkout whose lines now cost `now` instead of the `confirmed` total.
    pub(super) fn price_changed(
        &self,
        account: AccountId,
        from_cart: bool,
        merged: &BTreeMap<ListingId, u32>,
        confirmed: Cents,
        now: Cents,
    ) -> WireError {
        let view = if from_cart {
            self.cart_view(account, Vec::new())
        } else {
            let lines: Vec<CartItem> = merged
                .iter()
                .map(|(listing, quantity)| CartItem {
                    listing: *listing,
                    quantity: *quantity,
                })
                .collect();
            self.lines_view(&lines, Vec::new())
        };
        let mut error = WireError::new(
            ErrorCode::PriceChanged,
            format!(
                "nothing was bought: the total is now ${now}, not the ${confirmed} you confirmed; \
                 review it and confirm again"
            ),
        );
        error.repriced = Some(Box::new(view));
        error
    }

    /// What buying the cart (`None`) or `lines` would cost now: the total a client confirms.
    pub fn quote(&self, account: AccountId, lines: Option<&[CartItem]>) -> CartView {
        match lines {
            Some(lines) => self.lines_view(lines, Vec::new()),
            None => self.cart_view(account, Vec::new()),
        }
    }
}
