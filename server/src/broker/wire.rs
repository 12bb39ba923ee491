//! The messages nodes exchange on NATS in cluster mode: requests an edge forwards to the market
//! node, the market's replies, and what the market publishes for every edge to fan out.
//!
//! A [`crate::engine::Command`] carries channels, so it cannot travel; [`MarketRequest`] is its
//! serializable twin, and [`MarketReply`] the answer. Payloads are encoded by
//! [`protocol::codec::encode_bus`] (bincode, like the client protocol).
//!
//! Subjects:
//! - requests: one per command family, `market.cart`, `market.checkout`, `market.offer`,
//!   `market.ack`, `market.month`, `market.operator`, `market.account`, `market.link`
//!   ([`MarketRequest::subject`]); the market node serves them all through one queue subscription
//!   on [`Subjects::requests`], so it sees them in the order each edge sent them;
//! - events: `events.catalog`, `events.levels`, `events.order.<account>`, `events.month`,
//!   `events.outbox`, `events.status`, `events.revoke`, `events.link.<link>` ([`MarketEvent::subject`]); every node subscribes to
//!   [`Subjects::events`];
//! - all of them under the cluster's own first token ([`Subjects`]): `cds-shop.market.checkout`.

use crate::engine::{Admitted, CartOp};
use protocol::*;
use serde::{Deserialize, Serialize};

/// The queue group of the market service: if two nodes ever subscribe at once (a paused old holder
/// that has not noticed yet), each request still reaches only one of them, and the fenced writer
/// refuses the stale one's writes.
pub const MARKET_QUEUE: &str = "market";

/// One cluster's subjects: every subject above under the cluster's own first token, so that two
/// clusters on one nats-server (two deployments, or tests run side by side) never answer or feed
/// each other. Every node of a cluster must use the same name: by default it comes from the
/// PostgreSQL database's name, which they share ([`Subjects::for_database`]); `--cluster` sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The subjects of the cluster named `cluster` (any text: it is escaped to one subject token).
    pub fn new(cluster: &str) -> Subjects {
        Subjects {
            prefix: protocol::broker::name_token(cluster),
        }
    }

    /// The default: named after the database the cluster's nodes share.
    pub fn for_database(database: &str) -> Subjects {
        Subjects::new(&super::cluster_for_database(database))
    }

    /// Every request subject: what the market node subscribes to.
    pub fn requests(&self) -> String {
        format!("{}.market.>", self.prefix)
    }

    /// Every event subject: what each node subscribes to.
    pub fn events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Where `request` is sent.
    pub fn request(&self, request: &MarketRequest) -> String {
        format!("{}.{}", self.prefix, request.subject())
    }

    /// Where `event` is published.
    pub fn event(&self, event: &MarketEvent) -> String {
        format!("{}.{}", self.prefix, event.subject())
    }
}

/// The most listings in one [`MarketEvent::Catalog`] part: a few hundred KB.
pub const CATALOG_PART_ITEMS: usize = 2048;

/// A market command as it travels from an edge to the market node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarketRequest {
    /// [`crate::engine::Command::Cart`].
    Cart {
        /// Whose cart.
        account: AccountId,
        /// What to do with it.
        op: CartOp,
    },
    /// [`crate::engine::Command::Checkout`]: retried under the same checkout id after a timeout.
    Checkout {
        /// The buyer.
        account: AccountId,
        /// Chosen by the client; the market deduplicates it.
        checkout_id: CheckoutId,
        /// `None`: the cart.
        lines: Option<Vec<CartItem>>,
        /// What the customer agreed to pay.
        confirmed: Cents,
    },
    /// [`crate::engine::Command::SubmitOffer`].
    Offer {
        /// Who offers.
        manufacturer: ManufacturerId,
        /// For which month.
        month: MonthId,
        /// What.
        lines: Vec<OfferLine>,
    },
    /// [`crate::engine::Command::Ack`] (cumulative, so a repeat is harmless).
    Ack {
        /// Who acks.
        manufacturer: ManufacturerId,
        /// The highest applied notice.
        through: NoticeSeq,
    },
    /// [`crate::engine::Command::CloseMonth`].
    CloseMonth,
    /// [`crate::engine::Command::SetMonthLength`].
    SetMonthLength {
        /// Seconds.
        secs: u64,
    },
    /// [`crate::engine::Command::Status`].
    Status,
    /// [`crate::engine::Command::RevokeManufacturer`].
    RevokeManufacturer {
        /// The manufacturer's name.
        name: String,
    },
    /// [`crate::engine::Command::CustomerLoggedIn`].
    CustomerLoggedIn {
        /// Who.
        account: AccountId,
    },
    /// The customers logged in on one edge when a month opened: each is active in it, as with
    /// [`crate::engine::Command::CustomerLoggedIn`] (the market cannot see who is logged in where).
    CustomersActive {
        /// Who.
        accounts: Vec<AccountId>,
    },
    /// [`crate::engine::Command::CardChanged`] (the card itself was written by the edge).
    CardChanged {
        /// Whose card.
        account: AccountId,
        /// Its expiry year and month; `None`: removed.
        expiry: Option<(u16, u8)>,
    },
    /// [`crate::engine::Command::DeleteAccount`]: the market forgets the account and deletes it.
    DeleteAccount {
        /// Which.
        account: AccountId,
    },
    /// [`crate::engine::Command::ManufacturerHello`]: a manufacturer connected to an edge; its
    /// pushes travel back on `events.link.<link>`.
    ManufacturerHello {
        /// Its name.
        name: String,
        /// Its credential, if any.
        key: Option<String>,
        /// The edge's name for this connection (a subject token).
        link: String,
    },
    /// [`crate::engine::Command::ManufacturerGone`].
    ManufacturerGone {
        /// Its id.
        manufacturer: ManufacturerId,
        /// The link named in its hello.
        link: String,
    },
}

impl MarketRequest {
    /// The subject of this request's command family.
    pub fn subject(&self) -> &'static str {
        match self {
            MarketRequest::Cart { .. } => "market.cart",
            MarketRequest::Checkout { .. } => "market.checkout",
            MarketRequest::Offer { .. } => "market.offer",
            MarketRequest::Ack { .. } => "market.ack",
            MarketRequest::CloseMonth | MarketRequest::SetMonthLength { .. } => "market.month",
            MarketRequest::Status | MarketRequest::RevokeManufacturer { .. } => "market.operator",
            MarketRequest::CustomerLoggedIn { .. } | MarketRequest::CustomersActive { .. } => {
                "market.account"
            }
            MarketRequest::CardChanged { .. } | MarketRequest::DeleteAccount { .. } => {
                "market.account"
            }
            MarketRequest::ManufacturerHello { .. } | MarketRequest::ManufacturerGone { .. } => {
                "market.link"
            }
        }
    }

    /// Whether sending it again after a timeout is safe: the market applies it at most once
    /// (a checkout under its id), or applying it twice is the same as once. A request that found no
    /// market at all ("no responders") was never applied, and is always retried.
    pub fn retry_on_timeout(&self) -> bool {
        match self {
            MarketRequest::Cart { op, .. } => !matches!(op, CartOp::Add(..)),
            MarketRequest::Checkout { .. } => true,
            MarketRequest::Ack { .. } => true,
            MarketRequest::Status => true,
            MarketRequest::SetMonthLength { .. } => true,
            MarketRequest::CustomerLoggedIn { .. } => true,
            MarketRequest::CustomersActive { .. } => true,
            MarketRequest::CardChanged { .. } => true,
            MarketRequest::DeleteAccount { .. } => true,
            MarketRequest::ManufacturerGone { .. } => true,
            MarketRequest::Offer { .. } => false,
            MarketRequest::CloseMonth => false,
            MarketRequest::RevokeManufacturer { .. } => false,
            MarketRequest::ManufacturerHello { .. } => false,
        }
    }
}

impl MarketRequest {
    /// Whether the command can change what the catalog shows, so that its answer carries an
    /// [`Answered::stock`] mark.
    pub fn changes_the_board(&self) -> bool {
        matches!(
            self,
            MarketRequest::Checkout { .. }
                | MarketRequest::Offer { .. }
                | MarketRequest::CloseMonth
        )
    }
}

/// The market's answer, with the lease epoch ("term") of the node that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// The lease epoch of the market node that answered.
    pub term: i64,
    /// The answer.
    pub reply: MarketReply,
    /// For a command that changes what the catalog shows (a checkout, an offer, a month closed):
    /// the market's board as it was when the answer was given, which includes the command. The
    /// market publishes those levels before the answer, and the edge holds the answer back until
    /// its own board has them, so a client reads its own write on the node it asked.
    pub stock: Option<StockMark>,
}

/// A position on the market's board: its catalog epoch and levels version, in the answering term.
/// Positions compare in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StockMark {
    /// The catalog epoch.
    pub epoch: u64,
    /// The levels version.
    pub version: u64,
}

/// What the market answers, by the kind of command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarketReply {
    /// A client request's answer (cart, checkout, offer, ack, month, revoke).
    Answer(Result<Reply, WireError>),
    /// The operator's status.
    Status(Box<SystemStatus>),
    /// A manufacturer's hello: its id, last acked notice, and a credential if one was issued.
    Admitted(Result<Admitted, WireError>),
    /// An account delete: `Err` holds the store's reason.
    Deleted(Result<(), String>),
    /// A command that answers nothing (logged in, card changed, link gone) was taken.
    Taken,
}

/// What the market node publishes for every edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarketEvent {
    /// One part of the catalog, when it changed (offers, a month turned) or in the periodic repeat
    /// for late joiners. A big catalog travels in parts of at most [`CATALOG_PART_ITEMS`] listings,
    /// numbered from 0, so that no message outgrows the bus.
    Catalog {
        /// The market's lease epoch.
        term: i64,
        /// The market's catalog epoch.
        epoch: u64,
        /// Which part, from 0.
        part: u32,
        /// Whether it is the last part.
        last: bool,
        /// The month and version, and this part's listings.
        snapshot: CatalogSnapshot,
    },
    /// Stock levels, coalesced.
    Levels {
        /// The market's lease epoch.
        term: i64,
        /// Bumped on every change.
        version: u64,
        /// The catalog epoch they belong to.
        epoch: u64,
        /// Listing → remaining.
        remaining: Vec<(ListingId, u32)>,
    },
    /// A push to every session of one account (order status).
    ToAccount {
        /// Whose.
        account: AccountId,
        /// What.
        event: Event,
    },
    /// A push to every connection (month opened or closed).
    ToEveryone(Event),
    /// A manufacturer's outbox is durable through `through`.
    OutboxDurable {
        /// Whose outbox.
        manufacturer: ManufacturerId,
        /// The highest durable notice.
        through: NoticeSeq,
    },
    /// From an edge: end the live connections of `account` on every node that use one of `tokens`,
    /// or, with `all_but`, every one but the one with that token (a password change).
    Revoke {
        /// Whose.
        account: AccountId,
        /// Token hashes whose connections end.
        tokens: Vec<[u8; 32]>,
        /// End every connection but the one with this token hash.
        all_but: Option<[u8; 32]>,
    },
    /// The operator's status, for operators watching on any node.
    Status(Box<SystemStatus>),
    /// For one manufacturer link on an edge.
    ToLink {
        /// The link named in its hello.
        link: String,
        /// What.
        message: LinkMessage,
    },
}

/// What the market tells one manufacturer link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkMessage {
    /// A push (`OfferRequested`).
    Event(Event),
    /// The market dropped the link: a newer connection took the name, or its credential was
    /// revoked. The edge closes the connection.
    Ended,
}

impl MarketEvent {
    /// The subject it is published on.
    pub fn subject(&self) -> String {
        match self {
            MarketEvent::Catalog { .. } => "events.catalog".into(),
            MarketEvent::Levels { .. } => "events.levels".into(),
            MarketEvent::ToAccount { account, .. } => format!("events.order.{}", account.0),
            MarketEvent::ToEveryone(_) => "events.month".into(),
            MarketEvent::OutboxDurable { .. } => "events.outbox".into(),
            MarketEvent::Status(_) => "events.status".into(),
            MarketEvent::Revoke { .. } => "events.revoke".into(),
            MarketEvent::ToLink { link, .. } => format!("events.link.{link}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::codec::{decode_bus, encode_bus};

    #[test]
    fn every_forwarded_command_survives_the_bus_round_trip() {
        let requests = vec![
            MarketRequest::Cart {
                account: AccountId(3),
                op: CartOp::Add(ListingId(9), 2),
            },
            MarketRequest::Checkout {
                account: AccountId(3),
                checkout_id: CheckoutId(u128::MAX - 7),
                lines: Some(vec![CartItem {
                    listing: ListingId(9),
                    quantity: 2,
                }]),
                confirmed: Cents(1_234),
            },
            MarketRequest::Ack {
                manufacturer: ManufacturerId(1),
                through: NoticeSeq(40),
            },
            MarketRequest::CardChanged {
                account: AccountId(3),
                expiry: Some((2031, 12)),
            },
            MarketRequest::CustomersActive {
                accounts: (1..=10_000).map(AccountId).collect(),
            },
            MarketRequest::ManufacturerHello {
                name: "orchard".into(),
                key: None,
                link: "a-1-2".into(),
            },
        ];
        for request in requests {
            let payload = encode_bus(&request).unwrap();
            assert_eq!(decode_bus::<MarketRequest>(&payload).unwrap(), request);
        }
    }

    #[test]
    fn a_refusal_and_a_published_level_survive_the_bus_round_trip() {
        let answered = Answered {
            term: 4,
            reply: MarketReply::Answer(Err(WireError::new(ErrorCode::OutOfStock, "gone"))),
            stock: Some(StockMark {
                epoch: 2,
                version: 17,
            }),
        };
        let payload = encode_bus(&answered).unwrap();
        assert_eq!(decode_bus::<Answered>(&payload).unwrap(), answered);
        let levels = MarketEvent::Levels {
            term: 4,
            version: 17,
            epoch: 2,
            remaining: vec![(ListingId(1), 5)],
        };
        let payload = encode_bus(&levels).unwrap();
        assert_eq!(decode_bus::<MarketEvent>(&payload).unwrap(), levels);
    }

    #[test]
    fn a_clusters_subjects_sit_under_one_escaped_token_of_its_name() {
        let shop = Subjects::for_database("shop");
        assert_eq!(
            shop.request(&MarketRequest::CloseMonth),
            "cds-shop.market.month"
        );
        assert_eq!(shop.requests(), "cds-shop.market.>");
        assert_eq!(shop.events(), "cds-shop.events.>");
        let levels = MarketEvent::Levels {
            term: 1,
            version: 1,
            epoch: 1,
            remaining: Vec::new(),
        };
        assert_eq!(shop.event(&levels), "cds-shop.events.levels");
        // A name with a dot or a wildcard stays one token, so it cannot reach another's subjects.
        assert_eq!(Subjects::new("a.b>").requests(), "a_2eb_3e.market.>");
    }

    #[test]
    fn a_payload_with_bytes_left_over_is_refused() {
        let mut payload = encode_bus(&MarketRequest::Status).unwrap();
        payload.push(0);
        assert!(decode_bus::<MarketRequest>(&payload).is_err());
    }

    #[test]
    fn only_requests_that_apply_at_most_once_are_retried_after_a_timeout() {
        let add = MarketRequest::Cart {
            account: AccountId(1),
            op: CartOp::Add(ListingId(1), 1),
        };
        let view = MarketRequest::Cart {
            account: AccountId(1),
            op: CartOp::View,
        };
        assert!(!add.retry_on_timeout());
        assert!(view.retry_on_timeout());
        assert!(!MarketRequest::CloseMonth.retry_on_timeout());
        assert_eq!(MarketRequest::CloseMonth.subject(), "market.month");
        let to_account = MarketEvent::ToAccount {
            account: AccountId(12),
            event: Event::MonthClosed {
                month: MonthId(1),
                reason: CloseReason::Operator,
            },
        };
        assert_eq!(to_account.subject(), "events.order.12");
    }
}
