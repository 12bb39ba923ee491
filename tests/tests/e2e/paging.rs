//! Big catalogs, long histories and big offers, end to end over real TCP: a real `manufacturer-sim`
//! whose 2,000-product offer is too big for one frame (it goes in parts), one customer with 10,000
//! orders of 10 lines, and the shop (its real `App` and connection task), `loadgen` and the Orders
//! screen working through them page by page.
//!
//! Before paging, the first catalog reply (over 64 KiB) could not be encoded at all, the server
//! dropped the connection, and the offer was refused as malformed.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use manufacturer_sim::{Catalog, Product, SimConfig};
use protocol::codec::{encode_payload, MAX_CLIENT_FRAME};
use protocol::*;
use std::time::Duration;
use tests::harness::{self, connect_operator, TestServer};
use tests::traffic::{self, customer::Identity, Mode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tui_client::app::{App, Cmd, Msg, NetEvent, Screen};
use tui_client::net::{self, NetCmd, Target};

const LISTINGS: usize = 2_000;
const ORDERS: usize = 10_000;
const LINES_PER_ORDER: usize = 10;
const WAIT: Duration = Duration::from_secs(120);

/// `n` products with names long enough that one offer, one catalog page and one orders page are each
/// far over 64 KiB.
fn big_catalog(n: usize) -> Catalog {
    Catalog {
        products: (0..n)
            .map(|i| Product {
                sku: format!("SKU-{i:05}"),
                name: format!("A product with a name long enough to matter, number {i:05}"),
                category: format!("category {:02}", i % 20),
                unit_price_cents: 100 + i as u64,
                rate_per_sec: 0.0,
                starting_stock: 1_000,
                capacity: 1_000,
            })
            .collect(),
    }
}

/// A real manufacturer running in this process, stopped when dropped.
struct Manufacturer {
    stop: CancellationToken,
    task: JoinHandle<Result<(), manufacturer_sim::SimError>>,
}

impl Drop for Manufacturer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A distributor whose open month holds every product of a `products`-product `manufacturer-sim`.
async fn stocked_server(products: usize, dir: &std::path::Path) -> (TestServer, Manufacturer) {
    let server = TestServer::start_with(|c| c.month_secs = 3_600).await;
    let mut config = SimConfig::new(
        &server.addr,
        "warehouse",
        dir.join("warehouse.db"),
        big_catalog(products),
    );
    config.dispatch_delay = None;
    let stop = CancellationToken::new();
    let task = tokio::spawn(manufacturer_sim::run(config, stop.clone()));
    // It joins the open month: asked for its offer as soon as it connects.
    let watcher = harness::customer(&server.addr).await;
    harness::eventually("every product is on sale", WAIT, async || {
        assert!(!task.is_finished(), "the manufacturer stopped: {task:?}");
        harness::catalog(&watcher.client).await.items.len() == products
    })
    .await;
    (server, Manufacturer { stop, task })
}

/// Places `ORDERS` orders of `LINES_PER_ORDER` lines for `buyer`. A connection handles its requests
/// one at a time, so the orders go over many connections resumed into the buyer's session, and the
/// writer commits many of them at once.
async fn seed_orders(addr: &str, buyer: &harness::Customer, catalog: &CatalogSnapshot) {
    let listings: Vec<(ListingId, Cents)> = catalog
        .items
        .iter()
        .map(|i| (i.listing, i.unit_price))
        .collect();
    let connections = 32;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (client, _events) = harness::connect_customer(addr).await;
        let resume = RequestBody::Resume {
            token: buyer.session.token.clone(),
        };
        assert!(matches!(client.call(resume).await, Ok(Reply::Session(_))));
        let listings = listings.clone();
        tasks.push(tokio::spawn(async move {
            for k in (c..ORDERS).step_by(connections) {
                let picked: Vec<_> = (0..LINES_PER_ORDER)
                    .map(|j| listings[(k * LINES_PER_ORDER + j) % listings.len()])
                    .collect();
                let lines = picked
                    .iter()
                    .map(|(listing, _)| CartItem {
                        listing: *listing,
                        quantity: 1,
                    })
                    .collect();
                let total = picked.iter().map(|(_, price)| price.0).sum();
                let placed = client
                    .call(RequestBody::Checkout {
                        checkout_id: CheckoutId::generate(),
                        lines: Some(lines),
                        confirmed_total: Cents(total),
                    })
                    .await;
                assert!(
                    matches!(placed, Ok(Reply::Order(_))),
                    "checkout {k}: {placed:?}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("checkout worker");
    }
}

/// The shop's real model and connection task, driven by keys as a person would.
struct Shop {
    app: App,
    cmds: mpsc::UnboundedSender<NetCmd>,
    events: mpsc::UnboundedReceiver<NetEvent>,
    stop: CancellationToken,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shop {
    fn start(addr: &str) -> Shop {
        let (events_tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let target = Target::customer(addr);
        let (cmds, _task) = net::spawn(target, events_tx, stop.clone());
        Shop {
            app: App::new(tui_client::theme::Theme::plain(), now_ms()),
            cmds,
            events,
            stop,
        }
    }

    fn carry_out(&mut self, cmds: Vec<Cmd>) {
        for cmd in cmds {
            let _ = match cmd {
                Cmd::Send { tag, body } => self.cmds.send(NetCmd::Send { tag, body }),
                Cmd::Session(token) => self.cmds.send(NetCmd::Session(token)),
                // This shop is a customer's; it opens no operator connection.
                Cmd::SendOperator { .. } | Cmd::Quit => Ok(()),
            };
        }
    }

    fn key(&mut self, code: KeyCode) {
        let cmds = self
            .app
            .update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        self.carry_out(cmds);
    }

    fn type_str(&mut self, text: &str) {
        for c in text.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// Feeds the connection's events to the app until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.app) {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
                .expect("the connection task is running");
            let cmds = self.app.update(Msg::Net(event));
            self.carry_out(cmds);
        }
    }

    fn screen_text(&self) -> String {
        let backend = ratatui::backend::TestBackend::new(80, 24);
        let mut terminal = ratatui::Terminal::new(backend).expect("test terminal");
        terminal
            .draw(|f| tui_client::screens::draw(f, &self.app))
            .expect("draw");
        terminal.backend().to_string()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn encoded_len(reply: Reply) -> usize {
    let message = ServerMessage::Response(Response {
        id: RequestId(1),
        result: Ok(reply),
    });
    encode_payload(&message, usize::MAX).map_or(0, |p| p.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2000_product_offer_goes_in_parts_and_the_shop_loadgen_and_orders_screen_page_through_2000_listings_and_10000_orders(
) {
    let dir = tempfile::tempdir().unwrap();
    let (server, manufacturer) = stocked_server(LISTINGS, dir.path()).await;

    // A protocol client walks the catalog page by page; one page alone is far over 64 KiB.
    let buyer = harness::customer(&server.addr).await;
    let first = match buyer.client.call(RequestBody::Catalog).await.unwrap() {
        Reply::Catalog(page) => page,
        other => panic!("unexpected catalog reply {other:?}"),
    };
    assert_eq!(first.items.len(), CATALOG_PAGE_LEN);
    assert!(encoded_len(Reply::Catalog(first)) > MAX_CLIENT_FRAME);
    let catalog = buyer.client.whole_catalog().await.unwrap();
    let mut ids: Vec<_> = catalog.items.iter().map(|i| i.listing).collect();
    ids.dedup();
    assert_eq!(ids.len(), LISTINGS, "every listing once, in id order");

    // Another customer keeps a line in the cart, so the month stays open while the buyer buys.
    let holder = harness::customer(&server.addr).await;
    let add = RequestBody::AddToCart {
        listing: ids[0],
        quantity: 1,
    };
    holder.client.call(add).await.unwrap();

    let seeding = std::time::Instant::now();
    seed_orders(&server.addr, &buyer, &catalog).await;
    eprintln!("{ORDERS} checkouts in {:?}", seeding.elapsed());

    // Every order comes back, newest first, each with its lines; one page is far over 64 KiB.
    let orders = buyer.client.all_orders().await.unwrap();
    assert_eq!(orders.len(), ORDERS);
    assert!(
        orders.windows(2).all(|w| w[0].id > w[1].id),
        "newest first, no repeats"
    );
    assert!(orders.iter().all(|o| o.lines.len() == LINES_PER_ORDER));
    let newest_page = orders[..ORDERS_PAGE_LEN].to_vec();
    assert!(encoded_len(Reply::Orders(newest_page)) > MAX_CLIENT_FRAME);
    let oldest = orders[ORDERS - 1].id;

    // The shop: log in as the buyer, see the whole catalog, then page the Orders screen to the end.
    let mut shop = Shop::start(&server.addr);
    shop.until("the shop connects", |app| {
        app.conn == tui_client::app::ConnState::Online
    })
    .await;
    shop.type_str(&buyer.email);
    shop.key(KeyCode::Tab);
    shop.type_str("correct horse battery");
    shop.key(KeyCode::Enter);
    shop.until("the whole catalog is in the shop", |app| {
        app.catalog.items.len() == LISTINGS && app.catalog.page_request.is_none()
    })
    .await;
    shop.key(KeyCode::Char('3'));
    shop.until("the newest orders", |app| app.orders.loaded)
        .await;
    assert_eq!(shop.app.screen, Screen::Orders);
    let mut presses = 0;
    while shop.app.orders.list.len() < ORDERS || shop.app.orders.older.is_some() {
        shop.key(KeyCode::End);
        presses += 1;
        shop.until("the next older page", |app| app.orders.page_seq.is_none())
            .await;
        assert!(
            presses <= ORDERS / ORDERS_PAGE_LEN + 1,
            "stuck at {}",
            shop.app.orders.list.len()
        );
    }
    assert_eq!(shop.app.orders.list.len(), ORDERS);
    shop.key(KeyCode::End);
    assert_eq!(shop.app.orders.list[shop.app.orders.selected].id, oldest);
    let screen = shop.screen_text();
    assert!(screen.contains(&format!("#{}", oldest.0)), "{screen}");
    // The oldest order opens in the detail view with all its lines.
    shop.key(KeyCode::Enter);
    let screen = shop.screen_text();
    assert!(screen.contains(&format!("Order #{}", oldest.0)), "{screen}");
    assert!(
        screen.contains(&format!("{LINES_PER_ORDER} lines")),
        "{screen}"
    );

    // loadgen: its customers' views hold every listing, and a short run buys without errors.
    let identity = Identity {
        seed: 7,
        nonce: "paging".into(),
        index: 0,
    };
    let shopper = traffic::customer::Customer::sign_up(&server.addr, None, &identity, true)
        .await
        .expect("a loadgen customer signs up");
    assert_eq!(shopper.stock().in_stock(), LISTINGS);
    let config = traffic::Config {
        customers: 4,
        duration: Duration::from_secs(2),
        mode: Mode::Checkout,
        nonce: Some("paging-run".into()),
        stock_wait: Duration::from_secs(30),
        ..traffic::Config::new(server.addr.clone())
    };
    let summary = traffic::run(config).await.expect("the run was made");
    assert_eq!(summary.customers_ready, 4);
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert!(summary.checkouts_ok > 0, "{summary:?}");

    assert!(
        !manufacturer.task.is_finished(),
        "the manufacturer kept running"
    );
    drop(shop);
    drop(manufacturer);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manufacturer_sim_with_1500_products_puts_all_of_them_on_sale_in_one_offer_sent_in_parts()
{
    let dir = tempfile::tempdir().unwrap();
    // `stocked_server` waits until all 1,500 listings are on sale.
    let (server, manufacturer) = stocked_server(1_500, dir.path()).await;
    let operator = connect_operator(&server.addr).await;
    let Reply::Status(status) = operator.call(RequestBody::Status).await.unwrap() else {
        panic!("expected a status");
    };
    let warehouse = status.manufacturers.iter().find(|m| m.name == "warehouse");
    assert!(
        warehouse.is_some_and(|m| m.connected && m.offered_this_month),
        "{status:?}"
    );
    assert_eq!(status.remaining_units, 1_500 * 1_000);
    assert!(!manufacturer.task.is_finished());
    drop(manufacturer);
    server.stop().await.expect("clean stop");
}
