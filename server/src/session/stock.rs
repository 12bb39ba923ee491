//! The live stock watch: a connection that browsed the catalog is told of level changes, at most
//! once per `stock_interval`, and of a new catalog.
//!
//! What to tell is decided by [`catch_up`], a pure function from what the watcher was told and the
//! board now to the push; the session around it only reads the board and writes the events.

use super::{Answer, End, Session};
use crate::board::{Catalog, Levels};
use protocol::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

/// What a watcher was last told. Sold-out listings are left out, so a month of sold-out listings
/// costs a watcher nothing to remember.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Told {
    /// The catalog epoch it was sent.
    epoch: u64,
    /// Listing → the remaining units it was told.
    remaining: HashMap<ListingId, u32>,
}

/// What to push to a watcher to bring it up to date.
#[derive(Debug, PartialEq, Eq)]
enum StockPush {
    /// It is up to date, or the levels belong to a catalog that is not published yet.
    Nothing,
    /// The catalog changed (offers arrived, or a month turned): its first page.
    Catalog,
    /// The listings whose remaining units changed, as of levels `version`.
    Levels {
        version: u64,
        changed: Vec<(ListingId, u32)>,
    },
}

/// What to push to a watcher that was `told`, when the board's catalog is at `catalog_epoch` and
/// its levels are `levels`; `told` becomes what the watcher knows after the push. `levels_now` is
/// every listing's level now (sold-out ones left out), read only for a new catalog.
fn catch_up(
    told: &mut Told,
    catalog_epoch: u64,
    levels: &Levels,
    levels_now: impl FnOnce() -> HashMap<ListingId, u32>,
) -> StockPush {
    if catalog_epoch != told.epoch {
        // Only the first page travels; the client fetches the rest, and every listing counts as
        // told because those pages will carry these levels or newer ones.
        *told = Told {
            epoch: catalog_epoch,
            remaining: levels_now(),
        };
        return StockPush::Catalog;
    }
    if levels.epoch != told.epoch {
        return StockPush::Nothing;
    }
    let mut changed = Vec::new();
    for (listing, remaining) in &levels.remaining {
        let before = told.remaining.get(listing).copied().unwrap_or(0);
        if before != *remaining {
            changed.push((*listing, *remaining));
            if *remaining == 0 {
                told.remaining.remove(listing);
            } else {
                told.remaining.insert(*listing, *remaining);
            }
        }
    }
    match changed.is_empty() {
        true => StockPush::Nothing,
        false => StockPush::Levels {
            version: levels.version,
            changed,
        },
    }
}

/// Whether a watcher's push may go out `now`: the one scheduled is due, or none is scheduled yet
/// but something `changed` and a whole `interval` has passed since the last push. `changed` is
/// read only when no push is scheduled.
fn push_due(
    flush_at: Option<Instant>,
    last_flush: Instant,
    interval: std::time::Duration,
    now: Instant,
    changed: impl FnOnce() -> bool,
) -> bool {
    match flush_at {
        Some(at) => at <= now,
        None => last_flush + interval <= now && changed(),
    }
}

/// A connection's stock watch: the board's channels, what it was told, and when it is next told.
pub(super) struct StockWatch {
    catalog: watch::Receiver<Arc<Catalog>>,
    levels: watch::Receiver<Arc<Levels>>,
    told: Told,
    /// When the next push goes out; `None` while nothing changed since the last one.
    pub(super) flush_at: Option<Instant>,
    last_flush: Instant,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Something changed: push it once a `stock_interval` has passed since the last push, so that
    /// a busy market costs a watcher at most one push per interval.
    pub(super) fn schedule_flush(&mut self) {
        let interval = self.shared.config.stock_interval;
        if let Some(w) = self.stock.as_mut() {
            w.flush_at = Some((w.last_flush + interval).max(Instant::now()));
        }
    }

    pub(super) async fn flush_stock(&mut self) -> Result<(), End> {
        self.queue_stock()?;
        self.flush().await
    }

    /// Before a reply is written: if this connection's stock push is due, or would be due as soon
    /// as the loop noticed the change, it rides in the same write as the reply. A busy customer
    /// spends most of its time waiting for its checkout's commit, when the loop is not polling the
    /// push timer; without this, the push came due during the wait and went out in a write of its
    /// own right after the reply. Nothing is pushed earlier or more often than `stock_interval`
    /// allows.
    pub(super) fn queue_due_stock(&mut self) -> Result<(), End> {
        let interval = self.shared.config.stock_interval;
        let Some(w) = self.stock.as_ref() else {
            return Ok(());
        };
        let changed =
            || w.levels.has_changed().unwrap_or(false) || w.catalog.has_changed().unwrap_or(false);
        let due = push_due(w.flush_at, w.last_flush, interval, Instant::now(), changed);
        match due {
            true => self.queue_stock(),
            false => Ok(()),
        }
    }

    /// Queues what this connection has not been told yet (nothing if it is up to date), and starts
    /// its next interval.
    fn queue_stock(&mut self) -> Result<(), End> {
        let Some(w) = self.stock.as_mut() else {
            return Ok(());
        };
        w.flush_at = None;
        w.last_flush = Instant::now();
        let catalog_epoch = w.catalog.borrow_and_update().epoch;
        let levels = w.levels.borrow_and_update().clone();
        let board = &self.shared.board;
        let events = match catch_up(&mut w.told, catalog_epoch, &levels, || board.levels_now()) {
            StockPush::Nothing => Vec::new(),
            StockPush::Catalog => vec![Event::Catalog(board.page(None))],
            StockPush::Levels { version, changed } => crate::pages::stock_events(version, changed),
        };
        for event in events {
            self.queue(&ServerMessage::Event(event))?;
        }
        Ok(())
    }

    /// A catalog page. The first page (re)subscribes this connection to stock updates; a later page
    /// subscribes it only if nothing did yet.
    pub(super) fn catalog_page(&mut self, after: Option<ListingId>) -> Answer {
        if self.carries_customer() {
            self.account()?;
        }
        if after.is_none() || self.stock.is_none() {
            let mut catalog = self.shared.board.catalog.clone();
            let mut levels = self.shared.board.levels.clone();
            let epoch = catalog.borrow_and_update().epoch;
            levels.borrow_and_update();
            self.stock = Some(StockWatch {
                catalog,
                levels,
                told: Told {
                    epoch,
                    remaining: self.shared.board.levels_now(),
                },
                flush_at: None,
                last_flush: Instant::now(),
            });
        }
        Ok(Reply::Catalog(self.shared.board.page(after)))
    }
}

/// Resolves when the catalog or the levels changed and no flush is scheduled yet.
pub(super) async fn stock_changed(stock: &mut Option<StockWatch>) {
    match stock {
        Some(w) if w.flush_at.is_none() => {
            let changed = tokio::select! {
                r = w.levels.changed() => r.is_ok(),
                r = w.catalog.changed() => r.is_ok(),
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{catch_up, push_due, StockPush, Told};
    use crate::board::Levels;
    use protocol::ListingId;
    use std::collections::HashMap;

    fn map(pairs: &[(u32, u32)]) -> HashMap<ListingId, u32> {
        pairs.iter().map(|(l, r)| (ListingId(*l), *r)).collect()
    }

    fn told(epoch: u64, pairs: &[(u32, u32)]) -> Told {
        Told {
            epoch,
            remaining: map(pairs),
        }
    }

    fn levels(epoch: u64, version: u64, pairs: &[(u32, u32)]) -> Levels {
        Levels {
            version,
            epoch,
            remaining: map(pairs),
        }
    }

    /// The board's "levels now" must not be read unless the catalog changed.
    fn unread() -> HashMap<ListingId, u32> {
        panic!("levels_now was read although the catalog did not change")
    }

    /// A push with its changed listings in id order, since the levels are a hash map.
    fn sorted(push: StockPush) -> StockPush {
        match push {
            StockPush::Levels {
                version,
                mut changed,
            } => {
                changed.sort();
                StockPush::Levels { version, changed }
            }
            other => other,
        }
    }

    #[test]
    fn a_push_rides_with_a_reply_only_once_its_interval_has_passed() {
        let start = tokio::time::Instant::now();
        let interval = std::time::Duration::from_millis(50);
        let at = |ms| start + std::time::Duration::from_millis(ms);
        let unasked = || panic!("changes were read although a push is scheduled");
        // Scheduled: due exactly from its time on, whatever changed.
        assert!(!push_due(Some(at(50)), start, interval, at(49), unasked));
        assert!(push_due(Some(at(50)), start, interval, at(50), unasked));
        // Not scheduled yet (the loop was busy with the request): a change counts once the
        // interval since the last push has passed, and no change never does.
        assert!(!push_due(None, start, interval, at(30), || true));
        assert!(push_due(None, start, interval, at(60), || true));
        assert!(!push_due(None, start, interval, at(60), || false));
    }

    #[test]
    fn levels_equal_to_what_was_told_push_nothing() {
        let mut watcher = told(1, &[(1, 5), (2, 3)]);
        let board = levels(1, 9, &[(1, 5), (2, 3)]);
        assert_eq!(
            catch_up(&mut watcher, 1, &board, unread),
            StockPush::Nothing
        );
        assert_eq!(watcher, told(1, &[(1, 5), (2, 3)]));
    }

    #[test]
    fn changed_levels_push_exactly_the_changed_listings_once() {
        let mut watcher = told(1, &[(1, 5), (2, 3), (3, 7)]);
        let board = levels(1, 12, &[(1, 5), (2, 2), (3, 7), (4, 9)]);
        let push = sorted(catch_up(&mut watcher, 1, &board, unread));
        let changed = vec![(ListingId(2), 2), (ListingId(4), 9)];
        assert_eq!(
            push,
            StockPush::Levels {
                version: 12,
                changed
            }
        );
        assert_eq!(watcher, told(1, &[(1, 5), (2, 2), (3, 7), (4, 9)]));
        assert_eq!(
            catch_up(&mut watcher, 1, &board, unread),
            StockPush::Nothing
        );
    }

    #[test]
    fn a_listing_that_sells_out_is_pushed_as_zero_once_and_then_forgotten() {
        let mut watcher = told(1, &[(1, 1), (2, 4)]);
        let board = levels(1, 3, &[(1, 0), (2, 4)]);
        let push = catch_up(&mut watcher, 1, &board, unread);
        let changed = vec![(ListingId(1), 0)];
        assert_eq!(
            push,
            StockPush::Levels {
                version: 3,
                changed
            }
        );
        assert_eq!(watcher, told(1, &[(2, 4)]));
        assert_eq!(
            catch_up(&mut watcher, 1, &board, unread),
            StockPush::Nothing
        );
    }

    #[test]
    fn a_new_catalog_pushes_the_catalog_and_counts_the_levels_now_as_told() {
        let mut watcher = told(1, &[(1, 5)]);
        // A new month: new listings, and levels that already belong to it.
        let board = levels(2, 1, &[(7, 10), (8, 0)]);
        let now = || map(&[(7, 10)]);
        assert_eq!(catch_up(&mut watcher, 2, &board, now), StockPush::Catalog);
        assert_eq!(watcher, told(2, &[(7, 10)]));
        // The page carried those levels, so the same levels are not pushed again.
        assert_eq!(
            catch_up(&mut watcher, 2, &board, unread),
            StockPush::Nothing
        );
    }

    #[test]
    fn levels_of_a_catalog_not_yet_published_push_nothing_and_are_not_counted() {
        let mut watcher = told(1, &[(1, 5)]);
        let board = levels(2, 1, &[(7, 10)]);
        assert_eq!(
            catch_up(&mut watcher, 1, &board, unread),
            StockPush::Nothing
        );
        assert_eq!(watcher, told(1, &[(1, 5)]));
    }

    #[test]
    fn a_listing_missing_from_the_levels_is_not_pushed() {
        // The market's levels carry every listing it stocks; one missing from them stays as told.
        let mut watcher = told(1, &[(1, 5), (2, 3)]);
        let board = levels(1, 4, &[(1, 5)]);
        assert_eq!(
            catch_up(&mut watcher, 1, &board, unread),
            StockPush::Nothing
        );
        assert_eq!(watcher, told(1, &[(1, 5), (2, 3)]));
    }
}
