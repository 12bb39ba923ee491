//! `shop`: the customer terminal app of the central distribution system.
//!
//! # Layout (The Elm Architecture)
//! - [`app`]: the model ([`app::App`]), the messages ([`app::Msg`]) and `update`, the only place that
//!   changes state. One submodule per screen's state and keys.
//! - [`screens`]: `view`, reading the model only. One file per screen, plus the header and footer.
//! - [`widgets`]: text fields and forms, card-number helpers, inline sparklines.
//! - [`net`]: the connection task: connect (TCP or TLS), reconnect with backoff, resume the session,
//!   run requests concurrently and tag their replies.
//! - [`run`]: the event loop: one `tokio::select!` over keys, the network and a tick.
//! - [`demo`]: `shop --demo`, a whole system in one process: distributor, manufacturers and
//!   simulated shoppers.
//! - [`serve_ssh`]: the command line of `shop serve-ssh`.
//! - [`ssh`]: `shop serve-ssh`, the shop over SSH: one app per SSH session on the same driver.
//! - [`cli`]: the command line (`shop --server ADDR`, `shop --demo`, `shop serve-ssh`, `shop --operator`).
//!
//! The operator's console (`app::operator`, `screens::operator`) is one more screen of the same app,
//! fed by a second connection in the operator role.
//! - [`keys`], [`theme`], [`strings`]: key bindings, colours, and every user-facing text.

pub mod app;
pub mod cli;
pub mod demo;
pub mod keys;
pub mod net;
pub mod run;
pub mod screens;
pub mod serve_ssh;
pub mod ssh;
pub mod strings;
pub mod theme;
pub mod widgets;
