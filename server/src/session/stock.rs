//! The live stock watch: a connection that browsed the catalog is told of level changes, at most
//! once per `stock_interval`, and of a new catalog.

use super::{err, Answer, End, Session};
use protocol::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

/// Stock watching state: what this client was last told.
pub(super) struct Watch {
    pub(super) catalog: watch::Receiver<Arc<crate::board::Catalog>>,
    pub(super) levels: watch::Receiver<Arc<crate::board::Levels>>,
    pub(super) epoch: u64,
    pub(super) sent: HashMap<ListingId, u32>,
    pub(super) flush_at: Option<Instant>,
    pub(super) last_flush: Instant,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) fn schedule_flush(&mut self) {
        let interval = self.shared.config.stock_interval;
        if let Some(w) = self.watch.as_mut() {
            w.flush_at = Some((w.last_flush + interval).max(Instant::now()));
        }
    }

    pub(super) async fn flush_stock(&mut self) -> Result<(), End> {
        let Some(w) = self.watch.as_mut() else {
            return Ok(());
        };
        w.flush_at = None;
        w.last_flush = Instant::now();
        let catalog_epoch = w.catalog.borrow_and_update().epoch;
        let levels = w.levels.borrow_and_update().clone();
        let events = if catalog_epoch != w.epoch {
            // Only the first page travels; the client fetches the rest, and `sent` counts every
            // listing as told because those pages will carry these levels or newer ones.
            w.epoch = catalog_epoch;
            w.sent = self.shared.board.levels_now();
            vec![Event::Catalog(self.shared.board.page(None))]
        } else {
            if levels.epoch != w.epoch {
                Vec::new() // The matching catalog has not been published yet.
            } else {
                let mut changed = Vec::new();
                for (listing, remaining) in &levels.remaining {
                    let before = w.sent.get(listing).copied().unwrap_or(0);
                    if before != *remaining {
                        changed.push((*listing, *remaining));
                        if *remaining == 0 {
                            w.sent.remove(listing);
                        } else {
                            w.sent.insert(*listing, *remaining);
                        }
                    }
                }
                crate::pages::stock_events(levels.version, changed)
            }
        };
        for event in events {
            self.queue(&ServerMessage::Event(event))?;
        }
        self.flush().await
    }

    /// A catalog page. The first page (re)subscribes this connection to stock updates; a later page
    /// subscribes it only if nothing did yet.
    pub(super) fn catalog_page(&mut self, after: Option<ListingId>) -> Answer {
        if self.role == Role::Manufacturer {
            return Err(err(
                ErrorCode::Forbidden,
                "manufacturers do not browse the catalog",
            ));
        }
        if self.carries_customer() {
            self.account()?;
        }
        if after.is_none() || self.watch.is_none() {
            let mut catalog = self.shared.board.catalog.clone();
            let mut levels = self.shared.board.levels.clone();
            let epoch = catalog.borrow_and_update().epoch;
            levels.borrow_and_update();
            self.watch = Some(Watch {
                catalog,
                levels,
                epoch,
                sent: self.shared.board.levels_now(),
                flush_at: None,
                last_flush: Instant::now(),
            });
        }
        Ok(Reply::Catalog(self.shared.board.page(after)))
    }
}

/// Resolves when the catalog or the levels changed and no flush is scheduled yet.
pub(super) async fn stock_changed(watch: &mut Option<Watch>) {
    match watch {
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
