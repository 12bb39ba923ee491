//! One manufacturer's notices onto JetStream: what the session's TCP relay does for a link that
//! takes its notices from the broker.
//!
//! The task publishes the outbox in order from the manufacturer's acked position, at most
//! [`WINDOW`] beyond it, each notice once per pass, and awaits every publish ack before it moves on.
//! It starts again from the acked position (dedup makes that safe) when the client reconnects, when
//! a publish fails, and when the manufacturer's acks stall for [`STALL`] with notices outstanding.
//! It ends with its link (the [`BrokerRelay`] is dropped).

use super::Broker;
use crate::store::read::Reads;
use async_nats::HeaderMap;
use protocol::{ManufacturerId, NoticeSeq};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How many notices may be published beyond the manufacturer's ack.
const WINDOW: u64 = 1024;
/// How many notices are read from the outbox (and published before awaiting their acks) at a time.
const CHUNK: usize = 256;
/// With notices outstanding and no ack for this long, publish them again: a broker that lost them
/// without the client noticing a reconnect is the case this covers.
const STALL: Duration = Duration::from_secs(10);
const BACKOFF: Duration = Duration::from_millis(500);

/// A running relay; dropping it stops the task.
pub struct BrokerRelay {
    acked: watch::Sender<NoticeSeq>,
    _stop: DropGuard,
}

impl BrokerRelay {
    /// The manufacturer acked through `seq` (over its TCP link).
    pub fn acked(&self, seq: NoticeSeq) {
        self.acked.send_if_modified(|current| {
            let moved = seq > *current;
            if moved {
                *current = seq;
            }
            moved
        });
    }
}

/// Where a relay publishes, and what it reads.
pub struct RelayLink {
    /// The outbox's owner.
    pub id: ManufacturerId,
    /// Its name: its feed ([`Broker::feed`]) is made from it.
    pub name: String,
    /// How far its outbox is durable (committed).
    pub durable: watch::Receiver<NoticeSeq>,
    /// What it has acked so far.
    pub acked: NoticeSeq,
}

impl Broker {
    /// Starts publishing `link`'s outbox.
    pub fn relay(&self, reads: Reads, link: RelayLink) -> BrokerRelay {
        let (acked, acked_rx) = watch::channel(link.acked);
        let stop = CancellationToken::new();
        tokio::spawn(run(self.clone(), reads, link, acked_rx, stop.clone()));
        BrokerRelay {
            acked,
            _stop: stop.drop_guard(),
        }
    }
}

async fn run(
    broker: Broker,
    reads: Reads,
    mut link: RelayLink,
    mut acked: watch::Receiver<NoticeSeq>,
    stop: CancellationToken,
) {
    let mut connects = broker.connects.clone();
    connects.borrow_and_update();
    let feed = broker.feed(&link.name);
    let mut sent = link.acked;
    let mut progress = Instant::now();
    let mut failures = 0u32;
    tracing::info!(manufacturer = %link.name, subject = %feed.subject, from = %sent, "relaying notices through the broker");
    loop {
        let durable = *link.durable.borrow_and_update();
        let acked_now = *acked.borrow_and_update();
        sent = sent.max(acked_now);
        let through = NoticeSeq(durable.0.min(acked_now.0 + WINDOW));
        if sent < through {
            // A reconnect mid-chunk means its acks may never come: start again from the ack at once
            // instead of waiting out the publish timeout.
            let published = tokio::select! {
                _ = stop.cancelled() => return,
                r = publish_chunk(&broker, &reads, &link, &feed, sent, through) => r,
                changed = connects.changed() => {
                    if changed.is_err() { return }
                    republish(&link, acked_now);
                    sent = acked_now;
                    continue;
                }
            };
            match published {
                Ok(last) => {
                    failures = 0;
                    sent = last.unwrap_or(through);
                    continue;
                }
                Err(why) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(manufacturer = %link.name, "publishing notices failed ({why}); retrying from {acked_now}");
                    }
                    sent = acked_now;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(BACKOFF) => {}
                    }
                    continue;
                }
            }
        }
        let outstanding = sent > acked_now;
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = link.durable.changed() => if changed.is_err() { return },
            changed = acked.changed() => {
                if changed.is_err() { return }
                progress = Instant::now();
            }
            changed = connects.changed() => {
                if changed.is_err() { return }
                republish(&link, acked_now);
                sent = acked_now;
            }
            _ = sleep_until(progress + STALL), if outstanding => {
                tracing::info!(manufacturer = %link.name, from = %acked_now, "no ack for {STALL:?}: publishing the unacked notices again");
                sent = acked_now;
                progress = Instant::now();
            }
        }
    }
}

/// Says that a reconnect makes the relay publish again from the ack (the restarted broker may have
/// lost what it had not synced).
fn republish(link: &RelayLink, from: NoticeSeq) {
    tracing::info!(manufacturer = %link.name, %from, "broker reconnected: publishing every unacked notice again");
}

/// Publishes the durable notices after `after` through `through` (one outbox read), then awaits
/// every publish ack. Returns the last seq published, `None` when the read found nothing.
async fn publish_chunk(
    broker: &Broker,
    reads: &Reads,
    link: &RelayLink,
    feed: &protocol::broker::NoticeFeed,
    after: NoticeSeq,
    through: NoticeSeq,
) -> Result<Option<NoticeSeq>, String> {
    let id = link.id;
    // Either store: a PostgreSQL node's relay reads the shared outbox.
    let notices = reads
        .notices(id, after, through, CHUNK)
        .await
        .map_err(|e| format!("outbox read: {e}"))?;
    let Some(last) = notices.last().map(|n| n.seq) else {
        return Ok(None);
    };
    let mut pending = Vec::with_capacity(notices.len());
    for notice in &notices {
        let payload = protocol::broker::encode_notice(notice).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            feed.message_id(notice.seq).as_str(),
        );
        // Sent now, acked below: the chunk travels as one burst instead of one round trip each.
        let ack = broker
            .js
            .publish_with_headers(feed.subject.clone(), headers, payload.into())
            .await
            .map_err(|e| e.to_string())?;
        pending.push(ack);
    }
    let mut duplicates = 0usize;
    for ack in pending {
        let ack = ack.await.map_err(|e| e.to_string())?;
        duplicates += usize::from(ack.duplicate);
    }
    if duplicates > 0 {
        tracing::debug!(manufacturer = %link.name, duplicates, "the broker already had some notices");
    }
    Ok(Some(last))
}
