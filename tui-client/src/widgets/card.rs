//! Card numbers on the client: Luhn feedback while typing, brand, grouping and masking. The full
//! number lives only in the text field until it is sent once with `SetCard`.

use protocol::CardBrand;

/// The Luhn check over a complete card number (13–19 digits).
pub fn luhn_ok(digits: &str) -> bool {
    (13..=19).contains(&digits.len()) && protocol::card::luhn_ok(digits)
}

/// The brand a number's prefix belongs to (the server's own rule), or `None` before the first digit.
pub fn brand(digits: &str) -> Option<CardBrand> {
    (!digits.is_empty()).then(|| protocol::card::brand(digits))
}

/// A brand's name as shown to people.
pub fn brand_name(brand: CardBrand) -> &'static str {
    match brand {
        CardBrand::Visa => "Visa",
        CardBrand::Mastercard => "Mastercard",
        CardBrand::Amex => "Amex",
        CardBrand::Discover => "Discover",
        CardBrand::Other => "Card",
    }
}

/// Groups digits 4-4-4-4 and masks every digit but the last four: `**** **** **** 4242`.
pub fn mask_grouped(digits: &str) -> String {
    let n = digits.chars().count();
    let mut out = String::with_capacity(n + n / 4);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(if i + 4 < n { '*' } else { c });
    }
    out
}

/// What the Luhn check says about a number while it is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberCheck {
    /// Too short to judge yet.
    Incomplete,
    /// Long enough and passes Luhn.
    Valid,
    /// Long enough but fails Luhn.
    Invalid,
}

/// Judges a number as typed so far.
pub fn check(digits: &str) -> NumberCheck {
    if digits.len() < 13 {
        NumberCheck::Incomplete
    } else if luhn_ok(digits) {
        NumberCheck::Valid
    } else {
        NumberCheck::Invalid
    }
}

/// Parses `MMYY` digits into `(month, four-digit year)`.
pub fn parse_expiry(digits: &str) -> Option<(u8, u16)> {
    if digits.len() != 4 {
        return None;
    }
    let month: u8 = digits[..2].parse().ok()?;
    let year: u16 = digits[2..].parse().ok()?;
    (1..=12).contains(&month).then_some((month, 2000 + year))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_a_changed_digit() {
        assert!(luhn_ok("4242424242424242"));
        assert!(luhn_ok("5555555555554444"));
        assert!(luhn_ok("378282246310005"));
        assert!(!luhn_ok("4242424242424241"));
        assert!(!luhn_ok("4242"));
    }

    #[test]
    fn masking_groups_by_four_and_shows_only_the_last_four() {
        assert_eq!(mask_grouped("4242424242424242"), "**** **** **** 4242");
        assert_eq!(mask_grouped("424242"), "**42 42");
        assert_eq!(mask_grouped("42"), "42");
        assert!(!mask_grouped("4111111111111111").contains("1111 1111"));
    }

    #[test]
    fn brand_follows_the_prefix_rules() {
        assert_eq!(brand("4242"), Some(CardBrand::Visa));
        assert_eq!(brand("5555"), Some(CardBrand::Mastercard));
        assert_eq!(brand("2221"), Some(CardBrand::Mastercard));
        assert_eq!(brand("3782"), Some(CardBrand::Amex));
        assert_eq!(brand("6011"), Some(CardBrand::Discover));
        assert_eq!(brand("9999"), Some(CardBrand::Other));
        assert_eq!(brand(""), None);
    }

    #[test]
    fn expiry_needs_a_real_month() {
        assert_eq!(parse_expiry("1231"), Some((12, 2031)));
        assert_eq!(parse_expiry("1331"), None);
        assert_eq!(parse_expiry("0031"), None);
        assert_eq!(parse_expiry("123"), None);
    }

    #[test]
    fn number_check_waits_until_the_number_is_long_enough() {
        assert_eq!(check("424242"), NumberCheck::Incomplete);
        assert_eq!(check("4242424242424242"), NumberCheck::Valid);
        assert_eq!(check("4242424242424243"), NumberCheck::Invalid);
    }
}
