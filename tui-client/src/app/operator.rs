//! The operator's console: its state, what its keys do, and how the operator connection's replies
//! and pushes change it.
//!
//! The console has a connection of its own, in the operator role (`shop --operator`, or the
//! "Operator" tab of `shop --demo`). On connect it asks `Status` once; from then on the server
//! pushes [`protocol::StatusDelta`]s, at most one every 500 ms, and [`SystemStatus::apply`] folds
//! them in. Nothing here polls.
//!
//! Both actions (close the month, set the month length) sit behind a confirmation dialog.

use super::{App, Cmd, ConnState, FlashKind, NetEvent, Overlay, ReqKind, RequestError, Tag};
use crate::keys;
use crate::strings;
use crate::widgets::text_input::{InputKind, TextInput};
use crossterm::event::{KeyCode, KeyEvent};
use protocol::{
    Event, MonthState, Reply, RequestBody, SalesSecond, SystemStatus, MONTH_SECS_RANGE,
    SALES_WINDOW_SECS,
};

/// Chart points: `(x, y)`.
pub type Series = Vec<(f64, f64)>;

/// The chart's resolution: one point per this many seconds.
pub const RATE_BUCKET_SECS: u64 = 5;

/// A manufacturer whose oldest unacked notice is older than this is behind.
pub const LATE_MS: u64 = 10_000;

/// What an operator request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpReq {
    Status,
    CloseMonth,
    SetMonthLength,
}

/// The console's confirmation dialogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsDialog {
    /// "Close month N now?"
    CloseMonth,
    /// Typing the new month length, in seconds.
    MonthLength(TextInput),
    /// "Months from now on last N s?"
    ConfirmLength(u64),
}

/// The console's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorState {
    /// The operator connection.
    pub conn: ConnState,
    /// The newest status, `None` until the first reply.
    pub status: Option<SystemStatus>,
    /// The server's clock minus ours when the status last changed, so that ages and time left are
    /// measured on the server's clock.
    pub skew_ms: i64,
    /// Why the server refused the last request, if it did.
    pub error: Option<String>,
}

impl Default for OperatorState {
    fn default() -> Self {
        OperatorState {
            conn: ConnState::Connecting { attempt: 1 },
            status: None,
            skew_ms: 0,
            error: None,
        }
    }
}

/// The close rule that is nearest to firing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NearestRule {
    /// The month's time runs out; `left_ms` to go.
    TimeUp { left_ms: u64 },
    /// The stock runs out; `left` units to go.
    SoldOut { left: u64 },
    /// Every active customer has bought; `waiting` of them still to go.
    AllCustomersDone { waiting: u64 },
}

impl OperatorState {
    /// Our clock moved onto the server's.
    pub fn server_now(&self, local_ms: u64) -> u64 {
        local_ms.saturating_add_signed(self.skew_ms)
    }

    fn set_status(&mut self, status: SystemStatus, local_ms: u64) {
        self.skew_ms = status.now_ms as i64 - local_ms as i64;
        self.status = Some(status);
    }

    /// The open month's progress (0 to 1) and time left, measured on the server's clock.
    pub fn month_time(&self, local_ms: u64) -> Option<(f64, u64)> {
        let month = self.status.as_ref()?.month.as_ref()?;
        if month.state != MonthState::Open {
            return None;
        }
        let now = self.server_now(local_ms);
        let len = month.ends_at_ms.saturating_sub(month.opened_at_ms).max(1);
        let done = now.saturating_sub(month.opened_at_ms).min(len);
        Some((
            done as f64 / len as f64,
            month.ends_at_ms.saturating_sub(now),
        ))
    }

    /// The share of this month's offered stock still for sale, 0 to 1.
    pub fn stock_left(&self) -> Option<f64> {
        let s = self.status.as_ref()?;
        (s.offered_units > 0).then(|| s.remaining_units as f64 / s.offered_units as f64)
    }

    /// The close rule closest to firing: the one furthest along (time elapsed, stock sold, active
    /// customers done).
    pub fn nearest_rule(&self, local_ms: u64) -> Option<NearestRule> {
        let s = self.status.as_ref()?;
        let (time_done, left_ms) = self.month_time(local_ms)?;
        let mut best = (time_done, NearestRule::TimeUp { left_ms });
        if s.offered_units > 0 {
            let sold = 1.0 - s.remaining_units as f64 / s.offered_units as f64;
            if sold > best.0 {
                best = (
                    sold,
                    NearestRule::SoldOut {
                        left: s.remaining_units,
                    },
                );
            }
        }
        let c = s.customers;
        if c.active > 0 {
            let done = c.done as f64 / c.active as f64;
            if done > best.0 {
                best = (
                    done,
                    NearestRule::AllCustomersDone {
                        waiting: c.active - c.done,
                    },
                );
            }
        }
        Some(best.1)
    }

    /// Checkouts and units per second over the last five minutes, as chart points: x is seconds
    /// before now (-300 to 0). Each point is the average over [`RATE_BUCKET_SECS`] seconds, so the
    /// line stays readable at any width; the buckets count back from now, so the chart moves every
    /// second.
    pub fn rate_series(&self, local_ms: u64) -> (Series, Series) {
        let now_s = self.server_now(local_ms) / 1000;
        let seconds: &[SalesSecond] = self
            .status
            .as_ref()
            .map_or(&[], |s| s.sales_seconds.as_slice());
        let buckets = SALES_WINDOW_SECS / RATE_BUCKET_SECS;
        let mut checkouts = Vec::with_capacity(buckets as usize);
        let mut units = Vec::with_capacity(buckets as usize);
        for k in (0..buckets).rev() {
            // Seconds (end - RATE_BUCKET_SECS, end].
            let end = now_s.saturating_sub(k * RATE_BUCKET_SECS);
            let start = end.saturating_sub(RATE_BUCKET_SECS);
            let (c, u) = seconds
                .iter()
                .filter(|s| s.at_s > start && s.at_s <= end)
                .fold((0u64, 0u64), |(c, u), s| {
                    (c + u64::from(s.checkouts), u + u64::from(s.units))
                });
            let x = -((k * RATE_BUCKET_SECS) as f64);
            let per = RATE_BUCKET_SECS as f64;
            checkouts.push((x, c as f64 / per));
            units.push((x, u as f64 / per));
        }
        (checkouts, units)
    }
}

impl App {
    /// `shop --operator` showing `status`, as if it had just arrived: for rendering a console
    /// outside the terminal (tests, the README's capture).
    pub fn console_showing(status: SystemStatus, theme: crate::theme::Theme) -> App {
        let now = status.now_ms;
        let mut app = App::new(theme, now).with_operator(true);
        app.conn = ConnState::Online;
        app.month = status.month.clone();
        if let Some(ops) = app.operator.as_mut() {
            ops.conn = ConnState::Online;
            ops.set_status(status, now);
        }
        app
    }

    /// Builds a request for the operator connection.
    fn operator_request(&mut self, req: OpReq, body: RequestBody) -> Cmd {
        let Cmd::Send { tag, body } = self.request(ReqKind::Operator(req), body) else {
            unreachable!("request always builds a Send");
        };
        Cmd::SendOperator { tag, body }
    }

    /// Something from the operator connection.
    pub(super) fn on_operator_net(&mut self, event: NetEvent) -> Vec<Cmd> {
        let now = self.now_ms;
        let Some(ops) = self.operator.as_mut() else {
            return Vec::new();
        };
        let cmds = match event {
            NetEvent::Connecting { attempt } => {
                if ops.conn != ConnState::Online {
                    ops.conn = ConnState::Connecting { attempt };
                }
                Vec::new()
            }
            NetEvent::Connected { .. } => {
                ops.conn = ConnState::Online;
                vec![self.operator_request(OpReq::Status, RequestBody::Status)]
            }
            NetEvent::Disconnected {
                reason,
                retry_in_ms,
            } => {
                ops.conn = ConnState::Offline {
                    reason,
                    retry_at_ms: now + retry_in_ms,
                };
                Vec::new()
            }
            NetEvent::Reply { tag, result } => self.operator_reply(tag, result),
            NetEvent::Push(Event::Operator(delta)) => {
                if let Some(mut status) = ops.status.take() {
                    status.apply(*delta);
                    ops.set_status(status, now);
                }
                Vec::new()
            }
            NetEvent::Push(_) => Vec::new(),
        };
        self.sync_console_only();
        cmds
    }

    /// In `shop --operator` the operator connection is the only one: the header's connection dot
    /// and month follow it.
    fn sync_console_only(&mut self) {
        if !self.console_only {
            return;
        }
        if let Some(ops) = &self.operator {
            if self.conn != ops.conn {
                self.ever_online |= ops.conn == ConnState::Online;
                self.conn = ops.conn.clone();
            }
            if let Some(month) = ops.status.as_ref().and_then(|s| s.month.clone()) {
                self.month = Some(month);
            }
        }
    }

    /// The answer to an operator request.
    fn operator_reply(&mut self, tag: Tag, result: Result<Reply, RequestError>) -> Vec<Cmd> {
        self.in_flight.remove(&tag.seq);
        let ReqKind::Operator(req) = tag.kind else {
            return Vec::new();
        };
        let now = self.now_ms;
        match (req, result) {
            (OpReq::Status, Ok(Reply::Status(status))) => {
                if let Some(ops) = self.operator.as_mut() {
                    ops.error = None;
                    ops.set_status(*status, now);
                }
            }
            (OpReq::CloseMonth, Ok(_)) => self.flash(FlashKind::Success, strings::OPS_CLOSED),
            (OpReq::SetMonthLength, Ok(_)) => {
                self.flash(FlashKind::Success, strings::OPS_LENGTH_SET)
            }
            (_, Err(RequestError::Server(e))) => {
                if let Some(ops) = self.operator.as_mut() {
                    ops.error = Some(e.message.clone());
                }
                self.flash(FlashKind::Error, e.message);
            }
            (_, Err(RequestError::Lost)) => self.flash(FlashKind::Error, strings::OPS_LOST),
            (_, Ok(_)) => {}
        }
        Vec::new()
    }

    /// A key on the Operator tab.
    pub(super) fn operator_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let online = self
            .operator
            .as_ref()
            .is_some_and(|o| o.conn == ConnState::Online);
        if keys::is_char(&key, 'c') {
            if online {
                self.overlay = Some(Overlay::Operator(OpsDialog::CloseMonth));
            } else {
                self.flash(FlashKind::Error, strings::OPS_OFFLINE);
            }
        } else if keys::is_char(&key, 'l') {
            if online {
                let secs = self
                    .operator
                    .as_ref()
                    .and_then(|o| o.status.as_ref())
                    .map_or(0, |s| s.month_ms / 1000);
                let input = TextInput::with_value(InputKind::Text, &secs.to_string());
                self.overlay = Some(Overlay::Operator(OpsDialog::MonthLength(input)));
            } else {
                self.flash(FlashKind::Error, strings::OPS_OFFLINE);
            }
        } else if keys::is_char(&key, 'r') && online {
            return vec![self.operator_request(OpReq::Status, RequestBody::Status)];
        }
        Vec::new()
    }

    /// A key while one of the console's dialogs is open.
    pub(super) fn operator_dialog_key(&mut self, dialog: OpsDialog, key: KeyEvent) -> Vec<Cmd> {
        match dialog {
            OpsDialog::CloseMonth => match key.code {
                KeyCode::Enter | KeyCode::Char('y') => {
                    vec![self.operator_request(OpReq::CloseMonth, RequestBody::CloseMonth)]
                }
                KeyCode::Esc | KeyCode::Char('n') => Vec::new(),
                _ => {
                    self.overlay = Some(Overlay::Operator(OpsDialog::CloseMonth));
                    Vec::new()
                }
            },
            OpsDialog::MonthLength(mut input) => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter => {
                    match input.value().trim().parse::<u64>() {
                        Ok(secs) if MONTH_SECS_RANGE.contains(&secs) => {
                            self.overlay = Some(Overlay::Operator(OpsDialog::ConfirmLength(secs)));
                        }
                        _ => {
                            input.error = Some(strings::OPS_LENGTH_RANGE.into());
                            self.overlay = Some(Overlay::Operator(OpsDialog::MonthLength(input)));
                        }
                    }
                    Vec::new()
                }
                _ => {
                    input.handle_key(key);
                    self.overlay = Some(Overlay::Operator(OpsDialog::MonthLength(input)));
                    Vec::new()
                }
            },
            OpsDialog::ConfirmLength(secs) => match key.code {
                KeyCode::Enter | KeyCode::Char('y') => vec![self
                    .operator_request(OpReq::SetMonthLength, RequestBody::SetMonthLength { secs })],
                KeyCode::Esc | KeyCode::Char('n') => Vec::new(),
                _ => {
                    self.overlay = Some(Overlay::Operator(OpsDialog::ConfirmLength(secs)));
                    Vec::new()
                }
            },
        }
    }
}

#[cfg(test)]
mod tests;
