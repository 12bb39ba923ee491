//! Every size limit a customer can meet, in one place, so that the server enforces, the shop shows
//! and the docs state the same numbers.
//!
//! | limit | value | refused with |
//! |---|---|---|
//! | lines in one cart | [`MAX_CART_LINES`] | `InvalidInput` when a new line is added beyond it |
//! | units in one cart or checkout line | [`MAX_LINE_QUANTITY`] (and never more than is in stock) | `InvalidInput`, field `Quantity` |
//! | lines in one checkout | [`MAX_CHECKOUT_LINES`] | `InvalidInput` |
//! | orders in one `Orders` reply | [`crate::MAX_ORDERS_LISTED`] | the newest are listed |
//! | characters in a first or last name | 1 to [`MAX_NAME_CHARS`] | `InvalidInput`, field of the name |
//! | bytes in an email | [`MAX_EMAIL_BYTES`] | `InvalidInput`, field `Email` |
//! | characters in a password | [`MIN_PASSWORD_CHARS`] to [`MAX_PASSWORD_CHARS`] | `InvalidInput`, field `Password` |
//!
//! Frame sizes are in [`crate::codec`]: [`crate::codec::MAX_CLIENT_FRAME`] and
//! [`crate::codec::MAX_SERVER_FRAME`].

/// The most lines one checkout may hold, whether it buys the cart or lines of its own. It bounds the
/// work of one checkout inside the single market task and the size of its transaction.
pub const MAX_CHECKOUT_LINES: usize = 100;

/// The most lines one cart may hold: exactly what one checkout allows, so that every cart the server
/// accepts can be bought in one go.
pub const MAX_CART_LINES: usize = MAX_CHECKOUT_LINES;

/// The most units of one listing in one cart or checkout line. Stock is the usual limit; this one
/// catches a mistyped quantity and keeps every line total far inside what money can hold.
pub const MAX_LINE_QUANTITY: u32 = 10_000;

/// The most characters in a first or last name.
pub const MAX_NAME_CHARS: usize = 100;

/// The most bytes in an email address (the longest address SMTP can carry).
pub const MAX_EMAIL_BYTES: usize = 254;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The most characters a password may have, to bound the cost of hashing it.
pub const MAX_PASSWORD_CHARS: usize = 1024;
