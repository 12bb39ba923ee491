//! Who may connect as what, and with which secret.
//!
//! - [`credentials`]: each manufacturer name's own credential: issued at first registration, stored
//!   only as a hash, checked on every connection, revoked by an operator.
//! - [`operator`]: the operator key: resolved once at start (`--peer-key`, else `operator.key` beside
//!   the database, written on first start with mode 0600) and checked for every operator-grade role.
//!
//! Customers need no secret to connect; they prove who they are with a password or a session token.

pub mod credentials;
pub mod operator;
