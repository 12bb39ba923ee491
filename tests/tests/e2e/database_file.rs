//! The database file: after a clean stop, and from its first moment, the main `.db` file holds the
//! data; a file that lost commits with its `-wal` is refused, never silently started empty; a second
//! distributor (or manufacturer-sim) on the same file refuses at once and names the holder; and
//! `distributor backup` copies a running database consistently.

use protocol::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(30);
const DISTRIBUTOR: &str = "database_file::child_distributor_for_database_file";

/// Not a test: the body of a child distributor process.
#[test]
#[ignore = "entry point for the child distributor spawned by the database file tests"]
fn child_distributor_for_database_file() {
    run_child("distributor", server::cli::main_from, 2);
}

/// Not a test: the body of a child manufacturer-sim process.
#[test]
#[ignore = "entry point for the child manufacturer-sim spawned by the database file tests"]
fn child_manufacturer_for_database_file() {
    run_child("manufacturer-sim", manufacturer_sim::cli::main_from, 1);
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", db.display()))
}

/// A distributor in its own process on a fresh port, with the operator key of the harness.
struct Child {
    process: ChildProcess,
    addr: String,
    log: PathBuf,
}

fn spawn_distributor(db: &Path, log: &Path) -> Child {
    let addr = format!("127.0.0.1:{}", free_port());
    let args = strings(&[
        "--listen",
        &addr,
        "--db",
        db.to_str().unwrap(),
        "--peer-key",
        operator_key(),
    ]);
    let process = ChildProcess::spawn_self(DISTRIBUTOR, &args, log).expect("spawn distributor");
    Child {
        process,
        addr,
        log: log.to_path_buf(),
    }
}

impl Child {
    async fn wait_up(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if Client::connect(&self.addr, operator_hello(operator_key()))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                self.process.is_running() && Instant::now() < deadline,
                "distributor did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn sign_up_some(addr: &str, n: usize) {
    for _ in 0..n {
        customer(addr).await;
    }
}

fn count(db: &Path, table: &str) -> i64 {
    try_count(db, table).unwrap_or_else(|e| panic!("counting {table} in {}: {e}", db.display()))
}

/// `count`, with the error instead of a panic (a copy can catch a checkpoint midway).
fn try_count(db: &Path, table: &str) -> rusqlite::Result<i64> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(db, flags)?;
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
}

/// Copies only the `.db` file into a directory of its own, as a careless copy would.
fn copy_main_file_only(db: &Path, into: &Path) -> PathBuf {
    let copy = into.join("copy.db");
    std::fs::copy(db, &copy).unwrap();
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_every_commit_in_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let mut child = spawn_distributor(&db, &dir.path().join("d.log"));
    child.wait_up().await;
    sign_up_some(&child.addr, 3).await;
    let exit = child.process.terminate(WAIT).expect("stops on SIGTERM");
    assert!(exit.success());
    let wal = with_suffix(&db, "-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "the -wal still holds data after a clean stop"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = copy_main_file_only(&db, elsewhere.path());
    assert_eq!(count(&copy, "accounts"), 3);
}

/// The accounts in a copy of the main file alone, or `None` if the copy caught a checkpoint midway.
fn accounts_in_main_file(db: &Path, into: &Path) -> Option<i64> {
    try_count(&copy_main_file_only(db, into), "accounts").ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_copies_its_commits_into_the_main_file_after_answering_them() {
    // The writer turns SQLite's automatic checkpoint off and checkpoints itself after each batch is
    // answered (at most every 20 commits under load, or with the first commit a second after the
    // last). Four sign-ups are far below SQLite's own threshold of 1,000 frames, so only the
    // writer's own checkpoint can put them in the main file while the server runs.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let mut child = spawn_distributor(&db, &dir.path().join("d.log"));
    child.wait_up().await;
    sign_up_some(&child.addr, 3).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    sign_up_some(&child.addr, 1).await;
    let elsewhere = tempfile::tempdir().unwrap();
    eventually(
        "the main file holds all four accounts",
        Duration::from_secs(10),
        async || accounts_in_main_file(&db, elsewhere.path()) == Some(4),
    )
    .await;
    child.process.terminate(WAIT).expect("stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_file_holds_the_schema_from_the_first_moment_the_server_runs() {
    let server = TestServer::start().await;
    connect_customer(&server.addr).await; // served: the database is open
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = copy_main_file_only(&server.db, elsewhere.path());
    assert!(
        count(&copy, "sqlite_schema") > 0,
        "the main file has no schema"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_wal_vanished_after_a_crash_is_refused_not_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let log = dir.path().join("d.log");
    let mut child = spawn_distributor(&db, &log);
    child.wait_up().await;
    sign_up_some(&child.addr, 3).await;
    child.process.kill9();
    assert!(
        std::fs::metadata(with_suffix(&db, "-wal")).is_ok_and(|m| m.len() > 0),
        "a crash leaves the -wal with frames"
    );
    std::fs::remove_file(with_suffix(&db, "-wal")).unwrap();
    let _ = std::fs::remove_file(with_suffix(&db, "-shm"));
    let before = std::fs::read(&db).unwrap();

    // `audit` does not call it ok, and a restart refuses instead of serving an emptier database.
    let audit = server::audit(&db, None);
    assert!(
        audit
            .as_ref()
            .is_err_and(|e| e.to_string().contains("-wal")),
        "audit: {:?}",
        audit.map(|r| r.ok)
    );
    let mut again = spawn_distributor(&db, &log);
    let exit = again.process.wait_timeout(WAIT).expect("refuses at once");
    assert!(!exit.success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("did not stop cleanly") && said.contains("-wal"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the file was not touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_mode_file_whose_wal_held_everything_is_refused_not_taken_for_a_fresh_database() {
    // What an earlier build left after a clean stop: a 4 KiB WAL-mode main file with no tables,
    // everything in the -wal. Then the -wal went missing.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    }
    assert!(!with_suffix(&db, "-wal").exists());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = server::run(
        server::Config::new(&db),
        listener,
        tokio_util::sync::CancellationToken::new(),
    );
    let outcome = tokio::time::timeout(WAIT, run)
        .await
        .expect("it refuses instead of serving");
    let e = outcome.expect_err("refused");
    assert!(e.to_string().contains("no schema"), "{e}");
    assert_eq!(count(&db, "sqlite_schema"), 0, "nothing was created in it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_distributor_on_the_same_database_refuses_at_once_and_names_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let mut first = spawn_distributor(&db, &dir.path().join("first.log"));
    first.wait_up().await;
    let second_log = dir.path().join("second.log");
    let mut second = spawn_distributor(&db, &second_log);
    let exit = second.process.wait_timeout(WAIT).expect("refuses at once");
    assert!(!exit.success());
    let said = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        said.contains(&format!("pid {}", first.process.id())),
        "it names the holder: {said}"
    );
    // The first one is unharmed.
    sign_up_some(&first.addr, 1).await;
    assert!(first.process.terminate(WAIT).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manufacturer_sim_on_the_same_books_refuses_at_once_and_names_the_holders_pid() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let books = dir.path().join("orchard.db");
    let args = strings(&[
        "--server",
        &server.addr,
        "--preset",
        "orchard",
        "--db",
        books.to_str().unwrap(),
    ]);
    let spawn = |log: &str| {
        ChildProcess::spawn_self(
            "database_file::child_manufacturer_for_database_file",
            &args,
            &dir.path().join(log),
        )
        .unwrap()
    };
    let mut first = spawn("first.log");
    eventually("the first books are locked", WAIT, async || {
        std::fs::read_to_string(with_suffix(&books, ".lock"))
            .is_ok_and(|pid| pid.trim() == first.id().to_string())
    })
    .await;
    let mut second = spawn("second.log");
    let exit = second.wait_timeout(WAIT).expect("refuses at once");
    assert!(!exit.success());
    let said = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(
        said.contains(&format!("pid {}", first.id())),
        "it names the holder: {said}"
    );
    assert!(first.is_running());
    assert!(first.terminate(WAIT).is_some_and(|s| s.success()));
    server.stop().await.unwrap();
}

/// Runs the `distributor` command line on a thread of its own (it may start its own runtime).
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
async fn distributor_backup_copies_a_running_database_consistently_while_it_sells() {
    let server = TestServer::start().await;
    let _m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 100_000, 100)]),
        Default::default(),
    )
    .await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let buyer = customer(&server.addr).await;
    let listing = wait_for_catalog(&buyer.client, 1, WAIT).await.items[0].listing;
    // Checkouts keep committing while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let selling = {
        let (client, stop) = (buyer.client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                client
                    .call(tests::harness::buy_now(listing, 1, Cents(100)))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    eventually("some sales", WAIT, async || {
        server::audit(&server.db, None).is_ok_and(|r| r.orders >= 5)
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("backup.db");
    let args = strings(&[
        "backup",
        "--db",
        server.db.to_str().unwrap(),
        "--to",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(
        distributor_cli(args.clone()).await,
        std::process::ExitCode::SUCCESS
    );
    // A second backup to the same file is refused: it never overwrites.
    assert_ne!(distributor_cli(args).await, std::process::ExitCode::SUCCESS);
    stop.store(true, Ordering::Relaxed);
    let sold = selling.await.unwrap();
    assert!(sold >= 5);

    // The copy is one consistent file: it audits clean, holds sales, and a distributor starts on it.
    assert!(!with_suffix(&copy, "-wal").exists());
    let report = server::audit(&copy, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    assert!(report.orders >= 5, "{report:?}");
    let restored = TestServer::start_on(copy.clone(), |_| {}).await;
    let status = match connect_operator(&restored.addr)
        .await
        .call(RequestBody::Status)
        .await
        .unwrap()
    {
        Reply::Status(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(status.orders, report.orders);
    restored.stop().await.unwrap();
    server.stop().await.unwrap();
}
