//! Errors as they travel on the wire: a stable code, a message a person can read as it is, and, where
//! it helps, the form field it belongs to or the lines that could not be filled.

use crate::message::CartView;
use crate::types::ListingId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable error code. New codes are only ever appended, so old clients keep decoding old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The client speaks another protocol version. The message names both versions.
    VersionMismatch,
    /// The first frame was not a valid `Hello`, or the role's credentials were wrong.
    BadHandshake,
    /// A frame could not be decoded. The connection is closed after this error.
    Malformed,
    /// The request needs a logged-in customer.
    NotAuthenticated,
    /// The role may not make this request.
    Forbidden,
    /// No such object, or it belongs to someone else: the two look the same on purpose.
    NotFound,
    /// A field failed validation. [`WireError::field`] names it.
    InvalidInput,
    /// An account with this email already exists.
    EmailTaken,
    /// Unknown email or wrong password. The two cases are deliberately indistinguishable.
    BadCredentials,
    /// Too many failed logins; try again later.
    Throttled,
    /// The session token is unknown, revoked or expired. Log in again.
    SessionExpired,
    /// A checkout needs a payment card on the account.
    CardRequired,
    /// The card failed validation. [`WireError::field`] names the part.
    CardInvalid,
    /// A checkout of an empty cart.
    EmptyCart,
    /// Some lines could not be filled. [`WireError::shortages`] lists them; nothing was bought.
    OutOfStock,
    /// No month is open, so nothing can be sold right now.
    MonthClosed,
    /// The request does not fit the current state (for example an offer for a month that is not open).
    Conflict,
    /// The server is at its connection limit.
    TooManyConnections,
    /// A frame did not finish in time, or the connection was idle too long.
    Timeout,
    /// The server is shutting down.
    ShuttingDown,
    /// Something went wrong inside the server. Nothing was changed.
    Internal,
    /// A checkout's confirmed total is not what the lines cost now (a new month's price, or a line cut
    /// to what is in stock). Nothing was bought. [`WireError::repriced`] carries the lines and the total
    /// as they are now: show them, and let the customer confirm again.
    PriceChanged,
    /// The credential is missing or wrong: a manufacturer name that is registered to another
    /// credential, or an operator request without the operator key. Retrying cannot fix it.
    WrongCredential,
}

/// The form field an [`ErrorCode::InvalidInput`] or [`ErrorCode::CardInvalid`] belongs to, so a client
/// can show the message next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    /// Account first name.
    FirstName,
    /// Account last name.
    LastName,
    /// Account email.
    Email,
    /// Account password.
    Password,
    /// Card number.
    CardNumber,
    /// Card expiry month and year.
    CardExpiry,
    /// Card verification code.
    CardCvc,
    /// A quantity.
    Quantity,
    /// A listing id that is not on sale.
    Listing,
}

/// One line of a checkout that could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    /// The listing that ran short.
    pub listing: ListingId,
    /// Product name, for the message shown to the customer.
    pub product: String,
    /// Manufacturer name, for the message shown to the customer.
    pub manufacturer: String,
    /// What the customer asked for.
    pub requested: u32,
    /// What is left now. Zero means sold out.
    pub available: u32,
}

/// An error sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// What went wrong, in words a customer can read as they are.
    pub message: String,
    /// The form field this error belongs to, if any.
    pub field: Option<Field>,
    /// For [`ErrorCode::OutOfStock`]: every line that could not be filled.
    pub shortages: Vec<Shortage>,
    /// For [`ErrorCode::PriceChanged`], and for [`ErrorCode::OutOfStock`] on a cart checkout: the lines
    /// and the total as they are now (for a cart checkout, the cart after any cut). `None` for every
    /// other error. Added after the first release as an optional last field, so older encoders that
    /// know nothing of it never need to fill it in.
    #[serde(default)]
    pub repriced: Option<Box<CartView>>,
}

impl WireError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            field: None,
            shortages: Vec::new(),
            repriced: None,
        }
    }

    /// An error that belongs to one form field.
    pub fn field(code: ErrorCode, field: Field, message: impl Into<String>) -> Self {
        WireError {
            field: Some(field),
            ..WireError::new(code, message)
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}
