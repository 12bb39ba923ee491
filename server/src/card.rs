//! Payment cards: validation (length, Luhn, expiry, CVC) and the little we keep.
//!
//! The full number and the CVC live only in the request being validated. What is returned, stored and
//! logged is a [`CardView`]: brand, last four digits and expiry.

use protocol::*;

/// Validates a card as of `(year, month)` and returns what may be kept.
pub fn validate(input: &CardInput, today: (u16, u8)) -> Result<CardView, WireError> {
    let digits: String = input
        .number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    let invalid = |field, msg: &str| Err(WireError::field(ErrorCode::CardInvalid, field, msg));
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return invalid(Field::CardNumber, "the card number may only contain digits");
    }
    if !(13..=19).contains(&digits.len()) {
        return invalid(Field::CardNumber, "a card number has 13 to 19 digits");
    }
    if !luhn_ok(&digits) {
        return invalid(
            Field::CardNumber,
            "this card number is not valid; check for a typo",
        );
    }
    if !(1..=12).contains(&input.exp_month) || !(2000..=2099).contains(&input.exp_year) {
        return invalid(
            Field::CardExpiry,
            "the expiry must be a month 01-12 and a year like 2031",
        );
    }
    if protocol::card::is_expired(input.exp_year, input.exp_month, today) {
        return invalid(Field::CardExpiry, "this card has expired");
    }
    let cvc_len = input.cvc.len();
    if !(3..=4).contains(&cvc_len) || !input.cvc.chars().all(|c| c.is_ascii_digit()) {
        return invalid(Field::CardCvc, "the security code is 3 or 4 digits");
    }
    Ok(CardView {
        brand: brand(&digits),
        last4: digits[digits.len() - 4..].to_string(),
        exp_month: input.exp_month,
        exp_year: input.exp_year,
    })
}

pub use protocol::card::{brand, luhn_ok};

/// The stored name of a brand.
pub fn brand_name(brand: CardBrand) -> &'static str {
    match brand {
        CardBrand::Visa => "visa",
        CardBrand::Mastercard => "mastercard",
        CardBrand::Amex => "amex",
        CardBrand::Discover => "discover",
        CardBrand::Other => "other",
    }
}

/// The brand of a stored name.
pub fn brand_from_name(name: &str) -> CardBrand {
    match name {
        "visa" => CardBrand::Visa,
        "mastercard" => CardBrand::Mastercard,
        "amex" => CardBrand::Amex,
        "discover" => CardBrand::Discover,
        _ => CardBrand::Other,
    }
}

/// Today's (year, month) in UTC, from the system clock.
pub fn this_month() -> (u16, u8) {
    protocol::card::year_month(crate::store::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, month: u8, year: u16, cvc: &str) -> CardInput {
        CardInput {
            number: number.into(),
            exp_month: month,
            exp_year: year,
            cvc: cvc.into(),
        }
    }

    #[test]
    fn a_valid_visa_keeps_only_brand_last_four_and_expiry() {
        let view = validate(&card("4242 4242 4242 4242", 12, 2035, "123"), (2026, 11)).unwrap();
        assert_eq!(view.brand, CardBrand::Visa);
        assert_eq!(view.last4, "4242");
        assert!(!format!("{view:?}").contains("4242424242424242"));
    }

    #[test]
    fn a_luhn_typo_is_rejected_on_the_number_field() {
        let err = validate(&card("4242 4242 4242 4241", 12, 2035, "123"), (2026, 11)).unwrap_err();
        assert_eq!(err.field, Some(Field::CardNumber));
    }

    #[test]
    fn expired_cards_and_bad_cvcs_name_their_field() {
        let expired = validate(&card("4242424242424242", 10, 2026, "123"), (2026, 11)).unwrap_err();
        assert_eq!(expired.field, Some(Field::CardExpiry));
        let cvc = validate(&card("4242424242424242", 12, 2035, "12a"), (2026, 11)).unwrap_err();
        assert_eq!(cvc.field, Some(Field::CardCvc));
        let short = validate(&card("4242", 12, 2035, "123"), (2026, 11)).unwrap_err();
        assert_eq!(short.field, Some(Field::CardNumber));
    }

    #[test]
    fn this_month_is_a_plausible_date() {
        let (year, month) = this_month();
        assert!((2024..2100).contains(&year));
        assert!((1..=12).contains(&month));
    }
}
