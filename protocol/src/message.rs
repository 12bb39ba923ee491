//! Every message of the protocol: the handshake, requests and replies, and server pushes.

use crate::error::WireError;
use crate::status::{StatusDelta, SystemStatus};
use crate::types::*;
use serde::{Deserialize, Serialize};

/// Who is on the other end of a connection. Every request is checked against the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A shopper. Anonymous until it signs up, logs in or resumes a session.
    Customer,
    /// A manufacturer process. It offers goods and receives sale notices.
    Manufacturer,
    /// An operator tool. It can inspect the system and close the month.
    Operator,
    /// A front end that serves customers over another transport (`shop serve-ssh`). It presents the
    /// operator's key in [`Hello::key`], then acts as one customer connection, and it alone may vouch
    /// for the customer's SSH key ([`RequestBody::KeyLogIn`]).
    Gateway,
}

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal the server's [`crate::PROTOCOL_VERSION`], or the server refuses the connection.
    pub version: u16,
    /// The role this connection acts in.
    pub role: Role,
    /// Free text naming the client program, for logs (for example `shop/0.1.0`).
    pub client: String,
    /// For manufacturers: the stable name the distributor knows it by. Ignored for other roles.
    pub name: Option<String>,
    /// The role's secret. Manufacturers: the credential the distributor issued to this name (`None`
    /// the first time, to register). Operators and gateways: the operator key (see
    /// [`crate::operator_key`]).
    pub key: Option<String>,
}

/// Everything a client can send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The handshake. Must be the first frame, and only the first.
    Hello(Hello),
    /// A request. Answered by exactly one [`ServerMessage::Response`] with the same id.
    Request(Request),
}

/// Everything the server can send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The handshake succeeded.
    Welcome(Welcome),
    /// The handshake failed. The server closes the connection after this frame.
    Refused(WireError),
    /// The answer to one request.
    Response(Response),
    /// A push, at any moment between responses.
    Event(Event),
    /// The server is closing the connection (malformed frame, timeout, shutdown), and says why.
    Closing(WireError),
}

/// The server's answer to a successful [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's protocol version.
    pub version: u16,
    /// Free text naming the server program.
    pub server: String,
    /// For manufacturers: the id the distributor registered this name under.
    pub manufacturer: Option<ManufacturerId>,
    /// The current month, if one is open.
    pub month: Option<MonthView>,
    /// For a manufacturer that just registered its name: its credential, a random 256-bit token in
    /// hex. The distributor keeps only its hash; the manufacturer must keep it to connect again.
    pub credential: Option<String>,
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the response.
    pub id: RequestId,
    /// What is asked.
    pub body: RequestBody,
}

/// What a client can ask. Each variant notes the roles allowed to send it.
///
/// `Debug` never prints a password (see the impl below), so a request can be logged safely.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Any role: answered with [`Reply::Pong`]. Keeps an idle connection alive.
    Ping,

    // ---- Anonymous customers ----
    /// Create an account and start a session. Answered with [`Reply::Session`].
    SignUp(SignUp),
    /// Start a session. Answered with [`Reply::Session`] carrying a fresh token.
    LogIn {
        /// Compared case-insensitively.
        email: String,
        /// The password.
        password: String,
    },
    /// Continue a session after reconnecting, without a new login. Answered with [`Reply::Session`].
    Resume {
        /// The token from an earlier [`Reply::Session`].
        token: SessionToken,
    },

    // ---- Logged-in customers ----
    /// End the session and revoke its token. Answered with [`Reply::Done`].
    LogOut,
    /// Answered with [`Reply::Account`].
    GetAccount,
    /// Change account details. Answered with [`Reply::Account`].
    UpdateAccount(AccountUpdate),
    /// Delete the account after checking the password. Answered with [`Reply::Done`]. Orders stay
    /// in the books, detached from the person.
    DeleteAccount {
        /// The current password, as confirmation.
        password: String,
    },
    /// Attach or replace the payment card. Only brand, last four digits and expiry are kept.
    /// Answered with [`Reply::Account`].
    SetCard(CardInput),
    /// Remove the payment card. Answered with [`Reply::Account`].
    RemoveCard,
    /// The first page of the current catalog (at most [`crate::CATALOG_PAGE_LEN`] listings, by
    /// listing id). Also subscribes this connection to live [`Event::Stock`] updates, for every
    /// listing, fetched or not. Answered with [`Reply::Catalog`]; fetch the rest with
    /// [`RequestBody::CatalogPage`].
    Catalog,
    /// The cart, checked against stock: lines that can no longer be filled are cut and reported.
    /// Answered with [`Reply::Cart`].
    GetCart,
    /// Add `quantity` (1 to what is available) of a listing to the cart. Answered with [`Reply::Cart`].
    /// A new line beyond [`crate::limits::MAX_CART_LINES`], or a line above
    /// [`crate::limits::MAX_LINE_QUANTITY`], is refused with [`crate::ErrorCode::InvalidInput`].
    AddToCart {
        /// What to add.
        listing: ListingId,
        /// How many more.
        quantity: u32,
    },
    /// Set a cart line's quantity; 0 removes the line. Answered with [`Reply::Cart`].
    SetCartQuantity {
        /// Which line.
        listing: ListingId,
        /// The new quantity.
        quantity: u32,
    },
    /// Remove a line from the cart. Answered with [`Reply::Cart`].
    RemoveFromCart {
        /// Which line.
        listing: ListingId,
    },
    /// Empty the cart. Answered with [`Reply::Cart`].
    ClearCart,
    /// Buy, all or nothing. Answered with [`Reply::Order`], or an error: [`crate::ErrorCode::OutOfStock`]
    /// lists every short line, and the cart has then been cut to what is available;
    /// [`crate::ErrorCode::PriceChanged`] says the lines cost something else than `confirmed_total`
    /// now. At most [`crate::limits::MAX_CHECKOUT_LINES`] lines.
    Checkout {
        /// Chosen by the client. A retry with the same id returns the original result.
        checkout_id: CheckoutId,
        /// `None` buys the cart. `Some(lines)` buys exactly these lines ("buy now") and leaves the cart
        /// alone.
        lines: Option<Vec<CartItem>>,
        /// The total the customer was shown and agreed to pay. If the lines cost anything else now
        /// (a new month's price, a line cut to what is in stock), nothing is bought and the answer is
        /// [`crate::ErrorCode::PriceChanged`] with the lines and total as they are now, so a customer
        /// is never charged differently from what they confirmed.
        confirmed_total: Cents,
    },
    /// The customer's newest orders, newest first (at most [`crate::ORDERS_PAGE_LEN`]). Answered with
    /// [`Reply::Orders`]; fetch older ones with [`RequestBody::OrdersPage`].
    Orders,
    /// One of the customer's orders. Another customer's order is [`crate::ErrorCode::NotFound`], exactly
    /// like an order that does not exist. Answered with [`Reply::Order`].
    GetOrder {
        /// Which order.
        order: OrderId,
    },

    // ---- Manufacturers ----
    /// The answer to [`Event::OfferRequested`]. Answered with [`Reply::OfferAccepted`].
    SubmitOffer {
        /// The month the offer is for. Must be the open month.
        month: MonthId,
        /// What is offered.
        lines: Vec<OfferLine>,
    },
    /// Every notice up to and including `through` is applied to the manufacturer's books.
    /// Answered with [`Reply::Done`].
    AckNotices {
        /// The highest applied sequence number.
        through: NoticeSeq,
    },
    /// This manufacturer's goods for an order have left the warehouse. Answered with [`Reply::Done`],
    /// or [`crate::ErrorCode::NotFound`] if the order holds none of this manufacturer's goods.
    ReportDispatch {
        /// The order, from a sale notice.
        order: OrderId,
    },
    /// This manufacturer's goods for each of these orders have left the warehouse: one request for a
    /// round of dispatches instead of one per order (at most [`crate::MAX_DISPATCHES_PER_REPORT`]).
    /// Answered with [`Reply::Dispatched`], which names the orders that hold none of this
    /// manufacturer's goods; every other order is marked dispatched (again, a no-op).
    ReportDispatches {
        /// The orders, from sale notices.
        orders: Vec<OrderId>,
    },

    // ---- Operators ----
    /// Close the open month now. Answered with [`Reply::Done`].
    CloseMonth,
    /// A summary of the system. Answered with [`Reply::Status`]. Also subscribes this connection to
    /// [`Event::Operator`] pushes.
    Status,

    // ---- Gateways (for the one customer they carry) ----
    /// Anonymous: start a session as the account this SSH key is linked to. The gateway vouches that
    /// the customer holds the key. Answered with [`Reply::Session`], or
    /// [`crate::ErrorCode::BadCredentials`] when no account is linked to it.
    KeyLogIn {
        /// The key's SHA-256 fingerprint, as `ssh-keygen -lf` prints it (`SHA256:...`).
        fingerprint: String,
    },
    /// Logged in: link this SSH key to the account, so that it logs straight in next time. A key
    /// belongs to one account at most ([`crate::ErrorCode::Conflict`] if another has it). Answered
    /// with [`Reply::Done`].
    RememberKey {
        /// As in [`RequestBody::KeyLogIn`].
        fingerprint: String,
    },
    /// Logged in: unlink this SSH key from the account. Answered with [`Reply::Done`].
    ForgetKey {
        /// As in [`RequestBody::KeyLogIn`].
        fingerprint: String,
    },
    /// Operators: forget the credential of the manufacturer registered as `name`, and end its link,
    /// so that the next manufacturer to connect under the name registers it again (for example after
    /// its books were lost). Answered with [`Reply::Done`]; an unknown name is
    /// [`crate::ErrorCode::NotFound`].
    RevokeManufacturer {
        /// The manufacturer's name.
        name: String,
    },
    /// Months that open from now on last `secs` seconds (within [`crate::MONTH_SECS_RANGE`]); the
    /// open month keeps its end. Answered with [`Reply::Done`].
    SetMonthLength {
        /// The new length in seconds.
        secs: u64,
    },

    // ---- Added later; new variants go at the end ----
    /// Customers and operators: the next catalog page, listings with ids above `after` (the last
    /// listing of the previous page). Answered with [`Reply::Catalog`]; a page of fewer than
    /// [`crate::CATALOG_PAGE_LEN`] listings is the last. Pages are read from the live catalog, and
    /// stock events keep fetched listings current, so applying pages and events in arrival order is
    /// always right. After [`Event::Catalog`], start again from that event's page.
    CatalogPage {
        /// The last listing already fetched.
        after: ListingId,
    },
    /// Customers: older orders, newest first, those with ids below `before` (the oldest order of the
    /// previous page). Answered with [`Reply::Orders`]; a page of fewer than
    /// [`crate::ORDERS_PAGE_LEN`] orders is the last.
    OrdersPage {
        /// The oldest order already fetched.
        before: OrderId,
    },
    /// Manufacturers: one part of an offer with more than [`crate::MAX_OFFER_PART_LINES`] lines.
    /// The distributor holds the parts on this connection and submits them as one offer, all or
    /// nothing, when the part with `last: true` arrives: that part is answered like
    /// [`RequestBody::SubmitOffer`], earlier ones with [`Reply::Done`]. A lost connection discards
    /// the held parts. At most [`crate::MAX_OFFER_LINES`] lines in all.
    SubmitOfferPart {
        /// The month the offer is for; the same in every part.
        month: MonthId,
        /// At most [`crate::MAX_OFFER_PART_LINES`] lines.
        lines: Vec<OfferLine>,
        /// Whether this part completes the offer.
        last: bool,
    },
    /// Gateways, before a login: the address the carried customer connects to the gateway from, so
    /// that sign-up and login throttling count that customer's address, not the gateway's (which
    /// every customer of the gateway shares). Answered with [`Reply::Done`].
    CustomerAddress {
        /// The customer's IP address, as the gateway saw it.
        ip: std::net::IpAddr,
    },
    /// Manufacturers, first thing after the handshake: take this link's notices from the message
    /// broker instead of as [`Event::Notice`]s on this connection. Acks still come as
    /// [`RequestBody::AckNotices`] here. Answered with [`Reply::NoticeFeed`], which names the
    /// JetStream subject and consumer (they depend on the distributor's cluster); refused with [`crate::ErrorCode::Conflict`] by a distributor
    /// that runs without a broker.
    NoticesFromBroker,
}

const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use RequestBody::*;
        match self {
            Ping => f.write_str("Ping"),
            SignUp(form) => f.debug_tuple("SignUp").field(form).finish(),
            LogIn { email, .. } => f
                .debug_struct("LogIn")
                .field("email", email)
                .field("password", &REDACTED)
                .finish(),
            Resume { token } => f.debug_struct("Resume").field("token", token).finish(),
            LogOut => f.write_str("LogOut"),
            GetAccount => f.write_str("GetAccount"),
            UpdateAccount(update) => f.debug_tuple("UpdateAccount").field(update).finish(),
            DeleteAccount { .. } => f
                .debug_struct("DeleteAccount")
                .field("password", &REDACTED)
                .finish(),
            SetCard(card) => f.debug_tuple("SetCard").field(card).finish(),
            RemoveCard => f.write_str("RemoveCard"),
            Catalog => f.write_str("Catalog"),
            GetCart => f.write_str("GetCart"),
            AddToCart { listing, quantity } => f
                .debug_struct("AddToCart")
                .field("listing", listing)
                .field("quantity", quantity)
                .finish(),
            SetCartQuantity { listing, quantity } => f
                .debug_struct("SetCartQuantity")
                .field("listing", listing)
                .field("quantity", quantity)
                .finish(),
            RemoveFromCart { listing } => f
                .debug_struct("RemoveFromCart")
                .field("listing", listing)
                .finish(),
            ClearCart => f.write_str("ClearCart"),
            Checkout {
                checkout_id,
                lines,
                confirmed_total,
            } => f
                .debug_struct("Checkout")
                .field("checkout_id", checkout_id)
                .field("lines", lines)
                .field("confirmed_total", confirmed_total)
                .finish(),
            Orders => f.write_str("Orders"),
            GetOrder { order } => f.debug_struct("GetOrder").field("order", order).finish(),
            SubmitOffer { month, lines } => f
                .debug_struct("SubmitOffer")
                .field("month", month)
                .field("lines", lines)
                .finish(),
            AckNotices { through } => f
                .debug_struct("AckNotices")
                .field("through", through)
                .finish(),
            ReportDispatch { order } => f
                .debug_struct("ReportDispatch")
                .field("order", order)
                .finish(),
            ReportDispatches { orders } => f
                .debug_struct("ReportDispatches")
                .field("orders", &orders.len())
                .finish(),
            CloseMonth => f.write_str("CloseMonth"),
            Status => f.write_str("Status"),
            KeyLogIn { fingerprint } => f
                .debug_struct("KeyLogIn")
                .field("fingerprint", fingerprint)
                .finish(),
            RememberKey { fingerprint } => f
                .debug_struct("RememberKey")
                .field("fingerprint", fingerprint)
                .finish(),
            ForgetKey { fingerprint } => f
                .debug_struct("ForgetKey")
                .field("fingerprint", fingerprint)
                .finish(),
            RevokeManufacturer { name } => f
                .debug_struct("RevokeManufacturer")
                .field("name", name)
                .finish(),
            SetMonthLength { secs } => f
                .debug_struct("SetMonthLength")
                .field("secs", secs)
                .finish(),
            CatalogPage { after } => f.debug_struct("CatalogPage").field("after", after).finish(),
            OrdersPage { before } => f
                .debug_struct("OrdersPage")
                .field("before", before)
                .finish(),
            SubmitOfferPart { month, lines, last } => f
                .debug_struct("SubmitOfferPart")
                .field("month", month)
                .field("lines", &lines.len())
                .field("last", last)
                .finish(),
            CustomerAddress { ip } => f.debug_struct("CustomerAddress").field("ip", ip).finish(),
            NoticesFromBroker => f.write_str("NoticesFromBroker"),
        }
    }
}

/// The most orders [`RequestBody::Orders`] returns: one page, [`crate::ORDERS_PAGE_LEN`].
pub const MAX_ORDERS_LISTED: usize = crate::limits::ORDERS_PAGE_LEN;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request this answers.
    pub id: RequestId,
    /// The outcome.
    pub result: Result<Reply, WireError>,
}

/// A successful outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The request took effect and there is nothing more to say.
    Done,
    /// The answer to [`RequestBody::Ping`].
    Pong,
    /// A session started or resumed.
    Session(SessionInfo),
    /// The account as it is now.
    Account(AccountView),
    /// One page of the catalog as it is now (see [`RequestBody::CatalogPage`]).
    Catalog(CatalogSnapshot),
    /// The cart as it is now.
    Cart(CartView),
    /// The order a checkout created (or created earlier, for a retry).
    Order(OrderView),
    /// One page of the customer's orders, newest first (see [`RequestBody::OrdersPage`]).
    Orders(Vec<OrderView>),
    /// The offer is on sale. Each offered SKU got this listing id.
    OfferAccepted {
        /// The month the offer is for.
        month: MonthId,
        /// SKU → listing.
        listings: Vec<(String, ListingId)>,
    },
    /// A summary of the system. Boxed: it is by far the largest reply, and every other reply would
    /// otherwise be as big.
    Status(Box<SystemStatus>),
    /// The answer to [`RequestBody::NoticesFromBroker`]: where this manufacturer's notices are.
    NoticeFeed(crate::broker::NoticeFeed),
    /// The answer to [`RequestBody::ReportDispatches`]: the orders that hold none of this
    /// manufacturer's goods, so nothing was marked for them. Empty when every order was taken.
    Dispatched {
        /// The orders that were not this manufacturer's.
        unknown: Vec<OrderId>,
    },
}

/// Sign-up details. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignUp {
    /// 1 to [`crate::limits::MAX_NAME_CHARS`] characters.
    pub first_name: String,
    /// 1 to [`crate::limits::MAX_NAME_CHARS`] characters.
    pub last_name: String,
    /// Unique, compared case-insensitively.
    pub email: String,
    /// [`crate::limits::MIN_PASSWORD_CHARS`] to [`crate::limits::MAX_PASSWORD_CHARS`] characters.
    pub password: String,
}

/// Account changes. `None` leaves a field as it is. `Debug` hides the passwords.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AccountUpdate {
    /// A new first name.
    pub first_name: Option<String>,
    /// A new last name.
    pub last_name: Option<String>,
    /// A new email. Must not belong to another account.
    pub email: Option<String>,
    /// A new password, with the current one as proof: `(current, new)`.
    pub password: Option<(String, String)>,
}

impl std::fmt::Debug for SignUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignUp")
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field("email", &self.email)
            .field("password", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for AccountUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUpdate")
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// A started session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Send this in [`RequestBody::Resume`] after a reconnect.
    pub token: SessionToken,
    /// Unix milliseconds when the token stops working.
    pub expires_at_ms: u64,
    /// The account.
    pub account: AccountView,
}

/// An account as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account id.
    pub id: AccountId,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email as entered at sign-up or last change.
    pub email: String,
    /// The payment card, if one is attached.
    pub card: Option<CardView>,
}

/// A card as typed by the customer. Sent once; the server keeps only a [`CardView`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardInput {
    /// 13–19 digits; spaces and dashes are ignored. Must pass the Luhn check.
    pub number: String,
    /// 1–12.
    pub exp_month: u8,
    /// Four digits, for example 2031.
    pub exp_year: u16,
    /// 3–4 digits.
    pub cvc: String,
}

impl std::fmt::Debug for CardInput {
    /// Never prints the number or the CVC, so a card cannot leak through a `{:?}` in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardInput")
            .field("number", &"<redacted>")
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .field("cvc", &"<redacted>")
            .finish()
    }
}

/// A card brand, derived from the number's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CardBrand {
    /// Starts with 4.
    Visa,
    /// 51–55 or 2221–2720.
    Mastercard,
    /// 34 or 37.
    Amex,
    /// 6011, 644–649 or 65.
    Discover,
    /// Anything else that passes Luhn.
    Other,
}

/// What the server keeps of a card: never the full number, never the CVC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// The brand.
    pub brand: CardBrand,
    /// The last four digits.
    pub last4: String,
    /// 1–12.
    pub exp_month: u8,
    /// Four digits.
    pub exp_year: u16,
}

/// The state of a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MonthState {
    /// Selling.
    Open,
    /// Closed; settlements are on their way to the manufacturers.
    Closed,
}

/// Why a month closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CloseReason {
    /// Every offered unit was sold.
    SoldOut,
    /// Every customer active this month checked out and has an empty cart.
    AllCustomersDone,
    /// The month's time ran out.
    TimeUp,
    /// An operator closed it.
    Operator,
}

/// A month as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthView {
    /// Which month.
    pub id: MonthId,
    /// Open or closed.
    pub state: MonthState,
    /// Unix milliseconds when it opened.
    pub opened_at_ms: u64,
    /// Unix milliseconds when its time runs out.
    pub ends_at_ms: u64,
}

/// One product from one manufacturer, as offered this month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// The listing id to put in a cart.
    pub listing: ListingId,
    /// Who makes it.
    pub manufacturer: ManufacturerId,
    /// The manufacturer's name.
    pub manufacturer_name: String,
    /// The manufacturer's stock-keeping unit.
    pub sku: String,
    /// Product name.
    pub product: String,
    /// Category, for grouping and filtering.
    pub category: String,
    /// This month's price per unit.
    pub unit_price: Cents,
    /// Units offered this month.
    pub offered: u32,
    /// Units still for sale.
    pub remaining: u32,
}

/// One page of the catalog at one moment, by listing id. Sold-out listings are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    /// The current month, if any is open.
    pub month: Option<MonthView>,
    /// Listings with stock.
    pub items: Vec<CatalogItem>,
    /// Increases with every stock change; a [`StockDelta`] with a lower version is stale.
    pub version: u64,
}

/// Stock levels that changed since the last update. A level of 0 means the listing sold out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockDelta {
    /// The catalog version these levels belong to.
    pub version: u64,
    /// `(listing, remaining)` for each listing that changed.
    pub levels: Vec<(ListingId, u32)>,
}

/// A line a customer wants: a listing and a quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CartItem {
    /// What.
    pub listing: ListingId,
    /// How many.
    pub quantity: u32,
}

/// One cart line, with what it costs now and what is available now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// The listing.
    pub listing: ListingId,
    /// Product name.
    pub product: String,
    /// Manufacturer name.
    pub manufacturer_name: String,
    /// This month's price per unit.
    pub unit_price: Cents,
    /// How many are in the cart.
    pub quantity: u32,
    /// How many are for sale right now.
    pub available: u32,
}

/// A cart line that had to be cut because stock ran short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartAdjustment {
    /// The listing.
    pub listing: ListingId,
    /// Product name, for the message.
    pub product: String,
    /// Manufacturer name, for the message.
    pub manufacturer_name: String,
    /// The quantity before.
    pub from: u32,
    /// The quantity now. Zero means the line was removed.
    pub to: u32,
}

/// The cart as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CartView {
    /// The lines.
    pub lines: Vec<CartLine>,
    /// Sum of price × quantity over the lines.
    pub total: Cents,
    /// Lines cut while answering this request, if any.
    pub adjustments: Vec<CartAdjustment>,
}

/// Where an order line is on its way to the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LineStatus {
    /// Bought and durable at the distributor.
    Placed,
    /// The manufacturer has the sale in its books.
    Confirmed,
    /// The manufacturer sent the goods.
    Dispatched,
}

/// One line of an order, with the price that was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The listing.
    pub listing: ListingId,
    /// Product name at the time of purchase.
    pub product: String,
    /// Manufacturer name.
    pub manufacturer_name: String,
    /// The unit price paid, frozen at checkout.
    pub unit_price: Cents,
    /// Units bought.
    pub quantity: u32,
    /// `unit_price × quantity`.
    pub line_total: Cents,
    /// Where this line is.
    pub status: LineStatus,
    /// Unix milliseconds when the line reached `status` (the checkout's time while `Placed`).
    pub status_at_ms: u64,
}

/// An order as its customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order id.
    pub id: OrderId,
    /// The client-chosen checkout id that created it.
    pub checkout_id: CheckoutId,
    /// The month it was bought in.
    pub month: MonthId,
    /// Unix milliseconds of the checkout.
    pub placed_at_ms: u64,
    /// The lines.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals.
    pub total: Cents,
}

impl OrderView {
    /// The order's status: that of its least advanced line.
    pub fn status(&self) -> LineStatus {
        self.lines
            .iter()
            .map(|l| l.status)
            .min()
            .unwrap_or(LineStatus::Placed)
    }

    /// Total units over all lines.
    pub fn units(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.quantity)).sum()
    }
}

/// One product line of a manufacturer's offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferLine {
    /// The manufacturer's stock-keeping unit. Unique within its offer.
    pub sku: String,
    /// Product name.
    pub product: String,
    /// Category.
    pub category: String,
    /// Units offered this month.
    pub quantity: u32,
    /// This month's unit price.
    pub unit_price: Cents,
}

/// A durable message from the distributor to one manufacturer, delivered in order until acked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Position in this manufacturer's outbox. Apply a notice only if `seq` is above your high-water mark.
    pub seq: NoticeSeq,
    /// What happened.
    pub body: NoticeBody,
}

/// What a notice says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeBody {
    /// Some of this manufacturer's goods were sold.
    Sale(SaleNotice),
    /// A month closed: what was sold and what goes back.
    Settlement(Settlement),
}

/// A sale of one manufacturer's goods within one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleNotice {
    /// The month of the sale.
    pub month: MonthId,
    /// The order; use it in [`RequestBody::ReportDispatch`].
    pub order: OrderId,
    /// The lines of this manufacturer's goods.
    pub lines: Vec<SaleLine>,
}

/// One sold product within a [`SaleNotice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleLine {
    /// The manufacturer's SKU.
    pub sku: String,
    /// Units sold.
    pub quantity: u32,
    /// The price paid per unit.
    pub unit_price: Cents,
}

/// The end-of-month account for one manufacturer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The month that closed.
    pub month: MonthId,
    /// Why it closed.
    pub reason: CloseReason,
    /// One line per product offered.
    pub lines: Vec<SettlementLine>,
}

/// One product in a [`Settlement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementLine {
    /// The manufacturer's SKU.
    pub sku: String,
    /// Units offered this month.
    pub offered: u32,
    /// Units sold.
    pub sold: u32,
    /// Units returned unsold: `offered - sold`.
    pub unsold: u32,
}

/// A push from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Stock levels changed. Coalesced: at most one batch every few tens of milliseconds per
    /// connection, cut into events of at most [`crate::MAX_STOCK_DELTA_LEVELS`] levels.
    Stock(StockDelta),
    /// The catalog changed (offers arrived, a month opened): its first page. Replace what you have
    /// with it, then fetch the rest with [`RequestBody::CatalogPage`].
    Catalog(CatalogSnapshot),
    /// Lines of one of your orders moved forward, all to the same status: one event for all the lines
    /// a manufacturer's ack or dispatch moved, not one per line.
    OrderStatus {
        /// The order.
        order: OrderId,
        /// The lines' listings (never empty).
        listings: Vec<ListingId>,
        /// The new status.
        status: LineStatus,
    },
    /// A month opened.
    MonthOpened(MonthView),
    /// A month closed.
    MonthClosed {
        /// Which month.
        month: MonthId,
        /// Why.
        reason: CloseReason,
    },
    /// To manufacturers: send your offer for this month with [`RequestBody::SubmitOffer`].
    OfferRequested {
        /// The open month.
        month: MonthId,
    },
    /// To manufacturers: a durable notice. Apply it once, then ack with [`RequestBody::AckNotices`].
    Notice(Notice),
    /// To operators that asked [`RequestBody::Status`]: what changed since the last push, at most one
    /// every [`crate::STATUS_PUSH_INTERVAL_MS`].
    /// Boxed, so that the small events that every connection gets stay small.
    Operator(Box<StatusDelta>),
}
