//! One connection: handshake, timeouts, role checks, request dispatch and pushes.
//!
//! A session reads frames itself (not through `Framed`) so that it always knows whether a frame is
//! half-received: a half frame must finish within `frame_timeout`, while a quiet connection may idle
//! for `idle_timeout`. Requests are handled one at a time, in order; pushes are written between them.
//!
//! # Layout
//! - `mod.rs`: [`Shared`], the `Session` state, [`serve`] and the loop that waits on the socket and
//!   on every push source at once.
//! - `frames.rs`: bytes to requests and replies to bytes, with the half-frame and idle deadlines.
//! - `handshake.rs`: the Hello and the credential its role needs.
//! - `dispatch.rs`: one line per request: who may send it (the role guards) and its handler.
//! - `login.rs`: sign-up, log-in, resume, log-out, the login's pushes, and the throttle's tarpit.
//! - `account.rs`: the account's own data: details, password, card, deletion.
//! - `key_login.rs`: SSH keys as logins, for gateways.
//! - `shopping.rs`: cart, checkout and orders.
//! - `stock.rs`: the live stock watch, around a pure diff (`catch_up`).
//! - `manufacturer.rs`: a manufacturer's offers and dispatch reports.
//! - `relay.rs`: a manufacturer's link (admission, events) and its sale notices, over the link
//!   or through the broker.
//! - `control.rs`: the operator's requests.

use crate::board::BoardReader;
use crate::engine::{Command, EngineHandle};
use crate::hashing::HashPool;
use crate::operator::watch::{next_delta, StatusWatch};
use crate::push::Registry;
use crate::store::read::Reads;
use crate::store::writer::Writer;
use crate::store::StoreError;
use crate::throttle::Throttle;
use crate::Config;
use bytes::BytesMut;
use login::{recv_login, Login};
use protocol::*;
use relay::{link_event, Link};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use stock::{stock_changed, StockWatch};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::{CancellationToken, ReusableBoxFuture};

mod account;
mod control;
mod dispatch;
mod frames;
mod handshake;
mod key_login;
mod login;
mod manufacturer;
mod relay;
mod shopping;
mod stock;

/// What every session shares.
pub struct Shared {
    /// The market.
    pub engine: EngineHandle,
    /// Account and session writes.
    pub writer: Writer,
    /// Reads.
    pub reads: Reads,
    /// Live stock.
    pub board: BoardReader,
    /// Pushes.
    pub registry: Arc<Registry>,
    /// Settings.
    pub config: Arc<Config>,
    /// Login and sign-up throttling (held only for a few map operations, never across an await).
    pub throttle: std::sync::Mutex<Throttle>,
    /// The argon2 threads and their bounded queue: each hash in progress takes 19 MiB.
    pub hashing: HashPool,
    /// Session ids for the registry.
    pub next_session: AtomicU64,
    /// What operator-grade roles must present.
    pub operator_key: crate::identity::operator::OperatorKey,
    /// The message broker, with `--nats`: links that ask for it get their notices through it.
    pub broker: Option<crate::broker::Broker>,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The peer closed or the socket failed.
    Gone,
    /// Tell the peer why, then close.
    Close(WireError),
}

type Answer = Result<Reply, WireError>;

fn err(code: ErrorCode, msg: &str) -> WireError {
    WireError::new(code, msg)
}

fn internal(e: StoreError) -> WireError {
    tracing::error!(error = %e, "store error");
    WireError::new(
        ErrorCode::Internal,
        "something went wrong on the server; nothing was changed",
    )
}

struct Session<R, W> {
    reader: R,
    writer: W,
    rbuf: BytesMut,
    wbuf: BytesMut,
    codec: ServerCodec,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The address that sign-up and login throttling count: the peer's, or for a gateway the one it
    /// says its customer connects from ([`RequestBody::CustomerAddress`]).
    client_ip: std::net::IpAddr,
    id: u64,
    role: Role,
    login: Option<Login>,
    link: Option<Link>,
    /// The live stock watch, once the connection browsed the catalog.
    stock: Option<StockWatch>,
    /// The parts of a multi-part offer still arriving.
    offer_parts: crate::pages::OfferParts,
    /// The operator's live status, after a `Status` request.
    status_watch: Option<StatusWatch>,
    partial_since: Option<Instant>,
    last_activity: Instant,
}

/// Serves one connection until it ends or `shutdown` is cancelled.
pub async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let everyone = shared.registry.subscribe_all();
    let mut session = Session {
        reader,
        writer,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        codec: ServerCodec::new(),
        shared,
        peer,
        client_ip: peer.ip(),
        id,
        role: Role::Customer,
        login: None,
        link: None,
        stock: None,
        offer_parts: Default::default(),
        status_watch: None,
        partial_since: None,
        last_activity: Instant::now(),
    };
    let end = match session.handshake().await {
        Ok(()) => {
            let customer = session.role == Role::Customer;
            if customer {
                session.shared.registry.customer_connected();
            }
            let end = session
                .run(&shutdown, everyone)
                .await
                .err()
                .unwrap_or(End::Gone);
            if customer {
                session.shared.registry.customer_disconnected();
            }
            end
        }
        Err(end) => end,
    };
    if let End::Close(reason) = end {
        tracing::debug!(peer = %session.peer, code = ?reason.code, "closing: {}", reason.message);
        let _ = session.send(&ServerMessage::Closing(reason)).await;
    }
    let _ = session.writer.shutdown().await;
    session.cleanup();
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    fn cleanup(&mut self) {
        if let Some(login) = self.login.take() {
            self.shared.registry.detach_customer(login.account, self.id);
        }
        if let Some(link) = self.link.take() {
            if let Some(tx) = link.events_tx.upgrade() {
                let _ = self
                    .shared
                    .engine
                    .send(Command::ManufacturerGone(link.id, tx));
            }
        }
    }

    /// Waits on the socket and on every push source at once, until the connection ends.
    ///
    /// The waits on what every session shares, the shutdown token and the broadcast to everyone,
    /// are made once per connection, not once per turn: a wait made afresh joins and leaves their
    /// waiter lists, under a lock both workers take, on every request. The timers are made afresh:
    /// three pinned for the connection's life cost 2.7 KiB per idle connection (row 6), for no
    /// throughput that could be measured.
    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        everyone: broadcast::Receiver<Event>,
    ) -> Result<(), End> {
        // A client may send requests in the same write as its Hello: answer what is already here
        // instead of waiting for more bytes that may never come.
        if !self.rbuf.is_empty() {
            self.on_bytes().await?;
        }
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut everyone = ReusableBoxFuture::new(next_broadcast(everyone));
        loop {
            let deadline = self.read_deadline();
            let flush_at = self.stock.as_ref().and_then(|w| w.flush_at);
            let undecided = self.undecided_until();
            self.make_room();
            tokio::select! {
                _ = &mut cancelled => {
                    return Err(End::Close(err(ErrorCode::ShuttingDown, "the server is shutting down")));
                }
                read = self.reader.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) | Err(_) => return Err(End::Gone),
                        Ok(_) => self.on_bytes().await?,
                    }
                }
                _ = sleep_until(deadline) => return Err(self.timed_out()),
                push = recv_login(&mut self.login) => self.on_login_push(push).await?,
                (event, rx) = std::future::poll_fn(|cx| everyone.poll(cx)) => {
                    everyone.set(next_broadcast(rx));
                    self.send(&ServerMessage::Event(event)).await?;
                }
                event = link_event(&mut self.link) => self.on_link_event(event).await?,
                _ = stock_changed(&mut self.stock) => self.schedule_flush(),
                delta = next_delta(&mut self.status_watch) => self.send(&ServerMessage::Event(Event::Operator(Box::new(delta)))).await?,
                _ = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => self.flush_stock().await?,
                _ = sleep_until(undecided.unwrap_or_else(Instant::now)), if undecided.is_some() => self.deliver_over_tcp().await?,
            }
        }
    }
}

/// The next event for everyone, with the receiver handed back so that the same wait can be made
/// again in place (see [`Session::run`]). Events missed by a session too slow to keep up are
/// skipped; once the server stops sending, it never resolves.
async fn next_broadcast(mut rx: broadcast::Receiver<Event>) -> (Event, broadcast::Receiver<Event>) {
    loop {
        match rx.recv().await {
            Ok(event) => return (event, rx),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
