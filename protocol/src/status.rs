//! What operators see: the [`SystemStatus`] snapshot and the [`StatusDelta`]s that keep it live.
//!
//! An operator asks [`crate::RequestBody::Status`] once; the reply is the whole snapshot, and the
//! connection is then subscribed to [`crate::Event::Operator`] pushes, coalesced to at most one every
//! [`STATUS_PUSH_INTERVAL_MS`]. A delta carries the small counters whole and, of the lists, only what
//! changed; [`SystemStatus::apply`] folds it in.

use crate::message::{CloseReason, MonthView};
use crate::types::*;
use serde::{Deserialize, Serialize};

/// The least time between two [`crate::Event::Operator`] pushes to one connection.
pub const STATUS_PUSH_INTERVAL_MS: u64 = 500;
/// How far back [`SystemStatus::sales_seconds`] reaches: the console's chart shows 5 minutes.
pub const SALES_WINDOW_SECS: u64 = 300;
/// How many closed months [`SystemStatus::history`] lists, newest first.
pub const HISTORY_MONTHS: usize = 12;
/// How many products [`SystemStatus::top_products`] lists.
pub const TOP_PRODUCTS: usize = 8;
/// The shortest and longest month an operator may set with [`crate::RequestBody::SetMonthLength`].
pub const MONTH_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=31_536_000;

/// One manufacturer in a [`SystemStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ManufacturerStatus {
    /// Its id.
    pub id: ManufacturerId,
    /// Its name.
    pub name: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// The last notice written to its outbox: notices sent so far.
    pub last_seq: NoticeSeq,
    /// The last notice it acked.
    pub acked_seq: NoticeSeq,
    /// Whether it has offered in the open month.
    pub offered_this_month: bool,
    /// Unix ms since when it is connected (or disconnected); 0 when it has not been seen since the
    /// distributor started.
    pub since_ms: u64,
    /// The last month it offered in, if any.
    pub last_offered: Option<MonthId>,
    /// Unix ms when the oldest notice it has not acked was written (for notices written before the
    /// distributor's last start: the start). `None` when nothing is pending.
    pub oldest_pending_at_ms: Option<u64>,
    /// Units of its goods sold in the current month.
    pub units_sold_month: u64,
}

impl ManufacturerStatus {
    /// Notices written but not acked yet.
    pub fn pending(&self) -> u64 {
        self.last_seq.0.saturating_sub(self.acked_seq.0)
    }

    /// Behind: it has unacked notices and the oldest has waited longer than `late_ms`, or it is
    /// disconnected with notices pending. The console makes such a row stand out.
    pub fn is_behind(&self, now_ms: u64, late_ms: u64) -> bool {
        let waited = self
            .oldest_pending_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) > late_ms);
        self.pending() > 0 && (!self.connected || waited)
    }
}

/// What the current month has sold so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MonthSales {
    /// Checkouts in this month.
    pub checkouts: u64,
    /// Units sold in this month.
    pub units: u64,
    /// Revenue of this month.
    pub revenue: Cents,
}

/// Customers, as the close rule "every active customer bought" counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CustomerCounts {
    /// Customer connections open now (logged in or not).
    pub connected: u64,
    /// Of those, connections with a logged-in customer.
    pub logged_in: u64,
    /// Customers active in the open month: logged in while it was open, or using a cart in it.
    pub active: u64,
    /// Of those, customers who have checked out in it.
    pub done: u64,
}

/// One product's sales in the current month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProductSales {
    /// The listing.
    pub listing: ListingId,
    /// Product name.
    pub product: String,
    /// Manufacturer name.
    pub manufacturer_name: String,
    /// Units sold this month.
    pub units: u64,
    /// Revenue this month.
    pub revenue: Cents,
}

/// Sales within one wall-clock second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SalesSecond {
    /// Unix seconds.
    pub at_s: u64,
    /// Checkouts in that second.
    pub checkouts: u32,
    /// Units sold in that second.
    pub units: u32,
}

/// A month that has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthRecord {
    /// Which month.
    pub id: MonthId,
    /// Unix ms when it opened.
    pub opened_at_ms: u64,
    /// Unix ms when it closed.
    pub closed_at_ms: u64,
    /// Why it closed.
    pub reason: CloseReason,
    /// Units sold in it.
    pub units: u64,
    /// Its revenue.
    pub revenue: Cents,
}

impl MonthRecord {
    /// How long it lasted.
    pub fn lasted_ms(&self) -> u64 {
        self.closed_at_ms.saturating_sub(self.opened_at_ms)
    }
}

/// A summary of the system, for operators: everything the operator's console shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SystemStatus {
    /// The current month.
    pub month: Option<MonthView>,
    /// Every manufacturer ever seen, by id.
    pub manufacturers: Vec<ManufacturerStatus>,
    /// Checkouts (orders) ever placed.
    pub orders: u64,
    /// Units ever sold.
    pub sold_units: u64,
    /// Units still for sale this month.
    pub remaining_units: u64,
    /// The server's clock when this was made, Unix ms (ages and time left are measured against it).
    pub now_ms: u64,
    /// The length of months that open from now on, in ms.
    pub month_ms: u64,
    /// Units offered this month.
    pub offered_units: u64,
    /// This month's sales.
    pub month_sales: MonthSales,
    /// Customers.
    pub customers: CustomerCounts,
    /// The best-selling products this month, most units first (at most [`TOP_PRODUCTS`]).
    pub top_products: Vec<ProductSales>,
    /// Seconds with sales in the last [`SALES_WINDOW_SECS`], oldest first. Seconds without sales
    /// are left out.
    pub sales_seconds: Vec<SalesSecond>,
    /// The last closed months, newest first (at most [`HISTORY_MONTHS`]).
    pub history: Vec<MonthRecord>,
    /// Customer connections (logged in or not) served by the node that answered. In a cluster each
    /// node counts only its own, so an operator asks each node to see how customers spread.
    pub node_clients: u64,
}

/// What changed in a [`SystemStatus`] since the last push to this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StatusDelta {
    /// The server's clock.
    pub now_ms: u64,
    /// The current month, as it is now.
    pub month: Option<MonthView>,
    /// [`SystemStatus::orders`] now.
    pub orders: u64,
    /// [`SystemStatus::sold_units`] now.
    pub sold_units: u64,
    /// [`SystemStatus::remaining_units`] now.
    pub remaining_units: u64,
    /// [`SystemStatus::month_ms`] now.
    pub month_ms: u64,
    /// [`SystemStatus::offered_units`] now.
    pub offered_units: u64,
    /// [`SystemStatus::month_sales`] now.
    pub month_sales: MonthSales,
    /// [`SystemStatus::customers`] now.
    pub customers: CustomerCounts,
    /// Manufacturers that are new or changed, whole.
    pub manufacturers: Vec<ManufacturerStatus>,
    /// The new top products, if they changed.
    pub top_products: Option<Vec<ProductSales>>,
    /// Seconds that are new or changed (the current second keeps counting).
    pub sales_seconds: Vec<SalesSecond>,
    /// The new history, if a month closed.
    pub history: Option<Vec<MonthRecord>>,
    /// [`SystemStatus::node_clients`] now.
    pub node_clients: u64,
}

impl SystemStatus {
    /// What changed from `self` to `newer`; `None` when nothing did (the clock alone does not count).
    pub fn delta_to(&self, newer: &SystemStatus) -> Option<StatusDelta> {
        let manufacturers: Vec<ManufacturerStatus> = newer
            .manufacturers
            .iter()
            .filter(|m| !self.manufacturers.contains(m))
            .cloned()
            .collect();
        let sales_seconds: Vec<SalesSecond> = newer
            .sales_seconds
            .iter()
            .filter(|s| !self.sales_seconds.contains(s))
            .copied()
            .collect();
        let top_products =
            (self.top_products != newer.top_products).then(|| newer.top_products.clone());
        let history = (self.history != newer.history).then(|| newer.history.clone());
        let counters_same = self.month == newer.month
            && self.orders == newer.orders
            && self.sold_units == newer.sold_units
            && self.remaining_units == newer.remaining_units
            && self.month_ms == newer.month_ms
            && self.offered_units == newer.offered_units
            && self.month_sales == newer.month_sales
            && self.customers == newer.customers
            && self.node_clients == newer.node_clients;
        if counters_same
            && manufacturers.is_empty()
            && sales_seconds.is_empty()
            && top_products.is_none()
            && history.is_none()
        {
            return None;
        }
        Some(StatusDelta {
            now_ms: newer.now_ms,
            month: newer.month.clone(),
            orders: newer.orders,
            sold_units: newer.sold_units,
            remaining_units: newer.remaining_units,
            month_ms: newer.month_ms,
            offered_units: newer.offered_units,
            month_sales: newer.month_sales,
            customers: newer.customers,
            manufacturers,
            top_products,
            sales_seconds,
            history,
            node_clients: newer.node_clients,
        })
    }

    /// Folds a delta in. Seconds older than [`SALES_WINDOW_SECS`] before the delta's clock drop out.
    pub fn apply(&mut self, delta: StatusDelta) {
        self.now_ms = delta.now_ms;
        self.month = delta.month;
        self.orders = delta.orders;
        self.sold_units = delta.sold_units;
        self.remaining_units = delta.remaining_units;
        self.month_ms = delta.month_ms;
        self.offered_units = delta.offered_units;
        self.month_sales = delta.month_sales;
        self.customers = delta.customers;
        self.node_clients = delta.node_clients;
        for m in delta.manufacturers {
            match self.manufacturers.iter_mut().find(|x| x.id == m.id) {
                Some(slot) => *slot = m,
                None => self.manufacturers.push(m),
            }
        }
        self.manufacturers.sort_by_key(|m| m.id);
        if let Some(top) = delta.top_products {
            self.top_products = top;
        }
        for s in delta.sales_seconds {
            match self.sales_seconds.iter_mut().find(|x| x.at_s == s.at_s) {
                Some(slot) => *slot = s,
                None => self.sales_seconds.push(s),
            }
        }
        let oldest = (self.now_ms / 1000).saturating_sub(SALES_WINDOW_SECS);
        self.sales_seconds.retain(|s| s.at_s > oldest);
        self.sales_seconds.sort_by_key(|s| s.at_s);
        if let Some(history) = delta.history {
            self.history = history;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MonthState;

    fn status(now_s: u64) -> SystemStatus {
        SystemStatus {
            month: Some(MonthView {
                id: MonthId(3),
                state: MonthState::Open,
                opened_at_ms: 1_000,
                ends_at_ms: 121_000,
            }),
            manufacturers: vec![
                ManufacturerStatus {
                    id: ManufacturerId(1),
                    name: "orchard".into(),
                    connected: true,
                    ..Default::default()
                },
                ManufacturerStatus {
                    id: ManufacturerId(2),
                    name: "dairy".into(),
                    connected: true,
                    ..Default::default()
                },
            ],
            now_ms: now_s * 1000,
            sales_seconds: vec![SalesSecond {
                at_s: now_s - 1,
                checkouts: 2,
                units: 5,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_delta_applied_to_the_old_status_gives_the_new_one_and_carries_only_changed_rows() {
        let old = status(1_000);
        let mut new = old.clone();
        new.now_ms += 700;
        new.orders = 4;
        new.manufacturers[1].connected = false;
        new.manufacturers[1].last_seq = NoticeSeq(9);
        new.sales_seconds.push(SalesSecond {
            at_s: 1_000,
            checkouts: 1,
            units: 1,
        });
        let delta = old.delta_to(&new).expect("something changed");
        assert_eq!(delta.manufacturers.len(), 1, "only dairy changed");
        assert_eq!(delta.sales_seconds.len(), 1, "only the new second");
        assert!(delta.top_products.is_none() && delta.history.is_none());
        let mut applied = old.clone();
        applied.apply(delta);
        assert_eq!(applied, new);
    }

    #[test]
    fn the_clock_alone_is_no_change_and_old_seconds_fall_out_of_the_window() {
        let old = status(1_000);
        let mut later = old.clone();
        later.now_ms += 400;
        assert_eq!(old.delta_to(&later), None);
        let mut far = old.clone();
        far.now_ms += (SALES_WINDOW_SECS + 5) * 1000;
        far.orders = 1;
        let mut applied = old.clone();
        applied.apply(old.delta_to(&far).expect("orders changed"));
        assert!(applied.sales_seconds.is_empty());
    }

    #[test]
    fn a_change_in_the_nodes_clients_alone_is_a_change_and_is_applied() {
        let old = status(1_000);
        let mut new = old.clone();
        new.node_clients = 3;
        let mut applied = old.clone();
        applied.apply(old.delta_to(&new).expect("the clients changed"));
        assert_eq!(applied.node_clients, 3);
    }

    #[test]
    fn a_manufacturer_disconnected_with_notices_pending_is_behind() {
        let mut m = ManufacturerStatus {
            last_seq: NoticeSeq(5),
            acked_seq: NoticeSeq(3),
            connected: true,
            oldest_pending_at_ms: Some(10_000),
            ..Default::default()
        };
        assert_eq!(m.pending(), 2);
        assert!(!m.is_behind(11_000, 5_000), "connected and recent");
        assert!(m.is_behind(16_000, 5_000), "connected but slow");
        m.connected = false;
        assert!(m.is_behind(11_000, 5_000), "gone with notices pending");
        m.acked_seq = NoticeSeq(5);
        assert!(!m.is_behind(99_000, 5_000), "nothing pending");
    }
}
