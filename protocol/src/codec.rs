//! Framing and serialization: a big-endian `u32` length prefix, then a bincode payload.
//!
//! This is the only file that names bincode, so switching formats later touches nothing else.
//!
//! Defences, in the order they apply:
//! - [`LengthDelimitedCodec`] refuses a length prefix above the limit as soon as it reads the four
//!   length bytes, before it reserves any buffer for the body.
//! - bincode decodes with a byte budget, so a length field inside the payload cannot make it
//!   allocate without bound. bincode counts decoded sizes, not wire bytes (a `u64` that takes one
//!   byte on the wire counts as eight), so the budget is [`DECODE_BUDGET_PER_BYTE`] times the frame.
//! - Bytes left over after a message decoded are an error: a frame carries exactly one message.

use crate::message::{ClientMessage, ServerMessage};
use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Largest frame a server accepts from a client. Requests are small; 64 KiB is generous.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// Largest frame a client accepts from a server. Catalogs and order lists are the big replies.
pub const MAX_SERVER_FRAME: usize = 4 * 1024 * 1024;

/// How many decoded bytes bincode may count per wire byte. The widest value, a `u128`, decodes to 16
/// bytes from one varint byte, so no valid frame can exceed this; a limit equal to the frame size
/// refused valid frames (a 48 KB offer counted as more than 64 KiB).
pub const DECODE_BUDGET_PER_BYTE: usize = 16;

/// bincode's limit is a const generic, so it is spelled out once per direction.
const CLIENT_LIMIT: usize = MAX_CLIENT_FRAME * DECODE_BUDGET_PER_BYTE;
const SERVER_LIMIT: usize = MAX_SERVER_FRAME * DECODE_BUDGET_PER_BYTE;

/// What can go wrong reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix announced more than the limit.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The announced length, if known.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The payload held a valid message followed by extra bytes.
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
    /// A message could not be encoded (it would exceed the frame limit).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl CodecError {
    /// True when the peer sent bytes that break the protocol, as opposed to a failing socket.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, CodecError::Io(_))
    }
}

/// Encodes one message into a payload (without the length prefix).
pub fn encode_payload<T: Serialize>(message: &T, max: usize) -> Result<Vec<u8>, CodecError> {
    let payload = bincode::serde::encode_to_vec(message, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if payload.len() > max {
        return Err(CodecError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(payload)
}

/// Decodes exactly one message from a payload of at most [`MAX_CLIENT_FRAME`] bytes.
pub fn decode_client_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<CLIENT_LIMIT>();
    finish(
        bincode::serde::decode_from_slice(payload, config),
        payload.len(),
    )
}

/// Decodes exactly one message from a payload of at most [`MAX_SERVER_FRAME`] bytes.
pub fn decode_server_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<SERVER_LIMIT>();
    finish(
        bincode::serde::decode_from_slice(payload, config),
        payload.len(),
    )
}

/// Largest message between the nodes of a cluster on the message bus: forwarded market commands,
/// their replies, and what the market publishes. The same as a server frame (a settlement of a big
/// catalog is one notice), within the 5 MB `max_payload` of `deploy/nats-server.conf`.
pub const MAX_BUS_PAYLOAD: usize = MAX_SERVER_FRAME;
const BUS_LIMIT: usize = MAX_BUS_PAYLOAD * DECODE_BUDGET_PER_BYTE;

/// Encodes one message for the bus between nodes (at most [`MAX_BUS_PAYLOAD`] bytes).
pub fn encode_bus<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    encode_payload(message, MAX_BUS_PAYLOAD)
}

/// Decodes exactly one message from the bus between nodes.
pub fn decode_bus<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    if payload.len() > MAX_BUS_PAYLOAD {
        return Err(CodecError::TooLarge {
            len: payload.len(),
            max: MAX_BUS_PAYLOAD,
        });
    }
    let config = bincode::config::standard().with_limit::<BUS_LIMIT>();
    finish(
        bincode::serde::decode_from_slice(payload, config),
        payload.len(),
    )
}

fn finish<T>(
    decoded: Result<(T, usize), bincode::error::DecodeError>,
    len: usize,
) -> Result<T, CodecError> {
    match decoded {
        Ok((message, used)) if used == len => Ok(message),
        Ok((_, used)) => Err(CodecError::TrailingBytes(len - used)),
        Err(e) => Err(CodecError::Malformed(e.to_string())),
    }
}

/// A typed codec for `tokio_util::codec::Framed`: decodes `In`, encodes `Out`.
///
/// Use [`ServerCodec`] on the server and [`ClientCodec`] on clients.
pub struct WireCodec<In, Out> {
    /// Reads incoming frames, refusing any above `max_in`.
    frames: LengthDelimitedCodec,
    /// Writes outgoing frames. A codec of its own, because `LengthDelimitedCodec` checks both
    /// directions against one limit: sharing `frames` capped the server's replies at the 64 KiB it
    /// accepts from clients instead of the 4 MiB clients accept from it.
    out_frames: LengthDelimitedCodec,
    /// True once `frames` has consumed a length prefix and waits for that frame's body. The next
    /// bytes in the buffer are then body bytes, not a prefix to check.
    in_body: bool,
    max_in: usize,
    max_out: usize,
    decode: fn(&[u8]) -> Result<In, CodecError>,
    _out: PhantomData<fn(Out)>,
}

/// The server's side: reads [`ClientMessage`]s, writes [`ServerMessage`]s.
pub type ServerCodec = WireCodec<ClientMessage, ServerMessage>;
/// A client's side: reads [`ServerMessage`]s, writes [`ClientMessage`]s.
pub type ClientCodec = WireCodec<ServerMessage, ClientMessage>;

impl ServerCodec {
    /// A codec that refuses client frames above [`MAX_CLIENT_FRAME`].
    pub fn new() -> Self {
        WireCodec::with_limits(MAX_CLIENT_FRAME, MAX_SERVER_FRAME, decode_client_payload)
    }
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientCodec {
    /// A codec that refuses server frames above [`MAX_SERVER_FRAME`].
    pub fn new() -> Self {
        WireCodec::with_limits(MAX_SERVER_FRAME, MAX_CLIENT_FRAME, decode_server_payload)
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> WireCodec<In, Out> {
    fn with_limits(
        max_in: usize,
        max_out: usize,
        decode: fn(&[u8]) -> Result<In, CodecError>,
    ) -> Self {
        let frames = |max| {
            LengthDelimitedCodec::builder()
                .length_field_length(4)
                .big_endian()
                .max_frame_length(max)
                .new_codec()
        };
        WireCodec {
            frames: frames(max_in),
            out_frames: frames(max_out),
            in_body: false,
            max_in,
            max_out,
            decode,
            _out: PhantomData,
        }
    }
}

impl<In, Out> WireCodec<In, Out> {
    /// Whether a frame has started (its prefix was consumed) but its body has not fully arrived.
    pub fn in_frame(&self) -> bool {
        self.in_body
    }
}

impl<In, Out> Decoder for WireCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        // Check a new prefix ourselves first so the error can say how big the frame claimed to be.
        // (`LengthDelimitedCodec` refuses it too, before reserving anything, but without the size.)
        let at_prefix = !self.in_body && src.len() >= 4;
        if at_prefix {
            let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
            if len > self.max_in {
                return Err(CodecError::TooLarge {
                    len,
                    max: self.max_in,
                });
            }
        }
        match self.frames.decode(src)? {
            Some(frame) => {
                self.in_body = false;
                (self.decode)(&frame).map(Some)
            }
            None => {
                self.in_body |= at_prefix;
                Ok(None)
            }
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for WireCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let payload = encode_payload(&message, self.max_out)?;
        self.out_frames.encode(Bytes::from(payload), dst)?;
        Ok(())
    }
}

impl<In, Out: Serialize> Encoder<&Out> for WireCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, message: &Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let payload = encode_payload(message, self.max_out)?;
        self.out_frames.encode(Bytes::from(payload), dst)?;
        Ok(())
    }
}

/// Encodes a message as a complete frame (prefix and payload), for tools that write raw bytes.
pub fn frame<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let payload = encode_payload(message, u32::MAX as usize)?;
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}
