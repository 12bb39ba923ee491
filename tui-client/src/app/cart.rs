//! The cart: quantities, removal, the total, and messages about lines cut for lack of stock.

use super::{App, Cmd, FlashKind, ReqKind, RequestError, Screen};
use crate::keys::{self, Nav};
use crate::strings;
use crossterm::event::{KeyCode, KeyEvent};
use protocol::{CartView, CatalogItem, Cents, ListingId, Reply, RequestBody};

/// The cart screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CartState {
    /// The cart as last known (the server's answer, or an optimistic edit of it).
    pub view: CartView,
    /// Whether the server has answered at least once.
    pub loaded: bool,
    /// Selected line.
    pub selected: usize,
    /// Lines cut by the server or that ran out at checkout, with a heading. Stays until the next
    /// change of the cart by the customer.
    pub notice: Option<(String, Vec<String>)>,
}

impl CartState {
    fn recompute_total(&mut self) {
        let total = self
            .view
            .lines
            .iter()
            .filter_map(|l| l.unit_price.times(l.quantity))
            .fold(Cents(0), |acc, c| acc.plus(c).unwrap_or(acc));
        self.view.total = total;
    }

    /// Live stock levels: keep each line's `available` current, so shortages show before checkout.
    pub fn apply_levels(&mut self, levels: &[(ListingId, u32)]) {
        for (listing, remaining) in levels {
            if let Some(line) = self.view.lines.iter_mut().find(|l| l.listing == *listing) {
                line.available = *remaining;
            }
        }
    }

    /// A new catalog (a new month's offers): each line takes the price it is on sale at now, so the
    /// review shows, and the checkout confirms, what the server will charge.
    pub fn apply_prices(&mut self, items: &[CatalogItem]) {
        for line in &mut self.view.lines {
            if let Some(item) = items.iter().find(|i| i.listing == line.listing) {
                line.unit_price = item.unit_price;
            }
        }
        self.recompute_total();
    }

    /// The server's cart. Adjustments become the notice.
    pub fn apply(&mut self, view: CartView) {
        if !view.adjustments.is_empty() {
            self.notice = Some((
                strings::CART_CUT.to_string(),
                view.adjustments.iter().map(strings::adjustment).collect(),
            ));
        }
        self.view = view;
        self.loaded = true;
        self.selected = self.selected.min(self.view.lines.len().saturating_sub(1));
    }
}

impl App {
    pub(super) fn cart_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let n = self.cart.view.lines.len();
        if keys::is_char(&key, 'd') || keys::is_char(&key, 'x') || key.code == KeyCode::Delete {
            return self.set_line_quantity(0);
        }
        match keys::nav(&key) {
            Some(Nav::Up) => self.cart.selected = self.cart.selected.saturating_sub(1),
            Some(Nav::Down) => {
                self.cart.selected = (self.cart.selected + 1).min(n.saturating_sub(1))
            }
            Some(Nav::Top) => self.cart.selected = 0,
            Some(Nav::Bottom) => self.cart.selected = n.saturating_sub(1),
            Some(Nav::Left) => {
                let q = self.selected_line_qty();
                if q > 1 {
                    return self.set_line_quantity(q - 1);
                }
            }
            Some(Nav::Right) => {
                let q = self.selected_line_qty();
                let available = self
                    .cart
                    .view
                    .lines
                    .get(self.cart.selected)
                    .map_or(0, |l| l.available);
                if q > 0 && q < available {
                    return self.set_line_quantity(q + 1);
                }
                if q > 0 {
                    self.flash(FlashKind::Info, format!("Only {available} left."));
                }
            }
            Some(Nav::Enter) => return self.begin_checkout(),
            _ => {}
        }
        Vec::new()
    }

    fn selected_line_qty(&self) -> u32 {
        self.cart
            .view
            .lines
            .get(self.cart.selected)
            .map_or(0, |l| l.quantity)
    }

    /// Changes the selected line now (so the screen answers at once) and tells the server; its
    /// answer then replaces the cart. 0 removes the line.
    fn set_line_quantity(&mut self, quantity: u32) -> Vec<Cmd> {
        let Some(line) = self.cart.view.lines.get_mut(self.cart.selected) else {
            return Vec::new();
        };
        let listing = line.listing;
        self.cart.notice = None;
        let body = if quantity == 0 {
            self.cart.view.lines.remove(self.cart.selected);
            self.cart.selected = self
                .cart
                .selected
                .min(self.cart.view.lines.len().saturating_sub(1));
            RequestBody::RemoveFromCart { listing }
        } else {
            line.quantity = quantity;
            RequestBody::SetCartQuantity { listing, quantity }
        };
        self.cart.recompute_total();
        vec![self.request(ReqKind::Cart, body)]
    }

    pub(super) fn cart_reply(
        &mut self,
        kind: ReqKind,
        result: Result<Reply, RequestError>,
    ) -> Vec<Cmd> {
        match result {
            Ok(Reply::Cart(view)) => {
                if kind == ReqKind::AddToCart {
                    self.cart.notice = None;
                    let units: u64 = view.lines.iter().map(|l| u64::from(l.quantity)).sum();
                    self.flash(
                        FlashKind::Success,
                        format!(
                            "Added. Cart: {}, {}.",
                            strings::items(units),
                            strings::money(view.total)
                        ),
                    );
                }
                self.cart.apply(view);
                Vec::new()
            }
            Ok(_) => Vec::new(),
            Err(RequestError::Server(e)) => {
                self.flash(FlashKind::Error, e.message);
                // The optimistic edit may be wrong now: ask for the truth.
                vec![self.request(ReqKind::Cart, RequestBody::GetCart)]
            }
            Err(RequestError::Lost) => {
                self.flash(FlashKind::Error, strings::NOT_CONNECTED);
                Vec::new()
            }
        }
    }

    fn begin_checkout(&mut self) -> Vec<Cmd> {
        if self.cart.view.lines.is_empty() {
            self.flash(FlashKind::Info, strings::EMPTY_CART_CHECKOUT);
            return Vec::new();
        }
        let has_card = self
            .session
            .as_ref()
            .is_some_and(|s| s.account.card.is_some());
        self.checkout.open(has_card);
        self.screen = Screen::Checkout;
        Vec::new()
    }
}
