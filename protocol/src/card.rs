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

/// The UTC (year, month) of a Unix time in milliseconds. Pure, so the market can take the time as an
/// argument and tests can pick any date.
pub fn year_month(unix_ms: u64) -> (u16, u8) {
    let days = (unix_ms / 86_400_000) as i64;
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one call.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u16, month as u8)
}

/// Whether a card with this expiry can no longer pay in `today`'s (year, month). A card is good through
/// the last day of its expiry month.
pub fn is_expired(exp_year: u16, exp_month: u8, today: (u16, u8)) -> bool {
    (exp_year, exp_month) < today
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
    fn year_month_turns_unix_milliseconds_into_the_utc_calendar_month() {
        assert_eq!(year_month(0), (1970, 1));
        // 2026-12-01T00:00:00Z and one millisecond before it.
        assert_eq!(year_month(1_796_083_200_000), (2026, 12));
        assert_eq!(year_month(1_796_083_199_999), (2026, 11));
        // 2024-02-29T12:00:00Z, a leap day.
        assert_eq!(year_month(1_709_208_000_000), (2024, 2));
    }

    #[test]
    fn a_card_is_good_through_its_expiry_month_and_expired_after() {
        assert!(!is_expired(2026, 11, (2026, 11)));
        assert!(is_expired(2026, 11, (2026, 12)));
        assert!(is_expired(2025, 12, (2026, 1)));
        assert!(!is_expired(2027, 1, (2026, 12)));
    }

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
