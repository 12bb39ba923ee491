//! Sizes that keep every message inside its frame, by construction.
//!
//! Whatever can grow without bound (the catalog, a customer's orders, an offer, a stock update) is cut
//! into pages or parts of a fixed number of entries. Each entry has bounded size because its strings
//! are bounded (the byte limits below, checked by the server when an offer or a name comes in), so a
//! page has a bounded size too. The protocol tests encode a page of worst-case entries and check that
//! it fits [`crate::codec::MAX_SERVER_FRAME`] (or, for offer parts, [`crate::codec::MAX_CLIENT_FRAME`]).

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
/// Orders in one page of history ([`crate::RequestBody::Orders`], [`crate::RequestBody::OrdersPage`]).
/// A page with fewer is the last one.
pub const ORDERS_PAGE_LEN: usize = 100;
/// Lines in one order: the most one checkout may buy.
pub const MAX_ORDER_LINES: usize = 100;
/// Levels in one [`crate::Event::Stock`]. More changes are sent as several events with one version.
pub const MAX_STOCK_DELTA_LEVELS: usize = 10_000;
/// Lines in one [`crate::RequestBody::SubmitOffer`] or [`crate::RequestBody::SubmitOfferPart`]. A
/// bigger offer is sent in parts.
pub const MAX_OFFER_PART_LINES: usize = 200;
/// Lines in one whole offer, over all its parts. It bounds what the distributor holds for an offer
/// still arriving, and what [`crate::Reply::OfferAccepted`] lists.
pub const MAX_OFFER_LINES: usize = 10_000;
