//! Names as people read them: a customer's first and last name, a manufacturer's name and a product's.
//!
//! - Control and bidirectional-override characters are stripped from a person's name (they are never
//!   meant, and an override makes the text display in another order than it is stored).
//! - A name must keep something a reader can see: letters, digits, punctuation or symbols. A name of
//!   only spaces, combining marks or invisible characters (zero-width, Hangul fillers) is refused.
//! - Catalog names (manufacturers, products) refuse control characters instead of stripping them, and
//!   [`lookalike_key`] makes names that differ only by case, spacing or look-alike characters (the
//!   Unicode UTS #39 confusables skeleton) compare equal, so that `0rchard` cannot pass for `orchard`.

use caseless::Caseless;
use protocol::*;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
use unicode_security::skeleton;

/// The longest first or last name, in characters (the limit the shop shows too).
pub use protocol::limits::MAX_NAME_CHARS as PERSON_NAME_MAX;

/// Characters that change the display order of text (Unicode `Bidi_Control`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether a reader would see anything of `text`. The skeleton drops default-ignorable code points
/// (zero-width characters, Hangul fillers), and marks on their own or separators do not count.
fn has_visible(text: &str) -> bool {
    skeleton(text).any(|c| {
        matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Letter
                | GeneralCategoryGroup::Number
                | GeneralCategoryGroup::Punctuation
                | GeneralCategoryGroup::Symbol
        )
    })
}

/// A person's name as it will be stored: stripped of control and bidi characters, trimmed, and
/// refused (on `field`) when nothing visible is left or it is too long.
pub fn person_name(value: &str, field: Field) -> Result<String, WireError> {
    let cleaned: String = value
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let name = cleaned.trim();
    if !has_visible(name) {
        return Err(WireError::field(
            ErrorCode::InvalidInput,
            field,
            "enter a name with at least one visible letter",
        ));
    }
    if name.chars().count() > PERSON_NAME_MAX {
        return Err(WireError::field(
            ErrorCode::InvalidInput,
            field,
            format!("use at most {PERSON_NAME_MAX} characters"),
        ));
    }
    Ok(name.to_string())
}

/// A manufacturer's or product's name as it will be stored: trimmed, at most `max_bytes` long, with
/// something visible and no control or bidi characters. The error says what is wrong with `what`.
pub fn catalog_name(value: &str, what: &str, max_bytes: usize) -> Result<String, String> {
    let name = value.trim();
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(format!("{what} may not contain control characters"));
    }
    if !has_visible(name) {
        return Err(format!("{what} needs at least one visible character"));
    }
    if name.len() > max_bytes {
        return Err(format!("{what} is longer than {max_bytes} bytes"));
    }
    Ok(name.to_string())
}

/// Equal for two names that differ only by case, spacing or look-alike characters: the UTS #39
/// skeleton of the case-folded name without white space, folded again (the skeleton maps `0` to `O`).
pub fn lookalike_key(name: &str) -> String {
    let folded: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .default_case_fold()
        .collect();
    skeleton(&folded).default_case_fold().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_name_is_trimmed_and_loses_control_and_bidi_characters() {
        let name = person_name("  Ada\u{202E} Love\u{7}lace ", Field::FirstName).unwrap();
        assert_eq!(name, "Ada Lovelace");
    }

    #[test]
    fn names_of_only_spaces_marks_or_invisible_characters_are_refused_on_their_field() {
        for bad in [
            "",
            "   ",
            "\u{0301}\u{0308}",
            "\u{200B}\u{200D}",
            "\u{3164}",
            "\u{2800}\u{00A0}",
        ] {
            let err = person_name(bad, Field::LastName).unwrap_err();
            assert_eq!(err.field, Some(Field::LastName), "{bad:?}");
        }
    }

    #[test]
    fn real_names_in_any_script_are_kept() {
        for good in ["Zoë", "Nguyễn", "李", "O'Brien", "José María", "Ōkubo"] {
            assert_eq!(person_name(good, Field::FirstName).unwrap(), good);
        }
        let long = "a".repeat(PERSON_NAME_MAX + 1);
        assert!(person_name(&long, Field::FirstName).is_err());
    }

    #[test]
    fn catalog_names_are_trimmed_and_refuse_control_characters() {
        assert_eq!(catalog_name("  orchard ", "name", 64).unwrap(), "orchard");
        assert!(catalog_name("orc\u{1b}[31mhard", "name", 64).is_err());
        assert!(catalog_name("\u{200B}", "name", 64).is_err());
        assert!(catalog_name(&"x".repeat(65), "name", 64).is_err());
    }

    #[test]
    fn names_that_differ_only_by_case_spacing_or_lookalikes_share_a_key() {
        let orchard = lookalike_key("orchard");
        // The fifth starts with a Cyrillic о.
        for twin in [
            "Orchard",
            "ORCHARD",
            "or chard",
            "0rchard",
            "\u{043E}rchard",
            "orchard\u{200B}",
        ] {
            assert_eq!(lookalike_key(twin), orchard, "{twin}");
        }
        assert_ne!(lookalike_key("orchards"), orchard);
        assert_ne!(lookalike_key("dairy"), orchard);
    }
}
