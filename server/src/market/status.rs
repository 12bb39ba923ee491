//! The market's part of the operator's status: the month, its stock and sales, the manufacturers'
//! outbox positions, and how many active customers are done. Pure: the engine adds the clock, the
//! connections and the history (see [`crate::operator`]).

use super::Market;
use protocol::*;
use std::collections::HashMap;

impl Market {
    /// What the market knows for [`SystemStatus`]. Fields the market cannot know stay at their
    /// defaults.
    pub fn status(&self) -> SystemStatus {
        let month = self.month.as_ref();
        let open = self.open_month().is_some();
        let mut by_maker: HashMap<ManufacturerId, u64> = HashMap::new();
        let mut products = Vec::new();
        let mut sales = MonthSales::default();
        let (mut offered, mut remaining) = (0u64, 0u64);
        for (id, stock) in &self.stock {
            let sold = u64::from(stock.offered - stock.remaining);
            let revenue = Cents(stock.unit_price.0.saturating_mul(sold));
            offered += u64::from(stock.offered);
            remaining += u64::from(stock.remaining);
            sales.units += sold;
            sales.revenue = Cents(sales.revenue.0.saturating_add(revenue.0));
            let Some(listing) = self.listings.get(id) else {
                continue;
            };
            *by_maker.entry(listing.manufacturer).or_default() += sold;
            if sold > 0 {
                products.push(ProductSales {
                    listing: *id,
                    product: listing.product.clone(),
                    manufacturer_name: self.manufacturer_name(listing.manufacturer).to_string(),
                    units: sold,
                    revenue,
                });
            }
        }
        products.sort_by(|a, b| b.units.cmp(&a.units).then(a.listing.cmp(&b.listing)));
        products.truncate(TOP_PRODUCTS);
        let (active, done) = self.active_customers();
        SystemStatus {
            month: self.month_view(),
            manufacturers: self
                .manufacturers
                .iter()
                .map(|(id, m)| ManufacturerStatus {
                    id: *id,
                    name: m.name.clone(),
                    connected: m.connected,
                    last_seq: m.last_seq,
                    acked_seq: m.acked_seq,
                    offered_this_month: month.is_some_and(|mo| mo.offered.contains(id)),
                    units_sold_month: by_maker.get(id).copied().unwrap_or(0),
                    ..Default::default()
                })
                .collect(),
            remaining_units: if open { remaining } else { 0 },
            offered_units: offered,
            month_sales: sales,
            customers: CustomerCounts {
                active,
                done,
                ..Default::default()
            },
            top_products: products,
            ..Default::default()
        }
    }

    /// Customers active in the open month, and of those the ones who have checked out in it: the
    /// close rule "every customer bought" fires when the two are equal (and no cart holds goods).
    fn active_customers(&self) -> (u64, u64) {
        match self.open_month() {
            Some(month) => (month.seen.len() as u64, month.bought.len() as u64),
            None => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::market::{Market, Snapshot};
    use protocol::*;

    const NOW: u64 = 1_000_000;

    #[test]
    fn status_counts_this_months_sales_per_product_and_per_manufacturer() {
        let mut m = Market::restore(Snapshot::default());
        let (id, _) = m.register_manufacturer("orchard");
        m.set_connected(id, true);
        let month = m.open_next_month(NOW, 60_000);
        m.due_offer_requests();
        let line = |sku: &str, quantity, cents| OfferLine {
            sku: sku.into(),
            product: sku.into(),
            category: "fruit".into(),
            quantity,
            unit_price: Cents(cents),
        };
        let plan = m
            .submit_offer(
                id,
                month.id,
                &[line("apple", 10, 150), line("pear", 5, 200)],
            )
            .expect("offer");
        let (apple, pear) = (plan.reply[0].1, plan.reply[1].1);
        for (n, listing, quantity, cents) in [(1, apple, 3, 150), (2, pear, 5, 200)] {
            let account = AccountId(n);
            m.set_card(account, Some((2099, 12)));
            m.add_to_cart(account, listing, quantity).expect("add");
            let total = Cents(cents * u64::from(quantity));
            m.checkout(account, CheckoutId(u128::from(n)), None, total, NOW)
                .expect("checkout");
        }
        m.add_to_cart(AccountId(3), apple, 1).expect("add");
        let status = m.status();
        assert_eq!(status.offered_units, 15);
        assert_eq!(status.remaining_units, 7);
        assert_eq!(status.month_sales.units, 8);
        assert_eq!(status.month_sales.revenue, Cents(3 * 150 + 5 * 200));
        assert_eq!(status.top_products[0].product, "pear");
        assert_eq!(status.top_products[0].units, 5);
        assert_eq!(status.manufacturers[0].units_sold_month, 8);
        assert_eq!(status.customers.active, 3, "two buyers and one with a cart");
        assert_eq!(status.customers.done, 2);
    }
}
