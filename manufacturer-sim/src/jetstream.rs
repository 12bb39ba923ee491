//! Sale notices from the message broker (`manufacturer-sim --nats URL`): a durable pull consumer on
//! this manufacturer's subject of the distributor's JetStream stream, both named by the distributor
//! ([`NoticeFeed`]: under its cluster's name and the manufacturer's).
//!
//! Each batch of messages is sorted by notice seq against the high-water mark the books keep:
//! - a seq at or below the mark was applied before (a redelivery or a re-publish): acked, skipped;
//! - the run that continues the mark without a gap is applied in one transaction, and only after
//!   that commit are its messages acked (and the cumulative `AckNotices` sent over TCP, as always);
//! - a seq beyond a gap waits (negative ack with a delay): the notice before it is still to come,
//!   redelivered by the broker or published again by the distributor.
//!
//! So every notice is applied exactly once and in order, as over TCP, and "a manufacturer is asked
//! for its next offer only after it has applied every earlier notice" still holds: the distributor
//! counts the TCP acks, not the broker's.

use crate::SimError;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::{FutureExt, StreamExt};
use protocol::broker::NoticeFeed;
use protocol::{Notice, NoticeSeq};
use std::time::Duration;
use tracing::{debug, warn};

/// Most messages taken into one batch (one transaction, one ack over TCP).
pub(crate) const MAX_BATCH: usize = 4096;
/// Delivered but unacked messages come again after this: after a crash mid-batch, the restarted
/// manufacturer waits this long for the notices the dead one had taken (later ones wait behind the
/// gap). A batch commits in milliseconds; one slower than this is only delivered twice and skipped.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// How long a message beyond a gap waits before it is delivered again.
const GAP_DELAY: Duration = Duration::from_millis(500);
const PULL_BATCH: usize = 1024;
const HEARTBEAT: Duration = Duration::from_secs(5);

/// A manufacturer's connection to the broker; kept across reconnects of its TCP link.
#[derive(Clone)]
pub(crate) struct Broker {
    js: jetstream::Context,
    url: String,
}

/// What happens to one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Already in the books: ack it and skip it.
    Duplicate,
    /// Apply it in this batch, then ack it.
    Apply,
    /// After a gap: deliver it again later.
    Wait,
}

/// The fate of each seq of a batch (in the batch's order) for books applied through `high_water`.
pub(crate) fn fates(seqs: &[NoticeSeq], high_water: NoticeSeq) -> Vec<Fate> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| seqs[i]);
    let mut out = vec![Fate::Wait; seqs.len()];
    let mut mark = high_water;
    for i in order {
        let seq = seqs[i];
        out[i] = if seq <= mark {
            Fate::Duplicate
        } else if seq.0 == mark.0 + 1 {
            mark = seq;
            Fate::Apply
        } else {
            Fate::Wait
        };
    }
    out
}

/// One batch, sorted into what to apply and what to ack or hold back.
pub(crate) struct Batch {
    /// The notices to apply, in seq order.
    pub notices: Vec<Notice>,
    /// Acked once the notices are committed.
    applied: Vec<jetstream::Message>,
    duplicates: Vec<jetstream::Message>,
    waiting: Vec<jetstream::Message>,
}

impl Broker {
    /// Connects to `url`; a broker that is down now is retried in the background.
    pub(crate) async fn connect(url: &str, name: &str) -> Result<Broker, SimError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("manufacturer-sim/{name}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| SimError::Config(format!("--nats {url}: {e}")))?;
        Ok(Broker {
            js: jetstream::new(client),
            url: url.to_string(),
        })
    }

    /// This manufacturer's message stream: its durable consumer (created the first time) on its
    /// subject, both as the distributor named them. `Err` carries a reason to reconnect for.
    pub(crate) async fn subscribe(
        &self,
        route: &NoticeFeed,
    ) -> Result<consumer::pull::Stream, String> {
        let stream = self.js.get_stream(&route.stream).await.map_err(|e| {
            format!(
                "no {} stream on the broker at {} ({e}); the distributor creates it at start",
                route.stream, self.url
            )
        })?;
        let durable = route.consumer.clone();
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: route.subject.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: MAX_BATCH as i64,
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|e| format!("consumer {durable}: {e}"))?;
        consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(HEARTBEAT)
            .messages()
            .await
            .map_err(|e| format!("consumer {durable}: {e}"))
    }
}

/// Waits for the next message, then takes whatever else is already there (up to [`MAX_BATCH`]).
/// `Err` carries a reason to resubscribe for.
pub(crate) async fn next_batch(
    messages: &mut consumer::pull::Stream,
) -> Result<Vec<jetstream::Message>, String> {
    let first = loop {
        match messages.next().await {
            Some(Ok(m)) => break m,
            // Missed heartbeats and failed pulls (the broker restarting) pass: the stream pulls
            // again by itself once the client has reconnected.
            Some(Err(e))
                if matches!(
                    e.kind(),
                    consumer::pull::MessagesErrorKind::MissingHeartbeat
                        | consumer::pull::MessagesErrorKind::Pull
                        | consumer::pull::MessagesErrorKind::NoResponders
                ) =>
            {
                debug!("broker messages: {e}; waiting");
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the consumer's message stream ended".into()),
        }
    };
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match messages.next().now_or_never() {
            Some(Some(Ok(m))) => batch.push(m),
            _ => break,
        }
    }
    Ok(batch)
}

/// Decodes and sorts a batch against the books' mark. A payload that is not a notice cannot ever be
/// applied: it is logged and terminated (never redelivered).
pub(crate) async fn sort(
    name: &str,
    messages: Vec<jetstream::Message>,
    high_water: NoticeSeq,
) -> Batch {
    let mut decoded = Vec::with_capacity(messages.len());
    for message in messages {
        match protocol::broker::decode_notice(&message.payload) {
            Ok(notice) => decoded.push((notice, message)),
            Err(e) => {
                warn!(
                    "{name}: a broker message on {} is not a notice ({e}); dropped",
                    message.subject
                );
                let _ = message.ack_with(AckKind::Term).await;
            }
        }
    }
    let seqs: Vec<NoticeSeq> = decoded.iter().map(|(n, _)| n.seq).collect();
    let mut batch = Batch {
        notices: Vec::new(),
        applied: Vec::new(),
        duplicates: Vec::new(),
        waiting: Vec::new(),
    };
    let mut apply = Vec::new();
    for ((notice, message), fate) in decoded.into_iter().zip(fates(&seqs, high_water)) {
        match fate {
            Fate::Apply => apply.push((notice, message)),
            Fate::Duplicate => batch.duplicates.push(message),
            Fate::Wait => batch.waiting.push(message),
        }
    }
    apply.sort_by_key(|(n, _)| n.seq);
    for (notice, message) in apply {
        batch.notices.push(notice);
        batch.applied.push(message);
    }
    batch
}

impl Batch {
    /// After the books committed `notices`: acks them and the duplicates, and holds back the rest.
    /// A lost ack only means one more redelivery, which the mark skips.
    pub(crate) async fn settle(self, name: &str) {
        let waiting = self.waiting.len();
        for message in self.applied.iter().chain(&self.duplicates) {
            if let Err(e) = message.ack().await {
                debug!("{name}: broker ack failed ({e}); the message comes again and is skipped");
            }
        }
        for message in &self.waiting {
            let _ = message.ack_with(AckKind::Nak(Some(GAP_DELAY))).await;
        }
        if waiting > 0 {
            debug!("{name}: {waiting} notice(s) beyond a gap wait for the one before them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: &[u64]) -> Vec<NoticeSeq> {
        v.iter().map(|&s| NoticeSeq(s)).collect()
    }

    #[test]
    fn a_run_that_continues_the_mark_is_applied_in_seq_order_whatever_the_delivery_order() {
        use Fate::*;
        assert_eq!(
            fates(&seqs(&[7, 5, 6]), NoticeSeq(4)),
            vec![Apply, Apply, Apply]
        );
    }

    #[test]
    fn redeliveries_and_a_second_copy_in_the_same_batch_are_duplicates() {
        use Fate::*;
        assert_eq!(
            fates(&seqs(&[3, 5, 5, 4]), NoticeSeq(4)),
            vec![Duplicate, Apply, Duplicate, Duplicate]
        );
    }

    #[test]
    fn notices_beyond_a_gap_wait_instead_of_being_applied_early() {
        use Fate::*;
        assert_eq!(
            fates(&seqs(&[5, 7, 8]), NoticeSeq(4)),
            vec![Apply, Wait, Wait]
        );
        assert_eq!(fates(&seqs(&[9]), NoticeSeq(4)), vec![Wait]);
    }
}
