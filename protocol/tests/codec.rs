//! Decoder tests: every message round-trips, and malformed input is refused cleanly.

use bytes::BytesMut;
use proptest::prelude::*;
use protocol::codec::{frame, MAX_CLIENT_FRAME};
use protocol::*;
use tokio_util::codec::{Decoder, Encoder};

fn any_string() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn any_cents() -> impl Strategy<Value = Cents> {
    any::<u64>().prop_map(Cents)
}

fn any_item() -> impl Strategy<Value = CartItem> {
    (any::<u32>(), any::<u32>()).prop_map(|(l, q)| CartItem {
        listing: ListingId(l),
        quantity: q,
    })
}

fn any_offer_line() -> impl Strategy<Value = OfferLine> {
    (
        any_string(),
        any_string(),
        any_string(),
        any::<u32>(),
        any_cents(),
    )
        .prop_map(|(sku, product, category, quantity, unit_price)| OfferLine {
            sku,
            product,
            category,
            quantity,
            unit_price,
        })
}

fn any_request_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        Just(RequestBody::Ping),
        (any_string(), any_string(), any_string(), any_string()).prop_map(|(a, b, c, d)| {
            RequestBody::SignUp(SignUp {
                first_name: a,
                last_name: b,
                email: c,
                password: d,
            })
        }),
        (any_string(), any_string())
            .prop_map(|(email, password)| RequestBody::LogIn { email, password }),
        any_string().prop_map(|t| RequestBody::Resume {
            token: SessionToken(t)
        }),
        Just(RequestBody::LogOut),
        Just(RequestBody::GetAccount),
        (
            proptest::option::of(any_string()),
            proptest::option::of(any_string()),
            proptest::option::of(any_string()),
            proptest::option::of((any_string(), any_string()))
        )
            .prop_map(|(first_name, last_name, email, password)| {
                RequestBody::UpdateAccount(AccountUpdate {
                    first_name,
                    last_name,
                    email,
                    password,
                })
            }),
        any_string().prop_map(|password| RequestBody::DeleteAccount { password }),
        (any_string(), any::<u8>(), any::<u16>(), any_string()).prop_map(|(n, m, y, c)| {
            RequestBody::SetCard(CardInput {
                number: n,
                exp_month: m,
                exp_year: y,
                cvc: c,
            })
        }),
        Just(RequestBody::RemoveCard),
        Just(RequestBody::Catalog),
        Just(RequestBody::GetCart),
        any_item().prop_map(|i| RequestBody::AddToCart {
            listing: i.listing,
            quantity: i.quantity
        }),
        any_item().prop_map(|i| RequestBody::SetCartQuantity {
            listing: i.listing,
            quantity: i.quantity
        }),
        any::<u32>().prop_map(|l| RequestBody::RemoveFromCart {
            listing: ListingId(l)
        }),
        Just(RequestBody::ClearCart),
        (
            any::<u128>(),
            proptest::option::of(proptest::collection::vec(any_item(), 0..4))
        )
            .prop_map(|(id, lines)| RequestBody::Checkout {
                checkout_id: CheckoutId(id),
                lines,
                confirmed_total: Cents(id as u64),
            }),
        Just(RequestBody::Orders),
        any::<u64>().prop_map(|o| RequestBody::GetOrder { order: OrderId(o) }),
        (
            any::<u32>(),
            proptest::collection::vec(any_offer_line(), 0..4)
        )
            .prop_map(|(m, lines)| RequestBody::SubmitOffer {
                month: MonthId(m),
                lines
            }),
        any::<u64>().prop_map(|s| RequestBody::AckNotices {
            through: NoticeSeq(s)
        }),
        any::<u64>().prop_map(|o| RequestBody::ReportDispatch { order: OrderId(o) }),
        proptest::collection::vec(any::<u64>(), 0..8).prop_map(|o| RequestBody::ReportDispatches {
            orders: o.into_iter().map(OrderId).collect()
        }),
        Just(RequestBody::CloseMonth),
        Just(RequestBody::Status),
        ".*".prop_map(|fingerprint| RequestBody::KeyLogIn { fingerprint }),
        ".*".prop_map(|fingerprint| RequestBody::RememberKey { fingerprint }),
        ".*".prop_map(|fingerprint| RequestBody::ForgetKey { fingerprint }),
        any::<u64>().prop_map(|secs| RequestBody::SetMonthLength { secs }),
        any::<u32>().prop_map(|l| RequestBody::CatalogPage {
            after: ListingId(l)
        }),
        any::<u64>().prop_map(|o| RequestBody::OrdersPage { before: OrderId(o) }),
        (
            any::<u32>(),
            proptest::collection::vec(any_offer_line(), 0..4),
            any::<bool>()
        )
            .prop_map(|(m, lines, last)| RequestBody::SubmitOfferPart {
                month: MonthId(m),
                lines,
                last
            }),
        any::<std::net::IpAddr>().prop_map(|ip| RequestBody::CustomerAddress { ip }),
        Just(RequestBody::NoticesFromBroker),
    ]
}

fn any_client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            any::<u16>(),
            prop_oneof![
                Just(Role::Customer),
                Just(Role::Manufacturer),
                Just(Role::Operator),
                Just(Role::Gateway)
            ],
            any_string(),
            proptest::option::of(any_string()),
            proptest::option::of(any_string())
        )
            .prop_map(
                |(version, role, client, name, key)| ClientMessage::Hello(Hello {
                    version,
                    role,
                    client,
                    name,
                    key
                })
            ),
        (any::<u64>(), any_request_body()).prop_map(|(id, body)| ClientMessage::Request(Request {
            id: RequestId(id),
            body
        })),
    ]
}

fn any_month() -> impl Strategy<Value = MonthView> {
    (any::<u32>(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(|(id, open, a, b)| {
        MonthView {
            id: MonthId(id),
            state: if open {
                MonthState::Open
            } else {
                MonthState::Closed
            },
            opened_at_ms: a,
            ends_at_ms: b,
        }
    })
}

fn any_catalog_item() -> impl Strategy<Value = CatalogItem> {
    (
        any::<u32>(),
        any::<u32>(),
        any_string(),
        any_string(),
        any_cents(),
        any::<u32>(),
    )
        .prop_map(|(l, m, name, sku, price, q)| CatalogItem {
            listing: ListingId(l),
            manufacturer: ManufacturerId(m),
            manufacturer_name: name.clone(),
            sku: sku.clone(),
            product: sku,
            category: name,
            unit_price: price,
            offered: q,
            remaining: q / 2,
        })
}

fn any_status() -> impl Strategy<Value = LineStatus> {
    prop_oneof![
        Just(LineStatus::Placed),
        Just(LineStatus::Confirmed),
        Just(LineStatus::Dispatched)
    ]
}

fn any_order() -> impl Strategy<Value = OrderView> {
    (
        any::<u64>(),
        any::<u128>(),
        any::<u32>(),
        proptest::collection::vec(
            (any::<u32>(), any_string(), any_cents(), any_status()),
            0..4,
        ),
    )
        .prop_map(|(id, checkout, month, lines)| OrderView {
            id: OrderId(id),
            checkout_id: CheckoutId(checkout),
            month: MonthId(month),
            placed_at_ms: id,
            total: Cents(7),
            lines: lines
                .into_iter()
                .map(|(l, name, price, status)| OrderLine {
                    listing: ListingId(l),
                    product: name.clone(),
                    manufacturer_name: name,
                    unit_price: price,
                    quantity: l,
                    line_total: price,
                    status,
                    status_at_ms: u64::from(l),
                })
                .collect(),
        })
}

fn any_error() -> impl Strategy<Value = WireError> {
    (
        any_string(),
        proptest::option::of(Just(Field::Email)),
        any::<u32>(),
    )
        .prop_map(|(message, field, n)| WireError {
            code: ErrorCode::OutOfStock,
            message: message.clone(),
            field,
            shortages: vec![Shortage {
                listing: ListingId(n),
                product: message.clone(),
                manufacturer: message,
                requested: n,
                available: n / 2,
            }],
            repriced: (n % 2 == 0).then(|| {
                Box::new(CartView {
                    lines: Vec::new(),
                    total: Cents(u64::from(n)),
                    adjustments: Vec::new(),
                })
            }),
        })
}

fn any_account() -> impl Strategy<Value = AccountView> {
    (
        any::<u64>(),
        any_string(),
        proptest::option::of(any::<u8>()),
    )
        .prop_map(|(id, name, card)| AccountView {
            id: AccountId(id),
            first_name: name.clone(),
            last_name: name.clone(),
            email: name,
            card: card.map(|m| CardView {
                brand: CardBrand::Visa,
                last4: "4242".into(),
                exp_month: m,
                exp_year: 2030,
            }),
        })
}

fn any_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Done),
        Just(Reply::Pong),
        (any_account(), any_string(), any::<u64>()).prop_map(|(account, t, exp)| {
            Reply::Session(SessionInfo {
                token: SessionToken(t),
                expires_at_ms: exp,
                account,
            })
        }),
        any_account().prop_map(Reply::Account),
        (
            proptest::option::of(any_month()),
            proptest::collection::vec(any_catalog_item(), 0..4),
            any::<u64>()
        )
            .prop_map(|(month, items, version)| Reply::Catalog(CatalogSnapshot {
                month,
                items,
                version
            })),
        (any::<u32>(), any_string(), any_cents()).prop_map(|(q, name, price)| Reply::Cart(
            CartView {
                lines: vec![CartLine {
                    listing: ListingId(q),
                    product: name.clone(),
                    manufacturer_name: name.clone(),
                    unit_price: price,
                    quantity: q,
                    available: q,
                }],
                total: price,
                adjustments: vec![CartAdjustment {
                    listing: ListingId(q),
                    product: name.clone(),
                    manufacturer_name: name,
                    from: q,
                    to: 0,
                }],
            }
        )),
        any_order().prop_map(Reply::Order),
        proptest::collection::vec(any_order(), 0..3).prop_map(Reply::Orders),
        proptest::collection::vec(any::<u64>(), 0..8).prop_map(|o| Reply::Dispatched {
            unknown: o.into_iter().map(OrderId).collect()
        }),
        (any_string(), any_string()).prop_map(|(cluster, maker)| Reply::NoticeFeed(
            broker::NoticeFeed::new(&cluster, &maker)
        )),
        (any::<u32>(), any_string()).prop_map(|(m, sku)| Reply::OfferAccepted {
            month: MonthId(m),
            listings: vec![(sku, ListingId(m))]
        }),
        (proptest::option::of(any_month()), any::<u64>()).prop_map(|(month, n)| {
            Reply::Status(Box::new(SystemStatus {
                month,
                manufacturers: vec![ManufacturerStatus {
                    id: ManufacturerId(1),
                    name: "orchard".into(),
                    connected: true,
                    last_seq: NoticeSeq(n),
                    acked_seq: NoticeSeq(n / 2),
                    offered_this_month: false,
                    oldest_pending_at_ms: Some(n),
                    ..Default::default()
                }],
                orders: n,
                sold_units: n,
                remaining_units: n,
                history: vec![MonthRecord {
                    id: MonthId(2),
                    opened_at_ms: n / 2,
                    closed_at_ms: n,
                    reason: CloseReason::Operator,
                    units: n,
                    revenue: Cents(n),
                }],
                ..Default::default()
            }))
        }),
    ]
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..5)
        )
            .prop_map(|(version, levels)| Event::Stock(StockDelta {
                version,
                levels: levels.into_iter().map(|(l, q)| (ListingId(l), q)).collect()
            })),
        (proptest::option::of(any_month()), any::<u64>()).prop_map(|(month, version)| {
            Event::Catalog(CatalogSnapshot {
                month,
                items: vec![],
                version,
            })
        }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<u32>(), 1..4),
            any_status()
        )
            .prop_map(|(o, listings, status)| Event::OrderStatus {
                order: OrderId(o),
                listings: listings.into_iter().map(ListingId).collect(),
                status,
            }),
        any_month().prop_map(Event::MonthOpened),
        any::<u32>().prop_map(|m| Event::MonthClosed {
            month: MonthId(m),
            reason: CloseReason::TimeUp
        }),
        any::<u32>().prop_map(|m| Event::OfferRequested { month: MonthId(m) }),
        (any::<u64>(), any::<u32>()).prop_map(|(n, q)| Event::Operator(Box::new(StatusDelta {
            now_ms: n,
            orders: n,
            sales_seconds: vec![SalesSecond {
                at_s: n / 1000,
                checkouts: q,
                units: q,
            }],
            top_products: Some(vec![]),
            ..Default::default()
        }))),
        (any::<u64>(), any_string(), any::<u32>()).prop_map(|(seq, sku, q)| {
            Event::Notice(Notice {
                seq: NoticeSeq(seq),
                body: NoticeBody::Sale(SaleNotice {
                    month: MonthId(q),
                    order: OrderId(seq),
                    lines: vec![SaleLine {
                        sku,
                        quantity: q,
                        unit_price: Cents(seq),
                    }],
                }),
            })
        }),
        (any::<u64>(), any_string(), any::<u32>()).prop_map(|(seq, sku, q)| {
            Event::Notice(Notice {
                seq: NoticeSeq(seq),
                body: NoticeBody::Settlement(Settlement {
                    month: MonthId(q),
                    reason: CloseReason::SoldOut,
                    lines: vec![SettlementLine {
                        sku,
                        offered: q,
                        sold: q / 2,
                        unsold: q - q / 2,
                    }],
                }),
            })
        }),
    ]
}

fn any_server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            proptest::option::of(any_month()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(month, m)| ServerMessage::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                server: "distributor".into(),
                manufacturer: m.map(ManufacturerId),
                month,
                credential: None,
            })),
        any_error().prop_map(ServerMessage::Refused),
        (any::<u64>(), any_reply()).prop_map(|(id, reply)| ServerMessage::Response(Response {
            id: RequestId(id),
            result: Ok(reply)
        })),
        (any::<u64>(), any_error()).prop_map(|(id, e)| ServerMessage::Response(Response {
            id: RequestId(id),
            result: Err(e)
        })),
        any_event().prop_map(ServerMessage::Event),
        any_error().prop_map(ServerMessage::Closing),
    ]
}

proptest! {
    #[test]
    fn every_client_message_round_trips_through_the_server_codec(msg in any_client_message()) {
        let mut client = ClientCodec::new();
        let mut server = ServerCodec::new();
        let mut buf = BytesMut::new();
        client.encode(msg.clone(), &mut buf).unwrap();
        let decoded = server.decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(msg));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_server_message_round_trips_through_the_client_codec(msg in any_server_message()) {
        let mut client = ClientCodec::new();
        let mut server = ServerCodec::new();
        let mut buf = BytesMut::new();
        server.encode(msg.clone(), &mut buf).unwrap();
        let decoded = client.decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(msg));
    }

    #[test]
    fn arbitrary_payloads_never_panic_the_decoder(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut server = ServerCodec::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        let _ = server.decode(&mut buf);
    }
}

#[test]
fn a_frame_split_into_single_bytes_decodes_once_complete() {
    let msg = ClientMessage::Request(Request {
        id: RequestId(9),
        body: RequestBody::Orders,
    });
    let bytes = frame(&msg).unwrap();
    let mut server = ServerCodec::new();
    let mut buf = BytesMut::new();
    for (i, byte) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let out = server.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(out, None);
        } else {
            assert_eq!(out, Some(msg.clone()));
        }
    }
}

#[test]
fn a_frame_split_at_any_point_decodes_once_complete_even_when_the_body_is_long() {
    let msg = ClientMessage::Request(Request {
        id: RequestId(u64::MAX),
        body: RequestBody::ReportDispatch {
            order: OrderId(u64::MAX - 7),
        },
    });
    let bytes = frame(&msg).unwrap();
    assert!(
        bytes.len() > 8,
        "the body must be long enough to look like a prefix"
    );
    for split in 0..=bytes.len() {
        let mut server = ServerCodec::new();
        let mut buf = BytesMut::from(&bytes[..split]);
        let first = server.decode(&mut buf).unwrap();
        buf.extend_from_slice(&bytes[split..]);
        let decoded = match first {
            Some(m) => m,
            None => server.decode(&mut buf).unwrap().expect("complete frame"),
        };
        assert_eq!(decoded, msg, "split at {split}");
    }
    // Two frames back to back, fed in uneven chunks.
    let mut server = ServerCodec::new();
    let stream: Vec<u8> = bytes.iter().chain(bytes.iter()).copied().collect();
    let mut buf = BytesMut::new();
    let mut seen = 0;
    for chunk in stream.chunks(5) {
        buf.extend_from_slice(chunk);
        while let Some(m) = server.decode(&mut buf).unwrap() {
            assert_eq!(m, msg);
            seen += 1;
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn a_4_gib_length_prefix_is_refused_before_any_allocation() {
    let mut server = ServerCodec::new();
    let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF][..]);
    let err = server.decode(&mut buf).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { len, .. } if len == u32::MAX as usize));
    assert!(
        buf.capacity() < 1024,
        "decoder reserved {} bytes",
        buf.capacity()
    );
}

#[test]
fn a_prefix_just_over_the_limit_is_refused_and_one_at_the_limit_waits_for_its_body() {
    let mut server = ServerCodec::new();
    let mut over = BytesMut::new();
    over.extend_from_slice(&((MAX_CLIENT_FRAME + 1) as u32).to_be_bytes());
    assert!(matches!(
        server.decode(&mut over),
        Err(CodecError::TooLarge { .. })
    ));
    let mut at = BytesMut::new();
    at.extend_from_slice(&(MAX_CLIENT_FRAME as u32).to_be_bytes());
    assert!(matches!(ServerCodec::new().decode(&mut at), Ok(None)));
}

#[test]
fn trailing_bytes_after_a_message_are_an_error() {
    let msg = ClientMessage::Request(Request {
        id: RequestId(1),
        body: RequestBody::Ping,
    });
    let mut payload = protocol::codec::encode_payload(&msg, MAX_CLIENT_FRAME).unwrap();
    payload.push(0);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&payload);
    assert!(matches!(
        ServerCodec::new().decode(&mut buf),
        Err(CodecError::TrailingBytes(1))
    ));
}

#[test]
fn garbage_payload_is_malformed_not_a_panic() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&4u32.to_be_bytes());
    buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let err = ServerCodec::new().decode(&mut buf).unwrap_err();
    assert!(matches!(err, CodecError::Malformed(_)));
    assert!(err.is_protocol_violation());
}

#[test]
fn a_huge_vector_length_inside_a_small_frame_is_refused_by_the_byte_limit() {
    // Variant 1 = Request, id 0, body variant SubmitOffer, month 0, then a vec length of u64::MAX.
    let msg = ClientMessage::Request(Request {
        id: RequestId(0),
        body: RequestBody::SubmitOffer {
            month: MonthId(0),
            lines: vec![],
        },
    });
    let mut payload = protocol::codec::encode_payload(&msg, MAX_CLIENT_FRAME).unwrap();
    // The empty vec's length is the final byte (varint 0); replace it with varint u64::MAX.
    payload.pop();
    payload.push(253);
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&payload);
    assert!(matches!(
        ServerCodec::new().decode(&mut buf),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn the_server_codec_writes_a_reply_far_bigger_than_what_it_accepts_from_clients() {
    let items: Vec<CatalogItem> = (0..2_000)
        .map(|i| CatalogItem {
            listing: ListingId(i),
            manufacturer: ManufacturerId(i % 450),
            manufacturer_name: format!("manufacturer number {}", i % 450),
            sku: format!("sku-{i:05}"),
            product: format!("a product with a longish name, number {i}"),
            category: "groceries".into(),
            unit_price: Cents(1_234),
            offered: 100,
            remaining: 100,
        })
        .collect();
    let reply = ServerMessage::Response(Response {
        id: RequestId(1),
        result: Ok(Reply::Catalog(CatalogSnapshot {
            month: None,
            items,
            version: 9,
        })),
    });
    let mut buf = BytesMut::new();
    ServerCodec::new()
        .encode(&reply, &mut buf)
        .expect("a reply under the server frame limit encodes");
    assert!(buf.len() > MAX_CLIENT_FRAME, "{} bytes", buf.len());
    assert_eq!(ClientCodec::new().decode(&mut buf).unwrap(), Some(reply));
}

#[test]
fn a_1500_line_offer_of_about_48_kb_decodes_on_the_server() {
    let lines: Vec<OfferLine> = (0..1_500)
        .map(|i| OfferLine {
            sku: format!("s{i:04}"),
            product: format!("good {i:04}"),
            category: "bulk".into(),
            quantity: 1_000,
            unit_price: Cents(1_000),
        })
        .collect();
    let offer = ClientMessage::Request(Request {
        id: RequestId(1),
        body: RequestBody::SubmitOffer {
            month: MonthId(1),
            lines,
        },
    });
    let mut buf = BytesMut::new();
    ClientCodec::new().encode(&offer, &mut buf).unwrap();
    assert!(
        (40_000..MAX_CLIENT_FRAME).contains(&buf.len()),
        "{} bytes",
        buf.len()
    );
    assert_eq!(ServerCodec::new().decode(&mut buf).unwrap(), Some(offer));
}
