//! Real manufacturers (`manufacturer-sim`) against the real distributor: the two sets of books agree
//! after months of buying, even when a manufacturer is killed with `kill -9` mid-month.
//!
//! Manufacturers run in-process through `manufacturer_sim::run`, except the one that is killed: it
//! must be its own process. Cargo does not build a dependency's binary for another crate's tests, so
//! the child is this test executable itself, re-run to execute only `child_manufacturer_process` with
//! the command line in the environment (see `tests::child`); that test hands the arguments to
//! `manufacturer_sim::cli::main_from`, the very entry point of the `manufacturer-sim` binary. Set
//! `MANUFACTURER_SIM_BIN=/path/to/manufacturer-sim` to spawn a built binary instead.

use manufacturer_sim::{preset, Report, SimConfig};
use protocol::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tests::child::{child_args, ChildProcess};
use tests::harness::{self, TestServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Not a test: the body of a child manufacturer process (see the module docs).
#[test]
#[ignore = "entry point for child manufacturer processes spawned by the other tests"]
fn child_manufacturer_process() {
    let Some(args) = child_args() else {
        return;
    };
    let code = manufacturer_sim::cli::main_from(
        std::iter::once("manufacturer-sim".to_string()).chain(args),
    );
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// A manufacturer in its own process (killed with SIGKILL when dropped): the built binary named by
/// `MANUFACTURER_SIM_BIN`, or else this test executable running the entry point above.
fn spawn_manufacturer(args: &[String], log: &Path) -> ChildProcess {
    let child = match std::env::var_os("MANUFACTURER_SIM_BIN") {
        Some(bin) => ChildProcess::spawn_bin(Path::new(&bin), args, log),
        None => ChildProcess::spawn_self("manufacturers::child_manufacturer_process", args, log),
    };
    child.expect("spawn manufacturer")
}

/// A manufacturer running inside the test, stopped when dropped.
struct InProcess {
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), manufacturer_sim::SimError>>>,
    db: PathBuf,
}

impl InProcess {
    fn start(addr: &str, name: &str, catalog: &str, dir: &Path) -> InProcess {
        let db = dir.join(format!("{name}.db"));
        let mut config = SimConfig::new(addr, name, &db, preset(catalog).expect("preset"));
        config.dispatch_delay = Some(Duration::from_millis(200));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(manufacturer_sim::run(config, shutdown.clone()));
        InProcess {
            shutdown,
            task: Some(task),
            db,
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("manufacturer stops")
                .expect("manufacturer task")
                .expect("manufacturer ran without error");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Customers buying at random ("buy now", 1–2 lines) until `stop`; returns the orders they were
/// told about. A customer whose connection drops logs in again and goes on, so these orders can
/// miss a checkout whose answer was lost: the distributor's own tables are the reference.
///
/// Sign-ups (argon2) finish before this returns, so a slow machine does not eat the buying time.
async fn shoppers(
    addr: &str,
    count: usize,
    stop: CancellationToken,
) -> Vec<JoinHandle<Vec<OrderView>>> {
    let customers = futures::future::join_all((0..count).map(|_| harness::customer(addr))).await;
    customers
        .into_iter()
        .enumerate()
        .map(|(i, customer)| {
            let addr = addr.to_string();
            let stop = stop.clone();
            tokio::spawn(async move {
                let email = customer.email.clone();
                let mut client = customer.client;
                let mut orders = Vec::new();
                let mut n = i as u64 + 1;
                while !stop.is_cancelled() {
                    if client.is_closed() {
                        // Events are not needed here; dropping the receiver discards them.
                        let (fresh, _) = harness::connect_customer(&addr).await;
                        let login = fresh
                            .call(RequestBody::LogIn {
                                email: email.clone(),
                                password: "correct horse battery".into(),
                            })
                            .await;
                        if login.is_err() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        client = fresh;
                    }
                    let items = match client.call(RequestBody::Catalog).await {
                        Ok(Reply::Catalog(c)) => c.items,
                        Ok(other) => panic!("unexpected catalog reply {other:?}"),
                        Err(_) => continue,
                    };
                    let items: Vec<&CatalogItem> =
                        items.iter().filter(|c| c.remaining > 0).collect();
                    if items.is_empty() {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        continue;
                    }
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let first = items[(n >> 33) as usize % items.len()];
                    let second = items[(n >> 17) as usize % items.len()];
                    let mut lines = vec![CartItem {
                        listing: first.listing,
                        quantity: 1 + (n >> 40) as u32 % 3,
                    }];
                    if second.listing != first.listing {
                        lines.push(CartItem {
                            listing: second.listing,
                            quantity: 1,
                        });
                    }
                    let priced: Vec<CatalogItem> = vec![first.clone(), second.clone()];
                    let confirmed_total = harness::total_of(&priced, &lines);
                    let result = client
                        .call(RequestBody::Checkout {
                            checkout_id: CheckoutId::generate(),
                            lines: Some(lines),
                            confirmed_total,
                        })
                        .await;
                    match result {
                        Ok(Reply::Order(order)) => orders.push(order),
                        Ok(other) => panic!("unexpected checkout reply {other:?}"),
                        // Sold out or between months: normal while shopping. A dropped connection
                        // is retried from the top.
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
                orders
            })
        })
        .collect()
}

/// Units sold per (manufacturer name, SKU), from the distributor's own order lines.
fn distributor_sold(db: &Path) -> BTreeMap<(String, String), u64> {
    harness::store_rows(
        db,
        "SELECT m.name, l.sku, SUM(ol.quantity) FROM order_lines ol
         JOIN listings l ON l.id = ol.listing_id
         JOIN manufacturers m ON m.id = ol.manufacturer_id
         GROUP BY m.name, l.sku",
    )
    .into_iter()
    .map(|row| match row.as_slice() {
        [Some(name), Some(sku), Some(units)] => {
            ((name.clone(), sku.clone()), units.parse().expect("units"))
        }
        other => panic!("unexpected row {other:?}"),
    })
    .collect()
}

/// The orders customers were told about are all in the distributor's tables.
fn assert_told_orders_are_counted(orders: &[OrderView], sold: &BTreeMap<(String, String), u64>) {
    let told: u64 = orders.iter().map(|o| o.units()).sum();
    let counted: u64 = sold.values().sum();
    eprintln!(
        "customers were told of {} orders, {told} units; the distributor counts {counted} units",
        orders.len()
    );
    assert!(told > 0, "nobody bought anything");
    assert!(
        told <= counted,
        "customers were told of {told} units, the distributor counts {counted}"
    );
}

/// Closes the month every `every` until `stop`, so a test sees several months.
fn month_closer(addr: &str, every: Duration, stop: CancellationToken) -> JoinHandle<u32> {
    let addr = addr.to_string();
    tokio::spawn(async move {
        let operator = harness::connect_operator(&addr).await;
        let mut closed = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return closed,
                _ = tokio::time::sleep(every) => {}
            }
            if operator.call(RequestBody::CloseMonth).await.is_ok() {
                closed += 1;
            }
        }
    })
}

async fn status(addr: &str) -> SystemStatus {
    let operator = harness::connect_operator(addr).await;
    match operator.call(RequestBody::Status).await.expect("status") {
        Reply::Status(s) => *s,
        other => panic!("unexpected status reply {other:?}"),
    }
}

/// Waits until every named manufacturer is connected and has acked its whole outbox.
async fn wait_drained(addr: &str, names: &[&str], timeout: Duration) -> SystemStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = status(addr).await;
        let drained = names.iter().all(|name| {
            s.manufacturers
                .iter()
                .any(|m| m.name == *name && m.connected && m.acked_seq == m.last_seq)
        });
        if drained {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never drained: {:?}",
            s.manufacturers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The manufacturer's books may lag the ack it just sent by nothing, but the report is read from
/// another connection: poll briefly until it shows `through`.
async fn books_at(db: &Path, name: &str, through: NoticeSeq) -> Report {
    for _ in 0..100 {
        let report = manufacturer_sim::report(db).expect("report");
        let hw = report
            .manufacturers
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.high_water);
        if hw >= Some(through.0) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name}'s books never reached {through}");
}

/// Each manufacturer's own count equals the distributor's, product by product, and its books add up.
fn assert_books_agree(report: &Report, name: &str, distributor: &BTreeMap<(String, String), u64>) {
    let m = report
        .manufacturers
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not in its books"));
    for p in &m.products {
        let theirs = distributor
            .get(&(name.to_string(), p.sku.clone()))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            p.sold, theirs,
            "{name} {}: manufacturer counts {} sold, distributor {}",
            p.sku, p.sold, theirs
        );
        assert_eq!(
            p.starting + p.produced + p.returned,
            p.in_stock + p.offered,
            "{name} {}: stock does not add up: {p:?}",
            p.sku
        );
    }
    eprintln!(
        "{name}: {} months offered, {} units sold in both books, notices through seq {}",
        m.months.len(),
        m.products.iter().map(|p| p.sold).sum::<u64>(),
        m.high_water
    );
    // Every month but the open one (the last) has its settlement in the books.
    for month in m.months.iter().rev().skip(1) {
        assert!(
            month.state == "settled" || month.state == "lapsed",
            "{name}: {month:?}"
        );
    }
}

/// Every offer was recorded only after every notice of an earlier month was in the books: the
/// distributor pulls an offer only once everything before it is acked.
fn assert_offers_followed_acks(db: &Path, name: &str) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open books");
    let mut stmt = conn
        .prepare(
            "SELECT o.month, o.high_water_at_offer,
                    (SELECT COALESCE(MAX(n.seq), 0) FROM notices n
                      WHERE n.manufacturer = o.manufacturer AND n.month < o.month)
             FROM offers o WHERE o.manufacturer = ?1",
        )
        .expect("query");
    let rows: Vec<(u32, u64, u64)> = stmt
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!rows.is_empty(), "{name} never offered");
    // Every seq from 1 to the mark is in the books once: none lost, none skipped.
    let (count, max): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM notices WHERE manufacturer = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("notices");
    assert_eq!(
        count, max,
        "{name}'s books hold {count} notices up to seq {max}"
    );
    for (month, at_offer, earlier) in rows {
        assert!(
            at_offer >= earlier,
            "{name} offered for month {month} with notices applied through {at_offer}, \
             but notices of earlier months run to {earlier}"
        );
    }
}

async fn collect(handles: Vec<JoinHandle<Vec<OrderView>>>) -> Vec<OrderView> {
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("shopper"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_manufacturers_books_agree_with_the_distributor_after_several_months() {
    let server = TestServer::start_with(|c| c.month_secs = 60).await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["orchard", "dairy", "bakery"];
    let sims: Vec<InProcess> = names
        .iter()
        .map(|n| InProcess::start(&server.addr, n, n, dir.path()))
        .collect();
    let stop = CancellationToken::new();
    // The manufacturers offer into month 1 as they connect; the closer turns months over.
    let closer = month_closer(&server.addr, Duration::from_millis(1500), stop.clone());
    let buyers = shoppers(&server.addr, 4, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.cancel();
    let orders = collect(buyers).await;
    let closes = closer.await.unwrap();
    // Settle the last month too, so every offer has its settlement.
    harness::connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close the last month");
    let status = wait_drained(&server.addr, &names, Duration::from_secs(20)).await;

    let distributor = distributor_sold(&server.db);
    assert_told_orders_are_counted(&orders, &distributor);
    assert_eq!(status.sold_units, distributor.values().sum::<u64>());
    for (sim, name) in sims.iter().zip(names) {
        let acked = status
            .manufacturers
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.acked_seq)
            .unwrap();
        let report = books_at(&sim.db, name, acked).await;
        assert!(
            report.manufacturers[0].months.len() >= 3,
            "{name} offered in only {} months ({closes} closes)",
            report.manufacturers[0].months.len()
        );
        assert_books_agree(&report, name, &distributor);
        assert_offers_followed_acks(&sim.db, name);
    }
    let audit = server::audit(&server.db, None).expect("audit");
    assert!(audit.ok, "{:?}", audit.violations);
    assert_eq!(audit.outbox_pending, 0);
    for sim in sims {
        sim.stop().await;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manufacturer_killed_mid_month_and_restarted_loses_and_double_counts_nothing() {
    let server = TestServer::start_with(|c| c.month_secs = 60).await;
    let dir = tempfile::tempdir().unwrap();
    let dairy = InProcess::start(&server.addr, "dairy", "dairy", dir.path());
    let bakery = InProcess::start(&server.addr, "bakery", "bakery", dir.path());
    let orchard_db = dir.path().join("orchard.db");
    let log = dir.path().join("orchard.log");
    let args: Vec<String> = [
        "--server",
        &server.addr,
        "--name",
        "orchard",
        "--preset",
        "orchard",
        "--db",
        orchard_db.to_str().unwrap(),
        "--dispatch-ms",
        "200",
        "--rate-scale",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut orchard = spawn_manufacturer(&args, &log);
    let stop = CancellationToken::new();
    let closer = month_closer(&server.addr, Duration::from_millis(1500), stop.clone());
    let buyers = shoppers(&server.addr, 4, stop.clone()).await;
    // Kill it at moments that fall anywhere in the cycle: mid-batch, mid-offer, across a close.
    for (up_ms, down_ms) in [(2500, 400), (700, 1700), (1100, 250), (1300, 900)] {
        tokio::time::sleep(Duration::from_millis(up_ms)).await;
        orchard.kill9();
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        orchard = spawn_manufacturer(&args, &log);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let orders = collect(buyers).await;
    closer.await.unwrap();
    harness::connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close the last month");
    let names = ["orchard", "dairy", "bakery"];
    let status = wait_drained(&server.addr, &names, Duration::from_secs(20)).await;
    let distributor = distributor_sold(&server.db);
    assert_told_orders_are_counted(&orders, &distributor);
    assert_eq!(status.sold_units, distributor.values().sum::<u64>());
    let orchard_units: u64 = distributor
        .iter()
        .filter(|((m, _), _)| m == "orchard")
        .map(|(_, u)| *u)
        .sum();
    assert!(
        orchard_units > 0,
        "nobody bought from the killed manufacturer"
    );
    let acked = |name: &str| {
        status
            .manufacturers
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.acked_seq)
            .unwrap()
    };
    let report = books_at(&orchard_db, "orchard", acked("orchard")).await;
    assert_books_agree(&report, "orchard", &distributor);
    assert_offers_followed_acks(&orchard_db, "orchard");
    for (sim, name) in [(&dairy, "dairy"), (&bakery, "bakery")] {
        let report = books_at(&sim.db, name, acked(name)).await;
        assert_books_agree(&report, name, &distributor);
    }
    let audit = server::audit(&server.db, None).expect("audit");
    assert!(audit.ok, "{:?}", audit.violations);
    orchard.kill9();
    dairy.stop().await;
    bakery.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manufacturer_that_joins_late_offers_into_the_open_month() {
    let server = TestServer::start_with(|c| c.month_secs = 60).await;
    let dir = tempfile::tempdir().unwrap();
    let orchard = InProcess::start(&server.addr, "orchard", "orchard", dir.path());
    let buyer = harness::customer(&server.addr).await;
    let catalog = harness::wait_for_catalog(&buyer.client, 4, Duration::from_secs(10)).await;
    let joined_in = catalog
        .month
        .as_ref()
        .map(|m| m.id)
        .expect("a month is open");
    assert_eq!(joined_in, MonthId(1), "orchard's goods joined month 1");

    let dairy = InProcess::start(&server.addr, "dairy", "dairy", dir.path());
    let catalog = harness::wait_for_catalog(&buyer.client, 8, Duration::from_secs(10)).await;
    assert_eq!(catalog.month.as_ref().map(|m| m.id), Some(joined_in));
    assert_eq!(
        catalog
            .items
            .iter()
            .filter(|i| i.manufacturer_name == "dairy")
            .count(),
        4
    );
    let months = manufacturer_sim::report(&dairy.db).unwrap().manufacturers[0]
        .months
        .clone();
    assert_eq!(months.len(), 1);
    assert_eq!(months[0].month, joined_in.0);
    dairy.stop().await;
    orchard.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_line_becomes_confirmed_and_then_dispatched() {
    let server = TestServer::start_with(|c| c.month_secs = 60).await;
    let dir = tempfile::tempdir().unwrap();
    let orchard = InProcess::start(&server.addr, "orchard", "orchard", dir.path());
    let mut buyer = harness::customer(&server.addr).await;
    let catalog = harness::wait_for_catalog(&buyer.client, 4, Duration::from_secs(10)).await;
    let item = &catalog.items[0];
    let order = match buyer
        .client
        .call(tests::harness::buy_now(
            item.listing,
            2,
            item.unit_price.times(2).unwrap(),
        ))
        .await
        .expect("checkout")
    {
        Reply::Order(o) => o,
        other => panic!("unexpected reply {other:?}"),
    };
    assert_eq!(order.status(), LineStatus::Placed);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&LineStatus::Dispatched) {
        let event = tokio::time::timeout_at(deadline, buyer.events.recv())
            .await
            .expect("order status events in time")
            .expect("connection open");
        if let Event::OrderStatus {
            order: id, status, ..
        } = event
        {
            if id == order.id {
                seen.push(status);
            }
        }
    }
    assert_eq!(seen, vec![LineStatus::Confirmed, LineStatus::Dispatched]);
    let orders = match buyer.client.call(RequestBody::Orders).await.unwrap() {
        Reply::Orders(o) => o,
        other => panic!("unexpected reply {other:?}"),
    };
    assert_eq!(orders[0].id, order.id);
    assert_eq!(orders[0].status(), LineStatus::Dispatched);
    // The manufacturer's books hold the sale, and its dispatch is no longer pending.
    let books = manufacturer_sim::Books::open(&orchard.db, "orchard").unwrap();
    assert!(books.pending_dispatches().unwrap().is_empty());
    drop(books);
    orchard.stop().await;
    server.stop().await.unwrap();
}

/// The status of `order`'s line of `listing`, as `customer` sees it in its order history.
async fn line_status(
    customer: &harness::Customer,
    order: OrderId,
    listing: ListingId,
) -> LineStatus {
    let Reply::Order(view) = customer
        .client
        .call(RequestBody::GetOrder { order })
        .await
        .expect("get order")
    else {
        panic!("unexpected reply to GetOrder")
    };
    view.lines
        .iter()
        .find(|line| line.listing == listing)
        .map(|line| line.status)
        .expect("the order holds the listing")
}

/// Buys one unit of each listing at its price, as one checkout; returns the order.
async fn buy(customer: &harness::Customer, lines: &[(ListingId, Cents)]) -> OrderId {
    let body = RequestBody::Checkout {
        checkout_id: CheckoutId::generate(),
        confirmed_total: Cents(lines.iter().map(|(_, price)| price.0).sum()),
        lines: Some(
            lines
                .iter()
                .map(|&(listing, _)| CartItem {
                    listing,
                    quantity: 1,
                })
                .collect(),
        ),
    };
    match customer.client.call(body).await.expect("checkout") {
        Reply::Order(order) => order.id,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dispatch_report_marks_only_the_reporting_makers_lines_and_names_the_orders_it_does_not_hold(
) {
    use harness::{offer_line, ManufacturerScript, TestManufacturer};
    let server = TestServer::start_with(|c| c.month_secs = 60).await;
    // Scripted makers that ack but never report dispatch on their own: the test reports for them.
    let quiet = |lines| ManufacturerScript {
        offer: lines,
        ack: true,
        dispatch: false,
    };
    let orchard = TestManufacturer::connect(
        &server.addr,
        "orchard",
        quiet(vec![offer_line("apple", 100, 100)]),
        Default::default(),
    )
    .await;
    let dairy = TestManufacturer::connect(
        &server.addr,
        "dairy",
        quiet(vec![offer_line("milk", 100, 50)]),
        Default::default(),
    )
    .await;
    let alice = harness::customer(&server.addr).await;
    let bob = harness::customer(&server.addr).await;
    let catalog = harness::wait_for_catalog(&alice.client, 2, Duration::from_secs(10)).await;
    let listing = |maker: &str| {
        let item = catalog.items.iter().find(|i| i.manufacturer_name == maker);
        item.map(|i| (i.listing, i.unit_price)).expect("listed")
    };
    let ((apple, apple_price), (milk, milk_price)) = (listing("orchard"), listing("dairy"));
    let apples = buy(&alice, &[(apple, apple_price)]).await;
    let both = buy(&bob, &[(apple, apple_price), (milk, milk_price)]).await;
    let milk_only = buy(&alice, &[(milk, milk_price)]).await;
    let nobodys = OrderId(987_654_321);

    // One report for the round: the orchard's two orders are marked, the other two are named.
    let answer = orchard
        .client
        .call(RequestBody::ReportDispatches {
            orders: vec![apples, both, milk_only, nobodys],
        })
        .await
        .expect("the report is taken");
    assert_eq!(
        answer,
        Reply::Dispatched {
            unknown: vec![milk_only, nobodys]
        }
    );
    assert_eq!(
        line_status(&alice, apples, apple).await,
        LineStatus::Dispatched
    );
    assert_eq!(line_status(&bob, both, apple).await, LineStatus::Dispatched);
    assert_ne!(line_status(&bob, both, milk).await, LineStatus::Dispatched);
    assert_ne!(
        line_status(&alice, milk_only, milk).await,
        LineStatus::Dispatched
    );

    // A report over the limit is refused whole, and changes nothing.
    let too_many = vec![milk_only; MAX_DISPATCHES_PER_REPORT + 1];
    let refused = dairy
        .client
        .call(RequestBody::ReportDispatches { orders: too_many })
        .await
        .expect_err("over the limit");
    assert_eq!(
        refused.server_error().map(|e| e.code),
        Some(ErrorCode::InvalidInput)
    );
    assert_ne!(
        line_status(&alice, milk_only, milk).await,
        LineStatus::Dispatched
    );
    // The dairy's own report, repeated, marks its lines once and names nothing.
    for _ in 0..2 {
        let answer = dairy
            .client
            .call(RequestBody::ReportDispatches {
                orders: vec![both, milk_only],
            })
            .await
            .expect("the report is taken");
        assert_eq!(answer, Reply::Dispatched { unknown: vec![] });
    }
    assert_eq!(line_status(&bob, both, milk).await, LineStatus::Dispatched);
    assert_eq!(
        line_status(&alice, milk_only, milk).await,
        LineStatus::Dispatched
    );
    server.stop().await.unwrap();
}
