//! Arbitrary bytes into the frame decoders ([`ServerCodec`] and [`ClientCodec`]), as a peer would
//! send them. The decoders must never panic or allocate past their limits, and must decode the same
//! messages (and fail the same way) whether the bytes arrive all at once or in small pieces, the
//! way TCP may deliver them.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::{ClientCodec, ServerCodec};
use std::fmt::Debug;
use tokio_util::codec::Decoder;

/// Feeds `data` to `codec` in pieces of `chunk` bytes, calling `decode` until it returns `None`
/// after each piece. Returns the messages decoded and the first error, after which a connection
/// would be closed.
fn decode_all<D>(mut codec: D, data: &[u8], chunk: usize) -> (Vec<D::Item>, Option<String>)
where
    D: Decoder,
    D::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(message)) => out.push(message),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

fn same_either_way<D>(make: impl Fn() -> D, data: &[u8], chunk: usize)
where
    D: Decoder,
    D::Item: PartialEq + Debug,
    D::Error: std::fmt::Display,
{
    let whole = decode_all(make(), data, data.len());
    let pieces = decode_all(make(), data, chunk);
    assert_eq!(whole, pieces, "decoding in {chunk}-byte pieces differs");
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size (1 to 8 bytes); the rest is what the peer sent.
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(pick % 8);
    same_either_way(ServerCodec::new, data, chunk);
    same_either_way(ClientCodec::new, data, chunk);
});
