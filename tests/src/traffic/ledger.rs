//! What one customer was told it bought, and the end-of-run check against what the server lists.
//!
//! Every simulated customer is a fresh account, so every order the server lists for it came from this
//! run. `Orders` returns at most [`MAX_ORDERS_LISTED`] orders, newest first, so the check is:
//!
//! 1. Every listed order is one this customer was told about, with the same checkout id and the same
//!    number of units. The only exception: a checkout whose reply never came (the connection broke)
//!    may have taken effect, so up to that many unknown orders are tolerated.
//! 2. No order this customer was told about is missing from the listing's window: when fewer than
//!    [`MAX_ORDERS_LISTED`] orders are listed, every confirmed order must be there; otherwise every
//!    confirmed order at least as new (by id) as the oldest listed one must be there.
//! 3. No order is listed twice.
//!
//! Order ids are assumed to grow with time, so "newest 100" is "highest 100 ids".
//!
//! Only the newest [`KEPT`] confirmations are kept; the older ones are only counted. A customer has
//! one checkout in flight at a time, so its newest listed orders are its newest confirmations: the
//! older ones can only fall outside the window, and a ledger that grew with every checkout of a long
//! run cost the load generator a page fault every few hundred checkouts.

use protocol::{CheckoutId, OrderId, OrderView, MAX_ORDERS_LISTED};
use std::collections::{HashMap, HashSet, VecDeque};

/// Confirmations kept per customer: twice the listing's window.
pub const KEPT: usize = 2 * MAX_ORDERS_LISTED;

/// One checkout the server confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// The order it created.
    pub order: OrderId,
    /// The id this customer chose.
    pub checkout_id: CheckoutId,
    /// Total units.
    pub units: u64,
}

/// One customer's record of its checkouts.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// The newest [`KEPT`] confirmations, oldest first.
    confirmed: VecDeque<Confirmed>,
    /// Confirmations older than those, no longer kept.
    forgotten: u64,
    /// Checkouts whose outcome is unknown: sent, then the connection failed before any answer.
    uncertain: u64,
}

/// The result of checking one or more customers.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Customers whose orders were fetched and checked.
    pub customers_checked: u64,
    /// Customers whose orders could not be fetched (connection lost).
    pub customers_unverifiable: u64,
    /// Listed orders compared against confirmations.
    pub orders_checked: u64,
    /// Units in the listed orders that matched a confirmation.
    pub units_listed: u64,
    /// Confirmed checkouts the check could not see because they fell outside the listed window.
    pub orders_outside_window: u64,
    /// What did not match, one sentence each (only the first few are kept).
    pub mismatches: Vec<String>,
}

/// Mismatch sentences kept in a [`Check`]; the rest are only counted.
const MISMATCHES_KEPT: usize = 10;

impl Check {
    /// True when every customer was checked and nothing mismatched.
    pub fn consistent(&self) -> bool {
        self.customers_unverifiable == 0 && self.mismatches.is_empty()
    }

    /// Adds another customer's result.
    pub fn merge(&mut self, other: Check) {
        self.customers_checked += other.customers_checked;
        self.customers_unverifiable += other.customers_unverifiable;
        self.orders_checked += other.orders_checked;
        self.units_listed += other.units_listed;
        self.orders_outside_window += other.orders_outside_window;
        for m in other.mismatches {
            if self.mismatches.len() < MISMATCHES_KEPT {
                self.mismatches.push(m);
            }
        }
    }

    /// A customer whose orders could not be fetched.
    pub fn unverifiable(who: &str, why: &str) -> Check {
        Check {
            customers_unverifiable: 1,
            mismatches: vec![format!("{who}: orders could not be fetched: {why}")],
            ..Check::default()
        }
    }
}

impl Ledger {
    /// The server confirmed a checkout.
    pub fn confirm(&mut self, confirmed: Confirmed) {
        if self.confirmed.len() == KEPT {
            self.confirmed.pop_front();
            self.forgotten += 1;
        }
        self.confirmed.push_back(confirmed);
    }

    /// A checkout was sent and no answer ever came.
    pub fn uncertain(&mut self) {
        self.uncertain += 1;
    }

    /// Checks the server's listing of this customer's orders (see the module docs for the rules).
    pub fn check(&self, who: &str, listed: &[OrderView]) -> Check {
        let mut check = Check {
            customers_checked: 1,
            ..Check::default()
        };
        let mut mismatch = |text: String| {
            if check.mismatches.len() < MISMATCHES_KEPT {
                check.mismatches.push(format!("{who}: {text}"));
            }
        };
        let known: HashMap<OrderId, &Confirmed> =
            self.confirmed.iter().map(|c| (c.order, c)).collect();
        let mut seen = HashSet::new();
        let mut unknown = 0u64;
        let mut orders_checked = 0;
        let mut units_listed = 0;
        for order in listed {
            if !seen.insert(order.id) {
                mismatch(format!("order {} is listed twice", order.id));
                continue;
            }
            match known.get(&order.id) {
                Some(c) => {
                    orders_checked += 1;
                    if c.checkout_id != order.checkout_id {
                        mismatch(format!(
                            "order {} has checkout id {} but was confirmed for {}",
                            order.id, order.checkout_id, c.checkout_id
                        ));
                    }
                    if c.units != order.units() {
                        mismatch(format!(
                            "order {} lists {} units but was confirmed with {}",
                            order.id,
                            order.units(),
                            c.units
                        ));
                    } else {
                        units_listed += c.units;
                    }
                }
                None => unknown += 1,
            }
        }
        if unknown > self.uncertain {
            mismatch(format!(
                "{unknown} listed orders were never confirmed (only {} checkouts had no answer)",
                self.uncertain
            ));
        }
        let window_start = if listed.len() < MAX_ORDERS_LISTED {
            None
        } else {
            listed.iter().map(|o| o.id).min()
        };
        // The forgotten ones are older than every kept one: outside a full window, and missing
        // from a short listing, which must list every confirmation.
        let mut outside = self.forgotten;
        if window_start.is_none() && self.forgotten > 0 {
            mismatch(format!(
                "{} confirmed orders are not listed (only {} orders are)",
                self.forgotten,
                listed.len()
            ));
        }
        for c in &self.confirmed {
            let in_window = window_start.is_none_or(|oldest| c.order >= oldest);
            if !in_window {
                outside += 1;
            } else if !seen.contains(&c.order) {
                mismatch(format!(
                    "confirmed order {} (checkout {}) is not listed",
                    c.order, c.checkout_id
                ));
            }
        }
        check.orders_checked = orders_checked;
        check.units_listed = units_listed;
        check.orders_outside_window = outside;
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Cents, LineStatus, ListingId, MonthId, OrderLine};

    fn order(id: u64, units: u32) -> OrderView {
        OrderView {
            id: OrderId(id),
            checkout_id: CheckoutId(u128::from(id)),
            month: MonthId(1),
            placed_at_ms: 0,
            lines: vec![OrderLine {
                listing: ListingId(1),
                product: "p".into(),
                manufacturer_name: "m".into(),
                unit_price: Cents(1),
                quantity: units,
                line_total: Cents(u64::from(units)),
                status: LineStatus::Placed,
                status_at_ms: 0,
            }],
            total: Cents(u64::from(units)),
        }
    }

    fn ledger(orders: &[(u64, u64)]) -> Ledger {
        let mut l = Ledger::default();
        for &(id, units) in orders {
            l.confirm(Confirmed {
                order: OrderId(id),
                checkout_id: CheckoutId(u128::from(id)),
                units,
            });
        }
        l
    }

    #[test]
    fn a_listing_that_matches_every_confirmation_is_consistent() {
        let l = ledger(&[(1, 2), (5, 1)]);
        let check = l.check("c0", &[order(5, 1), order(1, 2)]);
        assert!(check.consistent(), "{check:?}");
        assert_eq!((check.orders_checked, check.units_listed), (2, 3));
    }

    #[test]
    fn wrong_units_a_missing_order_or_an_unknown_order_is_a_mismatch() {
        let l = ledger(&[(1, 2), (5, 1)]);
        assert!(!l.check("c", &[order(5, 1), order(1, 3)]).consistent());
        assert!(!l.check("c", &[order(5, 1)]).consistent());
        assert!(!l
            .check("c", &[order(9, 1), order(5, 1), order(1, 2)])
            .consistent());
        assert!(!l
            .check("c", &[order(5, 1), order(5, 1), order(1, 2)])
            .consistent());
    }

    #[test]
    fn an_unanswered_checkout_excuses_exactly_one_unknown_order() {
        let mut l = ledger(&[(1, 2)]);
        l.uncertain();
        assert!(l.check("c", &[order(3, 1), order(1, 2)]).consistent());
        assert!(!l
            .check("c", &[order(4, 1), order(3, 1), order(1, 2)])
            .consistent());
    }

    #[test]
    fn with_more_than_a_hundred_orders_only_the_listed_window_is_checked() {
        let all: Vec<(u64, u64)> = (1..=150).map(|id| (id, 1)).collect();
        let l = ledger(&all);
        let newest: Vec<OrderView> = (51..=150).rev().map(|id| order(id, 1)).collect();
        let check = l.check("c", &newest);
        assert!(check.consistent(), "{check:?}");
        assert_eq!(
            (check.orders_checked, check.orders_outside_window),
            (100, 50)
        );
        // Only the newest confirmations are kept; the rest still count as outside the window.
        let all: Vec<(u64, u64)> = (1..=1_000).map(|id| (id, 1)).collect();
        let long = ledger(&all);
        assert_eq!(long.confirmed.len(), KEPT);
        let newest_of_long: Vec<OrderView> = (901..=1_000).rev().map(|id| order(id, 1)).collect();
        let check = long.check("c", &newest_of_long);
        assert!(check.consistent(), "{check:?}");
        assert_eq!(check.orders_outside_window, 900);
        // A short listing after many confirmations is a mismatch, even of forgotten ones.
        assert!(!long.check("c", &newest_of_long[..10]).consistent());
        // A hole inside the window is still caught.
        let mut holed = newest.clone();
        holed.retain(|o| o.id != OrderId(120));
        holed.push(order(50, 1));
        assert!(!l.check("c", &holed).consistent());
    }
}
