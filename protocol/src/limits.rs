//! Every size limit a customer can meet, in one place, so that the server enforces, the shop shows
//! and the docs state the same numbers.
//!
//! | limit | value | refused with |
//! |---|---|---|
//! | lines in one cart | [`MAX_CART_LINES`] | `InvalidInput` when a new line is added beyond it |
//! | units in one cart or checkout line | [`MAX_LINE_QUANTITY`] (and never more than is in stock) | `InvalidInput`, field `Quantity` |
//! | lines in one checkout | [`MAX_CHECKOUT_LINES`] | `InvalidInput` |
//! | orders in one `Orders` or `OrdersPage` reply | [`ORDERS_PAGE_LEN`] | fetch older ones with `OrdersPage` |
//! | listings in one `Catalog` or `CatalogPage` reply | [`CATALOG_PAGE_LEN`] | fetch the rest with `CatalogPage` |
//! | characters in a first or last name | 1 to [`MAX_NAME_CHARS`] | `InvalidInput`, field of the name |
//! | bytes in an email | [`MAX_EMAIL_BYTES`] | `InvalidInput`, field `Email` |
//! | characters in a password | [`MIN_PASSWORD_CHARS`] to [`MAX_PASSWORD_CHARS`] | `InvalidInput`, field `Password` |
//!
//! Frame sizes are in [`crate::codec`]: [`crate::codec::MAX_CLIENT_FRAME`] and
//! [`crate::codec::MAX_SERVER_FRAME`].
//!
//! # Every message fits its frame, by construction
//! Whatever can grow without bound (the catalog, a customer's orders, an offer, a stock update) is cut
//! into pages or parts of a fixed number of entries. Each entry has bounded size because its strings
//! are bounded (the byte limits below, checked by the server when an offer or a name comes in), so a
//! page has a bounded size too. `server/src/pages.rs` encodes pages of worst-case entries and checks
//! that they fit [`crate::codec::MAX_SERVER_FRAME`] (offer parts: [`crate::codec::MAX_CLIENT_FRAME`]).

/// The most lines one checkout may hold, whether it buys the cart or lines of its own. It bounds the
/// work of one checkout inside the single market task and the size of its transaction.
pub const MAX_CHECKOUT_LINES: usize = 100;

/// The most lines one cart may hold: exactly what one checkout allows, so that every cart the server
/// accepts can be bought in one go.
pub const MAX_CART_LINES: usize = MAX_CHECKOUT_LINES;

/// The most units of one listing in one cart or checkout line. Stock is the usual limit; this one
/// catches a mistyped quantity and keeps every line total far inside what money can hold.
pub const MAX_LINE_QUANTITY: u32 = 10_000;

/// The most orders in one [`crate::RequestBody::ReportDispatches`]. It bounds the work of one
/// writer job, which shares its transaction with the checkouts of its batch.
pub const MAX_DISPATCHES_PER_REPORT: usize = 256;

/// The most characters in a first or last name.
pub const MAX_NAME_CHARS: usize = 100;

/// The most bytes in an email address (the longest address SMTP can carry).
pub const MAX_EMAIL_BYTES: usize = 254;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The most characters a password may have, to bound the cost of hashing it.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Longest SKU in an offer, in bytes (at least one byte).
pub const MAX_SKU_BYTES: usize = 64;
/// Longest product name in an offer, in bytes.
pub const MAX_PRODUCT_BYTES: usize = 128;
/// Longest category in an offer, in bytes.
pub const MAX_CATEGORY_BYTES: usize = 64;
/// Longest manufacturer name in `Hello`, in bytes.
pub const MAX_MANUFACTURER_NAME_BYTES: usize = 64;

/// Listings in one catalog page ([`crate::RequestBody::Catalog`], [`crate::RequestBody::CatalogPage`]
/// and [`crate::Event::Catalog`]). A page with fewer is the last one.
pub const CATALOG_PAGE_LEN: usize = 1_000;
/// Orders in one page of history ([`crate::RequestBody::Orders`], [`crate::RequestBody::OrdersPage`]),
/// each of at most [`MAX_CHECKOUT_LINES`] lines. A page with fewer is the last one.
pub const ORDERS_PAGE_LEN: usize = 100;
/// Levels in one [`crate::Event::Stock`]. More changes are sent as several events with one version.
pub const MAX_STOCK_DELTA_LEVELS: usize = 10_000;
/// Lines in one [`crate::RequestBody::SubmitOffer`] or [`crate::RequestBody::SubmitOfferPart`]. A
/// bigger offer is sent in parts.
pub const MAX_OFFER_PART_LINES: usize = 200;
/// Lines in one whole offer, over all its parts. It bounds what the distributor holds for an offer
/// still arriving, and what [`crate::Reply::OfferAccepted`] lists.
pub const MAX_OFFER_LINES: usize = 10_000;
