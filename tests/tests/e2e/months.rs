//! The monthly cycle as users meet it: a manufacturer that connects while a month is open sells in
//! that month (real distributor and manufacturer processes, as "Running the parts by hand" starts
//! them), a restart mid-month keeps who offered, and a month closes by "every customer has bought"
//! only when every logged-in customer has bought and the month has run its minimum length.
//!
//! The child processes are this test executable re-run to execute one ignored entry point, which
//! calls the binary's own `cli::main_from` (see `tests::child`).

use protocol::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::harness::{self, offer_line, script, Books, TestManufacturer, TestServer};

const WAIT: Duration = Duration::from_secs(20);

/// Not a test: the body of a child distributor process.
#[test]
#[ignore = "entry point for child distributor processes spawned by the other tests"]
fn child_distributor_process() {
    run_child("distributor", server::cli::main_from, 1);
}

/// Not a test: the body of a child manufacturer process.
#[test]
#[ignore = "entry point for child manufacturer processes spawned by the other tests"]
fn child_manufacturer_process() {
    run_child("manufacturer-sim", manufacturer_sim::cli::main_from, 1);
}

fn spawn(entry: &str, args: &[&str], log: &Path) -> ChildProcess {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    ChildProcess::spawn_self(entry, &args, log).expect("spawn child process")
}

async fn wait_until_up(addr: &str, log: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Customer,
            client: "months-test".into(),
            name: None,
            key: None,
        };
        if Client::connect(addr, hello).await.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "distributor did not come up; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn status(addr: &str) -> SystemStatus {
    match harness::connect_operator(addr)
        .await
        .call(RequestBody::Status)
        .await
        .expect("status")
    {
        Reply::Status(s) => *s,
        other => panic!("unexpected status reply {other:?}"),
    }
}

fn open_month(s: &SystemStatus) -> Option<MonthId> {
    s.month
        .as_ref()
        .filter(|m| m.state == MonthState::Open)
        .map(|m| m.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manufacturer_started_after_the_distributor_sells_in_the_first_month_and_is_settled_for_it(
) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let db = dir.path().join("distributor.db");
    let orchard_db = dir.path().join("orchard.db");
    let log = dir.path().join("processes.log");
    // As the README's "Running the parts by hand": the distributor, then a manufacturer a second
    // later, with no operator step in between.
    let _distributor = spawn(
        "months::child_distributor_process",
        &[
            "--listen",
            &addr,
            "--db",
            db.to_str().unwrap(),
            "--month-secs",
            "60",
        ],
        &log,
    );
    wait_until_up(&addr, &log).await;
    let buyer = harness::customer(&addr).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let _orchard = spawn(
        "months::child_manufacturer_process",
        &[
            "--server",
            &addr,
            "--name",
            "orchard",
            "--preset",
            "orchard",
            "--db",
            orchard_db.to_str().unwrap(),
        ],
        &log,
    );
    let catalog = harness::wait_for_catalog(&buyer.client, 1, WAIT).await;
    let took = started.elapsed();
    assert_eq!(
        catalog.month.as_ref().map(|m| m.id),
        Some(MonthId(1)),
        "the goods joined the month that was open when the manufacturer connected"
    );
    // "Within a couple of seconds" on an idle machine; generous here because the machine is shared.
    assert!(
        took < Duration::from_secs(10),
        "stock took {took:?}; see {}",
        log.display()
    );
    let item = catalog.items[0].clone();
    match buyer
        .client
        .call(tests::harness::buy_now(
            item.listing,
            2,
            item.unit_price.times(2).expect("a small total"),
        ))
        .await
        .expect("checkout")
    {
        Reply::Order(o) => assert_eq!(o.month, MonthId(1)),
        other => panic!("unexpected reply {other:?}"),
    }
    // The distributor wrote its operator key beside its database, as it does on first start.
    harness::connect_operator_with(&addr, &harness::operator_key_beside(&db).await)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close month 1");
    // The settlement of month 1 reaches the manufacturer's own books and covers what it offered.
    let deadline = tokio::time::Instant::now() + WAIT;
    let month = loop {
        let report = manufacturer_sim::report(&orchard_db).expect("orchard's report");
        let month = report.manufacturers[0]
            .months
            .iter()
            .find(|m| m.month == 1)
            .cloned();
        if let Some(m) = month.filter(|m| m.state == "settled") {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "month 1 never settled in orchard's books: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let offered: u64 = catalog
        .items
        .iter()
        .filter(|i| i.manufacturer_name == "orchard")
        .map(|i| u64::from(i.offered))
        .sum();
    assert_eq!(month.offered, offered);
    assert_eq!(month.sold, 2);
    assert_eq!(month.returned, offered - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_mid_month_who_offered_is_kept_and_a_newcomer_still_joins_the_month() {
    let server = TestServer::start_with(|c| c.month_secs = 600).await;
    let orchard_books = Books::default();
    let orchard_books = std::sync::Arc::new(std::sync::Mutex::new(orchard_books));
    let orchard = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 10, 100)]),
        orchard_books.clone(),
    )
    .await;
    let buyer = harness::customer(&server.addr).await;
    harness::wait_for_catalog(&buyer.client, 1, WAIT).await;
    drop(orchard);
    drop(buyer);

    let server = server.restart(|c| c.month_secs = 600).await;
    let _orchard = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 10, 100)]),
        orchard_books.clone(),
    )
    .await;
    let dairy_books = std::sync::Arc::new(std::sync::Mutex::new(Books::default()));
    let dairy = TestManufacturer::connect(
        &server.addr,
        "dairy",
        script(vec![offer_line("milk", 5, 90)]),
        dairy_books.clone(),
    )
    .await;
    let buyer = harness::customer(&server.addr).await;
    let catalog = harness::wait_for_catalog(&buyer.client, 2, WAIT).await;
    assert_eq!(catalog.month.as_ref().map(|m| m.id), Some(MonthId(1)));
    assert_eq!(dairy_books.lock().unwrap().offered_months, vec![1]);
    assert_eq!(
        orchard_books.lock().unwrap().offered_months,
        vec![1],
        "orchard had offered before the restart and is not asked twice"
    );
    drop(dairy);
    drop(buyer);

    // The store kept dairy as having offered in month 1: after another restart it is not asked
    // again, and the status says it offered.
    let server = server.restart(|c| c.month_secs = 600).await;
    let _dairy = TestManufacturer::connect(
        &server.addr,
        "dairy",
        script(vec![offer_line("milk", 5, 90)]),
        dairy_books.clone(),
    )
    .await;
    let s = status(&server.addr).await;
    assert_eq!(open_month(&s), Some(MonthId(1)));
    for name in ["orchard", "dairy"] {
        assert!(
            s.manufacturers
                .iter()
                .any(|m| m.name == name && m.offered_this_month),
            "{name} offered in month 1: {:?}",
            s.manufacturers
        );
    }
    let buyer = harness::customer(&server.addr).await;
    let catalog = harness::catalog(&buyer.client).await;
    assert_eq!(catalog.items.len(), 2, "both offers are still on sale");
    assert_eq!(dairy_books.lock().unwrap().offered_months, vec![1]);
    let conn = rusqlite::Connection::open(&server.db).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM month_manufacturers WHERE month_id = 1 AND offered = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 2, "one expected-and-offered row per manufacturer");
    server.stop().await.unwrap();
}

async fn buy_from_cart(c: &harness::Customer, listing: ListingId) -> OrderView {
    let added = c
        .client
        .call(RequestBody::AddToCart {
            listing,
            quantity: 1,
        })
        .await
        .expect("add to cart");
    let Reply::Cart(cart) = added else {
        panic!("unexpected add reply {added:?}")
    };
    // The customer pays the total the cart showed.
    harness::checkout_cart(&c.client, cart.total)
        .await
        .expect("checkout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_purchase_does_not_close_the_month_while_other_customers_are_logged_in() {
    let server = TestServer::start_with(|c| {
        c.month_secs = 600;
        c.min_month_secs = Some(0);
    })
    .await;
    let _m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 1_000, 100)]),
        Default::default(),
    )
    .await;
    let quick = harness::customer(&server.addr).await;
    let watcher = harness::customer(&server.addr).await;
    let apple = harness::wait_for_catalog(&quick.client, 1, WAIT)
        .await
        .items[0]
        .listing;
    buy_from_cart(&quick, apple).await;
    assert_eq!(
        open_month(&status(&server.addr).await),
        Some(MonthId(1)),
        "the watcher is logged in and has not bought"
    );
    buy_from_cart(&watcher, apple).await;
    assert_eq!(
        open_month(&status(&server.addr).await),
        Some(MonthId(2)),
        "everyone logged in has bought"
    );

    // Both are still logged in when month 2 opens: both are active in it.
    harness::eventually("month 2 has stock", WAIT, async || {
        !harness::catalog(&quick.client).await.items.is_empty()
    })
    .await;
    buy_from_cart(&quick, apple).await;
    assert_eq!(open_month(&status(&server.addr).await), Some(MonthId(2)));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_customer_having_bought_closes_a_month_only_after_its_minimum_length() {
    let server = TestServer::start_with(|c| {
        c.month_secs = 600;
        c.min_month_secs = Some(2);
    })
    .await;
    let _m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 1_000, 100)]),
        Default::default(),
    )
    .await;
    let mut buyer = harness::customer(&server.addr).await;
    let catalog = harness::wait_for_catalog(&buyer.client, 1, WAIT).await;
    let opened = catalog.month.as_ref().unwrap().opened_at_ms;
    buy_from_cart(&buyer, catalog.items[0].listing).await;
    let closed_at = loop {
        let event = tokio::time::timeout(WAIT, buyer.events.recv())
            .await
            .expect("the month closes in time")
            .expect("connection open");
        if let Event::MonthClosed { month, reason } = event {
            assert_eq!((month, reason), (MonthId(1), CloseReason::AllCustomersDone));
            break server::store::now_ms();
        }
    };
    assert!(
        closed_at >= opened + 2_000,
        "closed {} ms after it opened",
        closed_at - opened
    );
    server.stop().await.unwrap();
}

/// The "498 months in 45 s", bounded: 8 s months and four mixed shoppers for 4 s. Each month
/// that closed because every customer had bought lasted at least the default minimum (2 s, a
/// quarter of 8 s), so only a handful of months pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_shoppers_do_not_turn_months_over_faster_than_the_minimum_length() {
    let server = TestServer::start_with(|c| c.month_secs = 8).await;
    let offer = (1..=6)
        .map(|i| offer_line(&format!("MX{i}"), 1_000_000, 100 * i))
        .collect();
    let _m =
        TestManufacturer::connect(&server.addr, "mixed", script(offer), Default::default()).await;
    let config = tests::traffic::Config {
        customers: 4,
        duration: Duration::from_secs(4),
        mode: tests::traffic::Mode::Mixed,
        connect_concurrency: 4,
        stock_wait: Duration::from_secs(10),
        ..tests::traffic::Config::new(server.addr.clone())
    };
    let summary = tests::traffic::run(config).await.expect("the run was made");
    assert!(summary.checkouts_ok > 0, "{}", summary.to_json());
    let conn = rusqlite::Connection::open(&server.db).unwrap();
    let months: Vec<(i64, i64, Option<i64>)> = conn
        .prepare("SELECT id, opened_at_ms, closed_at_ms FROM months ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, opened, closed) in &months {
        if let Some(closed) = closed {
            assert!(
                closed - opened >= 2_000,
                "month {id} closed after {} ms: {months:?}",
                closed - opened
            );
        }
    }
    assert!(
        months.len() <= 6,
        "{} months in one run: {months:?}",
        months.len()
    );
    server.stop().await.unwrap();
}
