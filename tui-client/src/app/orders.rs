//! Order history, with line statuses that move live, paged back to the first order, and a detail
//! view of one order.
//!
//! The newest page comes with `Orders`; older ones with `OrdersPage` as the selection nears the end
//! of what is loaded (Down, PgDn, End), so a long history costs nothing until someone scrolls to it.
//! A fresh newest page replaces only the orders it covers: older pages already loaded stay.

use super::{App, Cmd, ReqKind, RequestError, HIGHLIGHT_MS};
use crate::keys::{self, Nav};
use crossterm::event::KeyEvent;
use protocol::paging::next_orders_page;
use protocol::{LineStatus, ListingId, OrderId, OrderView, Reply, RequestBody};
use std::collections::HashMap;

/// Ask for the next older page when the selection is this close to the last loaded order.
pub const PREFETCH_ROWS: usize = 10;

/// The orders screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrdersState {
    /// Newest first.
    pub list: Vec<OrderView>,
    pub loaded: bool,
    pub selected: usize,
    /// Lines whose status just moved, until when to highlight them.
    pub changed: HashMap<(OrderId, ListingId), u64>,
    /// The request for the next older page, when the oldest page loaded was a full one.
    pub older: Option<RequestBody>,
    /// The older-page request in flight; only its reply is applied.
    pub page_seq: Option<u64>,
    /// The order shown in the detail view, with the first line shown (its scroll position).
    pub detail: Option<(OrderId, usize)>,
}

impl OrdersState {
    /// The newest page from the server. It replaces the orders it covers (all of them when it is
    /// the only page); older pages already loaded stay.
    pub fn replace(&mut self, list: Vec<OrderView>) {
        let selected_id = self.list.get(self.selected).map(|o| o.id);
        let older = next_orders_page(&list);
        let oldest = list.last().map(|o| o.id).filter(|_| older.is_some());
        // Older orders already loaded stay (with the cursor past them) only when the new page
        // overlaps them: otherwise orders between the two could be missing.
        let overlaps = oldest.is_some_and(|oldest| self.list.iter().any(|o| o.id >= oldest));
        match oldest {
            Some(oldest) if overlaps => {
                let below: Vec<OrderView> = std::mem::take(&mut self.list)
                    .into_iter()
                    .filter(|o| o.id < oldest)
                    .collect();
                self.list = list;
                self.list.extend(below);
            }
            _ => {
                self.list = list;
                self.older = older;
            }
        }
        self.loaded = true;
        self.reselect(selected_id);
    }

    /// An older page: appended after the orders already loaded.
    pub fn append(&mut self, page: Vec<OrderView>) {
        self.older = next_orders_page(&page);
        let oldest = self.list.last().map(|o| o.id);
        self.list.extend(
            page.into_iter()
                .filter(|o| oldest.is_none_or(|oldest| o.id < oldest)),
        );
    }

    fn reselect(&mut self, selected_id: Option<OrderId>) {
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

    /// The order in the detail view.
    pub fn detail_order(&self) -> Option<&OrderView> {
        let (id, _) = self.detail?;
        self.list.iter().find(|o| o.id == id)
    }

    /// Applies a status push to the lines of `order` it names. Returns false if the order is unknown.
    pub fn set_status(
        &mut self,
        order: OrderId,
        listings: &[ListingId],
        status: LineStatus,
        now_ms: u64,
    ) -> bool {
        let Some(o) = self.list.iter_mut().find(|o| o.id == order) else {
            return false;
        };
        for line in o.lines.iter_mut().filter(|l| listings.contains(&l.listing)) {
            let listing = line.listing;
            // Statuses only move forward; an older push arriving late changes nothing.
            if status > line.status {
                line.status = status;
                // The push carries no time; it is sent as the change commits, so now is close.
                line.status_at_ms = now_ms;
                self.changed.insert((order, listing), now_ms + HIGHLIGHT_MS);
            }
        }
        true
    }
}

impl App {
    pub(super) fn orders_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        if self.orders.detail.is_some() {
            return self.order_detail_key(key);
        }
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
            Some(Nav::Enter) => {
                o.detail = o.list.get(o.selected).map(|order| (order.id, 0));
            }
            _ => {}
        }
        self.orders_prefetch()
    }

    /// The detail view: j/k scroll its lines, Esc goes back to the list.
    fn order_detail_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let lines = self.orders.detail_order().map_or(0, |o| o.lines.len());
        let Some((_, top)) = self.orders.detail.as_mut() else {
            return Vec::new();
        };
        match keys::nav(&key) {
            Some(Nav::Back) | Some(Nav::Left) => self.orders.detail = None,
            Some(Nav::Up) => *top = top.saturating_sub(1),
            Some(Nav::Down) => *top = (*top + 1).min(lines.saturating_sub(1)),
            Some(Nav::PageUp) => *top = top.saturating_sub(10),
            Some(Nav::PageDown) => *top = (*top + 10).min(lines.saturating_sub(1)),
            Some(Nav::Top) => *top = 0,
            Some(Nav::Bottom) => *top = lines.saturating_sub(1),
            _ => {}
        }
        Vec::new()
    }

    /// Asks for the next older page when the selection is near the end of what is loaded.
    pub(super) fn orders_prefetch(&mut self) -> Vec<Cmd> {
        let o = &self.orders;
        let near_end = o.selected + PREFETCH_ROWS >= o.list.len();
        if !near_end || o.page_seq.is_some() {
            return Vec::new();
        }
        let Some(body) = o.older.clone() else {
            return Vec::new();
        };
        let cmd = self.request(ReqKind::OrdersPage, body);
        if let Cmd::Send { tag, .. } = &cmd {
            self.orders.page_seq = Some(tag.seq);
        }
        vec![cmd]
    }

    /// The reply to an `OrdersPage` request.
    pub(super) fn orders_page_reply(
        &mut self,
        seq: u64,
        result: Result<Reply, RequestError>,
    ) -> Vec<Cmd> {
        if self.orders.page_seq != Some(seq) {
            return Vec::new();
        }
        self.orders.page_seq = None;
        match result {
            Ok(Reply::Orders(page)) => {
                self.orders.append(page);
                self.orders_prefetch()
            }
            // Lost or refused: the cursor stays, so the next move down asks again.
            _ => Vec::new(),
        }
    }
}
