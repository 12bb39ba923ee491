//! `loadgen`'s customers against an in-process distributor: in both modes, what every customer was
//! told it bought matches what the server lists, every confirmed checkout is in the acked log, and the
//! distributor's audit finds each of them in the database with the same units.

use protocol::{MonthId, Reply, RequestBody};
use std::time::Duration;
use tests::harness::{connect_operator, offer_line, script, TestManufacturer, TestServer};
use tests::traffic::acked::AckedLine;
use tests::traffic::{self, Config, Mode, Summary};

/// Runs `mode` for about two seconds against a fresh distributor stocked by one manufacturer, and
/// returns the summary, the acked log's lines and the audit of the database.
async fn run_against_fresh_server(
    mode: Mode,
    seed: u64,
) -> (Summary, Vec<AckedLine>, server::AuditReport) {
    let server = TestServer::start_with(|c| c.month_secs = 3600).await;
    let offer = (1..=6)
        .map(|i| offer_line(&format!("LG{i}"), 1_000_000, 100 * i))
        .collect();
    let _manufacturer = TestManufacturer::connect(
        &server.addr,
        "loadgen-test",
        script(offer),
        Default::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let acked_path = dir.path().join("acked.log");
    let config = Config {
        customers: 8,
        duration: Duration::from_secs(2),
        seed,
        mode,
        acked_log: Some(acked_path.clone()),
        connect_concurrency: 8,
        stock_wait: Duration::from_secs(10),
        // The manufacturer offered into month 1 as it connected, so this is a no-op (checked below).
        close_empty_month: true,
        peer_key: Some(tests::harness::operator_key().to_string()),
        ..Config::new(server.addr.clone())
    };
    let summary = traffic::run(config).await.expect("the run was made");
    let status = match connect_operator(&server.addr)
        .await
        .call(RequestBody::Status)
        .await
        .expect("status")
    {
        Reply::Status(s) => s,
        other => panic!("unexpected status reply {other:?}"),
    };
    assert_eq!(
        status.month.map(|m| m.id),
        Some(MonthId(1)),
        "--close-empty-month closed a month although the goods had arrived"
    );
    let text = std::fs::read_to_string(&acked_path).unwrap();
    let lines: Vec<AckedLine> = text
        .lines()
        .map(|l| AckedLine::parse(l).unwrap_or_else(|| panic!("bad acked line {l:?}")))
        .collect();
    let audit = server::audit(&server.db, Some(&text)).expect("audit runs");
    server.stop().await.expect("clean stop");
    (summary, lines, audit)
}

fn assert_run_is_consistent(summary: &Summary, lines: &[AckedLine], audit: &server::AuditReport) {
    assert!(
        summary.checkouts_ok > 0,
        "nothing was bought: {}",
        summary.to_json()
    );
    assert_eq!(summary.errors, 0, "errors: {}", summary.to_json());
    assert!(summary.consistent, "inconsistent: {}", summary.to_json());
    assert_eq!(
        summary.consistency.customers_checked,
        summary.customers_ready as u64
    );
    assert_eq!(
        lines.len() as u64,
        summary.checkouts_ok,
        "one acked line per confirmed checkout"
    );
    assert_eq!(
        lines.iter().map(|l| l.units).sum::<u64>(),
        summary.units_bought
    );
    assert!(audit.ok, "audit violations: {:?}", audit.violations);
    assert_eq!(audit.acked_checked, summary.checkouts_ok);
    assert_eq!(
        audit.sold_units, summary.units_bought,
        "only loadgen bought"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_mode_is_consistent_fully_acked_and_passes_the_audit() {
    let (summary, lines, audit) = run_against_fresh_server(Mode::Checkout, 11).await;
    assert_run_is_consistent(&summary, &lines, &audit);
    assert!(lines.iter().all(|l| l.units >= 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_mode_is_consistent_fully_acked_and_passes_the_audit() {
    let (summary, lines, audit) = run_against_fresh_server(Mode::Mixed, 12).await;
    assert_run_is_consistent(&summary, &lines, &audit);
    assert!(
        summary.requests > summary.checkouts_ok,
        "mixed mode also browses and edits carts"
    );
}

/// A distributor with its default per-address limits (10 sign-ups a minute) admits loadgen's 40
/// customers, because each connects from its own loopback address as real customers come from their
/// own. From one address all but the first ten would be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loadgen_customer_is_set_up_against_a_distributor_with_default_sign_up_limits() {
    let defaults = server::throttle::Limits::default();
    let customers = 4 * defaults.signups_per_minute as usize;
    let server = TestServer::start_with(|c| {
        c.month_secs = 3600;
        c.limits = defaults;
    })
    .await;
    let offer = (1..=3)
        .map(|i| offer_line(&format!("DL{i}"), 1_000_000, 100 * i))
        .collect();
    let _manufacturer =
        TestManufacturer::connect(&server.addr, "defaults", script(offer), Default::default())
            .await;
    let config = Config {
        customers,
        duration: Duration::from_secs(1),
        seed: 21,
        mode: Mode::Checkout,
        stock_wait: Duration::from_secs(10),
        ..Config::new(server.addr.clone())
    };
    let summary = traffic::run(config).await.expect("the run was made");
    assert_eq!(summary.customers_ready, customers, "{summary:?}");
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert!(
        summary.checkouts_ok > 0 && summary.consistent,
        "{summary:?}"
    );
}
