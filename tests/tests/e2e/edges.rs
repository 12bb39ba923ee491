//! Every node is an edge (issue 14): two distributor nodes on one PostgreSQL database and one
//! nats-server, real processes on 127.0.0.1 only. Both listen, holder or not; the one that holds the
//! lease is also the market, and the other forwards its sessions' market commands over NATS and fans
//! out what the market publishes.
//!
//! These tests need PostgreSQL and nats-server (`scripts/test` installs them). Without them each
//! test returns at once, and the process prints one line saying why.

use protocol::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::cluster::{
    distributor_sold, lease_holder as holder, operator_status as status, Haproxy,
};
use tests::harness::{customer, eventually, offer_line, script, TestManufacturer};
use tests::nats::NatsServer;
use tests::pg::PgServer;

const NODE_ENTRY: &str = "edges::child_edge_node_process";

/// Not a test: the body of a child distributor node.
#[test]
#[ignore = "entry point for the distributor nodes spawned by the edge tests"]
fn child_edge_node_process() {
    run_child("distributor", server::cli::main_from, 1);
}

/// Whether the edge tests can run; prints why not, once per process.
fn can_run() -> bool {
    static SAID: std::sync::Once = std::sync::Once::new();
    let missing = tests::pg::missing().or_else(|| {
        tests::nats::binary().is_none().then(|| {
            "skipped the edge tests: nats-server is not installed (scripts/test installs it)"
                .to_string()
        })
    });
    match missing {
        None => true,
        Some(why) => {
            SAID.call_once(|| {
                let line = format!("{why}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            });
            false
        }
    }
}

/// One distributor node: a child process, its address and its log.
struct Node {
    addr: String,
    log: PathBuf,
    child: Option<ChildProcess>,
}

impl Node {
    fn start(name: &str, url: &str, nats: &str, dir: &Path) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let args = [
            "--db",
            url,
            "--nats",
            nats,
            "--listen",
            &addr,
            "--node",
            name,
            "--peer-key",
            tests::harness::operator_key(),
            "--month-secs",
            "600",
            "--signups-per-minute",
            "100000",
            "--logins-per-minute",
            "100000",
            "--hash-queue",
            "4096",
            // HAProxy (deploy/haproxy.cfg) sends a PROXY header.
            "--trust-proxy",
            "127.0.0.1",
        ]
        .map(String::from)
        .to_vec();
        let log = dir.join(format!("{name}.log"));
        let child = ChildProcess::spawn_self(NODE_ENTRY, &args, &log).expect("spawn node");
        Node {
            addr,
            log,
            child: Some(child),
        }
    }

    fn listens(&self) -> bool {
        std::net::TcpStream::connect(&self.addr).is_ok()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A fresh database, a nats-server and nodes `a` and `b`, both listening, `a` the market.
async fn two_nodes(dir: &Path) -> (String, NatsServer, Node, Node) {
    let url = tokio::task::spawn_blocking(PgServer::fresh_database)
        .await
        .expect("database");
    two_nodes_on(url, dir).await
}

/// Nodes `a` (the market) and `b` on the database at `url`, and a nats-server.
async fn two_nodes_on(url: String, dir: &Path) -> (String, NatsServer, Node, Node) {
    let nats = NatsServer::start(dir).expect("start nats-server");
    let a = Node::start("node-a", &url, &nats.url(), dir);
    eventually(
        "node a holds the lease",
        Duration::from_secs(60),
        async || holder(&url).await.as_deref() == Some("node-a"),
    )
    .await;
    let b = Node::start("node-b", &url, &nats.url(), dir);
    eventually("both nodes listen", Duration::from_secs(60), async || {
        a.listens() && b.listens()
    })
    .await;
    (url, nats, a, b)
}

/// Waits for a stock event that says `listing` has `remaining` left; returns when it came.
async fn stock_reaches(events: &mut Events, listing: ListingId, remaining: u32) -> Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("no stock event in time")
            .expect("the watcher's connection ended");
        if let Event::Stock(delta) = event {
            if delta.levels.contains(&(listing, remaining)) {
                return Instant::now();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_made_through_one_node_reaches_a_watcher_connected_to_another() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_url, _nats, a, b) = two_nodes(dir.path()).await;
    // The manufacturer connects to the edge, not the market: its offer is forwarded too.
    let _maker = TestManufacturer::connect(
        &b.addr,
        "orchard",
        script(vec![offer_line("apple", 1_000, 150)]),
        Default::default(),
    )
    .await;
    let watcher = customer(&b.addr).await;
    let buyer = customer(&a.addr).await;
    let mut events = watcher.events;
    let items = tests::harness::wait_for_catalog(&watcher.client, 1, Duration::from_secs(30))
        .await
        .items;
    let listing = items[0].listing;
    let mut remaining = items[0].remaining;
    let mut delays = Vec::new();
    for _ in 0..20 {
        let sent = Instant::now();
        let bought = buyer
            .client
            .call(tests::harness::buy_now(listing, 1, Cents(150)))
            .await;
        assert!(
            matches!(bought, Ok(Reply::Order(_))),
            "a checkout on node a: {bought:?}\n{}",
            a.log_text()
        );
        remaining -= 1;
        let seen = stock_reaches(&mut events, listing, remaining).await;
        delays.push(seen.duration_since(sent));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    delays.sort();
    eprintln!(
        "sale on node a → stock event on node b: p50 {:?}, max {:?} (20 sales)",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    assert!(delays[delays.len() - 1] < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_sent_to_a_node_that_is_not_the_market_is_confirmed_and_in_the_audit() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, _nats, a, b) = two_nodes(dir.path()).await;
    let _maker = TestManufacturer::connect(
        &a.addr,
        "dairy",
        script(vec![offer_line("milk", 100, 90)]),
        Default::default(),
    )
    .await;
    // Signed up, carded and buying on node b, which does not hold the lease.
    let buyer = customer(&b.addr).await;
    let items = tests::harness::wait_for_catalog(&buyer.client, 1, Duration::from_secs(30))
        .await
        .items;
    let checkout_id = CheckoutId::generate();
    let request = RequestBody::Checkout {
        checkout_id,
        lines: Some(vec![CartItem {
            listing: items[0].listing,
            quantity: 3,
        }]),
        confirmed_total: Cents(270),
    };
    let order = match buyer.client.call(request.clone()).await {
        Ok(Reply::Order(order)) => order,
        other => panic!("checkout on node b: {other:?}\n{}", b.log_text()),
    };
    // A retry under the same id (what an edge does after a timeout) is the same order.
    match buyer.client.call(request).await {
        Ok(Reply::Order(again)) => assert_eq!(again.id, order.id),
        other => panic!("retried checkout: {other:?}"),
    }
    assert_eq!(holder(&url).await.as_deref(), Some("node-a"));
    let report = server::audit(Path::new(&url), None).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    let rows = tests::harness::store_rows(
        Path::new(&url),
        &format!(
            "SELECT sum(quantity) FROM order_lines WHERE order_id = {}",
            order.id.0
        ),
    );
    assert_eq!(rows, vec![vec![Some("3".to_string())]]);
    // The order's history is read on node b like any other.
    match buyer.client.call(RequestBody::Orders).await {
        Ok(Reply::Orders(orders)) => assert!(orders.iter().any(|o| o.id == order.id)),
        other => panic!("orders on node b: {other:?}"),
    }
    let _ = a;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reads_their_own_checkout_in_the_catalog_of_the_node_they_bought_on() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_url, _nats, a, b) = two_nodes(dir.path()).await;
    let _maker = TestManufacturer::connect(
        &a.addr,
        "orchard",
        script(vec![offer_line("pear", 1_000, 120)]),
        Default::default(),
    )
    .await;
    // Node a holds the lease, but its sessions too reach the market over NATS: both are edges.
    for node in [&b, &a] {
        let buyer = customer(&node.addr).await;
        let items = tests::harness::wait_for_catalog(&buyer.client, 1, Duration::from_secs(30))
            .await
            .items;
        let listing = items[0].listing;
        // Stock is published at most every 10 ms; a catalog read right after the answer would see
        // the level before the checkout most of the time, unless the answer waits for it.
        for round in 0..15 {
            let before = tests::harness::catalog(&buyer.client).await.items[0].remaining;
            let bought = buyer
                .client
                .call(tests::harness::buy_now(listing, 2, Cents(240)))
                .await;
            assert!(
                matches!(bought, Ok(Reply::Order(_))),
                "round {round}: {bought:?}"
            );
            let after = tests::harness::catalog(&buyer.client).await.items[0].remaining;
            assert_eq!(
                after,
                before - 2,
                "round {round} on {}: the catalog read right after the checkout's answer",
                node.addr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_nats_server_never_serve_or_feed_each_other() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path()).expect("start nats-server");
    let mut clusters = Vec::new();
    for (name, product) in [("east", "apple"), ("west", "milk")] {
        let url = tokio::task::spawn_blocking(PgServer::fresh_database)
            .await
            .expect("database");
        let node = Node::start(name, &url, &nats.url(), dir.path());
        eventually(
            "the node holds its cluster's lease",
            Duration::from_secs(60),
            async || holder(&url).await.as_deref() == Some(name),
        )
        .await;
        eventually("the node listens", Duration::from_secs(60), async || {
            node.listens()
        })
        .await;
        let maker = TestManufacturer::connect(
            &node.addr,
            product,
            script(vec![offer_line(product, 1_000, 100)]),
            Default::default(),
        )
        .await;
        clusters.push((url, node, product, maker));
    }
    for (url, node, product, _) in &clusters {
        let buyer = customer(&node.addr).await;
        let items = tests::harness::wait_for_catalog(&buyer.client, 1, Duration::from_secs(30))
            .await
            .items;
        // Both markets would take requests from one queue group, and both boards would be fed by
        // either market: reads and checkouts would land on the other cluster about half the time.
        for round in 0..20 {
            let catalog = tests::harness::catalog(&buyer.client).await;
            let products: Vec<&str> = catalog.items.iter().map(|i| i.product.as_str()).collect();
            assert!(
                products.len() == 1 && products[0].contains(product),
                "round {round} on {}: {products:?}",
                node.addr
            );
            let bought = buyer
                .client
                .call(tests::harness::buy_now(items[0].listing, 1, Cents(100)))
                .await;
            assert!(
                matches!(bought, Ok(Reply::Order(_))),
                "round {round}: {bought:?}"
            );
        }
        let rows = tests::harness::store_rows(
            Path::new(url),
            "SELECT count(*), sum(quantity) FROM order_lines",
        );
        let expected = vec![Some("20".to_string()), Some("20".to_string())];
        assert_eq!(rows, vec![expected], "the orders in {product}'s database");
    }
}

/// A "buy now" of one unit under `checkout_id`, asked again under the same id while the answer is
/// a retryable refusal; the order, or the last refusal.
async fn buy_until_answered(
    client: &Client,
    checkout_id: CheckoutId,
    listing: ListingId,
    price: Cents,
) -> Result<OrderView, String> {
    let mut last = String::new();
    for _ in 0..10 {
        let request = RequestBody::Checkout {
            checkout_id,
            lines: Some(vec![CartItem {
                listing,
                quantity: 1,
            }]),
            confirmed_total: price,
        };
        match client.call(request).await {
            Ok(Reply::Order(order)) => return Ok(order),
            Ok(other) => return Err(format!("unexpected reply {other:?}")),
            Err(ClientError::Server(e))
                if matches!(e.code, ErrorCode::Busy | ErrorCode::ShuttingDown) =>
            {
                last = e.message;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_market_node_is_killed_an_edge_keeps_its_clients_and_its_forwarded_checkouts_reach_the_new_market(
) {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, _nats, mut a, b) = two_nodes(dir.path()).await;
    let _maker = TestManufacturer::connect(
        &b.addr,
        "bakery",
        script(vec![offer_line("bread", 10_000, 200)]),
        Default::default(),
    )
    .await;
    let buyer = customer(&b.addr).await;
    let items = tests::harness::wait_for_catalog(&buyer.client, 1, Duration::from_secs(30))
        .await
        .items;
    let listing = items[0].listing;
    let mut acknowledged = Vec::new();
    let mut killed_at = None;
    let mut first_after_kill = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        if killed_at.is_none() && acknowledged.len() >= 20 {
            a.kill9();
            killed_at = Some(Instant::now());
        }
        let order = buy_until_answered(&buyer.client, CheckoutId::generate(), listing, Cents(200))
            .await
            .unwrap_or_else(|why| {
                panic!(
                    "a checkout on the edge failed for good: {why}\n{}",
                    b.log_text()
                )
            });
        if let (Some(at), None) = (killed_at, first_after_kill) {
            first_after_kill = Some(at.elapsed());
        }
        acknowledged.push(order.id.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = killed_at.expect("the market node was killed");
    eprintln!(
        "{} checkouts acknowledged through the edge; the first after the kill took {:?}",
        acknowledged.len(),
        first_after_kill
    );
    assert_eq!(holder(&url).await.as_deref(), Some("node-b"));
    assert!(
        acknowledged.len() > 30,
        "checkouts went on after the kill ({} in all, killed {:?} in)",
        acknowledged.len(),
        killed_at.duration_since(started)
    );
    // The edge kept the buyer's connection: the same client bought before and after.
    let ids: Vec<String> = acknowledged.iter().map(u64::to_string).collect();
    let rows = tests::harness::store_rows(
        Path::new(&url),
        &format!(
            "SELECT count(*) FROM orders WHERE id IN ({})",
            ids.join(",")
        ),
    );
    assert_eq!(
        rows,
        vec![vec![Some(acknowledged.len().to_string())]],
        "every acknowledged checkout is in the store"
    );
    let report = server::audit(Path::new(&url), None).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}

/// Established TCP connections whose local end is `addr`'s port, from /proc/net/tcp: how many
/// clients a node serves now.
fn connections_to(addr: &str) -> usize {
    let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let Some(port) = port else { return 0 };
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|l| l.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_serve_96_customers_and_the_books_of_clients_distributor_and_manufacturers_agree(
) {
    if !can_run() || tests::pg::which("haproxy").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, nats, a, b) = two_nodes(dir.path()).await;
    let c = Node::start("node-c", &url, &nats.url(), dir.path());
    eventually("node c listens", Duration::from_secs(60), async || {
        c.listens()
    })
    .await;
    let haproxy = Haproxy::start(
        &[("node0", &a.addr), ("node1", &b.addr), ("node2", &c.addr)],
        dir.path(),
    );
    let front = haproxy.addr.clone();

    // Three manufacturer-sims through HAProxy, their notices through JetStream.
    let makers_stop = tokio_util::sync::CancellationToken::new();
    let configs: Vec<_> = ["orchard", "dairy", "bakery"]
        .iter()
        .map(|preset| {
            let catalog = manufacturer_sim::preset(preset).expect("preset");
            let mut sim = manufacturer_sim::SimConfig::new(
                &front,
                *preset,
                dir.path().join(format!("{preset}.db")),
                catalog,
            );
            sim.rate_scale = 20.0;
            sim.dispatch_delay = None;
            sim.nats = Some(nats.url());
            sim
        })
        .collect();
    let makers = {
        let stop = makers_stop.clone();
        tokio::spawn(async move { manufacturer_sim::run_all(configs, stop).await })
    };
    eventually(
        "three manufacturers offered",
        Duration::from_secs(60),
        async || {
            status(&front)
                .await
                .is_some_and(|s| s.manufacturers.iter().filter(|m| m.connected).count() == 3)
        },
    )
    .await;

    // 96 customers buy through HAProxy and log every acknowledged checkout.
    let acked = dir.path().join("acked.log");
    let mut loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    loadgen
        .args(["--server", &front, "--customers", "96", "--duration", "15"])
        .args(["--mode", "checkout", "--quiet", "--watchers", "0"])
        .arg("--acked-log")
        .arg(&acked)
        .env("DISTRIBUTOR_PEER_KEY", tests::harness::operator_key())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let loadgen = loadgen.spawn().expect("start loadgen");
    // While it runs, every node serves some of the customers.
    let mut served = [0usize; 3];
    let watch_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < watch_until && served.iter().any(|n| *n < 10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, node) in [&a, &b, &c].iter().enumerate() {
            served[i] = served[i].max(connections_to(&node.addr));
        }
    }
    let output = loadgen.wait_with_output().await.expect("loadgen");
    let summary = String::from_utf8_lossy(&output.stdout).to_string();
    let last = summary.lines().last().unwrap_or_default().to_string();
    let json: serde_json::Value = serde_json::from_str(&last).expect("loadgen summary");
    eprintln!("connections served per node (most seen): {served:?}; loadgen: {last}");
    assert!(served.iter().all(|n| *n >= 10), "{served:?}");
    assert!(json["checkouts_ok"].as_u64().unwrap_or(0) > 0, "{last}");
    assert_eq!(json["customers_ready"], 96, "{last}");
    assert_eq!(json["errors"], 0, "{last}");
    assert_eq!(json["consistent"], serde_json::Value::Bool(true), "{last}");
    let client_units = json["units_bought"].as_u64().unwrap_or(0);

    // The outbox drains to all three manufacturers, and their books equal the distributor's.
    eventually("outbox drained", Duration::from_secs(60), async || {
        status(&front).await.is_some_and(|s| {
            s.manufacturers.len() == 3
                && s.manufacturers
                    .iter()
                    .all(|m| m.connected && m.acked_seq == m.last_seq)
        })
    })
    .await;
    let acked_text = std::fs::read_to_string(&acked).unwrap_or_default();
    let report = server::audit(Path::new(&url), Some(&acked_text)).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.outbox_pending, 0);
    assert!(!makers.is_finished(), "a manufacturer gave up");
    makers_stop.cancel();
    let _ = makers.await;
    let mut theirs = std::collections::BTreeMap::new();
    for preset in ["orchard", "dairy", "bakery"] {
        let books = manufacturer_sim::report(&dir.path().join(format!("{preset}.db"))).unwrap();
        for m in books.manufacturers {
            for p in m.products.iter().filter(|p| p.sold > 0) {
                theirs.insert((m.name.clone(), p.sku.clone()), p.sold);
            }
        }
    }
    let ours = distributor_sold(&url).await;
    assert_eq!(theirs, ours);
    assert_eq!(
        client_units,
        ours.values().sum::<u64>(),
        "client-observed units = sold units"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_one_node_ends_the_accounts_other_sessions_on_another() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_url, _nats, a, b) = two_nodes(dir.path()).await;
    let first = customer(&a.addr).await;
    let (elsewhere, _events) = tests::harness::connect_customer(&b.addr).await;
    let login = elsewhere
        .call(RequestBody::LogIn {
            email: first.email.clone(),
            password: "correct horse battery".into(),
        })
        .await;
    assert!(matches!(login, Ok(Reply::Session(_))), "{login:?}");
    let changed = first
        .client
        .call(RequestBody::UpdateAccount(AccountUpdate {
            password: Some((
                "correct horse battery".into(),
                "a much longer new passphrase".into(),
            )),
            ..Default::default()
        }))
        .await;
    assert!(matches!(changed, Ok(Reply::Account(_))), "{changed:?}");
    eventually(
        "the session on node b ends",
        Duration::from_secs(5),
        async || elsewhere.call(RequestBody::GetAccount).await.is_err(),
    )
    .await;
    // The session that changed the password stays.
    assert!(first.client.call(RequestBody::GetAccount).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_postgresql_restarts_both_nodes_serve_again_on_their_own() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = tokio::task::spawn_blocking(|| {
        let pg = PgServer::start();
        pg.create_database("cds");
        pg
    })
    .await
    .unwrap();
    let (url, _nats, a, b) = two_nodes_on(pg.url("cds"), dir.path()).await;
    let _maker = TestManufacturer::connect(
        &a.addr,
        "orchard",
        script(vec![offer_line("apple", 1_000, 150)]),
        Default::default(),
    )
    .await;
    let buyer = customer(&b.addr).await;
    let items = tests::harness::wait_for_catalog(&buyer.client, 1, Duration::from_secs(30))
        .await
        .items;
    let listing = items[0].listing;
    buy_until_answered(&buyer.client, CheckoutId::generate(), listing, Cents(150))
        .await
        .expect("a checkout before the restart");
    let restarted = Instant::now();
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("restart PostgreSQL");
    // The market takes the lease again; the edge's writer and read connections reconnect.
    let checkout_id = CheckoutId::generate();
    let mut resumed = None;
    while restarted.elapsed() < Duration::from_secs(60) {
        if buy_until_answered(&buyer.client, checkout_id, listing, Cents(150))
            .await
            .is_ok()
        {
            resumed = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resumed =
        resumed.unwrap_or_else(|| panic!("no checkout after the restart\n{}", b.log_text()));
    eprintln!(
        "a checkout on the edge succeeded again {resumed:?} after PostgreSQL was told to restart"
    );
    // Sign-up (the edge's own writer) and reads work again on both nodes.
    for node in [&a, &b] {
        let late = customer(&node.addr).await;
        assert!(matches!(
            late.client.call(RequestBody::Orders).await,
            Ok(Reply::Orders(_))
        ));
    }
    // The market took the lease again (a new term), and both nodes kept running throughout.
    let epoch = tests::harness::store_rows(Path::new(&url), "SELECT epoch FROM lease WHERE id = 1");
    assert_eq!(epoch, vec![vec![Some("2".to_string())]], "{}", a.log_text());
    let report = server::audit(Path::new(&url), None).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_edge_sends_its_customers_through_haproxy_to_the_others_and_loses_no_acknowledged_checkout(
) {
    if !can_run() || tests::pg::which("haproxy").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, nats, a, b) = two_nodes(dir.path()).await;
    let mut c = Node::start("node-c", &url, &nats.url(), dir.path());
    eventually("node c listens", Duration::from_secs(60), async || {
        c.listens()
    })
    .await;
    let haproxy = Haproxy::start(
        &[("node0", &a.addr), ("node1", &b.addr), ("node2", &c.addr)],
        dir.path(),
    );
    let _maker = TestManufacturer::connect(
        &a.addr,
        "orchard",
        script(vec![
            offer_line("apple", 100_000, 150),
            offer_line("pear", 100_000, 120),
        ]),
        Default::default(),
    )
    .await;
    eventually(
        "haproxy takes connections",
        Duration::from_secs(10),
        async || std::net::TcpStream::connect(&haproxy.addr).is_ok(),
    )
    .await;
    let acked = dir.path().join("acked.log");
    let mut loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    loadgen
        .args([
            "--server",
            &haproxy.addr,
            "--customers",
            "48",
            "--duration",
            "12",
        ])
        .args(["--mode", "checkout", "--quiet", "--watchers", "0"])
        .arg("--acked-log")
        .arg(&acked)
        .env("DISTRIBUTOR_PEER_KEY", tests::harness::operator_key())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut loadgen = loadgen.spawn().expect("start loadgen");
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections_to(&c.addr) < 10 {
        if Instant::now() > deadline || loadgen.try_wait().ok().flatten().is_some() {
            let _ = loadgen.kill().await;
            let output = loadgen.wait_with_output().await.expect("loadgen");
            panic!(
                "node c never served 10 customers ({} now); loadgen: {} {}",
                connections_to(&c.addr),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.kill9();
    let output = loadgen.wait_with_output().await.expect("loadgen");
    let summary = String::from_utf8_lossy(&output.stdout).to_string();
    let last = summary.lines().last().unwrap_or_default().to_string();
    let json: serde_json::Value = serde_json::from_str(&last).expect("loadgen summary");
    eprintln!("loadgen with an edge killed mid-run: {last}");
    assert!(json["checkouts_ok"].as_u64().unwrap_or(0) > 0, "{last}");
    assert_eq!(json["consistent"], serde_json::Value::Bool(true), "{last}");
    // The market never moved, and every checkout a client was told about is in the store once.
    assert_eq!(holder(&url).await.as_deref(), Some("node-a"));
    let acked_text = std::fs::read_to_string(&acked).unwrap_or_default();
    let report = server::audit(Path::new(&url), Some(&acked_text)).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
    assert!(report.acked_checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_nats_server_restarts_under_load_forwarded_checkouts_resume_and_the_books_agree() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, mut nats, _a, b) = two_nodes(dir.path()).await;
    let maker = TestManufacturer::connect(
        &b.addr,
        "dairy",
        script(vec![offer_line("milk", 100_000, 90)]),
        Default::default(),
    )
    .await;
    let buyer = customer(&b.addr).await;
    let items = tests::harness::wait_for_catalog(&buyer.client, 1, Duration::from_secs(30))
        .await
        .items;
    let listing = items[0].listing;
    let mut acknowledged = Vec::new();
    let mut restarted_at = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) || restarted_at.is_none() {
        if restarted_at.is_none() && acknowledged.len() >= 20 {
            nats.restart().expect("restart nats-server");
            restarted_at = Some(Instant::now());
        }
        let order = buy_until_answered(&buyer.client, CheckoutId::generate(), listing, Cents(90))
            .await
            .unwrap_or_else(|why| panic!("a checkout failed for good: {why}\n{}", b.log_text()));
        acknowledged.push(order.id.0);
    }
    let after_restart = restarted_at.map(|at| at.elapsed());
    eprintln!(
        "{} checkouts; nats-server restarted {after_restart:?} before the end",
        acknowledged.len()
    );
    let sold: u64 = acknowledged.len() as u64;
    // The notices reach the manufacturer on the edge (its relay learns the outbox positions again
    // after the restart), each applied once.
    eventually(
        "the manufacturer applied every sale",
        Duration::from_secs(30),
        async || maker.books.lock().unwrap().sold.get("milk").copied() == Some(sold),
    )
    .await;
    let rows = tests::harness::store_rows(Path::new(&url), "SELECT sum(quantity) FROM order_lines");
    assert_eq!(rows, vec![vec![Some(sold.to_string())]]);
    let report = server::audit(Path::new(&url), None).expect("audit");
    assert!(report.ok, "{:?}", report.violations);
}
