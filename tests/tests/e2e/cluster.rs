//! The cluster on PostgreSQL: two distributor nodes on one database behind HAProxy, with real
//! processes on 127.0.0.1 only. Fail-over by `kill -9` (three rounds, alternating), fencing of a
//! paused node (SIGSTOP/SIGCONT), and PostgreSQL restarted under load. Each test also runs a
//! nats-server, since a node on PostgreSQL does not start without `--nats`. [`deploy`]: the
//! `deploy/cluster` script itself, and the refusal to start without `--nats`.
//!
//! These tests need PostgreSQL, HAProxy and nats-server (`scripts/test` installs them). Without them
//! each test returns at once, and the process prints one line saying why and how to run them.

use protocol::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::cluster::{
    distributor_sold, lease_holder, operator_status as status, pg_client, Haproxy,
};
use tests::failover::Probe;
use tests::nats::NatsServer;
use tests::pg::PgServer;
use tokio_util::sync::CancellationToken;

mod deploy;

const NODE_ENTRY: &str = "cluster::child_cluster_node_process";

/// Not a test: the body of a child distributor node.
#[test]
#[ignore = "entry point for the distributor nodes spawned by the cluster tests"]
fn child_cluster_node_process() {
    run_child("distributor", server::cli::main_from, 1);
}

/// Whether the cluster tests can run; prints why not, once per process.
fn can_run() -> bool {
    static SAID: std::sync::Once = std::sync::Once::new();
    match tests::pg::missing() {
        None => true,
        Some(why) => {
            // Straight to stderr: the test harness captures eprintln! of passing tests.
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
    name: String,
    addr: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<ChildProcess>,
}

impl Node {
    fn new(name: &str, url: &str, nats: &NatsServer, dir: &Path) -> Node {
        let addr = format!("127.0.0.1:{}", free_port());
        let nats = nats.url();
        let args = [
            "--db",
            url,
            "--nats",
            &nats,
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
        let mut node = Node {
            name: name.into(),
            addr,
            args,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        node.start();
        node
    }

    fn start(&mut self) {
        self.child =
            Some(ChildProcess::spawn_self(NODE_ENTRY, &self.args, &self.log).expect("spawn node"));
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, ChildProcess::id)
    }

    /// Only the active node listens.
    fn listens(&self) -> bool {
        std::net::TcpStream::connect(&self.addr).is_ok()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9();
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A nats-server for the nodes (a node on PostgreSQL does not start without one), in `dir/nats`.
async fn start_nats(dir: &Path) -> NatsServer {
    let dir = dir.join("nats");
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).expect("nats dir");
        NatsServer::start(&dir).expect("start nats-server")
    })
    .await
    .expect("nats-server")
}

/// Waits until one of `nodes` listens; returns its index.
async fn active(url: &str, nodes: &[Node], timeout: Duration) -> usize {
    // Every node listens (each is an edge); the market is the node the lease row names.
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(holder) = lease_holder(url).await {
            if let Some(i) = nodes.iter().position(|n| n.name == holder && n.listens()) {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node took the lease within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn audit_ok(url: &str, acked: &Path, round: usize) -> server::AuditReport {
    let acked = std::fs::read_to_string(acked).unwrap_or_default();
    let report = server::audit(Path::new(url), Some(&acked)).expect("audit");
    assert!(report.ok, "round {round}: {:?}", report.violations);
    report
}

fn spawn_makers(addr: &str, dir: &Path, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
    let configs: Vec<_> = ["orchard", "dairy", "bakery"]
        .iter()
        .map(|preset| {
            let catalog = manufacturer_sim::preset(preset).expect("preset");
            let mut sim = manufacturer_sim::SimConfig::new(
                addr,
                *preset,
                dir.join(format!("{preset}.db")),
                catalog,
            );
            sim.rate_scale = 20.0;
            sim.dispatch_delay = None;
            sim
        })
        .collect();
    let stop = stop.clone();
    tokio::spawn(async move {
        // A manufacturer that could not reconnect with its own credential after a fail-over would
        // end here with an error; the test checks they all stay connected to the end.
        if let Err(e) = manufacturer_sim::run_all(configs, stop).await {
            panic!("manufacturers stopped: {e}");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_active_node_three_times_fails_over_through_haproxy_and_loses_no_acknowledged_checkout(
) {
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
    let nats = start_nats(dir.path()).await;
    let url = pg.url("cds");
    let mut nodes = vec![
        Node::new("node-a", &url, &nats, dir.path()),
        Node::new("node-b", &url, &nats, dir.path()),
    ];
    let first = active(&url, &nodes, Duration::from_secs(60)).await;
    let haproxy = Haproxy::start(
        &[
            (&nodes[0].name, &nodes[0].addr),
            (&nodes[1].name, &nodes[1].addr),
        ],
        dir.path(),
    );
    let front = haproxy.addr.clone();

    let makers_stop = CancellationToken::new();
    let makers = spawn_makers(&front, dir.path(), &makers_stop);
    tests::harness::eventually(
        "three manufacturers offered",
        Duration::from_secs(60),
        async || {
            status(&front)
                .await
                .is_some_and(|s| s.manufacturers.iter().filter(|m| m.connected).count() == 3)
        },
    )
    .await;
    let probe = Probe::new(&front).await;

    // 32 customers buy through HAProxy for the whole test and log every acknowledged checkout.
    let acked = dir.path().join("acked.log");
    let mut loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    loadgen
        .args(["--server", &front, "--customers", "32", "--duration", "40"])
        .args(["--mode", "checkout", "--quiet", "--watchers", "0"])
        .arg("--acked-log")
        .arg(&acked)
        .env("DISTRIBUTOR_PEER_KEY", tests::harness::operator_key())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let loadgen = loadgen.spawn().expect("start loadgen");

    let mut current = first;
    let mut times = Vec::new();
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            nodes[current].listens(),
            "round {round}: the active node stopped listening"
        );
        let killed = Instant::now();
        nodes[current].kill9();
        let standby = 1 - current;
        let took_over = active(
            &url,
            std::slice::from_ref(&nodes[standby]),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(took_over, 0);
        let listening = killed.elapsed();
        let bought = probe.buy(&front, Duration::from_secs(20)).await;
        let failover = bought.duration_since(killed);
        eprintln!(
            "round {round}: killed {}, {} listened after {listening:?}, first checkout through HAProxy after {failover:?}",
            nodes[current].name, nodes[standby].name
        );
        times.push(failover);
        // The dead node comes back: it serves customers again (every node is an edge) and waits
        // for the lease, which the other node keeps.
        nodes[current].start();
        tests::harness::eventually(
            "the restarted node serves again",
            Duration::from_secs(20),
            async || nodes[current].listens(),
        )
        .await;
        assert_eq!(
            lease_holder(&url).await.as_deref(),
            Some(nodes[standby].name.as_str()),
            "round {round}: the restarted node took the lease from the live market"
        );
        audit_ok(&url, &acked, round);
        current = standby;
    }

    let output = loadgen.wait_with_output().await.expect("loadgen");
    let summary = String::from_utf8_lossy(&output.stdout).to_string();
    let last = summary.lines().last().unwrap_or_default().to_string();
    let json: serde_json::Value = serde_json::from_str(&last).expect("loadgen summary");
    assert!(json["checkouts_ok"].as_u64().unwrap_or(0) > 0, "{last}");
    assert_eq!(json["consistent"], serde_json::Value::Bool(true), "{last}");

    // The outbox drains to all three manufacturers, and their books equal the distributor's.
    tests::harness::eventually("outbox drained", Duration::from_secs(60), async || {
        status(&front).await.is_some_and(|s| {
            s.manufacturers.len() == 3
                && s.manufacturers
                    .iter()
                    .all(|m| m.connected && m.acked_seq == m.last_seq)
        })
    })
    .await;
    let report = audit_ok(&url, &acked, 4);
    assert_eq!(report.outbox_pending, 0);
    assert!(!makers.is_finished(), "a manufacturer gave up");
    makers_stop.cancel();
    makers.await.expect("manufacturers");
    let mut theirs = std::collections::BTreeMap::new();
    for preset in ["orchard", "dairy", "bakery"] {
        let books = manufacturer_sim::report(&dir.path().join(format!("{preset}.db"))).unwrap();
        for m in books.manufacturers {
            for p in m.products.iter().filter(|p| p.sold > 0) {
                theirs.insert((m.name.clone(), p.sku.clone()), p.sold);
            }
        }
    }
    assert_eq!(theirs, distributor_sold(&url).await);
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "fail-over (kill -9 to first checkout through HAProxy): median {:?}, max {:?}; {} acknowledged checkouts",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        report.acked_checked
    );
    assert!(
        sorted[sorted.len() - 1] < Duration::from_secs(10),
        "{times:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_market_node_steps_down_and_its_queued_checkout_is_stored_once_if_confirmed_and_never_if_refused(
) {
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
    let nats = start_nats(dir.path()).await;
    let url = pg.url("cds");
    let nodes = vec![
        Node::new("node-a", &url, &nats, dir.path()),
        Node::new("node-b", &url, &nats, dir.path()),
    ];
    let a = active(&url, &nodes, Duration::from_secs(60)).await;
    let b = 1 - a;
    let maker = tests::harness::TestManufacturer::connect(
        &nodes[a].addr,
        "orchard",
        tests::harness::script(vec![tests::harness::offer_line("apple", 1000, 100)]),
        Default::default(),
    )
    .await;
    let c = tests::harness::customer(&nodes[a].addr).await;
    let catalog = tests::harness::wait_for_catalog(&c.client, 1, Duration::from_secs(20)).await;
    let apple = catalog.items[0].listing;
    let checkout = move |id| RequestBody::Checkout {
        checkout_id: id,
        confirmed_total: Cents(100),
        lines: Some(vec![CartItem {
            listing: apple,
            quantity: 1,
        }]),
    };
    c.client
        .call(checkout(CheckoutId::generate()))
        .await
        .expect("a checkout before the pause");

    // Paused: it stops its heartbeat, PostgreSQL ends its lease connection, the standby takes over.
    nodes[a].signal("-STOP");
    let paused = Instant::now();
    let queued = CheckoutId::generate();
    let client = Arc::new(c.client);
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.call(checkout(queued)).await })
    };
    active(
        &url,
        std::slice::from_ref(&nodes[b]),
        Duration::from_secs(20),
    )
    .await;
    eprintln!("standby took over {:?} after the pause", paused.elapsed());
    nodes[a].signal("-CONT");

    // The paused node is an edge too: on waking it forwards the queued checkout over NATS, and the
    // market it reaches is the new holder. Whatever the client hears, the paused node's own market
    // writes nothing after losing the lease: an answer of success means exactly one stored order
    // (written by the new market), an error means none.
    let answer = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the resumed node answers or hangs up")
        .expect("task");
    tests::harness::eventually(
        "the resumed node's market steps down",
        Duration::from_secs(20),
        async || {
            let log = nodes[a].log_text();
            log.contains("the market steps down") || log.contains("stepping down")
        },
    )
    .await;
    let db = pg_client(&url).await;
    let stored = db
        .query_one(
            "SELECT count(*) FROM orders WHERE checkout_id = $1",
            &[&queued.0.to_be_bytes().to_vec()],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    match &answer {
        Ok(_) => assert_eq!(stored, 1, "confirmed, so stored exactly once"),
        Err(e) => assert_eq!(stored, 0, "refused ({e}), so not stored"),
    }
    // Which of its connections noticed first varies: the failed epoch check ("another node took
    // over"), the lease heartbeat ("lost the lease"), or, if it was paused inside a transaction,
    // PostgreSQL ending that connection (the transaction rolled back). Each ends in a step-down.
    let log = nodes[a].log_text();
    assert!(
        [
            "another node took over",
            "lost the lease",
            "connection closed"
        ]
        .iter()
        .any(|why| log.contains(why)),
        "{log}"
    );
    assert_eq!(
        lease_holder(&url).await.as_deref(),
        Some(nodes[b].name.as_str()),
        "the new market keeps the lease"
    );
    // Still running, and still serving customers as an edge.
    assert!(nodes[a].listens(), "the resumed node serves as an edge");
    let report = server::audit(Path::new(&url), None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    drop(maker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_refuses_nothing_unclearly_leaves_nothing_half_written_and_service_resumes(
) {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut pg = tokio::task::spawn_blocking(|| {
        let pg = PgServer::start();
        pg.create_database("cds");
        pg
    })
    .await
    .unwrap();
    let nats = start_nats(dir.path()).await;
    let url = pg.url("cds");
    let nodes = vec![Node::new("node-a", &url, &nats, dir.path())];
    active(&url, &nodes, Duration::from_secs(60)).await;
    let addr = nodes[0].addr.clone();
    let _maker = tests::harness::TestManufacturer::connect(
        &addr,
        "orchard",
        tests::harness::script(vec![tests::harness::offer_line("apple", 100_000, 100)]),
        Default::default(),
    )
    .await;
    let probe = Probe::new(&addr).await;
    probe.buy(&addr, Duration::from_secs(20)).await;

    // Sixteen buyers keep checking out while PostgreSQL stops and starts again, so that a batch is
    // in the writer when it goes.
    let stop = CancellationToken::new();
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut buyers = Vec::new();
    for _ in 0..16 {
        let c = tests::harness::customer(&addr).await;
        let catalog = tests::harness::wait_for_catalog(&c.client, 1, Duration::from_secs(20)).await;
        let apple = catalog.items[0].listing;
        let (stop, errors) = (stop.clone(), errors.clone());
        buyers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let result = c
                    .client
                    .call(RequestBody::Checkout {
                        checkout_id: CheckoutId::generate(),
                        confirmed_total: Cents(100),
                        lines: Some(vec![CartItem {
                            listing: apple,
                            quantity: 1,
                        }]),
                    })
                    .await;
                if let Err(e) = result {
                    let closed = e.server_error().is_none();
                    errors.lock().unwrap().push(e.to_string());
                    if closed {
                        return; // the node hung up
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .expect("restart PostgreSQL");
    // Service resumes on its own: the node takes the lease again, reloads and listens.
    let resumed = probe.buy(&addr, Duration::from_secs(60)).await;
    eprintln!(
        "a checkout succeeded again {:?} after PostgreSQL was told to restart",
        resumed.duration_since(restarted)
    );
    stop.cancel();
    for b in buyers {
        let _ = b.await;
    }
    // The edge holds a checkout that met "store unavailable" and retries it while the market comes
    // back, so a buyer sees at most a clear refusal (`Busy` after the retries), never a hang-up.
    let errors = errors.lock().unwrap().clone();
    eprintln!("errors while PostgreSQL restarted: {errors:?}");
    assert!(
        errors.iter().all(|e| e.contains("store unavailable")
            || e.to_lowercase().contains("busy")
            || e.contains("try again")),
        "a checkout failed unclearly: {errors:?}"
    );
    // Nothing half-written: every order is whole and the stock adds up.
    let report = server::audit(Path::new(&url), None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    drop(pg);
}
