//! A client connection: handshake, request/response correlation, and a stream of pushed events.
//!
//! Shared by `shop`, `manufacturer-sim`, `loadgen` and the tests, so that every client speaks the
//! protocol the same way. It is a thin layer over [`crate::codec`]: one reader task routes responses to
//! their callers and events to an [`Events`] receiver; callers write their own requests, so a request
//! costs no extra task hand-off.

use crate::codec::{ClientCodec, CodecError};
use crate::dial;
use crate::error::WireError;
use crate::message::*;
use crate::types::RequestId;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or writing failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The server refused the handshake.
    #[error("refused: {}", .0.message)]
    Refused(WireError),
    /// The server answered something other than `Welcome` to `Hello`.
    #[error("unexpected handshake reply")]
    BadHandshake,
    /// The connection closed before the answer came. The request may or may not have taken effect.
    #[error("connection closed{}", .0.as_ref().map(|e| format!(": {}", e.message)).unwrap_or_default())]
    Closed(Option<WireError>),
    /// TLS could not be set up (bad CA file, bad certificate, failed handshake).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server answered with an error (a business rejection or a refusal).
    #[error("{}", .0.message)]
    Server(WireError),
    /// The server answered a request with a reply of the wrong kind.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
}

impl ClientError {
    /// The server's error, if this is a business rejection rather than a transport failure.
    pub fn server_error(&self) -> Option<&WireError> {
        match self {
            ClientError::Server(e) | ClientError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Reply, WireError>>>>>;
type Writer = FramedWrite<Box<dyn AsyncWrite + Send + Unpin>, ClientCodec>;

/// Pushed events. Dropping it is fine: events are then discarded.
pub type Events = mpsc::UnboundedReceiver<Event>;

/// A connected, handshaken client. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    writer: tokio::sync::Mutex<Writer>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<Mutex<Option<Option<WireError>>>>,
    welcome: Welcome,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Connects over plain TCP and shakes hands.
    pub async fn connect(addr: &str, hello: Hello) -> Result<(Client, Events), ClientError> {
        Self::handshake(dial::tcp(addr).await?, hello).await
    }

    /// Connects over TLS when `tls_ca` names a CA certificate (PEM) to trust, else over plain TCP.
    /// The server's certificate must be valid for the host part of `addr`.
    pub async fn connect_with(
        addr: &str,
        tls_ca: Option<&std::path::Path>,
        hello: Hello,
    ) -> Result<(Client, Events), ClientError> {
        match tls_ca {
            None => Self::connect(addr, hello).await,
            Some(_) => Self::handshake(dial::dial(addr, None, tls_ca).await?, hello).await,
        }
    }

    /// Shakes hands over an already connected stream (plain TCP, TLS, or a test proxy).
    pub async fn handshake<S>(stream: S, hello: Hello) -> Result<(Client, Events), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let mut reader = FramedRead::new(read, ClientCodec::new());
        let mut writer: Writer = FramedWrite::new(Box::new(write), ClientCodec::new());
        writer.send(ClientMessage::Hello(hello)).await?;
        let welcome = welcome_from(reader.next().await)?;
        let pending: Pending = Arc::default();
        let closed: Arc<Mutex<Option<Option<WireError>>>> = Arc::default();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            reader,
            pending.clone(),
            closed.clone(),
            events_tx,
        ));
        let inner = Inner {
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            closed,
            welcome,
            reader,
        };
        Ok((
            Client {
                inner: Arc::new(inner),
            },
            events_rx,
        ))
    }

    /// What the server said in its `Welcome`.
    pub fn welcome(&self) -> &Welcome {
        &self.inner.welcome
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.closed).is_some()
    }

    /// Sends one request and waits for its reply. A business rejection is [`ClientError::Server`].
    pub async fn call(&self, body: RequestBody) -> Result<Reply, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.pending).insert(id, tx);
        if let Some(reason) = lock(&self.inner.closed).clone() {
            lock(&self.inner.pending).remove(&id);
            return Err(ClientError::Closed(reason));
        }
        let request = ClientMessage::Request(Request {
            id: RequestId(id),
            body,
        });
        if let Err(e) = self.inner.writer.lock().await.send(request).await {
            lock(&self.inner.pending).remove(&id);
            return Err(e.into());
        }
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(ClientError::Server(e)),
            Err(_) => Err(ClientError::Closed(
                lock(&self.inner.closed).clone().flatten(),
            )),
        }
    }
}

/// What the server's first frame after `Hello` means: its `Welcome`, or why there is none. Shared
/// with [`crate::direct::DirectClient`], so both clients read a handshake the same way.
pub(crate) fn welcome_from(
    first: Option<Result<ServerMessage, CodecError>>,
) -> Result<Welcome, ClientError> {
    match first {
        Some(Ok(ServerMessage::Welcome(w))) => Ok(w),
        Some(Ok(ServerMessage::Refused(e))) | Some(Ok(ServerMessage::Closing(e))) => {
            Err(ClientError::Refused(e))
        }
        Some(Ok(_)) => Err(ClientError::BadHandshake),
        Some(Err(e)) => Err(e.into()),
        None => Err(ClientError::Closed(None)),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain maps behind, which are still consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FramedRead<R, ClientCodec>,
    pending: Pending,
    closed: Arc<Mutex<Option<Option<WireError>>>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut reason = None;
    while let Some(frame) = reader.next().await {
        match frame {
            Ok(ServerMessage::Response(r)) => {
                if let Some(tx) = lock(&pending).remove(&r.id.0) {
                    let _ = tx.send(r.result);
                }
            }
            Ok(ServerMessage::Event(e)) => {
                let _ = events.send(e);
            }
            Ok(ServerMessage::Closing(e)) | Ok(ServerMessage::Refused(e)) => {
                reason = Some(e);
                break;
            }
            Ok(ServerMessage::Welcome(_)) => {}
            Err(_) => break,
        }
    }
    *lock(&closed) = Some(reason);
    // Dropping the senders wakes every caller still waiting, with `Closed`.
    lock(&pending).clear();
}
