//! Email addresses: what is accepted, and the key under which two spellings are the same account.
//!
//! The syntax check is the `email_address` crate (RFC 5322 dot-atoms and RFC 1034 labels), with
//! stricter options for a shop: no display names, no domain literals, no quoted local parts, at least
//! two domain labels, and no invisible (format) characters anywhere. The key is the address under full
//! Unicode case folding (`ß` = `ss`, `Ö` = `ö`) in NFC, computed the same way at sign-up, login and
//! change, and for existing rows by the migration that re-keys them.

use caseless::Caseless;
use email_address::{EmailAddress, Options};
use protocol::*;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest address in bytes (RFC 5321's path limit less the angle brackets).
pub use protocol::limits::MAX_EMAIL_BYTES as EMAIL_MAX;

fn invalid(message: &str) -> WireError {
    WireError::field(ErrorCode::InvalidInput, Field::Email, message)
}

/// Checks an address and returns it trimmed, as it will be stored and shown.
pub fn validate(email: &str) -> Result<String, WireError> {
    let email = email.trim();
    if email.len() > EMAIL_MAX {
        return Err(invalid(&format!("an email has at most {EMAIL_MAX} bytes")));
    }
    if email.chars().any(|c| {
        c.is_whitespace() || c.is_control() || c.general_category() == GeneralCategory::Format
    }) {
        return Err(invalid(
            "the email contains spaces or invisible characters; type it again",
        ));
    }
    if email.contains("..") {
        return Err(invalid("an email cannot have two dots in a row"));
    }
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        ..Options::default()
    };
    let parsed = EmailAddress::parse_with_options(email, options)
        .map_err(|_| invalid("enter an email like ada@example.com"))?;
    if parsed.local_part().starts_with('"') {
        return Err(invalid("enter an email like ada@example.com"));
    }
    // The crate lets a label hold any atext (`_`, `!`, ...); a host name's labels are letters, digits
    // and inner hyphens only (RFC 1123, IDNA), and the last one is not all digits.
    let labels: Vec<&str> = parsed.domain().split('.').collect();
    let label_ok = |l: &&str| l.chars().all(|c| c.is_alphanumeric() || c == '-');
    let top_numeric = labels
        .last()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if !labels.iter().all(label_ok) || top_numeric {
        return Err(invalid(
            "the part after @ must be a domain like example.com",
        ));
    }
    Ok(email.to_string())
}

/// The key two spellings of one address share: full case folding of the canonical decomposition,
/// recomposed (NFC), so `ÖZIL@example.com`, `Özil@Example.com` and `o\u{308}zil@example.com` are one.
pub fn key(email: &str) -> String {
    email
        .trim()
        .chars()
        .nfd()
        .default_case_fold()
        .nfc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_pass_and_are_trimmed() {
        for good in [
            "ada@example.com",
            "Ada.Lovelace+shop@mail.example.co.uk",
            "özil@beispiel.de",
            "x@xn--bcher-kva.example",
        ] {
            assert_eq!(validate(&format!(" {good} ")).unwrap(), good);
        }
    }

    #[test]
    fn consecutive_dots_invisible_characters_and_bad_labels_are_refused_on_the_email_field() {
        for bad in [
            "ada..lovelace@example.com",
            "ada@example..com",
            ".ada@example.com",
            "ada.@example.com",
            "ad\u{200B}a@example.com",
            "ada@exa\u{200D}mple.com",
            "ada@\u{FEFF}example.com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exam_ple.com",
            "ada@localhost",
            "ada@[127.0.0.1]",
            "\"ada\"@example.com",
            "Ada <ada@example.com>",
            "ada@",
            "@example.com",
            "ada@example.com\u{202E}",
            "ada@10.0.0.1",
        ] {
            let err = validate(bad).expect_err(bad);
            assert_eq!(err.field, Some(Field::Email), "{bad}");
        }
        let long_label = format!("ada@{}.com", "a".repeat(64));
        assert!(validate(&long_label).is_err());
    }

    #[test]
    fn keys_fold_case_fully_and_ignore_how_accents_were_typed() {
        assert_eq!(key("ÖZIL@example.com"), key("özil@example.com"));
        assert_eq!(key("Özil@Example.COM"), "özil@example.com");
        assert_eq!(key("o\u{308}zil@example.com"), key("özil@example.com"));
        assert_eq!(key("STRASSE@example.com"), key("straße@example.com"));
        assert_ne!(key("ozil@example.com"), key("özil@example.com"));
    }
}
