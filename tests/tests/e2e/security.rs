//! Security promises: password hashing, session tokens, authorization by role, secret and owner,
//! card data never stored or logged, parameters-only SQL, durability settings, and TLS. Login
//! throttling, session caps and sign-up floods are in `logins.rs`; manufacturer credentials and the
//! operator key in `identity.rs`; the database file's safety in `database_file.rs`.

use protocol::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(20);
const ENTRY: &str = "security::child_distributor_for_security";

/// Not a test: the body of the child distributor whose logs are scanned for card data.
#[test]
#[ignore = "entry point for the child distributor spawned by the card-scan test"]
fn child_distributor_for_security() {
    run_child("distributor", server::cli::main_from, 1);
}

fn read_only(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn code(result: Result<Reply, ClientError>) -> Result<(), ErrorCode> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .server_error()
            .map(|e| e.code)
            .unwrap_or_else(|| panic!("transport error: {e}"))),
    }
}

async fn sign_up(client: &Client, email: &str, password: &str) -> Result<Reply, ClientError> {
    client
        .call(RequestBody::SignUp(SignUp {
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
            email: email.into(),
            password: password.into(),
        }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_stored_only_as_argon2id_hashes_with_owasp_parameters() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    sign_up(&client, "grace@example.com", "a very secret phrase")
        .await
        .unwrap();
    let hash: String = read_only(&server.db)
        .query_row("SELECT password_hash FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains("a very secret phrase"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_are_stored_hashed_rotate_on_login_expire_and_are_revoked_on_logout() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    let Reply::Session(first) = sign_up(&client, "tok@example.com", "token tester")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(first.token.0.len() >= 32, "at least 128 bits of token");
    let stored: Vec<Vec<u8>> = read_only(&server.db)
        .prepare("SELECT token_hash FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], first.token.0.as_bytes());
    assert!(!String::from_utf8_lossy(&stored[0]).contains(&first.token.0));

    // A new login gets a new token; both terminals stay logged in.
    let (other, _) = connect_customer(&server.addr).await;
    let Reply::Session(second) = other
        .call(RequestBody::LogIn {
            email: "tok@example.com".into(),
            password: "token tester".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_ne!(first.token, second.token);

    // Logging out revokes that token only.
    other.call(RequestBody::LogOut).await.unwrap();
    assert_eq!(
        code(other.call(RequestBody::GetCart).await),
        Err(ErrorCode::NotAuthenticated)
    );
    let (third, _) = connect_customer(&server.addr).await;
    assert_eq!(
        code(
            third
                .call(RequestBody::Resume {
                    token: second.token.clone()
                })
                .await
        ),
        Err(ErrorCode::SessionExpired)
    );
    third
        .call(RequestBody::Resume {
            token: first.token.clone(),
        })
        .await
        .unwrap();

    // An expired token no longer resumes.
    let (db, dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE sessions SET expires_at_ms = 1", [])
        .unwrap();
    let server = TestServer::start_on(db, |_| {}).await;
    let (fourth, _) = connect_customer(&server.addr).await;
    assert_eq!(
        code(
            fourth
                .call(RequestBody::Resume { token: first.token })
                .await
        ),
        Err(ErrorCode::SessionExpired)
    );
    drop(dir);
}

// Login throttling (by account and address, with delays instead of lockouts) is tested in
// `logins.rs`; input validation in `validation.rs`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_email_and_a_wrong_password_get_identical_errors_in_alike_time() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    sign_up(&client, "known@example.com", "the right password")
        .await
        .unwrap();
    let mut times = [Vec::new(), Vec::new()];
    let mut errors = [None, None];
    // Alternate, one attempt each per round, staying under the per-account limit.
    for round in 0..4 {
        for (i, email) in [
            "known@example.com",
            format!("unknown{round}@example.com").as_str(),
        ]
        .iter()
        .enumerate()
        {
            let (c, _) = connect_customer(&server.addr).await;
            let start = Instant::now();
            let e = c
                .call(RequestBody::LogIn {
                    email: email.to_string(),
                    password: "wrong password".into(),
                })
                .await
                .unwrap_err();
            times[i].push(start.elapsed());
            errors[i] = e.server_error().cloned();
        }
    }
    assert_eq!(
        errors[0], errors[1],
        "the two failures must be indistinguishable"
    );
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (known, unknown) = (median(&mut times[0]), median(&mut times[1]));
    // Both run one argon2 verification. Loose on purpose: a shared machine is noisy, but a missing
    // verification would be ~100 times faster.
    let ratio = known.as_secs_f64().max(unknown.as_secs_f64())
        / known.as_secs_f64().min(unknown.as_secs_f64());
    assert!(ratio < 5.0, "known {known:?} vs unknown {unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_by_role_request_and_owner() {
    let server = TestServer::start().await;
    let m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 100, 100)]),
        Default::default(),
    )
    .await;
    let operator = connect_operator(&server.addr).await;
    operator.call(RequestBody::CloseMonth).await.unwrap();
    let alice = customer(&server.addr).await;
    let bob = customer(&server.addr).await;
    let listing = wait_for_catalog(&alice.client, 1, WAIT).await.items[0].listing;
    let Reply::Order(order) = alice
        .client
        .call(tests::harness::buy_now(listing, 1, Cents(100)))
        .await
        .unwrap()
    else {
        panic!()
    };
    let (anonymous, _) = connect_customer(&server.addr).await;

    let buy = || tests::harness::buy_now(listing, 1, Cents(100));
    let customer_requests = || {
        vec![
            RequestBody::GetAccount,
            RequestBody::GetCart,
            RequestBody::Catalog,
            RequestBody::Orders,
            RequestBody::AddToCart {
                listing,
                quantity: 1,
            },
            RequestBody::ClearCart,
            RequestBody::LogOut,
            RequestBody::GetOrder { order: order.id },
            RequestBody::RemoveCard,
            buy(),
        ]
    };
    let manufacturer_requests = || {
        vec![
            RequestBody::SubmitOffer {
                month: MonthId(1),
                lines: vec![],
            },
            RequestBody::AckNotices {
                through: NoticeSeq(0),
            },
            RequestBody::ReportDispatch { order: order.id },
            RequestBody::ReportDispatches {
                orders: vec![order.id],
            },
        ]
    };
    let operator_requests = || {
        vec![
            RequestBody::CloseMonth,
            RequestBody::Status,
            RequestBody::RevokeManufacturer {
                name: "nobody".into(),
            },
        ]
    };

    // Anonymous: only sign up, log in, resume and ping.
    assert_eq!(code(anonymous.call(RequestBody::Ping).await), Ok(()));
    for r in customer_requests() {
        assert_eq!(
            code(anonymous.call(r.clone()).await),
            Err(ErrorCode::NotAuthenticated),
            "anonymous {r:?}"
        );
    }
    for r in manufacturer_requests()
        .into_iter()
        .chain(operator_requests())
    {
        assert_eq!(
            code(anonymous.call(r.clone()).await),
            Err(ErrorCode::Forbidden),
            "anonymous {r:?}"
        );
    }
    // A manufacturer cannot buy, browse, hold an account, or operate.
    for r in customer_requests()
        .into_iter()
        .chain(operator_requests())
        .chain([RequestBody::SignUp(SignUp {
            first_name: "M".into(),
            last_name: "M".into(),
            email: "m@example.com".into(),
            password: "manufacturer".into(),
        })])
    {
        assert_eq!(
            code(m.client.call(r.clone()).await),
            Err(ErrorCode::Forbidden),
            "manufacturer {r:?}"
        );
    }
    // An operator cannot buy or act as a manufacturer.
    for r in manufacturer_requests().into_iter().chain([
        buy(),
        RequestBody::GetCart,
        RequestBody::Orders,
    ]) {
        assert_eq!(
            code(operator.call(r.clone()).await),
            Err(ErrorCode::Forbidden),
            "operator {r:?}"
        );
    }
    // A customer cannot act as a manufacturer or an operator.
    for r in manufacturer_requests()
        .into_iter()
        .chain(operator_requests())
    {
        assert_eq!(
            code(bob.client.call(r.clone()).await),
            Err(ErrorCode::Forbidden),
            "customer {r:?}"
        );
    }
    // An operator with the operator key may make every operator request.
    for r in operator_requests() {
        let answer = code(operator.call(r.clone()).await);
        assert!(
            answer != Err(ErrorCode::Forbidden) && answer != Err(ErrorCode::WrongCredential),
            "operator {r:?}: {answer:?}"
        );
    }
    // The handshake checks each role's secret: the operator key for operators, the name's own
    // credential for manufacturers. The operator key does not make anyone a manufacturer.
    let handshake = |role: Role, name: Option<&str>, key: Option<&str>| Hello {
        version: PROTOCOL_VERSION,
        role,
        client: "matrix".into(),
        name: name.map(str::to_string),
        key: key.map(str::to_string),
    };
    let wrong = "0".repeat(64);
    for (what, hello) in [
        (
            "operator without a key",
            handshake(Role::Operator, None, None),
        ),
        (
            "operator with a wrong key",
            handshake(Role::Operator, None, Some(&wrong)),
        ),
        (
            "registered name without its credential",
            handshake(Role::Manufacturer, Some("orchard"), None),
        ),
        (
            "registered name with a wrong credential",
            handshake(Role::Manufacturer, Some("orchard"), Some(&wrong)),
        ),
        (
            "registered name with the operator key",
            handshake(Role::Manufacturer, Some("orchard"), Some(operator_key())),
        ),
    ] {
        match Client::connect(&server.addr, hello).await {
            Err(ClientError::Refused(e)) => {
                assert_eq!(e.code, ErrorCode::WrongCredential, "{what}")
            }
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: admitted"),
        }
    }
    // A customer needs no key; a key it sends gives it nothing more.
    let (keyed, _) = Client::connect(
        &server.addr,
        handshake(Role::Customer, None, Some(operator_key())),
    )
    .await
    .unwrap();
    assert_eq!(
        code(keyed.call(RequestBody::Status).await),
        Err(ErrorCode::Forbidden)
    );
    // The real manufacturer kept its link through all of that.
    assert_eq!(m.client.call(RequestBody::Ping).await.unwrap(), Reply::Pong);
    // Another customer's order looks exactly like a missing one.
    let theirs = bob
        .client
        .call(RequestBody::GetOrder { order: order.id })
        .await
        .unwrap_err();
    let missing = bob
        .client
        .call(RequestBody::GetOrder {
            order: OrderId(987_654),
        })
        .await
        .unwrap_err();
    assert_eq!(theirs.server_error(), missing.server_error());
    assert_eq!(theirs.server_error().unwrap().code, ErrorCode::NotFound);
    let Reply::Order(mine) = alice
        .client
        .call(RequestBody::GetOrder { order: order.id })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(mine.id, order.id);
    let Reply::Orders(bobs) = bob.client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert!(bobs.is_empty());
    // A manufacturer can only dispatch orders that hold its goods.
    let other =
        TestManufacturer::connect(&server.addr, "dairy", script(vec![]), Default::default()).await;
    assert_eq!(
        code(
            other
                .client
                .call(RequestBody::ReportDispatch { order: order.id })
                .await
        ),
        Err(ErrorCode::NotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_full_card_number_or_cvc_reaches_the_database_the_wal_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let log = dir.path().join("distributor.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = ["--listen", &addr, "--db", db.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // The child logs at the most verbose level, so the scan covers every log line there is.
    let mut child =
        ChildProcess::spawn_self_with_env(ENTRY, &args, &log, &[("RUST_LOG", "trace")]).unwrap();
    let deadline = Instant::now() + WAIT;
    while Client::connect(
        &addr,
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
        assert!(Instant::now() < deadline, "distributor did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let operator_key = operator_key_beside(&db).await;
    let _m = TestManufacturer::connect(
        &addr,
        "orchard",
        script(vec![offer_line("apple", 100, 100)]),
        Default::default(),
    )
    .await;
    connect_operator_with(&addr, &operator_key)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let (client, _) = connect_customer(&addr).await;
    sign_up(&client, "cards@example.com", "card holder")
        .await
        .unwrap();
    // A typo'd number (fails Luhn), then a real Amex with a 4-digit CVC.
    let card = |number: &str, cvc: &str| {
        RequestBody::SetCard(CardInput {
            number: number.into(),
            exp_month: 7,
            exp_year: 2033,
            cvc: cvc.into(),
        })
    };
    assert!(client
        .call(card("3782 8224 6310 006", "8613"))
        .await
        .is_err());
    client
        .call(card("3782 822463 10005", "8613"))
        .await
        .unwrap();
    let listing = wait_for_catalog(&client, 1, WAIT).await.items[0].listing;
    for _ in 0..5 {
        client
            .call(tests::harness::buy_now(listing, 1, Cents(100)))
            .await
            .unwrap();
    }
    let Reply::Account(account) = client.call(RequestBody::GetAccount).await.unwrap() else {
        panic!()
    };
    assert_eq!(account.card.unwrap().last4, "0005");

    let needles = [
        "378282246310005",
        "3782 822463 10005",
        "378282246310006",
        "3782 8224 6310 006",
        "8613",
    ];
    let scan = |path: &Path| {
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let text = String::from_utf8_lossy(&bytes);
        for needle in needles {
            assert!(
                !text.contains(needle),
                "{} contains {needle:?}",
                path.display()
            );
        }
    };
    // While running (the WAL holds the recent writes), and again after a clean stop.
    for suffix in ["", "-wal", "-shm"] {
        scan(Path::new(&format!("{}{suffix}", db.display())));
    }
    let exit = child.terminate(WAIT).expect("stops on SIGTERM");
    assert!(exit.success());
    for suffix in ["", "-wal"] {
        scan(Path::new(&format!("{}{suffix}", db.display())));
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("distributor ready"), "the log was captured");
    scan(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_runs_in_wal_mode_with_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let conn = server::store::schema::open_writer(&dir.path().join("d.db")).unwrap();
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(
        sync, 2,
        "synchronous must be FULL (2) so acknowledged commits survive power loss"
    );
    assert_eq!(journal, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_in_every_field_is_stored_as_data_and_never_run_as_sql() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    let evil = "x'); DROP TABLE accounts; --";
    client
        .call(RequestBody::SignUp(SignUp {
            first_name: evil.into(),
            last_name: "\" OR 1=1 --".into(),
            email: "o'brien@example.com".into(),
            password: "' OR '1'='1".into(),
        }))
        .await
        .unwrap();
    let (other, _) = connect_customer(&server.addr).await;
    assert_eq!(
        code(
            other
                .call(RequestBody::LogIn {
                    email: "' OR '1'='1".into(),
                    password: "' OR '1'='1".into()
                })
                .await
        ),
        Err(ErrorCode::BadCredentials)
    );
    let Reply::Session(s) = other
        .call(RequestBody::LogIn {
            email: "O'Brien@example.com".into(),
            password: "' OR '1'='1".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.account.first_name, evil);
    let _m = TestManufacturer::connect(
        &server.addr,
        "r'); DROP TABLE offers; --",
        script(vec![OfferLine {
            sku: "'; DELETE FROM orders; --".into(),
            product: "Robert'); DROP TABLE students;--".into(),
            category: "x".into(),
            quantity: 3,
            unit_price: Cents(100),
        }]),
        Default::default(),
    )
    .await;
    let count: i64 = read_only(&server.db)
        .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let item = wait_for_catalog(&client, 1, WAIT).await.items[0].clone();
    assert_eq!(item.product, "Robert'); DROP TABLE students;--");
}

fn write_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_that_trust_the_ca_connect_and_plain_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let tls = server::tls::load(&cert, &key).unwrap();
    let server = TestServer::start_with(|c| {
        c.tls = Some(std::sync::Arc::new(tls));
        c.frame_timeout = Duration::from_secs(2);
    })
    .await;
    let hello = || Hello {
        version: PROTOCOL_VERSION,
        role: Role::Customer,
        client: "tls".into(),
        name: None,
        key: None,
    };
    let (client, _) = Client::connect_with(&server.addr, Some(&cert), hello())
        .await
        .expect("TLS connect");
    sign_up(&client, "tls@example.com", "over the wire")
        .await
        .unwrap();
    assert!(
        Client::connect(&server.addr, hello()).await.is_err(),
        "plain TCP must not reach a TLS server"
    );
    // A client that trusts some other CA refuses the server's certificate.
    let wrong_dir = tempfile::tempdir().unwrap();
    let (wrong_ca, _) = write_cert(wrong_dir.path());
    assert!(matches!(
        Client::connect_with(&server.addr, Some(&wrong_ca), hello()).await,
        Err(ClientError::Tls(_))
    ));
}

#[test]
fn the_distributor_refuses_a_non_loopback_address_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let code = server::cli::main_from([
        "distributor",
        "--listen",
        "0.0.0.0:0",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, std::process::ExitCode::from(2));
    assert!(!db.exists(), "it refused before touching anything");
}
