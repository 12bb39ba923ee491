//! What the engine remembers only for operators. Fed by the engine as things happen; read by
//! [`super::snapshot`]. Pure and synchronous: time comes in as an argument.

use crate::market::Market;
use crate::store::history::Past;
use protocol::*;
use std::collections::{HashMap, VecDeque};

/// Operator-only memory of the engine.
#[derive(Debug, Default)]
pub struct Tracker {
    orders: u64,
    units: u64,
    month_checkouts: u64,
    /// Seconds with sales, oldest first, at most [`SALES_WINDOW_SECS`] back.
    seconds: VecDeque<SalesSecond>,
    /// Since when each manufacturer is connected or disconnected (only changes seen by this process).
    since: HashMap<ManufacturerId, u64>,
    last_offered: HashMap<ManufacturerId, MonthId>,
    /// Per manufacturer: `(seq, at)`, "notices up to `seq` were written by `at`", oldest first, only
    /// for notices not yet acked. The outbox keeps no times, so this is how the age of the oldest
    /// pending notice is known; notices from before a restart count from the restart.
    written: HashMap<ManufacturerId, VecDeque<(NoticeSeq, u64)>>,
    /// The highest sequence already noted per manufacturer.
    noted: HashMap<ManufacturerId, NoticeSeq>,
    /// Closed months, newest first.
    history: Vec<MonthRecord>,
    /// When the engine last published a status for watchers.
    pub published_at_ms: u64,
}

impl Tracker {
    /// Starts from what the store remembers.
    pub fn new(past: Past) -> Self {
        Tracker {
            orders: past.orders,
            units: past.units,
            month_checkouts: past.last_month_orders,
            last_offered: past.last_offered,
            history: past.months,
            ..Default::default()
        }
    }

    /// A checkout of `units` was accepted.
    pub fn sale(&mut self, now_ms: u64, units: u64) {
        self.orders += 1;
        self.units += units;
        self.month_checkouts += 1;
        let at_s = now_ms / 1000;
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        match self.seconds.back_mut() {
            Some(s) if s.at_s == at_s => {
                s.checkouts = s.checkouts.saturating_add(1);
                s.units = s.units.saturating_add(units);
            }
            _ => self.seconds.push_back(SalesSecond {
                at_s,
                checkouts: 1,
                units,
            }),
        }
        self.forget_old_seconds(at_s);
    }

    fn forget_old_seconds(&mut self, now_s: u64) {
        let oldest = now_s.saturating_sub(SALES_WINDOW_SECS);
        while self.seconds.front().is_some_and(|s| s.at_s <= oldest) {
            self.seconds.pop_front();
        }
    }

    /// A manufacturer connected or disconnected.
    pub fn link_changed(&mut self, id: ManufacturerId, now_ms: u64) {
        self.since.insert(id, now_ms);
    }

    /// A manufacturer's offer was accepted.
    pub fn offered(&mut self, id: ManufacturerId, month: MonthId) {
        self.last_offered.insert(id, month);
    }

    /// A month opened: its checkouts count from zero.
    pub fn month_opened(&mut self) {
        self.month_checkouts = 0;
    }

    /// A month closed.
    pub fn month_closed(&mut self, record: MonthRecord) {
        self.history.insert(0, record);
        self.history.truncate(HISTORY_MONTHS);
    }

    /// Notes newly written notices and forgets acked ones. Called after every batch of commands, so
    /// a notice's time is right to within one batch.
    pub fn observe(&mut self, market: &Market, now_ms: u64) {
        for (id, m) in market.manufacturers() {
            let noted = self.noted.entry(id).or_default();
            let written = self.written.entry(id).or_default();
            if m.last_seq > *noted {
                written.push_back((m.last_seq, now_ms));
                *noted = m.last_seq;
            }
            while written.front().is_some_and(|(seq, _)| *seq <= m.acked_seq) {
                written.pop_front();
            }
        }
    }

    /// Fills in what the market cannot know.
    pub fn fill(&self, status: &mut SystemStatus, now_ms: u64) {
        status.now_ms = now_ms;
        status.orders = self.orders;
        status.sold_units = self.units;
        status.month_sales.checkouts = self.month_checkouts;
        let oldest = (now_ms / 1000).saturating_sub(SALES_WINDOW_SECS);
        status.sales_seconds = self
            .seconds
            .iter()
            .filter(|s| s.at_s > oldest)
            .copied()
            .collect();
        status.history = self.history.clone();
        for m in &mut status.manufacturers {
            m.since_ms = self.since.get(&m.id).copied().unwrap_or(0);
            m.last_offered = self.last_offered.get(&m.id).copied();
            m.oldest_pending_at_ms = match m.pending() {
                0 => None,
                _ => self
                    .written
                    .get(&m.id)
                    .and_then(|w| w.front())
                    .map(|(_, at)| *at),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Snapshot;

    #[test]
    fn the_oldest_pending_notice_keeps_its_write_time_until_it_is_acked() {
        let mut market = Market::restore(Snapshot::default());
        let (id, _) = market.register_manufacturer("orchard");
        let mut tracker = Tracker::default();
        market.next_seq(id);
        tracker.observe(&market, 1_000);
        market.next_seq(id);
        market.next_seq(id);
        tracker.observe(&market, 2_000);
        let mut status = market.status();
        tracker.fill(&mut status, 3_000);
        assert_eq!(status.manufacturers[0].pending(), 3);
        assert_eq!(status.manufacturers[0].oldest_pending_at_ms, Some(1_000));
        market.ack(id, NoticeSeq(1)).expect("ack");
        tracker.observe(&market, 3_000);
        let mut status = market.status();
        tracker.fill(&mut status, 3_000);
        assert_eq!(status.manufacturers[0].oldest_pending_at_ms, Some(2_000));
        market.ack(id, NoticeSeq(3)).expect("ack");
        tracker.observe(&market, 4_000);
        let mut status = market.status();
        tracker.fill(&mut status, 4_000);
        assert_eq!(status.manufacturers[0].oldest_pending_at_ms, None);
    }

    #[test]
    fn sales_are_counted_per_second_and_drop_out_after_five_minutes() {
        let mut tracker = Tracker::default();
        tracker.sale(10_100, 2);
        tracker.sale(10_900, 3);
        tracker.sale(11_000, 1);
        let mut status = SystemStatus::default();
        tracker.fill(&mut status, 11_500);
        assert_eq!(status.orders, 3);
        assert_eq!(status.sold_units, 6);
        assert_eq!(
            status.sales_seconds,
            vec![
                SalesSecond {
                    at_s: 10,
                    checkouts: 2,
                    units: 5
                },
                SalesSecond {
                    at_s: 11,
                    checkouts: 1,
                    units: 1
                },
            ]
        );
        tracker.fill(&mut status, (11 + SALES_WINDOW_SECS) * 1000);
        assert!(status.sales_seconds.is_empty());
    }
}
