//! Arbitrary payloads into the message decoders. Decoding must never panic; whatever decodes must
//! encode again and decode to the same message, and that encoding must be stable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::codec::{decode_client_payload, decode_server_payload, encode_payload};
use protocol::{ClientMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_client_payload::<ClientMessage>(data) {
        let encoded = encode_payload(&message, usize::MAX).expect("a decoded message encodes");
        let again: ClientMessage =
            decode_client_payload(&encoded).expect("a re-encoded message decodes");
        assert_eq!(message, again);
        let twice = encode_payload(&again, usize::MAX).expect("encodes twice");
        assert_eq!(encoded, twice, "encoding is not stable");
    }
    if let Ok(message) = decode_server_payload::<ServerMessage>(data) {
        let encoded = encode_payload(&message, usize::MAX).expect("a decoded message encodes");
        let again: ServerMessage =
            decode_server_payload(&encoded).expect("a re-encoded message decodes");
        assert_eq!(message, again);
        let twice = encode_payload(&again, usize::MAX).expect("encodes twice");
        assert_eq!(encoded, twice, "encoding is not stable");
    }
});
