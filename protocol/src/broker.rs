//! Names and payloads that the distributor and manufacturers share on the message broker (NATS
//! JetStream), when sale notices travel through it instead of the manufacturer's TCP link.
//!
//! - stream [`SALES_STREAM`], one subject per manufacturer: [`sales_subject`];
//! - each message is one [`Notice`], encoded by [`encode_notice`], with the `Nats-Msg-Id`
//!   [`message_id`] so that a re-publish of the same notice is dropped as a duplicate;
//! - each manufacturer reads its subject through a durable consumer named [`consumer_name`].

use crate::codec::MAX_SERVER_FRAME;
use crate::codec::{decode_server_payload, encode_payload, CodecError};
use crate::{Notice, NoticeSeq};

/// The JetStream stream that carries sale notices.
pub const SALES_STREAM: &str = "SALES";

/// Every subject of [`SALES_STREAM`].
pub const SALES_SUBJECTS: &str = "sales.>";

/// A manufacturer's name as one NATS subject token (and consumer name): letters, digits and `-`
/// stay; every other byte becomes `_` and two hex digits. `_` itself is escaped, so two names never
/// share a token (a subject token cannot hold spaces, `.`, `*` or `>`).
pub fn name_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => out.push(byte as char),
            other => out.push_str(&format!("_{other:02x}")),
        }
    }
    out
}

/// The subject a manufacturer's notices are published on: `sales.<manufacturer>`.
pub fn sales_subject(manufacturer: &str) -> String {
    format!("sales.{}", name_token(manufacturer))
}

/// The durable pull consumer a manufacturer reads its subject through: named after itself.
pub fn consumer_name(manufacturer: &str) -> String {
    name_token(manufacturer)
}

/// The `Nats-Msg-Id` of a notice: `<manufacturer>:<seq>`. The same notice always gets the same id,
/// so JetStream drops a re-publish within the stream's duplicate window.
pub fn message_id(manufacturer: &str, seq: NoticeSeq) -> String {
    format!("{}:{}", name_token(manufacturer), seq.0)
}

/// One notice as a message payload.
pub fn encode_notice(notice: &Notice) -> Result<Vec<u8>, CodecError> {
    encode_payload(notice, MAX_SERVER_FRAME)
}

/// A message payload back into its notice.
pub fn decode_notice(payload: &[u8]) -> Result<Notice, CodecError> {
    decode_server_payload(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_distinct_subject_tokens_without_dots_spaces_or_wildcards() {
        assert_eq!(name_token("orchard"), "orchard");
        assert_eq!(sales_subject("Acme Farms"), "sales.Acme_20Farms");
        assert_ne!(name_token("a_20b"), name_token("a b"));
        for name in ["a.b", "a*b", "a>b", "a b", "Äpfel"] {
            let token = name_token(name);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{name:?} → {token:?}"
            );
        }
    }

    #[test]
    fn a_notice_survives_the_payload_round_trip() {
        let notice = Notice {
            seq: NoticeSeq(7),
            body: crate::NoticeBody::Sale(crate::SaleNotice {
                month: crate::MonthId(3),
                order: crate::OrderId(9),
                lines: Vec::new(),
            }),
        };
        let payload = encode_notice(&notice).unwrap();
        assert_eq!(decode_notice(&payload).unwrap(), notice);
        assert_eq!(message_id("orchard", notice.seq), "orchard:7");
    }
}
