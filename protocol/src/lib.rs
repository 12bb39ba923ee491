//! The one protocol every part of the central distribution system speaks.
//!
//! # Layout
//! - [`broker`]: the names and payloads of sale notices on the message broker (NATS JetStream).
//! - [`card`]: card number rules (Luhn, brand) shared by server validation and client feedback.
//! - [`client`]: a client connection (handshake, request/response correlation, pushed events).
//! - [`direct`]: a client connection with one owner and no background task (`loadgen`'s customers).
//! - [`codec`]: length-prefixed frames carrying bincode payloads. The only file that names bincode.
//! - [`limits`]: every size limit a customer can meet (cart lines, units per line, checkout lines),
//!   and the page and part sizes that keep every message inside its frame.
//! - [`paging`]: walking catalog and order pages, and cutting a big offer into parts.
//! - [`operator_key`]: where the operator key file lives and how clients read it.
//! - [`lock_file`]: the exclusive lock beside a SQLite file that keeps a second process out.
//! - [`logging`]: what every binary's log set-up shares (colour only on a terminal, never under NO_COLOR).
//! - [`message`]: the handshake, requests and their replies, and the events the server pushes.
//! - [`status`]: the operator's snapshot of the system and the deltas that keep it live.
//! - [`types`]: ids, money and quantities as newtypes.
//! - [`error`]: the stable error codes and the error value sent on the wire.
//!
//! # Conversation
//! A client opens a TCP connection and sends [`message::ClientMessage::Hello`]. The server answers
//! [`message::ServerMessage::Welcome`] or a typed [`message::ServerMessage::Refused`] (for example on a
//! version mismatch) and closes. After the handshake the client sends
//! [`message::ClientMessage::Request`]s; each is answered by exactly one
//! [`message::ServerMessage::Response`] carrying the same [`types::RequestId`]. The server may push
//! [`message::ServerMessage::Event`]s at any moment between responses.
//!
//! Manufacturers use the same shape: the server pushes [`message::Event::OfferRequested`] and
//! [`message::Event::Notice`], and the manufacturer answers with requests such as
//! [`message::RequestBody::SubmitOffer`] and [`message::RequestBody::AckNotices`].

pub mod broker;
pub mod card;
pub mod client;
pub mod codec;
mod dial;
pub mod direct;
pub mod error;
pub mod limits;
pub mod lock_file;
pub mod logging;
pub mod message;
pub mod operator_key;
pub mod paging;
pub mod status;
pub mod types;

pub use client::{Client, ClientError, Events};
pub use codec::{ClientCodec, CodecError, ServerCodec};
pub use direct::DirectClient;
pub use error::{ErrorCode, Field, Shortage, WireError};
pub use limits::*;
pub use message::*;
pub use status::*;
pub use types::*;

/// The protocol version this build speaks. Bumped on any incompatible change to the wire types.
/// 3: [`Event::OrderStatus`] names every line of the order that moved, not one line per event.
/// 4: [`RequestBody::NoticesFromBroker`] is answered with [`Reply::NoticeFeed`] (the subject and
/// consumer under the distributor's cluster), not [`Reply::Done`].
/// 5: [`RequestBody::ReportDispatches`] reports a round of dispatches in one request.
pub const PROTOCOL_VERSION: u16 = 5;
