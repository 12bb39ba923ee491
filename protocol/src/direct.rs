//! A client connection with a single owner: no task, no channel, no lock.
//!
//! [`crate::client::Client`] can be shared and hears pushes at any moment, which costs a reader task
//! per connection, a map of waiting callers and a wake-up hand-off for every reply. A caller that
//! owns its connection and asks one thing at a time needs none of that: [`DirectClient::call`] writes
//! the request and reads frames itself until the response with that id arrives. Pushed events that
//! arrive meanwhile are kept, in order, for [`DirectClient::try_event`] and
//! [`DirectClient::next_event`]. `loadgen`'s customers use it, so that the load generator costs about
//! what the bare echo client costs per request.
//!
//! Errors mean what they mean for `Client`: a business rejection is [`ClientError::Server`]; a
//! `Closing` or `Refused` frame ends the connection with [`ClientError::Closed`] and the server's
//! reason; a dropped connection or an unreadable frame is `Closed(None)`.
//!
//! A response whose id is not the one awaited is skipped: it can only answer an earlier call whose
//! future was dropped (a timeout) before its answer came, and that caller is gone.

use crate::client::{welcome_from, ClientError};
use crate::codec::{encode_payload, ClientCodec, MAX_CLIENT_FRAME};
use crate::dial::{self, Transport};
use crate::error::WireError;
use crate::message::*;
use crate::types::RequestId;
use bytes::BufMut;
use futures::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use std::collections::VecDeque;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

/// A connected, handshaken client driven by its one owner. See the [module docs](self).
pub struct DirectClient {
    frames: Framed<Pin<Box<dyn ReadWrite>>, ClientCodec>,
    /// Pushes read while waiting for a response, oldest first.
    events: VecDeque<Event>,
    next_id: u64,
    /// `Some` once the connection has ended, with the server's reason if it gave one.
    closed: Option<Option<WireError>>,
    welcome: Welcome,
}

/// Any stream a handshake can run over; pinned in a box, so it need not be `Unpin`.
trait ReadWrite: AsyncRead + AsyncWrite + Send {}

impl<T: AsyncRead + AsyncWrite + Send> ReadWrite for T {}

/// `ClientMessage::Request` with a borrowed body, so a caller can send the same body again (a
/// same-id checkout retry) without cloning it first. It serializes to exactly the bytes of the owned
/// message (a test compares the two encodings).
struct OutgoingRequest<'a> {
    id: RequestId,
    body: &'a RequestBody,
}

/// The fields of [`Request`], borrowed, in its order.
#[derive(Serialize)]
struct RequestFields<'a> {
    id: RequestId,
    body: &'a RequestBody,
}

impl Serialize for OutgoingRequest<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = RequestFields {
            id: self.id,
            body: self.body,
        };
        // `Request` is variant 1 of `ClientMessage`, after `Hello`.
        serializer.serialize_newtype_variant("ClientMessage", 1, "Request", &fields)
    }
}

/// A frame after the handshake, as a call or an event read sees it.
enum Incoming {
    Response(Response),
    Event(Event),
    /// A stray `Welcome`: ignored.
    Other,
}

impl DirectClient {
    /// Connects over plain TCP and shakes hands.
    pub async fn connect(addr: &str, hello: Hello) -> Result<DirectClient, ClientError> {
        Self::handshake(dial::tcp(addr).await?, hello).await
    }

    /// Connects over TLS when `tls_ca` names a CA certificate (PEM) to trust, else over plain TCP.
    /// The server's certificate must be valid for the host part of `addr`.
    pub async fn connect_with(
        addr: &str,
        tls_ca: Option<&std::path::Path>,
        hello: Hello,
    ) -> Result<DirectClient, ClientError> {
        Self::connect_from(addr, None, tls_ca, hello).await
    }

    /// As [`DirectClient::connect_with`], from the local address `source` when one is given (a load
    /// generator playing customers at their own addresses).
    pub async fn connect_from(
        addr: &str,
        source: Option<std::net::SocketAddr>,
        tls_ca: Option<&std::path::Path>,
        hello: Hello,
    ) -> Result<DirectClient, ClientError> {
        match tls_ca {
            None => Self::handshake(dial::tcp_from(addr, source).await?, hello).await,
            Some(_) => {
                let stream: Box<dyn Transport> = dial::dial(addr, source, tls_ca).await?;
                Self::handshake(stream, hello).await
            }
        }
    }

    /// Shakes hands over an already connected stream (plain TCP, TLS, or a test proxy).
    pub async fn handshake<S>(stream: S, hello: Hello) -> Result<DirectClient, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let stream: Pin<Box<dyn ReadWrite>> = Box::pin(stream);
        let mut frames = Framed::new(stream, ClientCodec::new());
        frames.send(ClientMessage::Hello(hello)).await?;
        let welcome = welcome_from(frames.next().await)?;
        Ok(DirectClient {
            frames,
            events: VecDeque::new(),
            next_id: 1,
            closed: None,
            welcome,
        })
    }

    /// What the server said in its `Welcome`.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Whether the connection is known to have ended. Nothing reads in the background, so a close is
    /// noticed by the next call or event read.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Sends one request and waits for its reply. A business rejection is [`ClientError::Server`].
    pub async fn call(&mut self, body: RequestBody) -> Result<Reply, ClientError> {
        self.call_ref(&body).await
    }

    /// [`DirectClient::call`] with a borrowed body, for a caller that may send it again.
    ///
    /// Dropping the future before it finishes is safe: a request already written is answered later
    /// and that answer skipped; one partly written is finished by the next call's flush.
    pub async fn call_ref(&mut self, body: &RequestBody) -> Result<Reply, ClientError> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, body).await?;
        loop {
            match self.read().await? {
                Incoming::Response(r) if r.id.0 == id => {
                    return r.result.map_err(ClientError::Server)
                }
                Incoming::Event(e) => self.events.push_back(e),
                // An earlier, abandoned call's answer (see the module docs).
                Incoming::Response(_) | Incoming::Other => {}
            }
        }
    }

    /// The oldest push not taken yet, if one has arrived; never waits.
    pub fn try_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        // Bounded by what is already readable: each turn consumes a frame, and a frame that has not
        // fully arrived leaves the read pending.
        loop {
            match self.read().now_or_never()? {
                Ok(Incoming::Event(e)) => return Some(e),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The oldest push not taken yet, waiting for one if none has arrived. `None` once the
    /// connection has ended. Safe to drop before it finishes (under a timeout): no frame is lost.
    pub async fn next_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        loop {
            match self.read().await {
                Ok(Incoming::Event(e)) => return Some(e),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Writes one request frame and flushes it.
    async fn send(&mut self, id: u64, body: &RequestBody) -> Result<(), ClientError> {
        let request = OutgoingRequest {
            id: RequestId(id),
            body,
        };
        let payload = encode_payload(&request, MAX_CLIENT_FRAME)?;
        // `encode_payload` checked the length against a limit far below `u32::MAX`.
        let prefix = payload.len() as u32;
        let buffer = self.frames.write_buffer_mut();
        buffer.reserve(4 + payload.len());
        buffer.put_u32(prefix);
        buffer.extend_from_slice(&payload);
        if let Err(e) = SinkExt::<ClientMessage>::flush(&mut self.frames).await {
            self.closed = Some(None);
            return Err(e.into());
        }
        Ok(())
    }

    /// The next frame. `Closing`, `Refused`, the end of the stream and an unreadable frame end the
    /// connection and come back as [`ClientError::Closed`].
    async fn read(&mut self) -> Result<Incoming, ClientError> {
        if let Some(reason) = &self.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        let reason = match self.frames.next().await {
            Some(Ok(ServerMessage::Response(r))) => return Ok(Incoming::Response(r)),
            Some(Ok(ServerMessage::Event(e))) => return Ok(Incoming::Event(e)),
            Some(Ok(ServerMessage::Welcome(_))) => return Ok(Incoming::Other),
            Some(Ok(ServerMessage::Closing(e))) | Some(Ok(ServerMessage::Refused(e))) => Some(e),
            Some(Err(_)) | None => None,
        };
        self.closed = Some(reason.clone());
        Err(ClientError::Closed(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_payload;

    #[test]
    fn a_borrowed_request_encodes_to_the_bytes_of_the_owned_one() {
        let body = RequestBody::Checkout {
            checkout_id: crate::types::CheckoutId::from_parts(1_700_000_000_000, 42),
            lines: Some(vec![crate::message::CartItem {
                listing: crate::types::ListingId(7),
                quantity: 2,
            }]),
            confirmed_total: crate::types::Cents(1234),
        };
        let owned = ClientMessage::Request(Request {
            id: RequestId(99),
            body: body.clone(),
        });
        let borrowed = OutgoingRequest {
            id: RequestId(99),
            body: &body,
        };
        assert_eq!(
            encode_payload(&borrowed, MAX_CLIENT_FRAME).unwrap(),
            encode_payload(&owned, MAX_CLIENT_FRAME).unwrap()
        );
    }
}
