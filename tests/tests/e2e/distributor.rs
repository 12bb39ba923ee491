//! The distributor core, end to end over real TCP against an in-process server with a real SQLite
//! file: the customer flow, the last-unit race, restarts, outbox redelivery and the audit.

use protocol::*;
use std::sync::Arc;
use std::time::Duration;
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// A server whose open month holds `lines` from the manufacturer "orchard". A manufacturer that
/// connects mid-month offers into that month at once, so no operator step is needed.
async fn offered_server(lines: Vec<OfferLine>) -> (TestServer, TestManufacturer) {
    let server = TestServer::start().await;
    let m =
        TestManufacturer::connect(&server.addr, "orchard", script(lines), Default::default()).await;
    (server, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_signs_up_fills_a_cart_checks_out_and_sees_the_order_confirmed_then_dispatched()
{
    let server = TestServer::start().await;
    // The manufacturer connects while month 1 is open and offers into it at once.
    let m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![
            offer_line("apple", 10, 125),
            offer_line("pear", 5, 200),
        ]),
        Default::default(),
    )
    .await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 2, WAIT).await;
    let apple = cat.items.iter().find(|i| i.sku == "apple").unwrap();
    assert_eq!(apple.manufacturer_name, "orchard");
    assert_eq!(apple.unit_price, Cents(125));

    // Adding more than is in stock is refused and names the quantity field.
    let too_many = c
        .client
        .call(RequestBody::AddToCart {
            listing: apple.listing,
            quantity: 11,
        })
        .await
        .unwrap_err();
    assert_eq!(
        too_many.server_error().unwrap().field,
        Some(Field::Quantity)
    );
    let Reply::Cart(cart) = c
        .client
        .call(RequestBody::AddToCart {
            listing: apple.listing,
            quantity: 3,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(cart.total, Cents(375));

    // The cart is on the server: a second terminal of the same account sees it.
    let second = resume(&server.addr, &c.session.token).await;
    let Reply::Cart(seen) = second.call(RequestBody::GetCart).await.unwrap() else {
        panic!()
    };
    assert_eq!(seen.lines.len(), 1);
    assert_eq!(seen.lines[0].quantity, 3);

    let order = checkout_cart(&c.client, Cents(375)).await.unwrap();
    assert_eq!(order.total, Cents(375));
    assert_eq!(order.lines[0].unit_price, Cents(125));
    let Reply::Cart(empty) = c.client.call(RequestBody::GetCart).await.unwrap() else {
        panic!()
    };
    assert!(empty.lines.is_empty());

    // The manufacturer's ack confirms the line and its dispatch report dispatches it, pushed live.
    let mut events = c.events;
    let mut statuses = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while statuses.last() != Some(&LineStatus::Dispatched) {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("status pushes")
            .unwrap();
        if let Event::OrderStatus {
            order: id, status, ..
        } = event
        {
            assert_eq!(id, order.id);
            statuses.push(status);
        }
    }
    assert_eq!(
        statuses,
        vec![LineStatus::Confirmed, LineStatus::Dispatched]
    );
    let Reply::Orders(history) = c.client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert_eq!(history[0].status(), LineStatus::Dispatched);
    assert_eq!(history[0].lines[0].unit_price, Cents(125));
    assert_eq!(m.books.lock().unwrap().sold.get("apple"), Some(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_cart_a_missing_card_and_an_anonymous_checkout_each_get_a_clear_error() {
    let server = TestServer::start().await;
    let (anon, _) = connect_customer(&server.addr).await;
    let e = anon
        .call(RequestBody::Checkout {
            checkout_id: CheckoutId::generate(),
            confirmed_total: Cents(0),
            lines: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.server_error().unwrap().code, ErrorCode::NotAuthenticated);

    let c = customer(&server.addr).await;
    let e = checkout_cart(&c.client, Cents(0)).await.unwrap_err();
    assert_eq!(e.server_error().unwrap().code, ErrorCode::EmptyCart);
    c.client.call(RequestBody::RemoveCard).await.unwrap();
    let e = c
        .client
        .call(tests::harness::buy_now(ListingId(1), 1, Cents(0)))
        .await
        .unwrap_err();
    assert_eq!(e.server_error().unwrap().code, ErrorCode::CardRequired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_errors_name_their_field_and_emails_are_unique_case_insensitively() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    let form = |email: &str, password: &str| {
        RequestBody::SignUp(SignUp {
            first_name: "A".into(),
            last_name: "B".into(),
            email: email.into(),
            password: password.into(),
        })
    };
    let e = client
        .call(form("not-an-email", "long enough"))
        .await
        .unwrap_err();
    assert_eq!(e.server_error().unwrap().field, Some(Field::Email));
    let e = client.call(form("a@b.io", "short")).await.unwrap_err();
    assert_eq!(e.server_error().unwrap().field, Some(Field::Password));
    client
        .call(form("Mixed@Case.io", "long enough"))
        .await
        .unwrap();
    let (other, _) = connect_customer(&server.addr).await;
    let e = other
        .call(form("mixed@case.IO", "long enough"))
        .await
        .unwrap_err();
    assert_eq!(e.server_error().unwrap().code, ErrorCode::EmailTaken);
    assert_eq!(e.server_error().unwrap().field, Some(Field::Email));
    // Login is case-insensitive too, and a wrong password says nothing about which part was wrong.
    other
        .call(RequestBody::LogIn {
            email: "MIXED@case.io".into(),
            password: "long enough".into(),
        })
        .await
        .unwrap();
    let (third, _) = connect_customer(&server.addr).await;
    let wrong = third
        .call(RequestBody::LogIn {
            email: "mixed@case.io".into(),
            password: "nope nope".into(),
        })
        .await
        .unwrap_err();
    let unknown = third
        .call(RequestBody::LogIn {
            email: "ghost@case.io".into(),
            password: "nope nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        wrong.server_error().unwrap(),
        unknown.server_error().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_units_are_sold_exactly_once_under_240_concurrent_buyers() {
    const BUYERS: usize = 240;
    const STOCK: u32 = 10;
    let server = TestServer::start().await;
    let _m = TestManufacturer::connect(
        &server.addr,
        "scarce",
        script(vec![offer_line("last", STOCK, 999)]),
        Default::default(),
    )
    .await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();

    // Sign up every buyer first (argon2 is slow on purpose), then release them all at once.
    let mut buyers = Vec::new();
    for chunk in (0..BUYERS).collect::<Vec<_>>().chunks(16) {
        let joins: Vec<_> = chunk
            .iter()
            .map(|_| {
                tokio::spawn({
                    let a = server.addr.clone();
                    async move { customer(&a).await }
                })
            })
            .collect();
        for j in joins {
            buyers.push(j.await.unwrap());
        }
    }
    let listing = wait_for_catalog(&buyers[0].client, 1, WAIT).await.items[0].listing;
    let start = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let mut joins = Vec::new();
    for b in buyers {
        let start = start.clone();
        joins.push(tokio::spawn(async move {
            start.wait().await;
            b.client
                .call(tests::harness::buy_now(listing, 1, Cents(999)))
                .await
        }));
    }
    let (mut sold, mut out_of_stock) = (0, 0);
    for j in joins {
        match j.await.unwrap() {
            Ok(Reply::Order(o)) => sold += o.units(),
            Err(e) => {
                let e = e
                    .server_error()
                    .expect("a business rejection, not a transport error")
                    .clone();
                // Once the last unit went, the month closes as sold out, so late buyers may see either.
                assert!(
                    matches!(e.code, ErrorCode::OutOfStock | ErrorCode::MonthClosed),
                    "{e:?}"
                );
                if e.code == ErrorCode::OutOfStock {
                    assert_eq!(e.shortages[0].available, 0);
                }
                out_of_stock += 1;
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sold, u64::from(STOCK));
    assert_eq!(out_of_stock, BUYERS - STOCK as usize);
    let db = server.db.clone();
    let _dir = server.dir.clone();
    server.stop().await.unwrap();
    let report = server::audit(&db, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.sold_units, u64::from(STOCK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_that_cannot_be_filled_buys_nothing_names_the_shortage_and_cuts_the_cart() {
    let (server, _m) = offered_server(vec![
        offer_line("apple", 5, 100),
        offer_line("pear", 5, 100),
    ])
    .await;
    let a = customer(&server.addr).await;
    let b = customer(&server.addr).await;
    let cat = wait_for_catalog(&a.client, 2, WAIT).await;
    let (apple, pear) = (cat.items[0].listing, cat.items[1].listing);
    a.client
        .call(RequestBody::AddToCart {
            listing: apple,
            quantity: 4,
        })
        .await
        .unwrap();
    a.client
        .call(RequestBody::AddToCart {
            listing: pear,
            quantity: 2,
        })
        .await
        .unwrap();
    // b takes 3 apples first: a's 4 no longer fit.
    b.client
        .call(tests::harness::buy_now(apple, 3, Cents(300)))
        .await
        .unwrap();
    let e = checkout_cart(&a.client, Cents(600)).await.unwrap_err();
    let e = e.server_error().unwrap();
    assert_eq!(e.code, ErrorCode::OutOfStock);
    assert_eq!(e.shortages.len(), 1);
    assert_eq!(
        (
            e.shortages[0].listing,
            e.shortages[0].requested,
            e.shortages[0].available
        ),
        (apple, 4, 2)
    );
    assert!(e.message.contains("Product apple"), "{}", e.message);
    // Nothing was bought: pears are untouched, and the cart was cut to what is available.
    let cat = catalog(&a.client).await;
    assert_eq!(
        cat.items
            .iter()
            .find(|i| i.listing == pear)
            .unwrap()
            .remaining,
        5
    );
    let Reply::Cart(cart) = a.client.call(RequestBody::GetCart).await.unwrap() else {
        panic!()
    };
    let apples = cart.lines.iter().find(|l| l.listing == apple).unwrap();
    assert_eq!(apples.quantity, 2);
    // The second attempt, with what is really there, succeeds.
    assert_eq!(
        checkout_cart(&a.client, Cents(400)).await.unwrap().units(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_checkout_id_returns_the_original_order_and_takes_stock_once() {
    let (server, _m) = offered_server(vec![offer_line("apple", 50, 100)]).await;
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let id = CheckoutId::generate();
    let buy = RequestBody::Checkout {
        checkout_id: id,
        confirmed_total: Cents(200),
        lines: Some(vec![CartItem {
            listing,
            quantity: 2,
        }]),
    };
    // Fire the same checkout three times at once, then once more later.
    let (r1, r2, r3) = tokio::join!(
        c.client.call(buy.clone()),
        c.client.call(buy.clone()),
        c.client.call(buy.clone())
    );
    let r4 = c.client.call(buy).await;
    let orders: Vec<OrderView> = [r1, r2, r3, r4]
        .into_iter()
        .map(|r| match r.unwrap() {
            Reply::Order(o) => o,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(orders
        .iter()
        .all(|o| o.id == orders[0].id && o.checkout_id == id));
    assert_eq!(catalog(&c.client).await.items[0].remaining, 48);
    let Reply::Orders(history) = c.client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert_eq!(history.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_carts_the_open_month_stock_and_sessions() {
    let (server, m) = offered_server(vec![
        offer_line("apple", 20, 100),
        offer_line("pear", 20, 300),
    ])
    .await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 2, WAIT).await;
    let month = cat.month.clone().unwrap();
    c.client
        .call(RequestBody::AddToCart {
            listing: cat.items[1].listing,
            quantity: 2,
        })
        .await
        .unwrap();
    c.client
        .call(tests::harness::buy_now(cat.items[0].listing, 5, Cents(500)))
        .await
        .unwrap();
    drop(m);
    let token = c.session.token.clone();
    drop(c);

    let server = server.restart(|_| {}).await;
    let (client, _) = connect_customer(&server.addr).await;
    // The session resumes without a new login, and the cart, month and stock are as they were.
    client.call(RequestBody::Resume { token }).await.unwrap();
    let Reply::Cart(cart) = client.call(RequestBody::GetCart).await.unwrap() else {
        panic!()
    };
    assert_eq!(cart.lines.len(), 1);
    assert_eq!((cart.lines[0].quantity, cart.total), (2, Cents(600)));
    let after = catalog(&client).await;
    assert_eq!(after.month.unwrap().id, month.id);
    let apple = after.items.iter().find(|i| i.sku == "apple").unwrap();
    assert_eq!(apple.remaining, 15);
    let Reply::Orders(history) = client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert_eq!(history.len(), 1);
}

/// A restart loads only recent checkout ids; an older one (here: an id stamped 1970, as a client with
/// a wrong clock or non-time ids would send) is looked up on disk, so its retry still gets the original
/// order instead of buying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_restart_with_a_checkout_id_older_than_the_loaded_window_returns_the_original_order(
) {
    let (server, m) = offered_server(vec![offer_line("apple", 20, 100)]).await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 1, WAIT).await;
    let old_id = CheckoutId::from_parts(1_000, 42);
    let buy = || buy_with_id(old_id, cat.items[0].listing, 3, Cents(300));
    let Reply::Order(first) = c.client.call(buy()).await.unwrap() else {
        panic!("no order")
    };
    drop(m);
    let token = c.session.token.clone();
    drop(c);

    let server = server.restart(|_| {}).await;
    let (client, _) = connect_customer(&server.addr).await;
    client.call(RequestBody::Resume { token }).await.unwrap();
    let Reply::Order(again) = client.call(buy()).await.unwrap() else {
        panic!("no order on retry")
    };
    assert_eq!((again.id, again.checkout_id), (first.id, old_id));
    assert_eq!(catalog(&client).await.items[0].remaining, 17);
    let Reply::Orders(history) = client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert_eq!(history.len(), 1);
    let (db, _dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.expect("clean stop");
    let report = server::audit(&db, None).expect("audit runs");
    assert!(report.ok, "{:?}", report.violations);
}

/// On PostgreSQL too, a retry finds its order on disk: once the running market has forgotten the id,
/// and after a takeover that loaded only the newest ids (this one is older than an hour before the
/// month opened). One order, the stock taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_retry_of_a_forgotten_or_unloaded_checkout_id_returns_the_original_order() {
    let server = TestServer::start_on_store(Store::Postgres, |_| {}).await;
    let m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 20, 100)]),
        Default::default(),
    )
    .await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 1, WAIT).await;
    let old_id = CheckoutId::from_parts(server::store::now_ms() - 2 * 3_600_000, 9);
    let buy = || buy_with_id(old_id, cat.items[0].listing, 3, Cents(300));
    let first = bought_then_retried_after_forgetting(&c.client, buy).await;
    drop(m);
    let token = c.session.token.clone();
    drop(c);
    let server = server.restart(|_| {}).await;
    let client = resume(&server.addr, &token).await;
    let Reply::Order(after) = client.call(buy()).await.unwrap() else {
        panic!("no order on the retry after the takeover")
    };
    assert_eq!((after.id, after.checkout_id), (first.id, old_id));
    assert_eq!(catalog(&client).await.items[0].remaining, 17);
}

/// A running server forgets checkout ids past the retry window (once a second); a retry of one then
/// finds its order on disk: the same order, the stock taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_checkout_the_running_server_has_forgotten_returns_the_original_order() {
    let (server, _m) = offered_server(vec![offer_line("apple", 20, 100)]).await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 1, WAIT).await;
    let old_id = CheckoutId::from_parts(
        server::store::now_ms() - server::market::RETRY_IN_MEMORY_MS - 60_000,
        7,
    );
    let buy = || buy_with_id(old_id, cat.items[0].listing, 3, Cents(300));
    let first = bought_then_retried_after_forgetting(&c.client, buy).await;
    assert_eq!(first.checkout_id, old_id);
    assert_eq!(catalog(&c.client).await.items[0].remaining, 17);
}

/// Buys with `request`, waits past the market's next forgetting of old checkout ids (once a second),
/// retries the same request, and checks the retry returned the same order; returns it.
async fn bought_then_retried_after_forgetting(
    client: &Client,
    request: impl Fn() -> RequestBody,
) -> OrderView {
    let Reply::Order(first) = client.call(request()).await.unwrap() else {
        panic!("no order")
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let Reply::Order(again) = client.call(request()).await.unwrap() else {
        panic!("no order on the retry")
    };
    assert_eq!((again.id, again.checkout_id), (first.id, first.checkout_id));
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_notices_are_redelivered_in_order_after_the_manufacturer_reconnects_and_applied_once(
) {
    let server = TestServer::start().await;
    let lines = vec![offer_line("apple", 100, 100)];
    let silent = ManufacturerScript {
        offer: lines.clone(),
        ack: false,
        dispatch: false,
    };
    let books = Arc::new(std::sync::Mutex::new(Books::default()));
    // It offers into month 1 as it connects.
    let m = TestManufacturer::connect(&server.addr, "orchard", silent, books.clone()).await;
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    for q in 1..=3 {
        c.client
            .call(tests::harness::buy_now(
                listing,
                q,
                Cents(u64::from(q) * 100),
            ))
            .await
            .unwrap();
    }
    eventually("three notices delivered", WAIT, async || {
        books.lock().unwrap().delivered.len() >= 3
    })
    .await;
    assert_eq!(books.lock().unwrap().delivered, vec![1, 2, 3]);
    drop(m); // Gone without acking.

    // Back, this time acking: the same three notices arrive again, in order, and count once.
    let m = TestManufacturer::connect(&server.addr, "orchard", script(lines), books.clone()).await;
    eventually("redelivery", WAIT, async || {
        books.lock().unwrap().delivered.len() >= 6
    })
    .await;
    assert_eq!(books.lock().unwrap().delivered, vec![1, 2, 3, 1, 2, 3]);
    assert_eq!(books.lock().unwrap().sold.get("apple"), Some(&6));
    let op = connect_operator(&server.addr).await;
    eventually("acks recorded", WAIT, async || {
        let Ok(Reply::Status(s)) = op.call(RequestBody::Status).await else {
            return false;
        };
        s.manufacturers
            .iter()
            .any(|x| x.id == m.id && x.acked_seq == NoticeSeq(3))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_offer_is_pulled_only_after_every_earlier_notice_is_acked() {
    let server = TestServer::start().await;
    let lines = vec![offer_line("apple", 100, 100)];
    let books = Arc::new(std::sync::Mutex::new(Books::default()));
    let m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        ManufacturerScript {
            offer: lines.clone(),
            ack: false,
            dispatch: false,
        },
        books.clone(),
    )
    .await;
    let op = connect_operator(&server.addr).await;
    // It offered into month 1 as it connected.
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    c.client
        .call(tests::harness::buy_now(listing, 1, Cents(100)))
        .await
        .unwrap();
    op.call(RequestBody::CloseMonth).await.unwrap(); // month 2 opens; a sale and a settlement are unacked
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        books.lock().unwrap().offered_months,
        vec![1],
        "offered again before acking"
    );
    drop(m);
    let _m = TestManufacturer::connect(&server.addr, "orchard", script(lines), books.clone()).await;
    eventually("offer for month 2 after the acks", WAIT, async || {
        books.lock().unwrap().offered_months == vec![1, 2]
    })
    .await;
    let b = books.lock().unwrap().clone();
    assert_eq!(b.settlements.len(), 1);
    assert_eq!(
        (
            b.settlements[0].lines[0].sold,
            b.settlements[0].lines[0].unsold
        ),
        (1, 99)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_ok_for_a_sound_database_and_catches_one_broken_on_purpose() {
    let (server, _m) = offered_server(vec![offer_line("apple", 30, 100)]).await;
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let Reply::Order(order) = c
        .client
        .call(tests::harness::buy_now(listing, 4, Cents(400)))
        .await
        .unwrap()
    else {
        panic!()
    };
    let acked = format!("{} {} 4\n", order.checkout_id.to_hex(), order.id.0);
    let (db, dir) = (server.db.clone(), server.dir.clone());
    // The audit works while the server runs.
    let live = server::audit(&db, Some(&acked)).unwrap();
    assert!(live.ok, "{:?}", live.violations);
    assert_eq!(
        (live.sold_units, live.orders, live.acked_checked),
        (4, 1, 1)
    );
    server.stop().await.unwrap();

    // A claimed checkout that never happened is caught.
    let bogus = format!("{} 999 1\n", CheckoutId::generate().to_hex());
    assert!(!server::audit(&db, Some(&bogus)).unwrap().ok);
    // Stock that does not add up is caught.
    break_stock(&db).await;
    let broken = server::audit(&db, None).unwrap();
    assert!(!broken.ok);
    assert!(
        broken.violations[0].contains("offered"),
        "{:?}",
        broken.violations
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_or_corrupt_database_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a database, it is a shopping list").unwrap();
    let before = std::fs::read(&garbage).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = server::run(server::Config::new(&garbage), listener, Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(std::fs::read(&garbage).unwrap(), before);

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes(x)")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = server::run(server::Config::new(&foreign), listener, Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another program"), "{err}");
    assert!(server::audit(&dir.path().join("missing.db"), None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_receive_coalesced_stock_changes_as_others_buy() {
    let (server, _m) = offered_server(vec![offer_line("apple", 100, 100)]).await;
    let mut watcher = customer(&server.addr).await;
    let buyer = customer(&server.addr).await;
    let listing = wait_for_catalog(&watcher.client, 1, WAIT).await.items[0].listing;
    for _ in 0..20 {
        buyer
            .client
            .call(tests::harness::buy_now(listing, 1, Cents(100)))
            .await
            .unwrap();
    }
    let mut latest = 100;
    let mut deltas = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while latest != 80 {
        match tokio::time::timeout_at(deadline, watcher.events.recv())
            .await
            .expect("stock pushes")
            .unwrap()
        {
            Event::Stock(delta) => {
                deltas += 1;
                for (l, r) in delta.levels {
                    if l == listing {
                        latest = r;
                    }
                }
            }
            Event::Catalog(c) => {
                latest = c
                    .items
                    .iter()
                    .find(|i| i.listing == listing)
                    .map_or(latest, |i| i.remaining)
            }
            _ => {}
        }
    }
    assert!(
        deltas < 20,
        "20 sales should coalesce into fewer updates, got {deltas}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_version_is_refused_clearly() {
    let server = TestServer::start().await;
    let hello = Hello {
        version: PROTOCOL_VERSION + 1,
        role: Role::Customer,
        client: "old".into(),
        name: None,
        key: None,
    };
    let Err(ClientError::Refused(e)) = Client::connect(&server.addr, hello).await else {
        panic!("accepted a wrong version")
    };
    assert_eq!(e.code, ErrorCode::VersionMismatch);
    assert!(e.message.contains(&PROTOCOL_VERSION.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_still_open_in_another_terminal_cannot_buy_and_the_server_keeps_serving()
{
    let (server, _m) = offered_server(vec![offer_line("apple", 50, 100)]).await;
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let second = resume(&server.addr, &c.session.token).await;
    second
        .call(RequestBody::AddToCart {
            listing,
            quantity: 2,
        })
        .await
        .unwrap();
    c.client
        .call(RequestBody::DeleteAccount {
            password: "correct horse battery".into(),
        })
        .await
        .unwrap();

    let add = second
        .call(RequestBody::AddToCart {
            listing,
            quantity: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(add.server_error().unwrap().code, ErrorCode::SessionExpired);
    let buy = second
        .call(tests::harness::buy_now(listing, 1, Cents(100)))
        .await
        .unwrap_err();
    assert_eq!(buy.server_error().unwrap().code, ErrorCode::SessionExpired);
    // Everyone else is still served, and the books are sound.
    let other = customer(&server.addr).await;
    other
        .client
        .call(tests::harness::buy_now(listing, 1, Cents(100)))
        .await
        .unwrap();
    let (db, dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    let report = server::audit(&db, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    drop(dir);
}

/// Adds a unit to every offer behind the server's back, in whichever store the harness runs on.
async fn break_stock(db: &std::path::Path) {
    const BREAK: &str = "UPDATE offers SET remaining = remaining + 1";
    match store_switch() {
        Store::Sqlite => {
            let conn = rusqlite::Connection::open(db).unwrap();
            conn.execute(BREAK, []).unwrap();
        }
        Store::Postgres => {
            let url = db.to_str().unwrap();
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.execute(BREAK, &[]).await.unwrap();
        }
    }
}

/// An ack confirms all of a maker's lines of an order at once, and the buyer hears of them in one push
/// per order that names those lines (protocol 3), not one push per line: two makers' acks make at most
/// two pushes (one, when both commit together), which name each of the three lines exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_lines_are_pushed_per_order_and_ack_not_per_line() {
    let server = TestServer::start().await;
    let acks_only = |lines| ManufacturerScript {
        dispatch: false,
        ..script(lines)
    };
    let orchard = acks_only(vec![
        offer_line("apple", 10, 125),
        offer_line("pear", 10, 80),
    ]);
    let bakery = acks_only(vec![offer_line("bread", 10, 300)]);
    let _m1 = TestManufacturer::connect(&server.addr, "orchard", orchard, Default::default()).await;
    let _m2 = TestManufacturer::connect(&server.addr, "bakery", bakery, Default::default()).await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 3, WAIT).await;
    let listing = |sku: &str| {
        cat.items
            .iter()
            .find(|i| i.sku == sku)
            .map(|i| i.listing)
            .expect("listed")
    };
    let lines = ["apple", "pear", "bread"].map(|sku| CartItem {
        listing: listing(sku),
        quantity: 1,
    });
    let checkout = RequestBody::Checkout {
        checkout_id: CheckoutId::generate(),
        lines: Some(lines.to_vec()),
        confirmed_total: Cents(125 + 80 + 300),
    };
    let Reply::Order(order) = c.client.call(checkout).await.unwrap() else {
        panic!("not an order")
    };
    let mut events = c.events;
    let mut pushes: Vec<Vec<ListingId>> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while pushes.iter().map(Vec::len).sum::<usize>() < 3 {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the confirmed pushes")
            .unwrap();
        if let Event::OrderStatus {
            order: id,
            mut listings,
            status,
        } = event
        {
            assert_eq!((id, status), (order.id, LineStatus::Confirmed));
            listings.sort();
            pushes.push(listings);
        }
    }
    assert!(pushes.len() <= 2, "one push per line: {pushes:?}");
    let mut named: Vec<ListingId> = pushes.concat();
    named.sort();
    let mut bought = lines.map(|l| l.listing).to_vec();
    bought.sort();
    assert_eq!(named, bought);
}

/// An ack confirms a line without rewriting it (the line's notice is at or below its maker's acked
/// sequence number): the history says Confirmed, at the time of the ack, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acked_line_reads_confirmed_at_its_ack_time_and_stays_so_after_a_restart() {
    let server = TestServer::start().await;
    let mut acks_only = script(vec![offer_line("apple", 10, 125)]);
    acks_only.dispatch = false;
    let m = TestManufacturer::connect(&server.addr, "orchard", acks_only, Default::default()).await;
    let c = customer(&server.addr).await;
    let cat = wait_for_catalog(&c.client, 1, WAIT).await;
    let apple = cat.items[0].listing;
    let Reply::Order(order) = c.client.call(buy_now(apple, 2, Cents(250))).await.unwrap() else {
        panic!()
    };
    assert_eq!(order.lines[0].status, LineStatus::Placed);
    let mut events = c.events;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the confirmed push")
            .unwrap();
        if let Event::OrderStatus { status, .. } = event {
            assert_eq!(status, LineStatus::Confirmed);
            break;
        }
    }
    let line = |history: &[OrderView]| history[0].lines[0].clone();
    let Reply::Orders(history) = c.client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    let confirmed = line(&history);
    assert_eq!(confirmed.status, LineStatus::Confirmed);
    assert!(confirmed.status_at_ms >= order.placed_at_ms);
    drop(m);
    let server = server.restart(|_| {}).await;
    let again = resume(&server.addr, &c.session.token).await;
    let Reply::Orders(history) = again.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert_eq!(line(&history), confirmed);
    let report = server::audit(&server.db, None).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}
