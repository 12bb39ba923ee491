//! What a new user and a careful tester with a client of their own ran into at first contact (issue
//! 9, items 10-12): requests pipelined behind `Hello`, colour escapes in log files, messages that
//! named the wrong limit or the wrong problem, and database files the distributor cannot write.

use bytes::BytesMut;
use protocol::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

const ENTRY: &str = "first_use::child_distributor_for_first_use";
const WAIT: Duration = Duration::from_secs(20);
/// `nobody`: file permissions do not bind root, so as root the child runs as this user instead.
const NOBODY: u32 = 65534;

/// Not a test: the body of the child distributor process.
#[test]
#[ignore = "entry point for the child distributor process spawned by these tests"]
fn child_distributor_for_first_use() {
    run_child("distributor", server::cli::main_from, 1);
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

/// Starts a child distributor on `db` as an unprivileged user, so that permissions apply.
fn spawn_unprivileged(db: &Path, log: &Path) -> ChildProcess {
    let args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{}", free_port()),
        "--db".to_string(),
        db.display().to_string(),
    ];
    let as_root = running_as_root();
    ChildProcess::spawn_self_adjusted(ENTRY, &args, log, |command| {
        if as_root {
            command.uid(NOBODY).gid(NOBODY);
        }
    })
    .expect("spawn distributor")
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Reads frames until `want` responses arrived (skipping pushes and the Welcome), within `limit`.
async fn read_responses(stream: &mut TcpStream, want: usize, limit: Duration) -> Vec<Response> {
    let started = Instant::now();
    let mut bytes = BytesMut::new();
    let mut codec = ClientCodec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut responses = Vec::new();
    loop {
        while let Some(message) = codec.decode(&mut bytes).expect("server frames decode") {
            if let ServerMessage::Response(r) = message {
                responses.push(r);
            }
        }
        if responses.len() >= want {
            return responses;
        }
        let left = limit.saturating_sub(started.elapsed());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("the pipelined requests are answered without more bytes from the client")
            .expect("read");
        assert!(n > 0, "the server closed instead of answering");
        bytes.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn requests_sent_in_the_same_write_as_hello_are_answered_without_waiting_for_more_bytes() {
    let server = TestServer::start().await;
    let hello = ClientMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        role: Role::Customer,
        client: "pipelining".into(),
        name: None,
        key: None,
    });
    let mut bytes = protocol::codec::frame(&hello).expect("encode hello");
    for id in 1..=3 {
        let ping = ClientMessage::Request(Request {
            id: RequestId(id),
            body: RequestBody::Ping,
        });
        bytes.extend(protocol::codec::frame(&ping).expect("encode ping"));
    }
    let mut stream = TcpStream::connect(&server.addr).await.expect("connect");
    stream.write_all(&bytes).await.expect("one write");
    let responses = read_responses(&mut stream, 3, Duration::from_secs(3)).await;
    let ids: Vec<u64> = responses.iter().map(|r| r.id.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(responses.iter().all(|r| r.result == Ok(Reply::Pong)));
}

#[tokio::test]
async fn distributor_log_lines_carry_no_colour_escapes_when_stderr_is_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("distributor.log");
    let port = free_port();
    let args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--db".to_string(),
        dir.path().join("distributor.db").display().to_string(),
    ];
    let mut child = ChildProcess::spawn_self(ENTRY, &args, &log).expect("spawn distributor");
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("distributor ready")
    {
        assert!(started.elapsed() < WAIT, "the distributor did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.terminate(WAIT);
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(text.contains("month opened"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "the log file holds escape sequences: {text:?}"
    );
}

#[tokio::test]
async fn a_password_over_1024_characters_is_refused_naming_the_real_limit() {
    let server = TestServer::start().await;
    let (client, _events) = connect_customer(&server.addr).await;
    let error = client
        .call(RequestBody::SignUp(SignUp {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: unique_email("long-password"),
            password: "x".repeat(1025),
        }))
        .await
        .expect_err("a 1,025-character password is refused");
    let ClientError::Server(error) = error else {
        panic!("expected a server error, got {error:?}");
    };
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(error.field, Some(Field::Password));
    assert!(error.message.contains("at most 1024"), "{}", error.message);
}

#[tokio::test]
async fn buying_an_unknown_listing_says_not_found_as_adding_it_to_a_cart_does() {
    let server = TestServer::start().await;
    let _maker = TestManufacturer::connect(
        &server.addr,
        "first-use-maker",
        script(vec![offer_line("apple", 10, 100)]),
        Default::default(),
    )
    .await;
    // The first month opened before the manufacturer connected; a new one takes its offer.
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close the empty first month");
    let buyer = customer(&server.addr).await;
    wait_for_catalog(&buyer.client, 1, WAIT).await;
    let unknown = ListingId(4_000_000_000);
    let in_cart = buyer
        .client
        .call(RequestBody::AddToCart {
            listing: unknown,
            quantity: 1,
        })
        .await
        .expect_err("an unknown listing cannot go in the cart");
    let at_checkout = buyer
        .client
        .call(RequestBody::Checkout {
            checkout_id: CheckoutId::generate(),
            lines: Some(vec![CartItem {
                listing: unknown,
                quantity: 1,
            }]),
            // An unknown listing has no price to confirm; it is refused before any price check.
            confirmed_total: Cents(0),
        })
        .await
        .expect_err("an unknown listing cannot be bought");
    for error in [in_cart, at_checkout] {
        let ClientError::Server(error) = error else {
            panic!("expected a server error, got {error:?}");
        };
        assert_eq!(error.code, ErrorCode::NotFound, "{}", error.message);
        assert_eq!(error.field, Some(Field::Listing));
        assert!(!error.message.contains("sold out"), "{}", error.message);
    }
}

/// Makes a real distributor database at `db` and stops its server cleanly.
async fn make_database(db: &Path) {
    TestServer::start_on(db.to_path_buf(), |_| {})
        .await
        .stop()
        .await
        .expect("clean stop");
}

#[tokio::test]
async fn a_read_only_database_file_is_refused_at_start_saying_it_is_read_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("distributor.db");
    make_database(&db).await;
    // The directory stays writable; only the database file is write-protected.
    set_mode(dir.path(), 0o777);
    set_mode(&db, 0o444);
    let log = dir.path().join("distributor.log");
    let mut child = spawn_unprivileged(&db, &log);
    let status = child
        .wait_exit(WAIT)
        .expect("the distributor exits by itself");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(text.contains("read-only"), "{text}");
    assert!(!text.contains("distributor ready"), "{text}");
}

#[tokio::test]
async fn a_database_in_a_read_only_directory_is_refused_saying_it_cannot_be_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    set_mode(dir.path(), 0o777);
    set_mode(&data, 0o555);
    let log = dir.path().join("distributor.log");
    let mut child = spawn_unprivileged(&data.join("distributor.db"), &log);
    let status = child
        .wait_exit(WAIT)
        .expect("the distributor exits by itself");
    set_mode(&data, 0o755);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(text.contains("cannot write"), "{text}");
    assert!(!text.contains("not a usable"), "{text}");
}
