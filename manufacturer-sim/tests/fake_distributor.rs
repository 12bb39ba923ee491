//! The manufacturer's side of the protocol against a scripted fake distributor: each test plays one
//! exchange (duplicates, reconnects, repeated offer requests) and checks the books at the moment
//! the manufacturer speaks, to prove the ordering rules, not only the end state.

use futures::{SinkExt, StreamExt};
use manufacturer_sim::{preset, report, Catalog, Product, SimConfig};
use protocol::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(10);

struct Conn {
    framed: Framed<TcpStream, ServerCodec>,
}

impl Conn {
    async fn accept(listener: &TcpListener) -> Conn {
        let (stream, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("the manufacturer connects")
            .unwrap();
        let mut framed = Framed::new(stream, ServerCodec::new());
        match framed.next().await {
            Some(Ok(ClientMessage::Hello(h))) => {
                assert_eq!(h.role, Role::Manufacturer);
                assert_eq!(h.version, PROTOCOL_VERSION);
                assert!(h.name.is_some());
            }
            other => panic!("expected Hello, got {other:?}"),
        }
        framed
            .send(ServerMessage::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                server: "fake".into(),
                manufacturer: Some(ManufacturerId(1)),
                month: None,
                credential: None,
            }))
            .await
            .unwrap();
        Conn { framed }
    }

    async fn push(&mut self, event: Event) {
        self.framed.send(ServerMessage::Event(event)).await.unwrap();
    }

    /// The next request other than Ping (pings are answered here).
    async fn request(&mut self) -> Request {
        loop {
            let frame = tokio::time::timeout(STEP, self.framed.next())
                .await
                .expect("the manufacturer sends a request in time");
            match frame {
                Some(Ok(ClientMessage::Request(r))) if r.body == RequestBody::Ping => {
                    self.reply(r.id, Ok(Reply::Pong)).await;
                }
                Some(Ok(ClientMessage::Request(r))) => return r,
                other => panic!("expected a request, got {other:?}"),
            }
        }
    }

    async fn reply(&mut self, id: RequestId, result: Result<Reply, WireError>) {
        self.framed
            .send(ServerMessage::Response(Response { id, result }))
            .await
            .unwrap();
    }
}

fn sale(seq: u64, order: u64, sku: &str, quantity: u32) -> Event {
    Event::Notice(Notice {
        seq: NoticeSeq(seq),
        body: NoticeBody::Sale(SaleNotice {
            month: MonthId(1),
            order: OrderId(order),
            lines: vec![SaleLine {
                sku: sku.into(),
                quantity,
                unit_price: Cents(100),
            }],
        }),
    })
}

fn high_water(db: &Path) -> u64 {
    report(db).unwrap().manufacturers[0].high_water
}

fn sold(db: &Path, sku: &str) -> u64 {
    report(db).unwrap().manufacturers[0]
        .products
        .iter()
        .find(|p| p.sku == sku)
        .unwrap()
        .sold
}

struct Sim {
    db: PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), manufacturer_sim::SimError>>,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn start(addr: String, dispatch: Option<Duration>) -> Sim {
        Sim::start_with(addr, dispatch, preset("orchard").unwrap())
    }

    fn start_with(addr: String, dispatch: Option<Duration>, catalog: Catalog) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("books.db");
        let mut config = SimConfig::new(addr, "orchard", &db, catalog);
        config.dispatch_delay = dispatch;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(manufacturer_sim::run(config, shutdown.clone()));
        Sim {
            db,
            shutdown,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("the manufacturer stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn notices_redelivered_after_a_reconnect_are_counted_once_and_acked_after_commit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(listener.local_addr().unwrap().to_string(), None);

    let mut conn = Conn::accept(&listener).await;
    conn.push(sale(1, 10, "APL", 3)).await;
    conn.push(sale(2, 11, "PER", 2)).await;
    let mut acked = 0;
    while acked < 2 {
        let r = conn.request().await;
        let RequestBody::AckNotices { through } = r.body else {
            panic!("expected an ack, got {:?}", r.body)
        };
        // The ack must never run ahead of the books.
        assert!(high_water(&sim.db) >= through.0);
        acked = through.0;
        conn.reply(r.id, Ok(Reply::Done)).await;
    }
    drop(conn);

    // The distributor redelivers everything after the last ack it saw, here all of it, plus more.
    let mut conn = Conn::accept(&listener).await;
    conn.push(sale(1, 10, "APL", 3)).await;
    conn.push(sale(2, 11, "PER", 2)).await;
    conn.push(sale(3, 12, "APL", 1)).await;
    loop {
        let r = conn.request().await;
        let RequestBody::AckNotices { through } = r.body else {
            panic!("expected an ack, got {:?}", r.body)
        };
        assert!(high_water(&sim.db) >= through.0);
        conn.reply(r.id, Ok(Reply::Done)).await;
        if through.0 == 3 {
            break;
        }
    }
    assert_eq!(sold(&sim.db, "APL"), 4);
    assert_eq!(sold(&sim.db, "PER"), 2);
    sim.stop().await;
}

#[tokio::test]
async fn an_offer_is_recorded_before_it_is_sent_and_resent_unchanged_when_asked_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(listener.local_addr().unwrap().to_string(), None);

    let mut conn = Conn::accept(&listener).await;
    conn.push(Event::OfferRequested { month: MonthId(1) }).await;
    let r = conn.request().await;
    let RequestBody::SubmitOffer {
        month,
        lines: first,
    } = r.body
    else {
        panic!("expected an offer, got {:?}", r.body)
    };
    assert_eq!(month, MonthId(1));
    assert_eq!(first.len(), 4, "every orchard product is in stock");
    let books = report(&sim.db).unwrap();
    let recorded = &books.manufacturers[0].months[0];
    assert_eq!(recorded.month, 1);
    let sent: u64 = first.iter().map(|l| u64::from(l.quantity)).sum();
    assert_eq!(
        recorded.offered, sent,
        "the books hold the offer before it is sent"
    );
    // The connection dies before the answer: the manufacturer cannot know whether it was taken.
    drop(conn);

    let mut conn = Conn::accept(&listener).await;
    conn.push(Event::OfferRequested { month: MonthId(1) }).await;
    let r = conn.request().await;
    let RequestBody::SubmitOffer { lines: again, .. } = r.body else {
        panic!("expected an offer, got {:?}", r.body)
    };
    assert_eq!(again, first, "the same offer, not a second helping");
    let listings = again
        .iter()
        .enumerate()
        .map(|(i, l)| (l.sku.clone(), ListingId(i as u32 + 1)))
        .collect();
    conn.reply(
        r.id,
        Ok(Reply::OfferAccepted {
            month: MonthId(1),
            listings,
        }),
    )
    .await;
    // Give the manufacturer a moment to book the acceptance, then check nothing was offered twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let books = report(&sim.db).unwrap();
    let m = &books.manufacturers[0];
    assert_eq!(m.months.len(), 1);
    assert_eq!(m.months[0].state, "accepted");
    let offered: u64 = m.products.iter().map(|p| p.offered).sum();
    assert_eq!(offered, sent);
    sim.stop().await;
}

#[tokio::test]
async fn a_settlement_returns_unsold_units_and_the_next_offer_includes_them() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(listener.local_addr().unwrap().to_string(), None);
    let mut conn = Conn::accept(&listener).await;
    conn.push(Event::OfferRequested { month: MonthId(1) }).await;
    let r = conn.request().await;
    let RequestBody::SubmitOffer { lines, .. } = r.body else {
        panic!("expected an offer")
    };
    conn.reply(
        r.id,
        Ok(Reply::OfferAccepted {
            month: MonthId(1),
            listings: vec![],
        }),
    )
    .await;
    let apples = lines.iter().find(|l| l.sku == "APL").unwrap().quantity;
    conn.push(sale(1, 10, "APL", 5)).await;
    let settlement = Settlement {
        month: MonthId(1),
        reason: CloseReason::TimeUp,
        lines: lines
            .iter()
            .map(|l| {
                let sold = if l.sku == "APL" { 5 } else { 0 };
                SettlementLine {
                    sku: l.sku.clone(),
                    offered: l.quantity,
                    sold,
                    unsold: l.quantity - sold,
                }
            })
            .collect(),
    };
    conn.push(Event::Notice(Notice {
        seq: NoticeSeq(2),
        body: NoticeBody::Settlement(settlement),
    }))
    .await;
    loop {
        let r = conn.request().await;
        let RequestBody::AckNotices { through } = r.body else {
            panic!("expected an ack")
        };
        conn.reply(r.id, Ok(Reply::Done)).await;
        if through.0 == 2 {
            break;
        }
    }
    conn.push(Event::OfferRequested { month: MonthId(2) }).await;
    let r = conn.request().await;
    let RequestBody::SubmitOffer { month, lines: next } = r.body else {
        panic!("expected an offer")
    };
    assert_eq!(month, MonthId(2));
    let apples_again = next.iter().find(|l| l.sku == "APL").unwrap().quantity;
    // Unsold apples came back; production may have added a few more since.
    assert!(
        apples_again >= apples - 5,
        "{apples_again} < {}",
        apples - 5
    );
    let m = &report(&sim.db).unwrap().manufacturers[0];
    assert_eq!(m.months[0].state, "settled");
    assert_eq!(m.months[0].high_water_at_offer, 0);
    assert_eq!(m.months[1].high_water_at_offer, 2);
    sim.stop().await;
}

#[tokio::test]
async fn dispatch_is_reported_after_the_sale_is_acked_and_again_after_a_reconnect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(
        listener.local_addr().unwrap().to_string(),
        Some(Duration::from_millis(200)),
    );
    let mut conn = Conn::accept(&listener).await;
    conn.push(sale(1, 77, "BAN", 1)).await;
    let r = conn.request().await;
    assert_eq!(
        r.body,
        RequestBody::AckNotices {
            through: NoticeSeq(1)
        }
    );
    let acked_at = std::time::Instant::now();
    conn.reply(r.id, Ok(Reply::Done)).await;
    let r = conn.request().await;
    assert_eq!(
        r.body,
        RequestBody::ReportDispatches {
            orders: vec![OrderId(77)]
        }
    );
    assert!(acked_at.elapsed() >= Duration::from_millis(150));
    // No answer: the connection drops, so the report must come again on the next connection.
    drop(conn);
    let mut conn = Conn::accept(&listener).await;
    let r = conn.request().await;
    assert_eq!(
        r.body,
        RequestBody::ReportDispatches {
            orders: vec![OrderId(77)]
        }
    );
    conn.reply(r.id, Ok(Reply::Dispatched { unknown: vec![] }))
        .await;
    sim.stop().await;
}

#[tokio::test]
async fn production_continues_while_the_distributor_is_away() {
    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("books.db");
    let mut config = SimConfig::new(addr, "dairy", &db, preset("dairy").unwrap());
    config.rate_scale = 10.0;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(manufacturer_sim::run(config, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let produced: u64 = report(&db).unwrap().manufacturers[0]
        .products
        .iter()
        .map(|p| p.produced)
        .sum();
    // dairy makes 12.5 units/s; ×10 for ≥2 s is well over 100.
    assert!(produced >= 100, "produced only {produced}");
    shutdown.cancel();
    tokio::time::timeout(STEP, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// `n` products, every one in stock.
fn catalog_of(n: usize) -> Catalog {
    Catalog {
        products: (0..n)
            .map(|i| Product {
                sku: format!("S{i:04}"),
                name: format!("good {i:04}"),
                category: "bulk".into(),
                unit_price_cents: 1_000,
                rate_per_sec: 0.0,
                starting_stock: 100,
                capacity: 100,
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_1500_product_offer_is_sent_in_parts_that_join_into_the_whole_catalog() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sim = Sim::start_with(addr, None, catalog_of(1_500));
    let mut conn = Conn::accept(&listener).await;
    conn.push(Event::OfferRequested { month: MonthId(1) }).await;
    let mut offered = Vec::new();
    loop {
        let r = conn.request().await;
        let RequestBody::SubmitOfferPart { month, lines, last } = r.body else {
            panic!("expected an offer part, got {:?}", r.body)
        };
        assert_eq!(month, MonthId(1));
        assert!(lines.len() <= MAX_OFFER_PART_LINES);
        offered.extend(lines);
        if last {
            let listings = offered
                .iter()
                .enumerate()
                .map(|(i, l)| (l.sku.clone(), ListingId(i as u32)))
                .collect();
            let accepted = Reply::OfferAccepted { month, listings };
            conn.reply(r.id, Ok(accepted)).await;
            break;
        }
        conn.reply(r.id, Ok(Reply::Done)).await;
    }
    let mut skus: Vec<_> = offered.iter().map(|l| l.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    assert_eq!(skus.len(), 1_500, "every product once");
    // The manufacturer keeps serving after the offer: a sale is applied and acked.
    conn.push(sale(1, 10, "S0001", 1)).await;
    let r = conn.request().await;
    assert_eq!(
        r.body,
        RequestBody::AckNotices {
            through: NoticeSeq(1)
        }
    );
    sim.stop().await;
}

/// Waits for the manufacturer to stop by itself, and returns its error.
async fn stops_with_error(sim: Sim) -> manufacturer_sim::SimError {
    let outcome = tokio::time::timeout(STEP, sim.task)
        .await
        .expect("the manufacturer stops by itself instead of offering again and again")
        .expect("the manufacturer task");
    match outcome {
        Err(e) => e,
        Ok(()) => panic!("the manufacturer stopped without an error"),
    }
}

#[tokio::test]
async fn an_offer_the_distributor_refuses_is_a_clear_permanent_error_not_a_reconnect_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(listener.local_addr().unwrap().to_string(), None);
    let mut conn = Conn::accept(&listener).await;
    conn.push(Event::OfferRequested { month: MonthId(1) }).await;
    let r = conn.request().await;
    assert!(matches!(r.body, RequestBody::SubmitOffer { .. }));
    let refusal = WireError::new(ErrorCode::InvalidInput, "APL: bad category or unit price");
    conn.reply(r.id, Err(refusal)).await;
    let error = stops_with_error(sim).await.to_string();
    assert!(error.contains("refused the offer"), "{error}");
    assert!(error.contains("APL: bad category or unit price"), "{error}");
}

#[tokio::test]
async fn an_offer_the_distributor_cannot_read_is_a_permanent_error_not_a_reconnect_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Sim::start(listener.local_addr().unwrap().to_string(), None);
    let mut conn = Conn::accept(&listener).await;
    conn.push(Event::OfferRequested { month: MonthId(1) }).await;
    let r = conn.request().await;
    assert!(matches!(r.body, RequestBody::SubmitOffer { .. }));
    // What the distributor does with a frame it cannot decode: say why, and close.
    let closing = WireError::new(ErrorCode::Malformed, "malformed frame: LimitExceeded");
    conn.framed
        .send(ServerMessage::Closing(closing))
        .await
        .unwrap();
    drop(conn);
    let error = stops_with_error(sim).await.to_string();
    assert!(error.contains("LimitExceeded"), "{error}");
}
