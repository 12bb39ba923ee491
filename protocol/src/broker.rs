//! Names and payloads that the distributor and manufacturers share on the message broker (NATS
//! JetStream), when sale notices travel through it instead of the manufacturer's TCP link.
//!
//! - stream [`SALES_STREAM`], one subject per manufacturer of each cluster: [`NoticeFeed::subject`],
//!   which the distributor names to the manufacturer ([`NoticeFeed`]);
//! - each message is one [`Notice`], encoded by [`encode_notice`], with the `Nats-Msg-Id`
//!   [`NoticeFeed::message_id`] so that a re-publish of the same notice is dropped as a duplicate;
//! - each manufacturer reads its subject through the durable consumer [`NoticeFeed::consumer`].

use crate::codec::MAX_SERVER_FRAME;
use crate::codec::{decode_server_payload, encode_payload, CodecError};
use crate::{Notice, NoticeSeq};
use serde::{Deserialize, Serialize};

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

/// Where one manufacturer of one distributor finds its notices on the broker. The distributor names
/// it in answer to [`crate::RequestBody::NoticesFromBroker`], so a manufacturer never has to know
/// which cluster it sells through. Everything in it sits under the cluster's name as well as the
/// manufacturer's, so that two distributors (or clusters) sharing one nats-server, each with a
/// manufacturer of the same name, never read, ack or de-duplicate each other's notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeFeed {
    /// The stream: [`SALES_STREAM`].
    pub stream: String,
    /// The subject the notices are published on: `sales.<cluster>.<manufacturer>`.
    pub subject: String,
    /// The durable pull consumer the manufacturer reads them through: `<cluster>_<manufacturer>`
    /// (a `_` inside either name is escaped by [`name_token`], so the joint cannot be ambiguous).
    pub consumer: String,
}

impl NoticeFeed {
    /// The feed of `manufacturer` in the cluster named `cluster` (both any text).
    pub fn new(cluster: &str, manufacturer: &str) -> NoticeFeed {
        let (cluster, manufacturer) = (name_token(cluster), name_token(manufacturer));
        NoticeFeed {
            stream: SALES_STREAM.to_string(),
            subject: format!("sales.{cluster}.{manufacturer}"),
            consumer: format!("{cluster}_{manufacturer}"),
        }
    }

    /// The `Nats-Msg-Id` of a notice: `<consumer>:<seq>`. The same notice always gets the same id,
    /// so JetStream drops a re-publish within the stream's duplicate window; a notice of another
    /// feed never has it.
    pub fn message_id(&self, seq: NoticeSeq) -> String {
        format!("{}:{}", self.consumer, seq.0)
    }
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
        assert_eq!(
            NoticeFeed::new("cds-shop", "Acme Farms").subject,
            "sales.cds-shop.Acme_20Farms"
        );
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
    fn feeds_of_two_clusters_or_two_makers_share_no_subject_consumer_or_message_id() {
        let feeds = [
            NoticeFeed::new("east", "Bulk"),
            NoticeFeed::new("west", "Bulk"),
            NoticeFeed::new("east", "Bulk2"),
            // The joint between the two names cannot be shifted: `_` is escaped in both.
            NoticeFeed::new("a_b", "c"),
            NoticeFeed::new("a", "b_c"),
        ];
        for (i, a) in feeds.iter().enumerate() {
            assert!(
                a.subject.starts_with("sales."),
                "{a:?} is outside the stream"
            );
            for b in &feeds[i + 1..] {
                assert_ne!(a.subject, b.subject);
                assert_ne!(a.consumer, b.consumer);
                assert_ne!(a.message_id(NoticeSeq(1)), b.message_id(NoticeSeq(1)));
            }
        }
        assert_eq!(
            feeds[0],
            NoticeFeed::new("east", "Bulk"),
            "a feed is stable"
        );
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
        assert_eq!(
            NoticeFeed::new("east", "orchard").message_id(notice.seq),
            "east_orchard:7"
        );
    }
}
