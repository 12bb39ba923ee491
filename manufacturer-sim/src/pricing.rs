//! The offer policy's prices: each month a product's price drifts within ±10% of its base price.
//!
//! The drift is a hash of (manufacturer, SKU, month), not a random draw, so a manufacturer that
//! restarts and re-offers a month computes the same price, and runs are reproducible.

use protocol::{Cents, MonthId};

/// The unit price for `sku` in `month`: base × (1 + d), d ∈ [-10%, +10%] in 0.1% steps, never below 1 cent.
pub fn month_price(base: Cents, manufacturer: &str, sku: &str, month: MonthId) -> Cents {
    let mut h = Fnv::new();
    h.write(manufacturer.as_bytes());
    h.write(&[0xff]);
    h.write(sku.as_bytes());
    h.write(&month.0.to_le_bytes());
    // Integer math only: money never goes through a float.
    let permille = (splitmix(h.0) % 201) as i128 - 100; // -100..=100
    let price = i128::from(base.0) * (1000 + permille) / 1000;
    Cents(u64::try_from(price.max(1)).unwrap_or(u64::MAX))
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_stay_within_ten_percent_and_repeat_for_the_same_month() {
        let mut changed = false;
        for month in 1..200 {
            let p = month_price(Cents(1000), "orchard", "APL", MonthId(month));
            assert!((900..=1100).contains(&p.0), "{p:?}");
            assert_eq!(
                p,
                month_price(Cents(1000), "orchard", "APL", MonthId(month))
            );
            changed |= p != month_price(Cents(1000), "orchard", "APL", MonthId(month + 1));
        }
        assert!(changed, "prices never drift");
    }

    #[test]
    fn a_price_never_drops_below_one_cent() {
        for month in 1..100 {
            assert!(month_price(Cents(1), "m", "s", MonthId(month)).0 >= 1);
        }
    }
}
