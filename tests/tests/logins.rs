//! Sessions and logins (issue 10, section 2): a password change ends every other session, an account
//! holds at most 20 sessions, throttling slows guessing without locking anyone out and survives a
//! restart, sign-ups are throttled per address, password hashing refuses work it cannot queue, and a
//! sign-up flood from a real distributor process leaves honest logins fast and memory bounded.

use protocol::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tests::child::{child_args, free_port, ChildProcess};
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(20);
const ENTRY: &str = "child_distributor_for_logins";
const PASSWORD: &str = "the right password";

/// Not a test: the body of the child distributor the flood test floods.
#[test]
#[ignore = "entry point for the child distributor spawned by the flood test"]
fn child_distributor_for_logins() {
    let Some(args) = child_args() else { return };
    let code = server::cli::main_from(std::iter::once("distributor".to_string()).chain(args));
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

fn code(result: &Result<Reply, ClientError>) -> Result<(), ErrorCode> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .server_error()
            .map(|e| e.code)
            .unwrap_or_else(|| panic!("transport error: {e}"))),
    }
}

/// A customer connection from a chosen loopback address (all of 127.0.0.0/8 is this machine), so a
/// test can play clients at different addresses.
async fn connect_from(server: &str, source: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(server.parse().unwrap()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    Client::handshake(stream, hello(Role::Customer, None))
        .await
        .unwrap()
        .0
}

fn sign_up_body(email: &str) -> RequestBody {
    RequestBody::SignUp(SignUp {
        first_name: "Grace".into(),
        last_name: "Hopper".into(),
        email: email.into(),
        password: PASSWORD.into(),
    })
}

fn log_in(email: &str, password: &str) -> RequestBody {
    RequestBody::LogIn {
        email: email.into(),
        password: password.into(),
    }
}

fn token(reply: Result<Reply, ClientError>) -> SessionToken {
    match reply {
        Ok(Reply::Session(s)) => s.token,
        other => panic!("expected a session, got {other:?}"),
    }
}

async fn resume(addr: &str, token: &SessionToken) -> Result<(), ErrorCode> {
    let (client, _) = connect_customer(addr).await;
    code(
        &client
            .call(RequestBody::Resume {
                token: token.clone(),
            })
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_ends_every_other_session_token_and_live_connection() {
    let server = TestServer::start().await;
    let (changer, _) = connect_customer(&server.addr).await;
    let kept = token(changer.call(sign_up_body("change@example.com")).await);
    let (other, _) = connect_customer(&server.addr).await;
    let stolen = token(other.call(log_in("change@example.com", PASSWORD)).await);
    other.call(RequestBody::GetCart).await.unwrap();

    changer
        .call(RequestBody::UpdateAccount(AccountUpdate {
            password: Some((PASSWORD.into(), "a brand new password".into())),
            ..AccountUpdate::default()
        }))
        .await
        .unwrap();

    assert_eq!(
        resume(&server.addr, &stolen).await,
        Err(ErrorCode::SessionExpired)
    );
    eventually("the other live connection is ended", WAIT, async || {
        other.call(RequestBody::GetCart).await.is_err()
    })
    .await;
    // The session that changed the password stays, and so does its token.
    changer.call(RequestBody::GetCart).await.unwrap();
    assert_eq!(resume(&server.addr, &kept).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_keeps_at_most_20_sessions_and_a_new_login_evicts_the_oldest() {
    let server = TestServer::start().await;
    let (first, _) = connect_customer(&server.addr).await;
    let oldest = token(first.call(sign_up_body("many@example.com")).await);
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let (c, _) = connect_customer(&server.addr).await;
        tokens.push(token(c.call(log_in("many@example.com", PASSWORD)).await));
    }
    let stored: i64 = rusqlite::Connection::open(&server.db)
        .unwrap()
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 20);
    assert_eq!(
        resume(&server.addr, &oldest).await,
        Err(ErrorCode::SessionExpired)
    );
    eventually(
        "the evicted session's live connection is ended",
        WAIT,
        async || first.call(RequestBody::GetCart).await.is_err(),
    )
    .await;
    assert_eq!(resume(&server.addr, &tokens[0]).await, Ok(()));
    assert_eq!(resume(&server.addr, &tokens[19]).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_guesses_from_another_address_never_keep_the_owner_out() {
    let server = TestServer::start().await;
    let owner = connect_from(&server.addr, "127.0.0.1").await;
    owner.call(sign_up_body("owner@example.com")).await.unwrap();
    let attacker = connect_from(&server.addr, "127.0.0.2").await;
    let mut throttled = false;
    for _ in 0..12 {
        match code(
            &attacker
                .call(log_in("owner@example.com", "guess guess"))
                .await,
        ) {
            Err(ErrorCode::Throttled) => throttled = true,
            other => assert_eq!(other, Err(ErrorCode::BadCredentials)),
        }
    }
    assert!(throttled, "the guesser was never slowed");
    let owner = connect_from(&server.addr, "127.0.0.1").await;
    assert_eq!(
        code(&owner.call(log_in("owner@example.com", PASSWORD)).await),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spray_of_failures_from_one_address_does_not_keep_other_users_there_out() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    client
        .call(sign_up_body("bystander@example.com"))
        .await
        .unwrap();
    for i in 0..60 {
        let reply = client
            .call(log_in(&format!("nobody{i}@example.com"), "guess guess"))
            .await;
        assert_eq!(code(&reply), Err(ErrorCode::BadCredentials));
    }
    let (neighbour, _) = connect_customer(&server.addr).await;
    assert_eq!(
        code(
            &neighbour
                .call(log_in("bystander@example.com", PASSWORD))
                .await
        ),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_get_a_delay_and_the_right_password_works_once_it_has_passed() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    client.call(sign_up_body("slow@example.com")).await.unwrap();
    for _ in 0..5 {
        let reply = client.call(log_in("slow@example.com", "guess guess")).await;
        assert_eq!(code(&reply), Err(ErrorCode::BadCredentials));
    }
    let refused = client.call(log_in("slow@example.com", PASSWORD)).await;
    assert_eq!(code(&refused), Err(ErrorCode::Throttled));
    let message = refused.unwrap_err().server_error().unwrap().message.clone();
    assert!(message.contains("try again in 1 s"), "{message}");
    // The delay is one second: waiting it out is the point of this test, not a race.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(&client.call(log_in("slow@example.com", PASSWORD)).await),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_remembered_across_a_restart() {
    let slow = |c: &mut server::Config| c.limits.base_delay_ms = 120_000;
    let server = TestServer::start_with(slow).await;
    let (client, _) = connect_customer(&server.addr).await;
    client
        .call(sign_up_body("remember@example.com"))
        .await
        .unwrap();
    for _ in 0..5 {
        let reply = client
            .call(log_in("remember@example.com", "guess guess"))
            .await;
        assert_eq!(code(&reply), Err(ErrorCode::BadCredentials));
    }
    drop(client);
    let server = server.restart(slow).await;
    let (client, _) = connect_customer(&server.addr).await;
    assert_eq!(
        code(&client.call(log_in("remember@example.com", PASSWORD)).await),
        Err(ErrorCode::Throttled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_account_ceiling_new_addresses_wait_but_the_owners_usual_address_logs_in() {
    let server = TestServer::start_with(|c| c.limits.account_ceiling = 10).await;
    let owner = connect_from(&server.addr, "127.0.0.1").await;
    owner
        .call(sign_up_body("ceiling@example.com"))
        .await
        .unwrap();
    owner
        .call(log_in("ceiling@example.com", PASSWORD))
        .await
        .unwrap();
    for i in 0..10 {
        let bot = connect_from(&server.addr, &format!("127.0.3.{}", i + 1)).await;
        let reply = bot.call(log_in("ceiling@example.com", "guess guess")).await;
        assert_eq!(code(&reply), Err(ErrorCode::BadCredentials));
    }
    let stranger = connect_from(&server.addr, "127.0.4.1").await;
    assert_eq!(
        code(&stranger.call(log_in("ceiling@example.com", PASSWORD)).await),
        Err(ErrorCode::Throttled)
    );
    let owner = connect_from(&server.addr, "127.0.0.1").await;
    assert_eq!(
        code(&owner.call(log_in("ceiling@example.com", PASSWORD)).await),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_are_throttled_per_address_and_other_addresses_are_unaffected() {
    let defaults = server::throttle::Limits::default();
    let server = TestServer::start_with(|c| c.limits = defaults).await;
    let flooder = connect_from(&server.addr, "127.0.0.1").await;
    for i in 0..defaults.signups_per_minute {
        let reply = flooder
            .call(sign_up_body(&format!("bulk{i}@example.com")))
            .await;
        assert_eq!(code(&reply), Ok(()), "sign-up {i}");
    }
    let refused = flooder.call(sign_up_body("one-more@example.com")).await;
    assert_eq!(code(&refused), Err(ErrorCode::Throttled));
    let elsewhere = connect_from(&server.addr, "127.0.0.2").await;
    assert_eq!(
        code(&elsewhere.call(sign_up_body("elsewhere@example.com")).await),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_beyond_the_hashing_queue_are_refused_as_busy_and_nothing_is_half_made() {
    let server = TestServer::start_with(|c| {
        c.hash_threads = 1;
        c.hash_queue = 2;
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let addr = server.addr.clone();
        tasks.push(tokio::spawn(async move {
            let (client, _) = connect_customer(&addr).await;
            code(
                &client
                    .call(sign_up_body(&format!("busy{i}@example.com")))
                    .await,
            )
        }));
    }
    let mut accepted = 0;
    let mut busy = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(ErrorCode::Busy) => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        accepted >= 1 && busy >= 1,
        "accepted {accepted}, busy {busy}"
    );
    let accounts: i64 = rusqlite::Connection::open(&server.db)
        .unwrap()
        .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        accounts, accepted,
        "a refused sign-up leaves no account behind"
    );
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The flood of issue 10, against a real distributor process with default settings: 32
/// connections, each from its own address (a botnet, so the per-address limit alone cannot stop
/// it), sign up as fast as they can for 20 s, while one honest customer logs in every 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_second_sign_up_flood_leaves_honest_logins_under_1_s_and_memory_bounded() {
    const FLOOD: Duration = Duration::from_secs(20);
    const RSS_BOUND_KIB: u64 = 160 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let log = dir.path().join("distributor.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = ["--listen", &addr, "--db", db.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut child = ChildProcess::spawn_self(ENTRY, &args, &log).unwrap();
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "distributor did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let honest = connect_from(&addr, "127.0.0.1").await;
    honest
        .call(sign_up_body("honest@example.com"))
        .await
        .unwrap();
    let rss_before = status_kib(child.id(), "VmRSS:");

    let end = Instant::now() + FLOOD;
    let mut flooders = Vec::new();
    for i in 0..32u32 {
        let addr = addr.clone();
        flooders.push(tokio::spawn(async move {
            let client = connect_from(&addr, &format!("127.0.2.{}", i + 1)).await;
            let (mut accepted, mut refused, mut n) = (0u32, 0u32, 0u32);
            while Instant::now() < end {
                n += 1;
                let email = format!("flood-{i}-{n}@example.com");
                match code(&client.call(sign_up_body(&email)).await) {
                    Ok(()) => accepted += 1,
                    Err(ErrorCode::Throttled | ErrorCode::Busy) => refused += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (accepted, refused)
        }));
    }
    let mut worst = Duration::ZERO;
    let mut logins = 0;
    while Instant::now() < end {
        let client = connect_from(&addr, "127.0.0.1").await;
        let start = Instant::now();
        client
            .call(log_in("honest@example.com", PASSWORD))
            .await
            .unwrap();
        worst = worst.max(start.elapsed());
        logins += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (mut accepted, mut refused) = (0, 0);
    for f in flooders {
        let (a, r) = f.await.unwrap();
        accepted += a;
        refused += r;
    }
    let peak = status_kib(child.id(), "VmHWM:");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = status_kib(child.id(), "VmRSS:");
    println!(
        "flood: {accepted} sign-ups accepted ({:.1}/s), {refused} refused; {logins} honest logins, slowest {} ms; RSS {} MiB before, peak {} MiB, idle after {} MiB",
        f64::from(accepted) / FLOOD.as_secs_f64(),
        worst.as_millis(),
        rss_before / 1024,
        peak / 1024,
        idle / 1024
    );
    assert!(child.terminate(WAIT).is_some_and(|s| s.success()));
    assert!(accepted > 0, "the flood was refused entirely");
    assert!(refused > 0, "the flood was never throttled");
    assert!(
        worst < Duration::from_secs(1),
        "an honest login took {worst:?}"
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
}
