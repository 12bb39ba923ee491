//! Card number rules shared by the server's validation and the shop's feedback while typing, so the
//! two can never disagree.

use crate::message::CardBrand;

/// The Luhn checksum over a string of ASCII digits (false for anything else or an empty string).
pub fn luhn_ok(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match (i % 2 == 1, d * 2) {
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
                (false, _) => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The brand a number's prefix belongs to.
pub fn brand(digits: &str) -> CardBrand {
    let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok());
    if digits.starts_with('4') {
        CardBrand::Visa
    } else if matches!(prefix(2), Some(51..=55)) || matches!(prefix(4), Some(2221..=2720)) {
        CardBrand::Mastercard
    } else if matches!(prefix(2), Some(34 | 37)) {
        CardBrand::Amex
    } else if prefix(4) == Some(6011)
        || matches!(prefix(3), Some(644..=649))
        || prefix(2) == Some(65)
    {
        CardBrand::Discover
    } else {
        CardBrand::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_numbers_and_rejects_one_digit_typos() {
        assert!(luhn_ok("4242424242424242"));
        assert!(luhn_ok("378282246310005"));
        assert!(!luhn_ok("4242424242424241"));
        assert!(!luhn_ok(""));
        assert!(!luhn_ok("4242x"));
    }

    #[test]
    fn brands_follow_their_prefixes() {
        assert_eq!(brand("4242424242424242"), CardBrand::Visa);
        assert_eq!(brand("5555555555554444"), CardBrand::Mastercard);
        assert_eq!(brand("2221000000000009"), CardBrand::Mastercard);
        assert_eq!(brand("378282246310005"), CardBrand::Amex);
        assert_eq!(brand("6011111111111117"), CardBrand::Discover);
        assert_eq!(brand("3530111333300000"), CardBrand::Other);
    }
}
