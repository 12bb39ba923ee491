//! Exactly-once across connection loss, end to end through the fault-injecting proxy
//! ([`tests::proxy`]) against an in-process distributor with a real SQLite file:
//! - a checkout whose reply is lost, retried under the same id after a reconnect, buys once;
//! - frames split into 1-byte writes and delayed traffic change nothing;
//! - cutting the distributor↔manufacturer link again and again while customers buy leaves the
//!   manufacturer's books equal to the distributor's, SKU by SKU.

use protocol::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::harness::*;
use tests::proxy::Proxy;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const MAKER: &str = "orchard";

/// A server whose open month has `lines` on sale from [`MAKER`], connected at `maker_addr` (the
/// server itself, or a proxy in front of it).
async fn market(
    lines: Vec<OfferLine>,
    maker_via: Option<&Proxy>,
) -> (TestServer, TestManufacturer, Arc<Mutex<Books>>) {
    let server = TestServer::start().await;
    let books: Arc<Mutex<Books>> = Arc::default();
    let addr = maker_via.map_or(server.addr.clone(), |p| p.addr.clone());
    let m = TestManufacturer::connect(&addr, MAKER, script(lines.clone()), books.clone()).await;
    // It connects while month 1 is open, so its offer joins month 1 at once.
    eventually("the offer is on sale", WAIT, async || {
        operator_status(&server.addr).await.remaining_units
            == lines.iter().map(|l| u64::from(l.quantity)).sum::<u64>()
    })
    .await;
    (server, m, books)
}

async fn operator_status(addr: &str) -> SystemStatus {
    match connect_operator(addr).await.call(RequestBody::Status).await {
        Ok(Reply::Status(s)) => *s,
        other => panic!("unexpected status reply {other:?}"),
    }
}

async fn orders(client: &Client) -> Vec<OrderView> {
    match client.call(RequestBody::Orders).await.expect("orders") {
        Reply::Orders(o) => o,
        other => panic!("unexpected orders reply {other:?}"),
    }
}

/// A "buy now" of one line of a listing priced `unit_price` (every listing in these tests costs what
/// its offer line says), confirming what it costs.
fn buy(checkout_id: CheckoutId, listing: ListingId, quantity: u32, unit_price: u64) -> RequestBody {
    let total = Cents(unit_price * u64::from(quantity));
    tests::harness::buy_with_id(checkout_id, listing, quantity, total)
}

/// A fresh connection through `addr`, resumed into the session of `token`.
async fn resume(addr: &str, token: &SessionToken) -> Client {
    let (client, _) = connect_customer(addr).await;
    match client
        .call(RequestBody::Resume {
            token: token.clone(),
        })
        .await
    {
        Ok(Reply::Session(_)) => client,
        other => panic!("resume failed: {other:?}"),
    }
}

/// Units sold per SKU of [`MAKER`], from the distributor's order lines (read-only).
fn distributor_sold(db: &Path) -> BTreeMap<String, u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the distributor's database read-only");
    let mut stmt = conn
        .prepare(
            "SELECT l.sku, SUM(ol.quantity) FROM order_lines ol
             JOIN listings l ON l.id = ol.listing_id
             JOIN manufacturers m ON m.id = ol.manufacturer_id
             WHERE m.name = ?1 GROUP BY l.sku",
        )
        .expect("query");
    stmt.query_map([MAKER], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })
    .expect("rows")
    .map(|r| r.expect("row"))
    .collect()
}

/// Orders that have more than one sale notice in the outbox, and the number of orders with one.
fn notices_per_order(db: &Path) -> (Vec<(i64, i64)>, i64) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
    let mut stmt = conn
        .prepare(
            "SELECT order_id, COUNT(*) FROM outbox WHERE order_id IS NOT NULL
             GROUP BY order_id HAVING COUNT(*) > 1",
        )
        .expect("query");
    let doubled = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let with_notice = conn
        .query_row(
            "SELECT COUNT(DISTINCT order_id) FROM outbox WHERE order_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    (doubled, with_notice)
}

/// Waits until the manufacturer is connected and has acked everything in its outbox.
async fn wait_drained(addr: &str) -> SystemStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = operator_status(addr).await;
        if s.manufacturers
            .iter()
            .any(|m| m.name == MAKER && m.connected && m.acked_seq == m.last_seq)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never drained: {:?}",
            s.manufacturers
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn stop_and_audit(server: TestServer) -> std::path::PathBuf {
    let db = server.db.clone();
    let dir = server.dir.clone();
    server.stop().await.expect("clean stop");
    let report = server::audit(&db, None).expect("audit runs");
    assert!(report.ok, "audit found violations: {:?}", report.violations);
    // Keep the temporary directory alive until the caller is done with the file.
    std::mem::forget(dir);
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_whose_reply_is_lost_and_is_retried_after_resume_buys_exactly_once_at_20_cut_points(
) {
    const STOCK: u32 = 1000;
    let (server, _m, books) = market(vec![offer_line("apple", STOCK, 100)], None).await;
    let proxy = Proxy::start(&server.addr).await.unwrap();
    let first = customer(&proxy.addr).await;
    let token = first.session.token.clone();
    let listing = wait_for_catalog(&first.client, 1, WAIT).await.items[0].listing;
    drop(first);

    // The length of one checkout frame of `quantity` units; request ids stay below 128, so their
    // varint is one byte (the confirmed total's varint grows with the quantity).
    let frame_len = |quantity: u32| {
        protocol::codec::frame(&ClientMessage::Request(Request {
            id: RequestId(1),
            body: buy(CheckoutId::generate(), listing, quantity, 100),
        }))
        .unwrap()
        .len() as u64
    };
    let mut client = resume(&proxy.addr, &token).await;
    let mut bought = 0u32;
    let mut lost_replies = 0;
    let mut cut_requests = 0;
    for round in 0..20u64 {
        // Even rounds: the whole request reaches the server and its reply is lost. Odd rounds: the
        // request itself is cut somewhere in the prefix or the body. Rounds 10..20 also split every
        // frame into single bytes.
        let whole = round % 2 == 0;
        let quantity = 1 + (round % 3) as u32;
        let cut_at = if whole {
            frame_len(quantity)
        } else {
            (round * 7) % frame_len(quantity)
        };
        proxy.set_split(round >= 10);
        let id = CheckoutId::generate();
        proxy.cut_after_client_bytes(cut_at);
        let lost = client.call(buy(id, listing, quantity, 100)).await;
        assert!(
            matches!(lost, Err(ClientError::Closed(_))),
            "round {round}: the cut should lose the reply, got {lost:?}"
        );
        assert!(!proxy.cut_pending(), "round {round}: the cut never fired");

        eprintln!(
            "round {round} cut at {cut_at}/{}; {} bytes so far",
            frame_len(quantity),
            proxy.client_bytes()
        );
        client = resume(&proxy.addr, &token).await;
        let before_retry = orders(&client).await;
        if whole {
            lost_replies += 1;
            // The server got the request, so the order exists before the retry is sent.
            eventually("the first attempt's order", WAIT, async || {
                orders(&client).await.iter().any(|o| o.checkout_id == id)
            })
            .await;
        } else {
            cut_requests += 1;
            assert!(
                before_retry.iter().all(|o| o.checkout_id != id),
                "round {round}: half a request must not buy anything"
            );
        }
        let retried = match client.call(buy(id, listing, quantity, 100)).await {
            Ok(Reply::Order(o)) => o,
            other => panic!("round {round}: the retry failed: {other:?}"),
        };
        assert_eq!(retried.checkout_id, id);
        assert_eq!(retried.units(), u64::from(quantity));
        bought += quantity;

        let history = orders(&client).await;
        assert_eq!(
            history.iter().filter(|o| o.checkout_id == id).count(),
            1,
            "round {round}: exactly one order for the checkout id"
        );
        assert_eq!(
            history.len() as u64,
            round + 1,
            "round {round}: one order per round"
        );
        let remaining = catalog(&client).await.items[0].remaining;
        assert_eq!(remaining, STOCK - bought, "round {round}: stock taken once");
    }
    proxy.set_split(false);
    assert_eq!((lost_replies, cut_requests), (10, 10));
    assert_eq!(proxy.cuts(), 20);

    // The manufacturer (connected directly, never cut) got one sale notice per order, once each.
    let status = wait_drained(&server.addr).await;
    assert_eq!(status.orders, 20);
    assert_eq!(status.sold_units, u64::from(bought));
    let db = stop_and_audit(server).await;
    let b = books.lock().unwrap().clone();
    assert_eq!(b.sold.get("apple"), Some(&u64::from(bought)));
    let sales: Vec<u64> = b.delivered.clone();
    assert_eq!(
        sales,
        (1..=20).collect::<Vec<u64>>(),
        "one delivery per sale, in order"
    );
    let (doubled, with_notice) = notices_per_order(&db);
    assert!(
        doubled.is_empty(),
        "orders with two sale notices: {doubled:?}"
    );
    assert_eq!(with_notice, 20);
    assert_eq!(distributor_sold(&db).get("apple"), Some(&u64::from(bought)));
}

/// Signs up through `addr`, buys the cart and a "buy now" line, and checks the order history.
async fn shop_once(addr: &str, listing: ListingId) -> u64 {
    let c = customer(addr).await;
    let cat = catalog(&c.client).await;
    assert!(cat.items.iter().any(|i| i.listing == listing));
    match c
        .client
        .call(RequestBody::AddToCart {
            listing,
            quantity: 2,
        })
        .await
    {
        Ok(Reply::Cart(cart)) => assert_eq!(cart.lines[0].quantity, 2),
        other => panic!("add to cart: {other:?}"),
    }
    let from_cart = checkout_cart(&c.client, Cents(200))
        .await
        .expect("checkout the cart");
    let id = CheckoutId::generate();
    let now = match c.client.call(buy(id, listing, 1, 100)).await {
        Ok(Reply::Order(o)) => o,
        other => panic!("buy now: {other:?}"),
    };
    // A retry of the same id through the same mangled link returns the same order.
    match c.client.call(buy(id, listing, 1, 100)).await {
        Ok(Reply::Order(o)) => assert_eq!(o.id, now.id),
        other => panic!("retry: {other:?}"),
    }
    let history = orders(&c.client).await;
    assert_eq!(history.len(), 2);
    assert!(history.iter().any(|o| o.id == from_cart.id));
    from_cart.units() + now.units()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_the_manufacturer_work_unchanged_over_1_byte_writes_and_delayed_links() {
    let server = TestServer::start().await;
    let maker_link = Proxy::start(&server.addr).await.unwrap();
    maker_link.set_split(true);
    maker_link.set_delay(Duration::from_millis(5));
    let books: Arc<Mutex<Books>> = Arc::default();
    let _m = TestManufacturer::connect(
        &maker_link.addr,
        MAKER,
        script(vec![offer_line("apple", 500, 100)]),
        books.clone(),
    )
    .await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let probe = customer(&server.addr).await;
    let listing = wait_for_catalog(&probe.client, 1, WAIT).await.items[0].listing;
    // A cart that stays full keeps the month open: otherwise the month closes as soon as every
    // active customer has checked out, and the next offer is not on sale yet.
    probe
        .client
        .call(RequestBody::AddToCart {
            listing,
            quantity: 1,
        })
        .await
        .unwrap();

    let proxy = Proxy::start(&server.addr).await.unwrap();
    let mut units = 0;
    proxy.set_split(true);
    units += shop_once(&proxy.addr, listing).await;
    proxy.set_split(false);
    proxy.set_delay(Duration::from_millis(40));
    units += shop_once(&proxy.addr, listing).await;
    proxy.set_split(true);
    proxy.set_delay(Duration::from_millis(3));
    units += shop_once(&proxy.addr, listing).await;
    assert_eq!(units, 9);

    wait_drained(&server.addr).await;
    assert_eq!(books.lock().unwrap().sold.get("apple"), Some(&units));
    assert_eq!(catalog(&probe.client).await.items[0].remaining, 500 - 9);
    let db = stop_and_audit(server).await;
    assert_eq!(distributor_sold(&db).get("apple"), Some(&units));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_manufacturer_link_12_times_while_customers_buy_leaves_its_books_equal_to_the_distributors(
) {
    let lines = vec![
        offer_line("apple", 5000, 100),
        offer_line("pear", 5000, 150),
        offer_line("plum", 5000, 90),
    ];
    let server = TestServer::start().await;
    let link = Proxy::start(&server.addr).await.unwrap();
    let books: Arc<Mutex<Books>> = Arc::default();
    let maker = |books: Arc<Mutex<Books>>| {
        let (addr, lines) = (link.addr.clone(), lines.clone());
        async move { TestManufacturer::connect(&addr, MAKER, script(lines), books).await }
    };
    let mut m = maker(books.clone()).await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();

    // Four customers buy 1–3 units of a random line as fast as they can, straight to the server.
    let customers = futures::future::join_all((0..4).map(|_| customer(&server.addr))).await;
    let listings: Vec<(ListingId, u64)> = wait_for_catalog(&customers[0].client, 3, WAIT)
        .await
        .items
        .iter()
        .map(|i| (i.listing, i.unit_price.0))
        .collect();
    let stop = CancellationToken::new();
    let buyers: Vec<_> = customers
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (stop, listings) = (stop.clone(), listings.clone());
            tokio::spawn(async move {
                let mut told = 0u64;
                let mut n = i as u64;
                while !stop.is_cancelled() {
                    n += 1;
                    let (listing, price) = listings[(n as usize * 7 + i) % listings.len()];
                    let quantity = 1 + (n % 3) as u32;
                    match c
                        .client
                        .call(buy(CheckoutId::generate(), listing, quantity, price))
                        .await
                    {
                        Ok(Reply::Order(o)) => told += o.units(),
                        other => panic!("customers are not behind the proxy: {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                told
            })
        })
        .collect();

    // Cut the link twelve times, at uneven moments; every other time with 1-byte frames, so that
    // some cuts land in the middle of a notice or an ack.
    let mut cuts = 0;
    for round in 0..12u64 {
        link.set_split(round % 2 == 1);
        tokio::time::sleep(Duration::from_millis(60 + (round * 37) % 140)).await;
        link.cut_all();
        cuts += 1;
        drop(m);
        m = maker(books.clone()).await;
    }
    link.set_split(false);
    stop.cancel();
    let mut told = 0;
    for b in buyers {
        told += b.await.expect("buyer");
    }
    assert!(told > 0, "nobody bought anything");

    let status = wait_drained(&server.addr).await;
    assert_eq!(status.sold_units, told);
    let from_books = books.lock().unwrap().clone();
    drop(m);
    let db = stop_and_audit(server).await;
    let sold = distributor_sold(&db);
    eprintln!(
        "{cuts} link cuts, {} notices delivered ({} duplicates), {told} units sold: {sold:?}",
        from_books.delivered.len(),
        from_books.delivered.len() as u64 - from_books.high_water
    );
    assert_eq!(from_books.sold, sold, "the manufacturer's books differ");
    assert_eq!(sold.values().sum::<u64>(), told);
    let (doubled, _) = notices_per_order(&db);
    assert!(doubled.is_empty());
    assert!(link.cuts() >= 12);
}

/// The codec on its own: every frame, fed one byte at a time, decodes to the same message as when
/// it arrives whole. (A frame split by TCP is normal on a slow or busy link.)
#[test]
fn a_frame_fed_to_the_codec_one_byte_at_a_time_decodes_like_a_whole_one() {
    use tokio_util::codec::Decoder;
    let messages = [
        ClientMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            role: Role::Customer,
            client: "faults".into(),
            name: None,
            key: None,
        }),
        ClientMessage::Request(Request {
            id: RequestId(7),
            body: buy(CheckoutId::generate(), ListingId(3), 2, 100),
        }),
    ];
    for message in messages {
        let frame = protocol::codec::frame(&message).unwrap();
        let mut codec = ServerCodec::new();
        let mut buf = bytes::BytesMut::new();
        let mut decoded = None;
        for (i, byte) in frame.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            match codec.decode(&mut buf) {
                Ok(None) => {}
                Ok(Some(m)) => {
                    assert_eq!(i, frame.len() - 1, "decoded before the last byte");
                    decoded = Some(m);
                }
                Err(e) => panic!("byte {i} of {}: {e} (frame {frame:?})", frame.len()),
            }
        }
        assert_eq!(decoded, Some(message));
    }
}
