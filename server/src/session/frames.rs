//! Frames: bytes to requests and replies to bytes, the one place that reads or writes the socket.
//!
//! Replies and pushes are queued into one buffer and written by `flush`, so that a burst costs one
//! write. Every write is bounded by the frame timeout, so a client that never reads cannot pin us.
//! Reads have two deadlines: a half-received frame must finish within `frame_timeout` of the last
//! complete one, while a connection between frames may stay quiet for `idle_timeout`.

use super::{err, End, Session};
use bytes::BytesMut;
use protocol::codec::CodecError;
use protocol::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Writes one message, bounded by the frame timeout so a client that never reads cannot pin us.
    pub(super) async fn send(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.queue(message)?;
        self.flush().await
    }

    pub(super) fn queue(&mut self, message: &ServerMessage) -> Result<(), End> {
        self.codec.encode(message, &mut self.wbuf).map_err(|e| {
            tracing::error!(error = %e, "cannot encode a reply");
            End::Gone
        })
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
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
    pub(super) async fn next_message(&mut self, deadline: Instant) -> Result<ClientMessage, End> {
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => return Err(self.violation(e)),
            }
            self.make_room();
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

    /// Keeps room in the read buffer for the next read.
    pub(super) fn make_room(&mut self) {
        if self.rbuf.capacity() - self.rbuf.len() < 256 {
            self.rbuf.reserve(1024);
        }
    }

    /// When the connection times out unless more bytes come: see the module doc.
    pub(super) fn read_deadline(&self) -> Instant {
        let config = &self.shared.config;
        match self.partial_since {
            Some(since) => since + config.frame_timeout,
            None => self.last_activity + config.idle_timeout,
        }
    }

    /// Why the read deadline passed.
    pub(super) fn timed_out(&self) -> End {
        let msg = match self.partial_since {
            Some(_) => "no complete frame in time",
            None => "idle too long",
        };
        End::Close(err(ErrorCode::Timeout, msg))
    }

    pub(super) fn violation(&self, e: CodecError) -> End {
        if e.is_protocol_violation() {
            tracing::info!(peer = %self.peer, error = %e, "malformed frame");
            End::Close(err(ErrorCode::Malformed, &format!("malformed frame: {e}")))
        } else {
            End::Gone
        }
    }

    /// Answers every whole request in the read buffer, in order, and notes whether a frame is left
    /// half-received.
    pub(super) async fn on_bytes(&mut self) -> Result<(), End> {
        self.last_activity = Instant::now();
        let mut completed_a_frame = false;
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(ClientMessage::Request(request))) => {
                    completed_a_frame = true;
                    let result = self.handle(request.body).await;
                    self.queue_waiting_pushes()?;
                    self.queue_due_stock()?;
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
}
