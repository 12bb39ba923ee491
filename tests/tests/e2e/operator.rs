//! The operator's view, as an operator meets it: `distributor status` and `distributor close-month`
//! run as real processes against a real distributor process with two real `manufacturer-sim`
//! processes; the live feed of `Status` over TCP; the console rendering what the server says; and
//! the refusals for everyone who is not the operator.
//!
//! Children are this test executable re-run to execute one ignored entry point (see `tests::child`),
//! which hands its arguments to the binary's own `cli::main_from`.

use protocol::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tests::child::{child_args, free_port, ChildProcess, ARGS_ENV};
use tests::harness::{self, TestServer};

const WAIT: Duration = Duration::from_secs(60);

/// Not a test: the body of a child `distributor` process (serve, status or close-month).
#[test]
#[ignore = "entry point for child distributor processes spawned by the other tests"]
fn child_distributor_process() {
    let Some(args) = child_args() else {
        return;
    };
    let code = server::cli::main_from(std::iter::once("distributor".to_string()).chain(args));
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// Not a test: the body of a child `manufacturer-sim` process.
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

/// Runs `distributor ARGS` to completion and returns its exit success and the JSON line it printed.
fn distributor_cli(args: &[String]) -> (bool, Option<Value>, String) {
    let output = Command::new(std::env::current_exe().expect("test executable"))
        .args([
            "--ignored",
            "--exact",
            "operator::child_distributor_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ARGS_ENV, serde_json::to_string(args).expect("args"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the distributor command");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    // The test harness prints its own text around it (`test child_distributor_process ... ` comes
    // first on the same line); the command's output is the JSON object.
    let json = stdout
        .lines()
        .filter_map(|l| l.find('{').map(|at| &l[at..]))
        .find_map(|l| serde_json::from_str(l).ok());
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output.status.success(), json, stderr)
}

/// A distributor process, two manufacturer processes, and the paths they use.
struct System {
    dir: tempfile::TempDir,
    addr: String,
    _distributor: ChildProcess,
}

impl System {
    fn db(&self) -> PathBuf {
        self.dir.path().join("distributor.db")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn operator_args(&self, command: &str) -> Vec<String> {
        vec![
            command.into(),
            "--server".into(),
            self.addr.clone(),
            "--db".into(),
            self.db().display().to_string(),
        ]
    }

    /// `distributor status`, parsed.
    fn status(&self) -> Value {
        let (ok, json, stderr) = distributor_cli(&self.operator_args("status"));
        assert!(ok, "distributor status failed: {stderr}");
        json.unwrap_or_else(|| panic!("distributor status printed no JSON: {stderr}"))
    }

    fn manufacturer(&self, name: &str) -> ChildProcess {
        let args: Vec<String> = [
            "--server",
            &self.addr,
            "--name",
            name,
            "--preset",
            name,
            "--dispatch-ms",
            "200",
            "--db",
            &self
                .dir
                .path()
                .join(format!("{name}.db"))
                .display()
                .to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        ChildProcess::spawn_self(
            "operator::child_manufacturer_process",
            &args,
            &self.log(name),
        )
        .expect("spawn manufacturer")
    }
}

async fn start_system() -> System {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let db = dir.path().join("distributor.db");
    let args: Vec<String> = [
        "--listen",
        &addr,
        "--db",
        &db.display().to_string(),
        "--month-secs",
        "3600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = dir.path().join("distributor.log");
    let distributor = ChildProcess::spawn_self("operator::child_distributor_process", &args, &log)
        .expect("spawn");
    let system = System {
        dir,
        addr,
        _distributor: distributor,
    };
    harness::eventually("the distributor answers", WAIT, async || {
        Client::connect(
            &system.addr,
            Hello {
                version: PROTOCOL_VERSION,
                role: Role::Customer,
                client: "operator-test".into(),
                name: None,
                key: None,
            },
        )
        .await
        .is_ok()
    })
    .await;
    system
}

fn maker<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["manufacturers"]
        .as_array()
        .and_then(|list| list.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no manufacturer {name} in {status}"))
}

/// Buys one unit of something `maker` makes; returns false if nothing of it is for sale.
async fn buy_from(customer: &harness::Customer, maker: &str) -> bool {
    let catalog = harness::catalog(&customer.client).await;
    let Some(item) = catalog
        .items
        .iter()
        .find(|i| i.manufacturer_name == maker && i.remaining > 0)
    else {
        return false;
    };
    customer
        .client
        .call(tests::harness::buy_now(item.listing, 1, item.unit_price))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_manufacturer_shows_as_disconnected_with_notices_pending_until_it_restarts_and_close_month_shows_in_the_console(
) {
    let system = start_system().await;
    let _orchard = system.manufacturer("orchard");
    let mut dairy = system.manufacturer("dairy");
    harness::eventually("both manufacturers connected", WAIT, async || {
        let s = system.status();
        s["manufacturers"]
            .as_array()
            .is_some_and(|l| l.iter().filter(|m| m["connected"] == true).count() == 2)
    })
    .await;
    // They joined after month 1 opened: close it, so month 2 asks both for offers.
    let (ok, closed, stderr) = distributor_cli(&{
        let mut a = system.operator_args("close-month");
        a.push("--yes".into());
        a
    });
    assert!(ok, "close-month failed: {stderr}");
    let closed = closed.expect("close-month prints JSON");
    assert_eq!(closed["closed_month"], 1);
    assert_eq!(closed["reason"], "operator");
    assert_eq!(closed["open_month"], 2);

    let customer = harness::customer(&system.addr).await;
    harness::wait_for_catalog(&customer.client, 2, WAIT).await;
    harness::eventually("dairy goods are on sale", WAIT, async || {
        harness::catalog(&customer.client)
            .await
            .items
            .iter()
            .any(|i| i.manufacturer_name == "dairy")
    })
    .await;

    // Stop dairy, then sell its goods: the notices wait in its outbox.
    dairy.kill9();
    harness::eventually("dairy shows as disconnected", WAIT, async || {
        maker(&system.status(), "dairy")["connected"] == false
    })
    .await;
    for _ in 0..3 {
        assert!(buy_from(&customer, "dairy").await, "dairy goods sell");
    }
    let status = system.status();
    let gone = maker(&status, "dairy");
    assert_eq!(gone["connected"], false, "{status}");
    assert!(
        gone["notices_pending"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    assert!(gone["oldest_pending_ms"].is_u64(), "{status}");
    assert_eq!(maker(&status, "orchard")["connected"], true, "{status}");
    assert_eq!(status["month"]["id"], 2);
    assert!(status["month"]["opened_at_ms"].is_u64() && status["month"]["closes_at_ms"].is_u64());
    assert!(
        status["customers_connected"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{status}"
    );
    assert!(
        status["checkouts_total"].as_u64().is_some_and(|n| n >= 3),
        "{status}"
    );

    // Restart it: it drains its outbox and pending drops to 0.
    let _dairy = system.manufacturer("dairy");
    harness::eventually("dairy is back with nothing pending", WAIT, async || {
        let s = system.status();
        let m = maker(&s, "dairy");
        m["connected"] == true && m["notices_pending"] == 0 && m["oldest_pending_ms"].is_null()
    })
    .await;

    // Close month 2 from the command line; the console's history says the operator closed it.
    let mut args = system.operator_args("close-month");
    args.push("--yes".into());
    let (ok, closed, stderr) = distributor_cli(&args);
    assert!(ok, "close-month failed: {stderr}");
    assert_eq!(closed.expect("JSON")["closed_month"], 2);
    let status = system.status();
    assert_eq!(status["history"][0]["id"], 2, "{status}");
    assert_eq!(status["history"][0]["reason"], "operator", "{status}");
    assert!(
        status["history"][0]["units"]
            .as_u64()
            .is_some_and(|u| u >= 3),
        "{status}"
    );

    let key = harness::operator_key_beside(&system.db()).await;
    let operator = harness::connect_operator_with(&system.addr, &key).await;
    let Reply::Status(snapshot) = operator.call(RequestBody::Status).await.expect("status") else {
        panic!("Status answers with a status");
    };
    let console =
        tui_client::app::App::console_showing(*snapshot, tui_client::theme::Theme::plain());
    let screen = tui_client::screens::render_text(&console, 100, 30);
    // The history's row for month 2 (the manufacturers' table shows months as "#2" too, but never
    // a close reason).
    assert!(
        screen
            .lines()
            .any(|l| l.contains("#2 ") && l.contains("operator")),
        "no row for month 2 closed by the operator in the console:\n{screen}"
    );
    assert!(screen.contains("Last months"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_month_length_are_refused_to_customers_and_manufacturers() {
    let server = TestServer::start().await;
    let (anonymous, _events) = harness::connect_customer(&server.addr).await;
    let buyer = harness::customer(&server.addr).await;
    let maker = harness::TestManufacturer::connect(
        &server.addr,
        "orchard",
        harness::script(vec![harness::offer_line("apple", 5, 100)]),
        Default::default(),
    )
    .await;
    for (who, client) in [
        ("an anonymous customer", &anonymous),
        ("a logged-in customer", &buyer.client),
        ("a manufacturer", &maker.client),
    ] {
        for body in [
            RequestBody::Status,
            RequestBody::SetMonthLength { secs: 30 },
        ] {
            match client.call(body.clone()).await {
                Err(ClientError::Server(e)) => {
                    assert_eq!(e.code, ErrorCode::Forbidden, "{who} asking {body:?}")
                }
                other => panic!("{who} asking {body:?} got {other:?}"),
            }
        }
    }
    // The refusals cost nothing: the customer still shops.
    assert!(matches!(
        buyer.client.call(RequestBody::GetCart).await,
        Ok(Reply::Cart(_))
    ));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_gets_coalesced_deltas_after_one_status_and_they_add_up_to_the_truth() {
    let (server, _maker) = offered().await;
    let (operator, mut events) = harness::connect_operator_events(&server.addr).await;
    let Reply::Status(mut mirror) = operator.call(RequestBody::Status).await.expect("status")
    else {
        panic!("Status answers with a status");
    };
    let buyer = harness::customer(&server.addr).await;
    let item = harness::wait_for_catalog(&buyer.client, 1, WAIT)
        .await
        .items[0]
        .clone();
    let (listing, price) = (item.listing, item.unit_price);
    // Buy for two seconds as fast as one customer can.
    let started = tokio::time::Instant::now();
    let mut bought = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        let done = buyer
            .client
            .call(tests::harness::buy_now(listing, 1, price))
            .await;
        if done.is_ok() {
            bought += 1;
        }
    }
    assert!(bought > 0);
    // Fold every push in until the mirror shows all the checkouts.
    let mut pushes = 0u32;
    let deadline = tokio::time::Instant::now() + WAIT;
    while mirror.orders < bought {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("a push in time")
            .expect("connection open");
        if let Event::Operator(delta) = event {
            pushes += 1;
            mirror.apply(*delta);
        }
    }
    let elapsed = started.elapsed().as_millis() as u64;
    // At most one push every 500 ms (and one more for the edges of the window).
    assert!(
        u64::from(pushes) <= elapsed / STATUS_PUSH_INTERVAL_MS + 2,
        "{pushes} pushes in {elapsed} ms"
    );
    let Reply::Status(truth) = operator.call(RequestBody::Status).await.expect("status") else {
        panic!("Status answers with a status");
    };
    assert_eq!(mirror.orders, truth.orders);
    assert_eq!(mirror.month_sales, truth.month_sales);
    assert_eq!(mirror.remaining_units, truth.remaining_units);
    assert_eq!(mirror.customers.logged_in, truth.customers.logged_in);
    let sold: u64 = mirror
        .sales_seconds
        .iter()
        .map(|s| u64::from(s.units))
        .sum();
    assert_eq!(sold, bought, "the per-second counts add up");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_length_set_by_the_operator_applies_from_the_next_month() {
    let server = TestServer::start().await;
    let operator = harness::connect_operator(&server.addr).await;
    match operator.call(RequestBody::SetMonthLength { secs: 0 }).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidInput),
        other => panic!("a 0 s month is refused, got {other:?}"),
    }
    let Reply::Status(before) = operator.call(RequestBody::Status).await.expect("status") else {
        panic!("status");
    };
    operator
        .call(RequestBody::SetMonthLength { secs: 42 })
        .await
        .expect("set length");
    let Reply::Status(same) = operator.call(RequestBody::Status).await.expect("status") else {
        panic!("status");
    };
    assert_eq!(same.month, before.month, "the open month keeps its end");
    assert_eq!(same.month_ms, 42_000);
    operator.call(RequestBody::CloseMonth).await.expect("close");
    let Reply::Status(after) = operator.call(RequestBody::Status).await.expect("status") else {
        panic!("status");
    };
    let month = after.month.expect("a month is open");
    assert_eq!(month.ends_at_ms - month.opened_at_ms, 42_000);
    assert_eq!(after.history[0].reason, CloseReason::Operator);
    server.stop().await.expect("stop");
}

/// A server whose month 2 holds one product from a scripted manufacturer.
async fn offered() -> (TestServer, harness::TestManufacturer) {
    let server = TestServer::start().await;
    let maker = harness::TestManufacturer::connect(
        &server.addr,
        "orchard",
        harness::script(vec![harness::offer_line("apple", 100_000, 100)]),
        Default::default(),
    )
    .await;
    harness::connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close the empty first month");
    (server, maker)
}
