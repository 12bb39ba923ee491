//! Sessions and logins (issue 10, section 2): a password change ends every other session, an account
//! holds at most 20 sessions, throttling slows guessing without locking anyone out and survives a
//! restart, sign-ups are throttled per address, and password hashing refuses work it cannot queue.
//! The sign-up flood against a real distributor process is in `flood.rs`, alone in its binary so
//! that these tests do not compete with it for the CPU.

use protocol::*;
use std::time::{Duration, Instant};
use tests::harness::*;
use tests::logins::*;

const WAIT: Duration = Duration::from_secs(20);

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

/// The per-address login bucket (20 a minute here): a sprayer at one address is soon refused, the
/// owner elsewhere is not slowed at all, and a neighbour at the sprayer's address is only slowed: the
/// bucket refills, so a few held attempts later the right password logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_limited_per_address_which_slows_a_sprayer_but_shuts_nobody_out() {
    let server = TestServer::start_with(|c| c.limits.logins_per_minute = 20).await;
    let owner = connect_from(&server.addr, "127.0.0.6").await;
    owner.call(sign_up_body("owner@example.com")).await.unwrap();
    let sprayer = connect_from(&server.addr, "127.0.0.5").await;
    let mut refusal = None;
    for i in 0..200 {
        let reply = sprayer
            .call(log_in(&format!("victim{i}@example.com"), "guess guess"))
            .await;
        match code(&reply) {
            Err(ErrorCode::BadCredentials) => {}
            Err(ErrorCode::Throttled) => {
                refusal = Some((
                    i,
                    reply.unwrap_err().server_error().unwrap().message.clone(),
                ));
                break;
            }
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    let (attempts, message) = refusal.expect("the address was never throttled");
    assert!(attempts >= 20, "refused after only {attempts} attempts");
    assert!(message.contains("your address"), "{message}");
    assert_eq!(
        code(&owner.call(log_in("owner@example.com", PASSWORD)).await),
        Ok(())
    );
    let neighbour = connect_from(&server.addr, "127.0.0.5").await;
    let start = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match code(&neighbour.call(log_in("owner@example.com", PASSWORD)).await) {
            Ok(()) => break,
            Err(ErrorCode::Throttled) if tries < 10 => {}
            other => panic!("try {tries} after {:?}: {other:?}", start.elapsed()),
        }
    }
    assert!(start.elapsed() < WAIT, "{:?}", start.elapsed());
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
    // The sixth attempt is held for the one-second delay, then refused; the seventh is past it.
    let start = Instant::now();
    let refused = client.call(log_in("slow@example.com", PASSWORD)).await;
    assert_eq!(code(&refused), Err(ErrorCode::Throttled));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    let message = refused.unwrap_err().server_error().unwrap().message.clone();
    assert!(message.contains("try again now"), "{message}");
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

/// A customer connection through `balancer` from the loopback address `source`, once the balancer
/// is up and has a server up.
async fn connect_through(balancer: &str, source: &str) -> Client {
    let started = Instant::now();
    loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        // Refused until HAProxy listens; closed until its first check of the server passes.
        let reached = match socket.connect(balancer.parse().unwrap()).await {
            Ok(stream) => Client::handshake(stream, hello(Role::Customer, None))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match reached {
            Ok((client, _)) => return client,
            Err(e) => assert!(started.elapsed() < WAIT, "no server behind HAProxy: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_sign_ups_are_throttled_per_customer_address_not_per_balancer() {
    let defaults = server::throttle::Limits::default();
    let server = TestServer::start_with(|c| {
        c.limits = defaults;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // deploy/haproxy.cfg, which sends each connection's PROXY v2 header.
    let haproxy = tests::cluster::Haproxy::start(&[("solo", &server.addr)], dir.path());
    let flooder = connect_through(&haproxy.addr, "127.0.0.2").await;
    for i in 0..defaults.signups_per_minute {
        let reply = flooder
            .call(sign_up_body(&format!("proxied{i}@example.com")))
            .await;
        assert_eq!(code(&reply), Ok(()), "sign-up {i}");
    }
    let refused = flooder.call(sign_up_body("one-more@example.com")).await;
    assert_eq!(code(&refused), Err(ErrorCode::Throttled));
    // Through the same balancer from another address: its own budget, not the flooder's.
    let neighbour = connect_through(&haproxy.addr, "127.0.0.3").await;
    assert_eq!(
        code(&neighbour.call(sign_up_body("neighbour@example.com")).await),
        Ok(())
    );
    // The balancer's own address, connecting without a header, is served as itself.
    let direct = connect_from(&server.addr, "127.0.0.1").await;
    assert_eq!(
        code(&direct.call(sign_up_body("direct@example.com")).await),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_an_address_not_trusted_is_refused_and_the_server_serves_on() {
    let server = TestServer::start().await;
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 7000\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, header)
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await
    .expect("the server closes the connection")
    .expect("read the server's last words");
    let last: ServerMessage =
        protocol::codec::decode_server_payload(answer.get(4..).unwrap_or_default())
            .expect("one frame saying why");
    let reason = match &last {
        ServerMessage::Closing(e) | ServerMessage::Refused(e) => e.code,
        other => panic!("expected the connection to be refused, got {other:?}"),
    };
    assert_eq!(reason, ErrorCode::Malformed, "{last:?}");
    let (client, _) = connect_customer(&server.addr).await;
    assert_eq!(
        code(&client.call(sign_up_body("after@example.com")).await),
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
