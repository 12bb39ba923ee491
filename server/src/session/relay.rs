//! The manufacturer relay: a manufacturer's link, opened in the handshake, and its sale notices
//! from the outbox, sent over the link within a window of unacked notices, or through the message
//! broker when the link asks for it. The link also carries the market's events for it
//! (`OfferRequested`) and ends when a newer connection takes the name.

use super::{err, internal, Answer, End, Session};
use crate::engine::Command;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How many notices may be in flight to a manufacturer before the relay waits for acks.
const RELAY_WINDOW: u64 = 8192;
/// How many notices the relay reads from the outbox at a time. A manufacturer applies what arrives
/// together in one transaction, so bigger chunks mean fewer of its fsyncs per notice: a backlog
/// drained at 22k notices/s with 128, 27k with 512 and 38k with 2,048 (bench row 8, 2026-12-03).
const RELAY_CHUNK: usize = 2048;

/// A manufacturer's link state: the relay's positions in its outbox.
pub(super) struct Link {
    pub(super) id: ManufacturerId,
    events: mpsc::UnboundedReceiver<Event>,
    /// Weak, so that the engine dropping its sender (a newer connection took the name) closes
    /// `events`; upgraded only to say goodbye.
    pub(super) events_tx: mpsc::WeakUnboundedSender<Event>,
    /// How far the outbox is durable; a change wakes the relay.
    durable: watch::Receiver<NoticeSeq>,
    /// The last notice sent over TCP.
    sent: NoticeSeq,
    /// The manufacturer's cumulative ack: the window of unacked notices starts here.
    acked: NoticeSeq,
    /// The name the manufacturer connected under (its broker subject is made from it).
    name: String,
    /// Which way this link's notices travel.
    delivery: Delivery,
}

/// Which way a manufacturer's notices travel.
enum Delivery {
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
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Admits a manufacturer by its name and credential and opens its link: its id, and the
    /// credential the market just issued if the name is new. A refusal is told to the peer here.
    pub(super) async fn open_link(
        &mut self,
        name: Option<&str>,
        key: Option<String>,
    ) -> Result<(ManufacturerId, Option<String>), End> {
        let name = match crate::names::catalog_name(
            name.unwrap_or_default(),
            "a manufacturer name",
            MAX_MANUFACTURER_NAME_BYTES,
        ) {
            Ok(name) => name,
            Err(why) => {
                let reason = WireError::new(ErrorCode::BadHandshake, why);
                return Err(self.refuse(reason).await);
            }
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .engine
            .send(Command::ManufacturerHello {
                name: name.clone(),
                key,
                events: events_tx.clone(),
                reply: tx,
            })
            .map_err(End::Close)?;
        let admitted = rx
            .await
            .map_err(|_| End::Close(err(ErrorCode::ShuttingDown, "shutting down")))?;
        let (id, acked, issued) = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => return Err(self.refuse(reason).await),
        };
        let durable = self.shared.registry.watch_outbox(id, acked);
        let delivery = match self.shared.broker {
            Some(_) => Delivery::Undecided(Instant::now() + DELIVERY_GRACE),
            None => Delivery::Tcp,
        };
        self.link = Some(Link {
            id,
            events,
            events_tx: events_tx.downgrade(),
            durable,
            sent: acked,
            acked,
            name,
            delivery,
        });
        Ok((id, issued))
    }

    /// This link's manufacturer. The guard table lets only manufacturers through, and their link
    /// opens in the handshake, so the refusal here is only a safety net.
    pub(super) fn manufacturer(&self) -> Result<ManufacturerId, WireError> {
        self.link
            .as_ref()
            .map(|l| l.id)
            .ok_or_else(|| err(ErrorCode::Forbidden, "only manufacturers can do that"))
    }

    /// The manufacturer applied every notice through `through`: the market may ask it for its next
    /// offer, and the relay's window moves on.
    pub(super) async fn ack_notices(&mut self, through: NoticeSeq) -> Answer {
        let id = self.manufacturer()?;
        let reply = self
            .shared
            .engine
            .ask(|tx| Command::Ack(id, through, tx))
            .await?;
        if let Some(link) = self.link.as_mut() {
            link.acked = link.acked.max(through);
            if let Delivery::Broker(relay) = &link.delivery {
                relay.acked(link.acked);
            }
        }
        self.relay()
            .await
            .map_err(|_| err(ErrorCode::Internal, "relay failed"))?;
        Ok(reply)
    }

    /// When a link that has not chosen the broker starts getting its notices over TCP.
    pub(super) fn undecided_until(&self) -> Option<Instant> {
        match self.link.as_ref().map(|l| &l.delivery) {
            Some(Delivery::Undecided(at)) => Some(*at),
            _ => None,
        }
    }

    /// The grace passed without [`RequestBody::NoticesFromBroker`]: notices go over this link.
    pub(super) async fn deliver_over_tcp(&mut self) -> Result<(), End> {
        if let Some(link) = self.link.as_mut() {
            link.delivery = Delivery::Tcp;
        }
        self.relay().await
    }

    pub(super) async fn on_link_event(&mut self, event: LinkEvent) -> Result<(), End> {
        match event {
            LinkEvent::Push(event) => self.send(&ServerMessage::Event(event)).await,
            LinkEvent::Durable => self.relay().await,
            LinkEvent::Replaced => Err(End::Close(err(ErrorCode::Conflict, "this link was ended: a connection with this name's credential took over, or an operator revoked the credential"))),
        }
    }

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
        Ok(Reply::NoticeFeed(broker.feed(&link.name)))
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
