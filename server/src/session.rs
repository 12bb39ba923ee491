//! One connection: handshake, timeouts, role checks, request dispatch and pushes.
//!
//! A session reads frames itself (not through `Framed`) so that it always knows whether a frame is
//! half-received: a half frame must finish within `frame_timeout`, while a quiet connection may idle
//! for `idle_timeout`. Requests are handled one at a time, in order; pushes are written between them.

use crate::auth;
use crate::board::BoardReader;
use crate::engine::{CartOp, Command, EngineHandle};
use crate::hashing::{HashPool, Priority};
use crate::operator::watch::{next_delta, StatusWatch};
use crate::push::Registry;
use crate::store::read::Reads;
use crate::store::writer::{Op, Outcome, Writer};
use crate::store::{now_ms, StoreError};
use crate::throttle::{Refusal, Throttle};
use crate::Config;
use bytes::BytesMut;
use protocol::codec::CodecError;
use protocol::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

mod key_login;

/// How many notices may be in flight to a manufacturer before the relay waits for acks.
const RELAY_WINDOW: u64 = 512;
/// How many notices the relay reads from the outbox at a time.
const RELAY_CHUNK: usize = 128;

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

/// How long a sign-up refused as `Busy` is held before the refusal is sent.
const BUSY_HOLD: std::time::Duration = std::time::Duration::from_millis(250);

/// The longest a throttled request is held before its refusal is sent.
const TARPIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds a throttled request for its wait (at most [`TARPIT`]) before refusing it. A client that
/// waits for answers, as a flooding script does, then cannot turn refusals into thousands of
/// requests a second; the wait costs the server one timer, and a person reads the message a moment
/// later.
async fn tarpit(refusal: Refusal) -> WireError {
    let wait_ms = refusal.retry_after_ms().min(TARPIT.as_millis() as u64);
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
    throttled(refusal, refusal.retry_after_ms() - wait_ms)
}

/// A throttle's refusal as the client sees it: what to wait for, and how long is `left_ms`.
fn throttled(refusal: Refusal, left_ms: u64) -> WireError {
    let when = match left_ms.div_ceil(1000) {
        0 => "now".to_string(),
        secs if secs < 3600 => format!("in {secs} s"),
        secs => format!("in {} h", secs.div_ceil(3600)),
    };
    let message = match refusal {
        Refusal::Pair { .. } => {
            format!("too many wrong passwords for this email; try again {when}")
        }
        Refusal::Account { .. } => format!(
            "this account had too many failed logins today; log in from a place you used before, or try again {when}"
        ),
        Refusal::Address { .. } => {
            format!("too many attempts from your address; try again {when}")
        }
    };
    WireError::new(ErrorCode::Throttled, message)
}

fn internal(e: StoreError) -> WireError {
    tracing::error!(error = %e, "store error");
    WireError::new(
        ErrorCode::Internal,
        "something went wrong on the server; nothing was changed",
    )
}

/// A customer's login state.
struct Login {
    account: AccountId,
    token_hash: [u8; 32],
    expires_at_ms: u64,
    pushes: mpsc::Receiver<Event>,
    /// Cancelled when this login's token is revoked elsewhere (password change, session cap).
    revoked: CancellationToken,
}

/// A manufacturer's link state: the relay's positions in its outbox.
struct Link {
    id: ManufacturerId,
    events: mpsc::UnboundedReceiver<Event>,
    /// Weak, so that the engine dropping its sender (a newer connection took the name) closes
    /// `events`; upgraded only to say goodbye.
    events_tx: mpsc::WeakUnboundedSender<Event>,
    durable: watch::Receiver<NoticeSeq>,
    sent: NoticeSeq,
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

/// Stock watching state: what this client was last told.
struct Watch {
    catalog: watch::Receiver<Arc<crate::board::Catalog>>,
    levels: watch::Receiver<Arc<crate::board::Levels>>,
    epoch: u64,
    sent: HashMap<ListingId, u32>,
    flush_at: Option<Instant>,
    last_flush: Instant,
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
    watch: Option<Watch>,
    /// The parts of a multi-part offer still arriving.
    offer_parts: crate::pages::OfferParts,
    /// The operator's live status, after a `Status` request.
    status_watch: Option<StatusWatch>,
    everyone: broadcast::Receiver<Event>,
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
        watch: None,
        offer_parts: Default::default(),
        status_watch: None,
        everyone,
        partial_since: None,
        last_activity: Instant::now(),
    };
    let end = match session.handshake().await {
        Ok(()) => {
            let customer = session.role == Role::Customer;
            if customer {
                session.shared.registry.customer_connected();
            }
            let end = session.run(&shutdown).await.err().unwrap_or(End::Gone);
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

    /// Writes one message, bounded by the frame timeout so a client that never reads cannot pin us.
    async fn send(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.queue(message)?;
        self.flush().await
    }

    fn queue(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.codec.encode(message, &mut self.wbuf).map_err(|e| {
            tracing::error!(error = %e, "cannot encode a reply");
            End::Gone
        })
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let timeout = self.shared.config.frame_timeout;
        match tokio::time::timeout(timeout, self.writer.write_all(&self.wbuf)).await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                if self.wbuf.capacity() > 64 * 1024 {
                    self.wbuf = BytesMut::new(); // Give back the memory of a big catalog reply.
                }
                Ok(())
            }
            _ => Err(End::Gone),
        }
    }

    /// Reads until one whole message is decoded, honouring the frame deadline.
    async fn next_message(&mut self, deadline: Instant) -> Result<ClientMessage, End> {
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => return Err(self.violation(e)),
            }
            if self.rbuf.capacity() - self.rbuf.len() < 256 {
                self.rbuf.reserve(1024);
            }
            match tokio::time::timeout_at(deadline, self.reader.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(End::Gone),
                Ok(Ok(_)) => {}
                Err(_) => {
                    return Err(End::Close(err(
                        ErrorCode::Timeout,
                        "no complete frame in time",
                    )))
                }
            }
        }
    }

    fn violation(&self, e: CodecError) -> End {
        if e.is_protocol_violation() {
            tracing::info!(peer = %self.peer, error = %e, "malformed frame");
            End::Close(err(ErrorCode::Malformed, &format!("malformed frame: {e}")))
        } else {
            End::Gone
        }
    }

    async fn handshake(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + self.shared.config.frame_timeout;
        let hello = match self.next_message(deadline).await? {
            ClientMessage::Hello(hello) => hello,
            ClientMessage::Request(_) => {
                return Err(End::Close(err(
                    ErrorCode::BadHandshake,
                    "the first frame must be Hello",
                )))
            }
        };
        if hello.version != PROTOCOL_VERSION {
            let reason = WireError::new(
                ErrorCode::VersionMismatch,
                format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, the client speaks {}; please upgrade",
                    hello.version
                ),
            );
            let _ = self.send(&ServerMessage::Refused(reason)).await;
            return Err(End::Gone);
        }
        self.role = hello.role;
        let mut manufacturer = None;
        let mut credential = None;
        if let Err(reason) = self.operator_grade(&hello) {
            tracing::warn!(peer = %self.peer, role = ?hello.role, "refused: missing or wrong operator key");
            let _ = self.send(&ServerMessage::Refused(reason)).await;
            return Err(End::Gone);
        }
        if hello.role == Role::Manufacturer {
            let name = match crate::names::catalog_name(
                hello.name.as_deref().unwrap_or_default(),
                "a manufacturer name",
                MAX_MANUFACTURER_NAME_BYTES,
            ) {
                Ok(name) => name,
                Err(why) => {
                    let reason = WireError::new(ErrorCode::BadHandshake, why);
                    let _ = self.send(&ServerMessage::Refused(reason)).await;
                    return Err(End::Gone);
                }
            };
            let (events_tx, events) = mpsc::unbounded_channel();
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.shared
                .engine
                .send(Command::ManufacturerHello {
                    name: name.clone(),
                    key: hello.key,
                    events: events_tx.clone(),
                    reply: tx,
                })
                .map_err(End::Close)?;
            let admitted = rx
                .await
                .map_err(|_| End::Close(err(ErrorCode::ShuttingDown, "shutting down")))?;
            let (id, acked, issued) = match admitted {
                Ok(admitted) => admitted,
                Err(reason) => {
                    let _ = self.send(&ServerMessage::Refused(reason)).await;
                    return Err(End::Gone);
                }
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
                name: name.clone(),
                delivery,
            });
            manufacturer = Some(id);
            credential = issued;
        }
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            server: format!("distributor/{}", env!("CARGO_PKG_VERSION")),
            manufacturer,
            month: self.shared.board.catalog.borrow().snapshot.month.clone(),
            credential,
        };
        self.send(&ServerMessage::Welcome(welcome)).await?;
        if self.link.is_some() {
            self.relay().await?;
        }
        Ok(())
    }

    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), End> {
        let config = self.shared.config.clone();
        // A client may send requests in the same write as its Hello: answer what is already here
        // instead of waiting for more bytes that may never come.
        if !self.rbuf.is_empty() {
            self.on_bytes().await?;
        }
        loop {
            let deadline = match self.partial_since {
                Some(since) => since + config.frame_timeout,
                None => self.last_activity + config.idle_timeout,
            };
            let flush_at = self.watch.as_ref().and_then(|w| w.flush_at);
            let undecided = match self.link.as_ref().map(|l| &l.delivery) {
                Some(Delivery::Undecided(at)) => Some(*at),
                _ => None,
            };
            if self.rbuf.capacity() - self.rbuf.len() < 256 {
                self.rbuf.reserve(1024);
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    return Err(End::Close(err(ErrorCode::ShuttingDown, "the server is shutting down")));
                }
                read = self.reader.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) | Err(_) => return Err(End::Gone),
                        Ok(_) => self.on_bytes().await?,
                    }
                }
                _ = sleep_until(deadline) => {
                    let msg = if self.partial_since.is_some() { "no complete frame in time" } else { "idle too long" };
                    return Err(End::Close(err(ErrorCode::Timeout, msg)));
                }
                push = recv_login(&mut self.login) => {
                    if push.is_err() {
                        return Err(End::Close(err(ErrorCode::SessionExpired, "this session was ended: the password was changed, or the account logged in too many times elsewhere; please log in again")));
                    }
                    if let Ok(Some(event)) = push {
                        self.queue(&ServerMessage::Event(event))?;
                        // Take whatever else is already waiting, so a burst costs one write.
                        while let Some(event) = self.login.as_mut().and_then(|l| l.pushes.try_recv().ok()) {
                            self.queue(&ServerMessage::Event(event))?;
                        }
                        self.flush().await?;
                    }
                }
                event = self.everyone.recv() => {
                    if let Ok(event) = event {
                        self.send(&ServerMessage::Event(event)).await?;
                    }
                }
                event = link_event(&mut self.link) => {
                    match event {
                        LinkEvent::Push(event) => self.send(&ServerMessage::Event(event)).await?,
                        LinkEvent::Durable => self.relay().await?,
                        LinkEvent::Replaced => return Err(End::Close(err(ErrorCode::Conflict, "this link was ended: a connection with this name's credential took over, or an operator revoked the credential"))),
                    }
                }
                _ = stock_changed(&mut self.watch) => self.schedule_flush(),
                delta = next_delta(&mut self.status_watch) => self.send(&ServerMessage::Event(Event::Operator(Box::new(delta)))).await?,
                _ = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => self.flush_stock().await?,
                _ = sleep_until(undecided.unwrap_or_else(Instant::now)), if undecided.is_some() => {
                    if let Some(link) = self.link.as_mut() {
                        link.delivery = Delivery::Tcp;
                    }
                    self.relay().await?;
                }
            }
        }
    }

    async fn on_bytes(&mut self) -> Result<(), End> {
        self.last_activity = Instant::now();
        let mut completed_a_frame = false;
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(ClientMessage::Request(request))) => {
                    completed_a_frame = true;
                    let result = self.handle(request.body).await;
                    let response = ServerMessage::Response(Response {
                        id: request.id,
                        result,
                    });
                    self.queue(&response)?;
                    // Backpressure: a client that pipelines requests but does not read its
                    // replies must not make them pile up here.
                    if self.wbuf.len() >= 64 * 1024 {
                        self.flush().await?;
                    }
                }
                Ok(Some(ClientMessage::Hello(_))) => {
                    return Err(End::Close(err(
                        ErrorCode::BadHandshake,
                        "Hello may only be sent once",
                    )));
                }
                Ok(None) => break,
                Err(e) => {
                    self.flush().await?;
                    return Err(self.violation(e));
                }
            }
        }
        // The frame deadline runs from the last completed frame: a client that pipelines a long
        // stream whose reads always end mid-frame is making progress, while one that dribbles a
        // single frame is not.
        self.partial_since = match (
            self.rbuf.is_empty() && !self.codec.in_frame(),
            completed_a_frame,
        ) {
            (true, _) => None,
            (false, true) => Some(Instant::now()),
            (false, false) => self.partial_since.or(Some(Instant::now())),
        };
        if self.rbuf.is_empty() && self.rbuf.capacity() > 16 * 1024 {
            self.rbuf = BytesMut::new(); // An idle connection keeps no big buffer.
        }
        self.flush().await
    }

    fn schedule_flush(&mut self) {
        let interval = self.shared.config.stock_interval;
        if let Some(w) = self.watch.as_mut() {
            w.flush_at = Some((w.last_flush + interval).max(Instant::now()));
        }
    }

    async fn flush_stock(&mut self) -> Result<(), End> {
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

    /// Sends outbox notices the manufacturer has not seen, up to the window.
    async fn relay(&mut self) -> Result<(), End> {
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

    /// Whether the Hello carries the credential its role needs. Customers need none; every other
    /// role (manufacturers, operators, gateways) presents the peer key when the distributor has one.
    /// The one place that decides it.
    /// Operator-grade roles (operators, and gateways that vouch for the customers they carry) must
    /// present the operator key: the one check, [`crate::identity::operator::OperatorKey::check`].
    /// Manufacturers are checked by the engine against their own name's credential.
    fn operator_grade(&self, hello: &Hello) -> Result<(), WireError> {
        match hello.role {
            Role::Operator | Role::Gateway => self.shared.operator_key.check(hello.key.as_deref()),
            Role::Customer | Role::Manufacturer => Ok(()),
        }
    }

    /// Whether this connection carries a customer: a shop, or a gateway on behalf of one.
    fn carries_customer(&self) -> bool {
        matches!(self.role, Role::Customer | Role::Gateway)
    }

    fn account(&self) -> Result<AccountId, WireError> {
        let customer = self.carries_customer();
        match &self.login {
            Some(login) if customer && login.expires_at_ms > now_ms() => Ok(login.account),
            Some(_) if customer => Err(err(
                ErrorCode::SessionExpired,
                "your session expired; please log in again",
            )),
            None if customer => Err(err(
                ErrorCode::NotAuthenticated,
                "please sign up or log in first",
            )),
            _ => Err(err(ErrorCode::Forbidden, "only customers can do that")),
        }
    }

    fn manufacturer(&self) -> Result<ManufacturerId, WireError> {
        self.link
            .as_ref()
            .map(|l| l.id)
            .ok_or_else(|| err(ErrorCode::Forbidden, "only manufacturers can do that"))
    }

    fn operator(&self) -> Result<(), WireError> {
        match self.role {
            Role::Operator => Ok(()),
            _ => Err(err(ErrorCode::Forbidden, "only operators can do that")),
        }
    }

    async fn handle(&mut self, body: RequestBody) -> Answer {
        let engine = self.shared.engine.clone();
        match body {
            RequestBody::Ping => Ok(Reply::Pong),
            RequestBody::SignUp(form) => self.sign_up(form).await,
            RequestBody::LogIn { email, password } => self.log_in(email, password).await,
            RequestBody::Resume { token } => self.resume(token).await,
            RequestBody::LogOut => {
                self.account()?;
                if let Some(login) = self.login.take() {
                    self.shared.registry.detach_customer(login.account, self.id);
                    self.shared
                        .writer
                        .run(Op::DeleteSession(login.token_hash))
                        .await
                        .map_err(internal)?;
                }
                self.watch = None;
                Ok(Reply::Done)
            }
            RequestBody::GetAccount => {
                let account = self.account()?;
                Ok(Reply::Account(self.load_account(account).await?))
            }
            RequestBody::UpdateAccount(update) => self.update_account(update).await,
            RequestBody::DeleteAccount { password } => self.delete_account(password).await,
            RequestBody::SetCard(input) => {
                let account = self.account()?;
                let card = crate::card::validate(&input, crate::card::this_month())?;
                drop(input);
                let expiry = (card.exp_year, card.exp_month);
                self.shared
                    .writer
                    .run(Op::SetCard(account, Some(card)))
                    .await
                    .map_err(internal)?;
                engine.send(Command::CardChanged(account, Some(expiry)))?;
                Ok(Reply::Account(self.load_account(account).await?))
            }
            RequestBody::RemoveCard => {
                let account = self.account()?;
                self.shared
                    .writer
                    .run(Op::SetCard(account, None))
                    .await
                    .map_err(internal)?;
                engine.send(Command::CardChanged(account, None))?;
                Ok(Reply::Account(self.load_account(account).await?))
            }
            RequestBody::Catalog => self.catalog_page(None),
            RequestBody::CatalogPage { after } => self.catalog_page(Some(after)),
            RequestBody::GetCart => self.cart(CartOp::View).await,
            RequestBody::AddToCart { listing, quantity } => {
                self.cart(CartOp::Add(listing, quantity)).await
            }
            RequestBody::SetCartQuantity { listing, quantity } => {
                self.cart(CartOp::Set(listing, quantity)).await
            }
            RequestBody::RemoveFromCart { listing } => self.cart(CartOp::Remove(listing)).await,
            RequestBody::ClearCart => self.cart(CartOp::Clear).await,
            RequestBody::Checkout {
                checkout_id,
                lines,
                confirmed_total,
            } => {
                let account = self.account()?;
                engine
                    .ask(|tx| Command::Checkout(account, checkout_id, lines, confirmed_total, tx))
                    .await
            }
            RequestBody::Orders => {
                let account = self.account()?;
                let orders = self
                    .shared
                    .reads
                    .orders(account, MAX_ORDERS_LISTED)
                    .await
                    .map_err(internal)?;
                Ok(Reply::Orders(orders))
            }
            RequestBody::OrdersPage { before } => self.orders_page(before).await,
            RequestBody::GetOrder { order } => {
                let account = self.account()?;
                let found = self
                    .shared
                    .reads
                    .order_of(account, order)
                    .await
                    .map_err(internal)?;
                found
                    .map(Reply::Order)
                    .ok_or_else(|| err(ErrorCode::NotFound, "no such order"))
            }
            RequestBody::SubmitOffer { month, lines } => {
                let id = self.manufacturer()?;
                engine
                    .ask(|tx| Command::SubmitOffer(id, month, lines, tx))
                    .await
            }
            RequestBody::SubmitOfferPart { month, lines, last } => {
                self.offer_part(month, lines, last).await
            }
            RequestBody::AckNotices { through } => {
                let id = self.manufacturer()?;
                let reply = engine.ask(|tx| Command::Ack(id, through, tx)).await?;
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
            RequestBody::ReportDispatch { order } => {
                let id = self.manufacturer()?;
                self.shared
                    .writer
                    .run(Op::Dispatch {
                        manufacturer: id,
                        order,
                    })
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound => {
                            err(ErrorCode::NotFound, "no such order among yours")
                        }
                        e => internal(e),
                    })?;
                Ok(Reply::Done)
            }
            RequestBody::CloseMonth => {
                self.operator()?;
                engine.ask(Command::CloseMonth).await
            }
            RequestBody::Status => self.status().await,
            RequestBody::SetMonthLength { secs } => {
                self.operator()?;
                engine.ask(|tx| Command::SetMonthLength(secs, tx)).await
            }
            RequestBody::KeyLogIn { fingerprint } => self.key_log_in(fingerprint).await,
            RequestBody::RememberKey { fingerprint } => self.remember_key(fingerprint).await,
            RequestBody::ForgetKey { fingerprint } => self.forget_key(fingerprint).await,
            RequestBody::CustomerAddress { ip } => self.customer_address(ip),
            RequestBody::NoticesFromBroker => self.notices_from_broker(),
            RequestBody::RevokeManufacturer { name } => {
                self.operator()?;
                engine.ask(|tx| Command::RevokeManufacturer(name, tx)).await
            }
        }
    }

    /// From now on this link's notices travel through the broker, starting from its acked position.
    fn notices_from_broker(&mut self) -> Answer {
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

    /// The operator's snapshot; from now on this connection also gets the deltas.
    async fn status(&mut self) -> Answer {
        self.operator()?;
        // Subscribe first, so that no change between the snapshot and the subscription is lost.
        let newest = self.shared.registry.watch_status();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.engine.send(Command::Status(tx))?;
        let status = rx
            .await
            .map_err(|_| err(ErrorCode::ShuttingDown, "shutting down"))?;
        self.status_watch = Some(StatusWatch::new(newest, status.clone()));
        Ok(Reply::Status(Box::new(status)))
    }

    /// A catalog page. The first page (re)subscribes this connection to stock updates; a later page
    /// subscribes it only if nothing did yet.
    fn catalog_page(&mut self, after: Option<ListingId>) -> Answer {
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

    /// Orders older than `before`, one page.
    async fn orders_page(&mut self, before: OrderId) -> Answer {
        let account = self.account()?;
        let orders = self
            .shared
            .reads
            .orders_before(account, before, ORDERS_PAGE_LEN)
            .await
            .map_err(internal)?;
        Ok(Reply::Orders(orders))
    }

    /// One part of a multi-part offer; the last one submits the whole offer.
    async fn offer_part(&mut self, month: MonthId, lines: Vec<OfferLine>, last: bool) -> Answer {
        let id = self.manufacturer()?;
        let Some(lines) = self.offer_parts.add(month, lines, last)? else {
            return Ok(Reply::Done);
        };
        self.shared
            .engine
            .ask(|tx| Command::SubmitOffer(id, month, lines, tx))
            .await
    }

    async fn cart(&mut self, op: CartOp) -> Answer {
        let account = self.account()?;
        self.shared
            .engine
            .ask(|tx| Command::Cart(account, op, tx))
            .await
    }

    fn anonymous_only(&self) -> Result<(), WireError> {
        match self.carries_customer() {
            true => Ok(()),
            false => Err(err(ErrorCode::Forbidden, "only customers have accounts")),
        }
    }

    async fn hash(&self, password: String) -> Result<String, WireError> {
        self.shared.hashing.hash(password, Priority::SignUp).await
    }

    async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, WireError> {
        self.shared
            .hashing
            .verify(password, hash, Priority::Login)
            .await
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // The maps stay consistent even if a holder panicked; keep serving.
        self.shared
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    async fn sign_up(&mut self, form: SignUp) -> Answer {
        self.anonymous_only()?;
        let first_name = crate::names::person_name(&form.first_name, Field::FirstName)?;
        let last_name = crate::names::person_name(&form.last_name, Field::LastName)?;
        let email = crate::email::validate(&form.email)?;
        auth::validate_password(&form.password)?;
        // Checked after the fields, so a typo does not cost one of the address's sign-ups, and
        // before hashing, so a flood is refused for the price of a map lookup.
        let address = crate::throttle::address_key(self.client_ip);
        let allowed = self.throttle().check_signup(&address, now_ms());
        if let Err(refusal) = allowed {
            return Err(tarpit(refusal).await);
        }
        let password_hash = match self.hash(form.password).await {
            Ok(hash) => hash,
            Err(e) => {
                if e.code == ErrorCode::Busy {
                    self.throttle().refund_signup(&address);
                    // Held a moment, like a throttled request, so that retrying at once cannot
                    // become a busy loop of refusals.
                    tokio::time::sleep(BUSY_HOLD).await;
                }
                return Err(e);
            }
        };
        let op = Op::CreateAccount {
            first_name,
            last_name,
            email,
            password_hash,
        };
        let account = match self.shared.writer.run(op).await {
            Ok(Outcome::Account(id)) => id,
            Ok(_) => return Err(err(ErrorCode::Internal, "no account id")),
            Err(StoreError::Duplicate) => {
                return Err(WireError::field(
                    ErrorCode::EmailTaken,
                    Field::Email,
                    "an account with this email already exists; log in instead",
                ))
            }
            Err(e) => return Err(internal(e)),
        };
        self.start_session(account).await
    }

    async fn log_in(&mut self, email: String, password: String) -> Answer {
        self.anonymous_only()?;
        let account_key = crate::email::key(&email);
        let address = crate::throttle::address_key(self.client_ip);
        let allowed = self
            .throttle()
            .check_login(&account_key, &address, now_ms());
        if let Err(refusal) = allowed {
            return Err(tarpit(refusal).await);
        }
        let key = account_key.clone();
        let row = self
            .shared
            .reads
            .account_by_email(key)
            .await
            .map_err(internal)?;
        let hash = row.as_ref().map(|r| r.password_hash.clone());
        let ok = self.verify(password, hash).await?;
        let record = match ok {
            true => None,
            false => Some(
                self.throttle()
                    .login_failed(&account_key, &address, now_ms()),
            ),
        };
        if let Some(record) = record {
            // Durable before the answer, so a restart does not hand out fresh guesses.
            let op = Op::LoginFailed {
                account_key,
                address,
                pair: record.pair,
                account: record.account,
            };
            self.shared.writer.run(op).await.map_err(internal)?;
            return Err(err(ErrorCode::BadCredentials, "email or password is wrong"));
        }
        self.throttle().login_succeeded(&account_key, &address);
        let op = Op::LoginSucceeded {
            account_key,
            address,
            at_ms: now_ms(),
        };
        // Not waited for: it commits with the session below (one group commit, one fsync), and
        // losing it in a crash only leaves old failure counts that the next success clears.
        let (done, _) = tokio::sync::oneshot::channel();
        let _ = self
            .shared
            .writer
            .submit(op, crate::store::writer::Done::Outcome(done));
        match row {
            Some(row) => self.start_session(row.view.id).await,
            None => Err(err(ErrorCode::BadCredentials, "email or password is wrong")),
        }
    }

    async fn resume(&mut self, token: SessionToken) -> Answer {
        self.anonymous_only()?;
        let hash = auth::token_hash(&token);
        let found = self
            .shared
            .reads
            .session(hash, now_ms())
            .await
            .map_err(internal)?;
        let Some((account, expires_at_ms)) = found else {
            return Err(err(
                ErrorCode::SessionExpired,
                "your session expired; please log in again",
            ));
        };
        let view = self.load_account(account).await?;
        self.attach(account, hash, expires_at_ms);
        Ok(Reply::Session(SessionInfo {
            token,
            expires_at_ms,
            account: view,
        }))
    }

    async fn start_session(&mut self, account: AccountId) -> Answer {
        let token = auth::new_token();
        let hash = auth::token_hash(&token);
        let expires_at_ms = now_ms() + auth::SESSION_TTL.as_millis() as u64;
        let created = self
            .shared
            .writer
            .run(Op::CreateSession {
                token_hash: hash,
                account,
                expires_at_ms,
            })
            .await
            .map_err(internal)?;
        if let Outcome::Session { evicted } = created {
            self.shared.registry.revoke_tokens(account, &evicted);
        }
        let view = self.load_account(account).await?;
        self.attach(account, hash, expires_at_ms);
        Ok(Reply::Session(SessionInfo {
            token,
            expires_at_ms,
            account: view,
        }))
    }

    fn attach(&mut self, account: AccountId, token_hash: [u8; 32], expires_at_ms: u64) {
        if let Some(old) = self.login.take() {
            self.shared.registry.detach_customer(old.account, self.id);
        }
        let (pushes, revoked) = self
            .shared
            .registry
            .attach_customer(account, self.id, token_hash);
        // Best effort: an engine that has stopped has no month to count this login in.
        let _ = self.shared.engine.send(Command::CustomerLoggedIn(account));
        self.login = Some(Login {
            account,
            token_hash,
            expires_at_ms,
            pushes,
            revoked,
        });
    }

    async fn load_account(&self, account: AccountId) -> Result<AccountView, WireError> {
        self.shared
            .reads
            .account_by_id(account)
            .await
            .map_err(internal)?
            .map(|row| row.view)
            .ok_or_else(|| err(ErrorCode::NotFound, "this account no longer exists"))
    }

    async fn check_password(&self, account: AccountId, password: String) -> Result<(), WireError> {
        let row = self
            .shared
            .reads
            .account_by_id(account)
            .await
            .map_err(internal)?;
        let hash = row.map(|r| r.password_hash);
        if self.verify(password, hash).await? {
            Ok(())
        } else {
            Err(WireError::field(
                ErrorCode::BadCredentials,
                Field::Password,
                "the current password is wrong",
            ))
        }
    }

    async fn update_account(&mut self, update: AccountUpdate) -> Answer {
        let account = self.account()?;
        let first_name = update
            .first_name
            .map(|v| crate::names::person_name(&v, Field::FirstName))
            .transpose()?;
        let last_name = update
            .last_name
            .map(|v| crate::names::person_name(&v, Field::LastName))
            .transpose()?;
        let email = update
            .email
            .map(|v| crate::email::validate(&v))
            .transpose()?;
        let mut password_hash = None;
        if let Some((current, new)) = update.password {
            auth::validate_password(&new)?;
            self.check_password(account, current).await?;
            password_hash = Some(self.hash(new).await?);
        }
        // A new password ends every other session of the account; this one stays.
        let keep_session = self.login.as_ref().map(|l| l.token_hash);
        let changes_password = password_hash.is_some();
        let op = Op::UpdateAccount {
            account,
            first_name,
            last_name,
            email,
            password_hash,
            keep_session,
        };
        match self.shared.writer.run(op).await {
            Ok(_) => {
                if let (true, Some(keep)) = (changes_password, keep_session) {
                    self.shared.registry.revoke_all_but(account, keep);
                }
                Ok(Reply::Account(self.load_account(account).await?))
            }
            Err(StoreError::Duplicate) => Err(WireError::field(
                ErrorCode::EmailTaken,
                Field::Email,
                "another account already uses this email",
            )),
            Err(StoreError::NotFound) => {
                Err(err(ErrorCode::NotFound, "this account no longer exists"))
            }
            Err(e) => Err(internal(e)),
        }
    }

    async fn delete_account(&mut self, password: String) -> Answer {
        let account = self.account()?;
        self.check_password(account, password).await?;
        // The engine forgets the account and queues the delete itself, so no cart or checkout job
        // for this account can reach the writer after its row is gone.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .engine
            .send(Command::DeleteAccount(account, tx))?;
        match rx.await {
            Ok(Ok(_)) | Ok(Err(StoreError::NotFound)) => {}
            Ok(Err(e)) => return Err(internal(e)),
            Err(_) => return Err(err(ErrorCode::ShuttingDown, "the server is shutting down")),
        }
        if let Some(login) = self.login.take() {
            self.shared.registry.detach_customer(login.account, self.id);
        }
        self.watch = None;
        Ok(Reply::Done)
    }
}

/// The next push for a logged-in session, or `Err` once its token was revoked elsewhere.
async fn recv_login(login: &mut Option<Login>) -> Result<Option<Event>, ()> {
    match login {
        Some(login) => tokio::select! {
            _ = login.revoked.cancelled() => Err(()),
            event = login.pushes.recv() => Ok(event),
        },
        None => std::future::pending().await,
    }
}

/// Something for a manufacturer's connection.
enum LinkEvent {
    /// An event from the engine (`OfferRequested`).
    Push(Event),
    /// More notices are durable in the outbox.
    Durable,
    /// The engine dropped this link: a newer connection with the credential took the name, or an
    /// operator revoked it.
    Replaced,
}

async fn link_event(link: &mut Option<Link>) -> LinkEvent {
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

/// Resolves when the catalog or the levels changed and no flush is scheduled yet.
async fn stock_changed(watch: &mut Option<Watch>) {
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
