//! Identities: every manufacturer name has its own credential, and operators need the operator key.
//!
//! The takeover findings of issue 10, in bounded form: a client of its own under a registered name
//! (with no key, a guessed one, or the operator key) is refused with a typed error, and the real
//! manufacturer keeps its link and its books; a second `manufacturer-sim` under the same name with
//! other books is refused and exits non-zero; an operator can revoke a name so it registers again.
//! The operator key is written beside the database with mode 0600, and an empty key is a
//! configuration error.

use protocol::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(30);

/// Not a test: the body of a child distributor process.
#[test]
#[ignore = "entry point for the child distributor spawned by the identity tests"]
fn child_distributor_for_identity() {
    run_child("distributor", server::cli::main_from, 2);
}

/// Not a test: the body of a child manufacturer-sim process.
#[test]
#[ignore = "entry point for the child manufacturer-sim spawned by the identity tests"]
fn child_manufacturer_for_identity() {
    run_child("manufacturer-sim", manufacturer_sim::cli::main_from, 1);
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn manufacturer_hello(name: &str, key: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: Role::Manufacturer,
        client: "identity-test".into(),
        name: Some(name.into()),
        key: key.map(str::to_string),
    }
}

/// Connects and expects a refusal; returns its code.
async fn refused(addr: &str, hello: Hello) -> ErrorCode {
    match Client::connect(addr, hello).await {
        Err(ClientError::Refused(e)) => e.code,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok((client, _)) => panic!("expected a refusal, got {:?}", client.welcome()),
    }
}

async fn status(addr: &str, key: &str) -> SystemStatus {
    match connect_operator_with(addr, key)
        .await
        .call(RequestBody::Status)
        .await
        .expect("status")
    {
        Reply::Status(s) => *s,
        other => panic!("unexpected {other:?}"),
    }
}

fn connected(status: &SystemStatus, name: &str) -> bool {
    status
        .manufacturers
        .iter()
        .any(|m| m.name == name && m.connected)
}

/// Buys `quantity` of a listing priced 100 cents.
fn buy(listing: ListingId, quantity: u32) -> RequestBody {
    tests::harness::buy_now(listing, quantity, Cents(100 * u64::from(quantity)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_registration_issues_a_256_bit_credential_and_the_database_keeps_only_its_hash() {
    let server = TestServer::start().await;
    let books: Arc<Mutex<Books>> = Arc::default();
    let m = TestManufacturer::connect(&server.addr, "orchard", script(vec![]), books.clone()).await;
    let token = books.lock().unwrap().credential.clone().expect("issued");
    assert_eq!(token.len(), 64, "256 bits in hex");
    assert!(hex::decode(&token).is_ok());
    drop(m);
    // Reconnecting with it needs no new credential.
    let again =
        TestManufacturer::connect(&server.addr, "orchard", script(vec![]), books.clone()).await;
    assert!(again.client.welcome().credential.is_none());
    assert_eq!(
        books.lock().unwrap().credential.as_deref(),
        Some(token.as_str())
    );
    drop(again);
    let db = server.db.clone();
    let _dir = server.dir.clone();
    server.stop().await.unwrap();
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let stored: Vec<u8> = conn
        .query_row(
            "SELECT credential_hash FROM manufacturers WHERE name = 'orchard'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, Sha256::digest(token.as_bytes()).to_vec());
    for suffix in ["", "-wal"] {
        let bytes = std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&token),
            "the token itself is in {suffix:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_under_a_registered_name_is_refused_and_the_real_manufacturer_keeps_its_link_and_books(
) {
    let server = TestServer::start().await;
    let books: Arc<Mutex<Books>> = Arc::default();
    let real = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 10_000, 100)]),
        books.clone(),
    )
    .await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let buyer = customer(&server.addr).await;
    let listing = wait_for_catalog(&buyer.client, 1, WAIT).await.items[0].listing;

    // Takeover attempts interleaved with sales: no key, guessed keys, and the operator key (which
    // used to be the shared peer key), 30 of each.
    let mut sold = 0u64;
    for i in 0..30u32 {
        let guess = format!("{:064x}", rand::random::<u128>());
        for key in [None, Some(guess.as_str()), Some(operator_key())] {
            assert_eq!(
                refused(&server.addr, manufacturer_hello("orchard", key)).await,
                ErrorCode::WrongCredential,
                "attempt {i} with {key:?}"
            );
        }
        buyer.client.call(buy(listing, 1 + i % 3)).await.unwrap();
        sold += u64::from(1 + i % 3);
    }

    // The real manufacturer kept its link: it still answers, and it got every sale in its books.
    assert_eq!(
        real.client.call(RequestBody::Ping).await.unwrap(),
        Reply::Pong
    );
    eventually("the real books hold every sale", WAIT, async || {
        books.lock().unwrap().sold.get("apple").copied() == Some(sold)
    })
    .await;
    assert!(connected(
        &status(&server.addr, operator_key()).await,
        "orchard"
    ));
    // Nobody sold anything else under its name.
    let catalog = catalog(&buyer.client).await;
    assert!(
        catalog.items.iter().all(|i| i.sku == "apple"),
        "{catalog:?}"
    );
    let (db, _dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    let report = server::audit(&db, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.sold_units, sold);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_credential_takes_over_a_stale_link_and_a_wrong_one_leaves_it_alone() {
    let server = TestServer::start().await;
    let books: Arc<Mutex<Books>> = Arc::default();
    let first =
        TestManufacturer::connect(&server.addr, "dairy", script(vec![]), books.clone()).await;
    // A wrong credential: refused, and the first link still works.
    assert_eq!(
        refused(
            &server.addr,
            manufacturer_hello("dairy", Some(&"0".repeat(64)))
        )
        .await,
        ErrorCode::WrongCredential
    );
    assert_eq!(
        first.client.call(RequestBody::Ping).await.unwrap(),
        Reply::Pong
    );
    // The right one (a restart whose old connection has not timed out yet) replaces it.
    let _second =
        TestManufacturer::connect(&server.addr, "dairy", script(vec![]), books.clone()).await;
    eventually("the stale link is closed", WAIT, async || {
        first.client.call(RequestBody::Ping).await.is_err()
    })
    .await;
    server.stop().await.unwrap();
}

/// Runs the `distributor` command line on a thread of its own (it starts its own runtime).
async fn distributor_cli(args: Vec<String>) -> std::process::ExitCode {
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            server::cli::main_from(std::iter::once("distributor".to_string()).chain(args))
        })
        .join()
        .expect("cli thread")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_revokes_a_credential_with_the_cli_and_the_name_registers_again() {
    let server = TestServer::start().await;
    let old_books: Arc<Mutex<Books>> = Arc::default();
    let old =
        TestManufacturer::connect(&server.addr, "bakery", script(vec![]), old_books.clone()).await;
    let old_token = old_books.lock().unwrap().credential.clone().unwrap();
    // The books were lost: new books cannot connect under the name.
    assert_eq!(
        refused(&server.addr, manufacturer_hello("bakery", None)).await,
        ErrorCode::WrongCredential
    );
    let revoke = |key: &str, name: &str| {
        strings(&[
            "revoke-manufacturer",
            "--name",
            name,
            "--server",
            &server.addr,
            "--peer-key",
            key,
        ])
    };
    // Without the operator key, or for an unknown name, nothing happens.
    assert_ne!(
        distributor_cli(revoke("not-the-key", "bakery")).await,
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(
        old.client.call(RequestBody::Ping).await.unwrap(),
        Reply::Pong
    );
    assert_ne!(
        distributor_cli(revoke(operator_key(), "nobody")).await,
        std::process::ExitCode::SUCCESS
    );
    assert_eq!(
        distributor_cli(revoke(operator_key(), "bakery")).await,
        std::process::ExitCode::SUCCESS
    );
    // The revoked link is ended, and new books register the name again.
    eventually("the revoked link is closed", WAIT, async || {
        old.client.call(RequestBody::Ping).await.is_err()
    })
    .await;
    let new_books: Arc<Mutex<Books>> = Arc::default();
    let new =
        TestManufacturer::connect(&server.addr, "bakery", script(vec![]), new_books.clone()).await;
    assert_eq!(new.id, old.id, "the same manufacturer id, with its history");
    let new_token = new_books.lock().unwrap().credential.clone().unwrap();
    assert_ne!(new_token, old_token);
    assert_eq!(
        refused(&server.addr, manufacturer_hello("bakery", Some(&old_token))).await,
        ErrorCode::WrongCredential
    );
    server.stop().await.unwrap();
}

fn spawn_sim(args: &[&str], log: &Path) -> ChildProcess {
    ChildProcess::spawn_self(
        "identity::child_manufacturer_for_identity",
        &strings(args),
        log,
    )
    .expect("spawn manufacturer-sim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manufacturer_sim_with_the_same_name_and_other_books_is_refused_says_why_and_exits_non_zero(
) {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn_sim(
        &[
            "--server",
            &server.addr,
            "--name",
            "orchard",
            "--preset",
            "orchard",
            "--db",
            a_db.to_str().unwrap(),
        ],
        &a_log,
    );
    eventually(
        "the first manufacturer-sim is connected",
        WAIT,
        async || connected(&status(&server.addr, operator_key()).await, "orchard"),
    )
    .await;
    let mut b = spawn_sim(
        &[
            "--server",
            &server.addr,
            "--name",
            "orchard",
            "--preset",
            "orchard",
            "--db",
            b_db.to_str().unwrap(),
        ],
        &b_log,
    );
    let exit = b
        .wait_timeout(WAIT)
        .expect("the second one exits by itself");
    assert!(!exit.success());
    let said = std::fs::read_to_string(&b_log).unwrap();
    assert!(
        said.contains("registered to another credential"),
        "it says why: {said}"
    );
    // The first one is still running and still holds the name.
    assert!(a.is_running());
    assert!(connected(
        &status(&server.addr, operator_key()).await,
        "orchard"
    ));
    let books = manufacturer_sim::report(&a_db).unwrap();
    assert!(!books.manufacturers.is_empty());
    assert!(a.terminate(WAIT).is_some_and(|s| s.success()));
    server.stop().await.unwrap();
}

/// Waits for a child distributor on `addr` to answer a customer handshake.
async fn wait_up(addr: &str, log: &Path) {
    let deadline = Instant::now() + WAIT;
    while Client::connect(
        addr,
        Hello {
            version: PROTOCOL_VERSION,
            role: Role::Customer,
            client: "t".into(),
            name: None,
            key: None,
        },
    )
    .await
    .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "distributor did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_key_is_written_beside_the_database_with_mode_0600_and_operator_requests_need_it(
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("distributor.db");
    let log = dir.path().join("distributor.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = strings(&["--listen", &addr, "--db", db.to_str().unwrap()]);
    let mut child =
        ChildProcess::spawn_self("identity::child_distributor_for_identity", &args, &log).unwrap();
    wait_up(&addr, &log).await;
    let key_file = dir.path().join("data").join("operator.key");
    let key = protocol::operator_key::read(&key_file).unwrap();
    assert_eq!(key.len(), 64);
    assert!(hex::decode(&key).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let operator = |key: Option<&str>| Hello {
        version: PROTOCOL_VERSION,
        role: Role::Operator,
        client: "t".into(),
        name: None,
        key: key.map(str::to_string),
    };
    assert_eq!(
        refused(&addr, operator(None)).await,
        ErrorCode::WrongCredential
    );
    assert_eq!(
        refused(&addr, operator(Some(&"f".repeat(64)))).await,
        ErrorCode::WrongCredential
    );
    status(&addr, &key).await;
    // A restart keeps the key.
    assert!(child.terminate(WAIT).is_some_and(|s| s.success()));
    let mut child =
        ChildProcess::spawn_self("identity::child_distributor_for_identity", &args, &log).unwrap();
    wait_up(&addr, &log).await;
    assert_eq!(protocol::operator_key::read(&key_file).unwrap(), key);
    status(&addr, &key).await;
    assert!(child.terminate(WAIT).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_peer_key_is_refused_as_a_configuration_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let log = dir.path().join("distributor.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = strings(&["--listen", &addr, "--db", db.to_str().unwrap()]);
    let mut child = ChildProcess::spawn_self_with_env(
        "identity::child_distributor_for_identity",
        &args,
        &log,
        &[("DISTRIBUTOR_PEER_KEY", "")],
    )
    .unwrap();
    let exit = child.wait_timeout(WAIT).expect("exits at once");
    assert!(!exit.success());
    let mut with_flag = args.clone();
    with_flag.extend(strings(&["--peer-key", "  "]));
    let mut child =
        ChildProcess::spawn_self("identity::child_distributor_for_identity", &with_flag, &log)
            .unwrap();
    let exit = child.wait_timeout(WAIT).expect("exits at once");
    assert!(!exit.success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("operator key") && said.contains("empty"),
        "{said}"
    );
    assert!(!db.exists(), "nothing was created");
}
