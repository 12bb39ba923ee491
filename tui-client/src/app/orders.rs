//! Order history, with line statuses that move live.

use super::{App, Cmd, ReqKind, HIGHLIGHT_MS};
use crate::keys::{self, Nav};
use crossterm::event::KeyEvent;
use protocol::{LineStatus, ListingId, OrderId, OrderView, RequestBody};
use std::collections::HashMap;

/// The orders screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrdersState {
    /// Newest first.
    pub list: Vec<OrderView>,
    pub loaded: bool,
    pub selected: usize,
    /// Lines whose status just moved, until when to highlight them.
    pub changed: HashMap<(OrderId, ListingId), u64>,
}

impl OrdersState {
    /// A fresh list from the server.
    pub fn replace(&mut self, list: Vec<OrderView>) {
        let selected_id = self.list.get(self.selected).map(|o| o.id);
        self.list = list;
        self.loaded = true;
        self.selected = selected_id
            .and_then(|id| self.list.iter().position(|o| o.id == id))
            .unwrap_or(0);
    }

    /// A just-placed order goes on top and is selected.
    pub fn insert(&mut self, order: OrderView) {
        self.list.retain(|o| o.id != order.id);
        self.list.insert(0, order);
        self.selected = 0;
    }

    /// Applies a status push. Returns false if the order is unknown.
    pub fn set_status(
        &mut self,
        order: OrderId,
        listing: ListingId,
        status: LineStatus,
        now_ms: u64,
    ) -> bool {
        let Some(o) = self.list.iter_mut().find(|o| o.id == order) else {
            return false;
        };
        for line in o.lines.iter_mut().filter(|l| l.listing == listing) {
            // Statuses only move forward; an older push arriving late changes nothing.
            if status > line.status {
                line.status = status;
                self.changed.insert((order, listing), now_ms + HIGHLIGHT_MS);
            }
        }
        true
    }
}

impl App {
    pub(super) fn orders_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let n = self.orders.list.len();
        let o = &mut self.orders;
        if keys::is_char(&key, 'r') {
            return vec![self.request(ReqKind::Orders, RequestBody::Orders)];
        }
        match keys::nav(&key) {
            Some(Nav::Up) => o.selected = o.selected.saturating_sub(1),
            Some(Nav::Down) => o.selected = (o.selected + 1).min(n.saturating_sub(1)),
            Some(Nav::PageUp) => o.selected = o.selected.saturating_sub(10),
            Some(Nav::PageDown) => o.selected = (o.selected + 10).min(n.saturating_sub(1)),
            Some(Nav::Top) => o.selected = 0,
            Some(Nav::Bottom) => o.selected = n.saturating_sub(1),
            _ => {}
        }
        Vec::new()
    }
}
