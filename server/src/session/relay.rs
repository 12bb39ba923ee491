//! The manufacturer relay: sale notices from the outbox to a manufacturer, over its link within a
//! window of unacked notices, or through the message broker when the link asks for it.

use super::{err, internal, Answer, End, Session};
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How many notices may be in flight to a manufacturer before the relay waits for acks.
const RELAY_WINDOW: u64 = 512;
/// How many notices the relay reads from the outbox at a time.
const RELAY_CHUNK: usize = 128;

/// A manufacturer's link state: the relay's positions in its outbox.
pub(super) struct Link {
    pub(super) id: ManufacturerId,
    pub(super) events: mpsc::UnboundedReceiver<Event>,
    /// Weak, so that the engine dropping its sender (a newer connection took the name) closes
    /// `events`; upgraded only to say goodbye.
    pub(super) events_tx: mpsc::WeakUnboundedSender<Event>,
    pub(super) durable: watch::Receiver<NoticeSeq>,
    pub(super) sent: NoticeSeq,
    pub(super) acked: NoticeSeq,
    /// The name the manufacturer connected under (its broker subject is made from it).
    pub(super) name: String,
    /// Which way this link's notices travel.
    pub(super) delivery: Delivery,
}

/// Which way a manufacturer's notices travel.
pub(super) enum Delivery {
    /// With a broker configured, a new link waits [`DELIVERY_GRACE`] for
    /// [`RequestBody::NoticesFromBroker`] before its notices start over TCP, so that a manufacturer
    /// that takes them from the broker does not get a first window of them over TCP as well.
    Undecided(Instant),
    /// As [`Event::Notice`]s on this connection (the default, and the only way without a broker).
    Tcp,
    /// Through JetStream, by this relay task.
    Broker(crate::broker::relay::BrokerRelay),
}

/// See [`Delivery::Undecided`]: one round trip on loopback is far below this.
pub(super) const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Sends outbox notices the manufacturer has not seen, up to the window.
    pub(super) async fn relay(&mut self) -> Result<(), End> {
        loop {
            let Some(link) = self.link.as_mut() else {
                return Ok(());
            };
            if !matches!(link.delivery, Delivery::Tcp) {
                return Ok(());
            }
            let durable = *link.durable.borrow_and_update();
            let limit = link.acked.0 + RELAY_WINDOW;
            let through = NoticeSeq(durable.0.min(limit));
            if link.sent >= through {
                return Ok(());
            }
            let (id, after) = (link.id, link.sent);
            // Notices that just committed are in memory; older ones (a reconnect, a relay far
            // behind) are read back from the outbox table.
            let notices = match self
                .shared
                .registry
                .recent_notices(id, after, through, RELAY_CHUNK)
            {
                Some(notices) => notices,
                None => self
                    .shared
                    .reads
                    .notices(id, after, through, RELAY_CHUNK)
                    .await
                    .map_err(|e| End::Close(internal(e)))?,
            };
            let Some(last) = notices.last().map(|n| n.seq) else {
                return Ok(());
            };
            for notice in notices {
                self.queue(&ServerMessage::Event(Event::Notice(notice)))?;
            }
            if let Some(link) = self.link.as_mut() {
                link.sent = last;
            }
            self.flush().await?;
        }
    }

    /// From now on this link's notices travel through the broker, starting from its acked position.
    pub(super) fn notices_from_broker(&mut self) -> Answer {
        let Some(link) = self.link.as_mut() else {
            return Err(err(ErrorCode::Forbidden, "only manufacturers can do that"));
        };
        let Some(broker) = self.shared.broker.as_ref() else {
            return Err(err(
                ErrorCode::Conflict,
                "this distributor runs without a message broker (start it with --nats URL); without --nats, notices come over this link",
            ));
        };
        if !matches!(link.delivery, Delivery::Broker(_)) {
            let relay = broker.relay(
                self.shared.reads.clone(),
                crate::broker::relay::RelayLink {
                    id: link.id,
                    name: link.name.clone(),
                    durable: link.durable.clone(),
                    acked: link.acked,
                },
            );
            link.delivery = Delivery::Broker(relay);
        }
        Ok(Reply::Done)
    }
}

/// Something for a manufacturer's connection.
pub(super) enum LinkEvent {
    /// An event from the engine (`OfferRequested`).
    Push(Event),
    /// More notices are durable in the outbox.
    Durable,
    /// The engine dropped this link: a newer connection with the credential took the name, or an
    /// operator revoked it.
    Replaced,
}

pub(super) async fn link_event(link: &mut Option<Link>) -> LinkEvent {
    let Some(link) = link else {
        return std::future::pending().await;
    };
    tokio::select! {
        event = link.events.recv() => match event {
            Some(event) => LinkEvent::Push(event),
            None => LinkEvent::Replaced,
        },
        changed = link.durable.changed() => match changed {
            Ok(()) => LinkEvent::Durable,
            Err(_) => std::future::pending().await,
        },
    }
}
