//! Checkout: card on file or a new card, a confirm step with the total, and an order that is sent
//! at most once in effect: each confirmed attempt gets a fresh [`CheckoutId`], and a re-send after a
//! lost connection reuses it, so the server returns the original order instead of a second one.
//!
//! Every attempt carries the total the customer confirmed. If the server's total differs (a new
//! month's price, a line cut for stock), nothing is bought: the shop shows the new lines and total on
//! the review step. A card that expired while on file sends the customer to the card form.

use super::{App, Cmd, ConnState, FlashKind, ReqKind, RequestError, Screen, Tag};
use crate::strings;
use crate::widgets::card::{self, NumberCheck};
use crate::widgets::form::{Form, FormField, FormKey};
use crate::widgets::text_input::InputKind;
use crossterm::event::{KeyCode, KeyEvent};
use protocol::{CardInput, Cents, CheckoutId, ErrorCode, Field, Reply, RequestBody, WireError};

/// Where in the checkout the customer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// The lines, the total and the card on file.
    #[default]
    Review,
    /// Typing a card.
    Card,
    /// "Pay this total with this card?"
    Confirm,
    /// The checkout was sent; waiting for the order.
    Placing,
}

/// A confirmed checkout that has not been answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Reused for every re-send of this attempt.
    pub id: CheckoutId,
    /// The request carrying it most recently; other replies are stale.
    pub seq: u64,
    /// The total the customer confirmed; re-sends confirm the same.
    pub total: Cents,
}

/// The checkout screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutState {
    pub stage: Stage,
    pub card: Form,
    pub attempt: Option<Attempt>,
    /// An error to show on the review or placing step.
    pub error: Option<String>,
}

impl Default for CheckoutState {
    fn default() -> Self {
        CheckoutState {
            stage: Stage::Review,
            card: card_form(),
            attempt: None,
            error: None,
        }
    }
}

/// An empty card form.
pub fn card_form() -> Form {
    Form::new(vec![
        FormField::new(
            "Card number",
            InputKind::CardNumber,
            Some(Field::CardNumber),
        ),
        FormField::new("Expiry MM/YY", InputKind::Expiry, Some(Field::CardExpiry)),
        FormField::new("CVC", InputKind::Cvc, Some(Field::CardCvc)),
    ])
}

/// Checks a card form; on success returns what to send, else marks the bad field.
pub fn card_input(form: &mut Form) -> Option<CardInput> {
    if card::check(form.value(0)) != NumberCheck::Valid {
        form.field_error(0, strings::CARD_LUHN);
        return None;
    }
    let Some((exp_month, exp_year)) = card::parse_expiry(form.value(1)) else {
        form.field_error(1, strings::CARD_EXPIRY);
        return None;
    };
    let cvc = form.value(2);
    if !(3..=4).contains(&cvc.len()) {
        form.field_error(2, strings::CARD_CVC);
        return None;
    }
    Some(CardInput {
        number: form.value(0).to_string(),
        exp_month,
        exp_year,
        cvc: cvc.to_string(),
    })
}

impl CheckoutState {
    /// Opens the checkout from the cart.
    pub fn open(&mut self, has_card: bool) {
        if self.stage == Stage::Placing {
            return; // an order is on its way; show its progress
        }
        self.stage = if has_card { Stage::Review } else { Stage::Card };
        self.card = card_form();
        self.error = None;
    }
}

impl App {
    fn has_card(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.account.card.is_some())
    }

    /// The expiry (year, month) of the card on file, if it has expired by the app's clock.
    pub fn expired_card(&self) -> Option<(u16, u8)> {
        let card = self.session.as_ref()?.account.card.as_ref()?;
        let today = protocol::card::year_month(self.now_ms);
        protocol::card::is_expired(card.exp_year, card.exp_month, today)
            .then_some((card.exp_year, card.exp_month))
    }

    /// An empty card form headed by the reason a new card is needed, focused on the number.
    fn ask_for_a_new_card(&mut self, why: String) {
        self.checkout.card = card_form();
        self.checkout
            .card
            .show_error(&WireError::new(ErrorCode::CardInvalid, why));
        self.checkout.stage = Stage::Card;
    }

    /// Enter on the review step with an expired card on file: ask for a new one instead of paying.
    fn renew_expired_card(&mut self) -> Vec<Cmd> {
        if let Some((year, month)) = self.expired_card() {
            self.ask_for_a_new_card(strings::card_expired(year, month));
        }
        Vec::new()
    }

    pub(super) fn checkout_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        match self.checkout.stage {
            Stage::Review => match key.code {
                KeyCode::Enter if self.expired_card().is_some() => self.renew_expired_card(),
                KeyCode::Enter if self.has_card() => {
                    self.checkout.error = None;
                    self.checkout.stage = Stage::Confirm;
                    Vec::new()
                }
                KeyCode::Enter | KeyCode::Char('a') => {
                    self.checkout.card = card_form();
                    self.checkout.stage = Stage::Card;
                    Vec::new()
                }
                KeyCode::Esc => self.go(Screen::Cart),
                _ => Vec::new(),
            },
            Stage::Card => match self.checkout.card.handle_key(key) {
                FormKey::Submit => match card_input(&mut self.checkout.card) {
                    Some(input) => {
                        vec![self.request(ReqKind::SetCard, RequestBody::SetCard(input))]
                    }
                    None => Vec::new(),
                },
                FormKey::Cancel => {
                    self.checkout.card = card_form();
                    if self.has_card() {
                        self.checkout.stage = Stage::Review;
                        Vec::new()
                    } else {
                        self.go(Screen::Cart)
                    }
                }
                _ => Vec::new(),
            },
            Stage::Confirm => match key.code {
                KeyCode::Enter => self.place_order(),
                KeyCode::Esc => {
                    self.checkout.stage = Stage::Review;
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Stage::Placing => Vec::new(),
        }
    }

    /// Sends a new checkout with a fresh id.
    /// Sends a new checkout with a fresh id, confirming the total the customer is looking at.
    fn place_order(&mut self) -> Vec<Cmd> {
        let id = CheckoutId::generate();
        let total = self.cart.view.total;
        self.checkout.stage = Stage::Placing;
        self.checkout.error = None;
        let cmd = self.request(
            ReqKind::Checkout,
            RequestBody::Checkout {
                checkout_id: id,
                lines: None,
                confirmed_total: total,
            },
        );
        if let Cmd::Send { tag, .. } = &cmd {
            self.checkout.attempt = Some(Attempt {
                id,
                seq: tag.seq,
                total,
            });
        }
        vec![cmd]
    }

    /// After a reconnect: sends the unanswered checkout again under the same id.
    pub(super) fn resend_checkout(&mut self) -> Vec<Cmd> {
        let Some(attempt) = self.checkout.attempt else {
            return Vec::new();
        };
        let cmd = self.request(
            ReqKind::Checkout,
            RequestBody::Checkout {
                checkout_id: attempt.id,
                lines: None,
                confirmed_total: attempt.total,
            },
        );
        if let Cmd::Send { tag, .. } = &cmd {
            self.checkout.attempt = Some(Attempt {
                seq: tag.seq,
                ..attempt
            });
        }
        vec![cmd]
    }

    pub(super) fn checkout_reply(
        &mut self,
        tag: Tag,
        result: Result<Reply, RequestError>,
    ) -> Vec<Cmd> {
        if self.checkout.attempt.map(|a| a.seq) != Some(tag.seq) {
            return Vec::new(); // an answer to an attempt that was re-sent or abandoned
        }
        match result {
            Ok(Reply::Order(order)) => {
                self.checkout.attempt = None;
                self.checkout.stage = Stage::Review;
                self.cart.notice = None;
                self.flash(
                    FlashKind::Success,
                    format!(
                        "Order {} placed: {}, {}.",
                        order.id.0,
                        strings::items(order.units()),
                        strings::money(order.total)
                    ),
                );
                self.orders.insert(order);
                let mut cmds = vec![self.request(ReqKind::Cart, RequestBody::GetCart)];
                if self.screen == Screen::Checkout {
                    self.screen = Screen::Orders;
                }
                cmds.push(self.request(ReqKind::Orders, RequestBody::Orders));
                cmds
            }
            Ok(_) => Vec::new(),
            Err(RequestError::Lost) => {
                self.checkout.error = Some(strings::LOST_DURING_CHECKOUT.into());
                if self.conn == ConnState::Online {
                    self.resend_checkout()
                } else {
                    Vec::new() // re-sent on `Connected`
                }
            }
            Err(RequestError::Server(e)) => {
                let confirmed = self.checkout.attempt.take().map(|a| a.total);
                match e.code {
                    ErrorCode::PriceChanged => self.price_changed(e, confirmed),
                    ErrorCode::OutOfStock => {
                        self.checkout.stage = Stage::Review;
                        self.cart.notice = Some((
                            strings::SOME_RAN_OUT.to_string(),
                            e.shortages.iter().map(strings::shortage).collect(),
                        ));
                        self.flash(FlashKind::Error, e.message);
                        self.screen = Screen::Cart;
                        vec![self.request(ReqKind::Cart, RequestBody::GetCart)]
                    }
                    // The card on file expired: a new card, with the server's words above the form.
                    ErrorCode::CardInvalid if e.field == Some(Field::CardExpiry) => {
                        self.ask_for_a_new_card(e.message);
                        self.screen = Screen::Checkout;
                        Vec::new()
                    }
                    ErrorCode::CardRequired | ErrorCode::CardInvalid => {
                        self.checkout.stage = Stage::Card;
                        self.checkout.card = card_form();
                        self.checkout.card.show_error(&e);
                        Vec::new()
                    }
                    ErrorCode::EmptyCart => {
                        self.checkout.stage = Stage::Review;
                        self.flash(FlashKind::Info, e.message);
                        self.go(Screen::Cart)
                    }
                    _ => {
                        self.checkout.stage = Stage::Review;
                        self.checkout.error = Some(e.message);
                        Vec::new()
                    }
                }
            }
        }
    }
}

impl App {
    /// The server's total differs from the confirmed one: nothing was bought. Show the lines and the
    /// total as they are now on the review step, so the customer can look and confirm again.
    fn price_changed(&mut self, e: WireError, confirmed: Option<Cents>) -> Vec<Cmd> {
        self.checkout.stage = Stage::Review;
        self.screen = Screen::Checkout;
        let Some(view) = e.repriced else {
            // An older server sends no lines: fetch the cart, and say what happened.
            self.checkout.error = Some(e.message);
            return vec![self.request(ReqKind::Cart, RequestBody::GetCart)];
        };
        let now = view.total;
        self.cart.apply(*view);
        self.checkout.error = Some(strings::price_changed(confirmed, now));
        Vec::new()
    }
}
