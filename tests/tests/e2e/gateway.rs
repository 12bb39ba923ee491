//! The gateway role over the real protocol: what lets `shop serve-ssh` say "this customer holds SSH
//! key F", and what keeps everyone else from saying it.

use protocol::*;
use tests::harness::{self, TestServer};

const PEER_KEY: &str = "gateway-test-peer-key";

fn hello(role: Role, key: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role,
        client: "tests".into(),
        name: None,
        key: key.map(str::to_string),
    }
}

async fn gateway(addr: &str) -> Client {
    Client::connect(addr, hello(Role::Gateway, Some(PEER_KEY)))
        .await
        .expect("connect gateway")
        .0
}

/// A fingerprint in `ssh-keygen -lf` form; `n` makes it unique.
fn fingerprint(n: u8) -> String {
    format!("SHA256:{}{}", "A".repeat(42), char::from(b'a' + n))
}

async fn sign_up(client: &Client, email: &str) -> SessionInfo {
    match client
        .call(RequestBody::SignUp(SignUp {
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
            email: email.into(),
            password: "correct horse battery".into(),
        }))
        .await
        .expect("sign up")
    {
        Reply::Session(s) => s,
        other => panic!("unexpected reply {other:?}"),
    }
}

fn code(result: Result<Reply, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_gateway_needs_the_peer_key_and_then_shops_as_one_customer() {
    let server = TestServer::start_with(|c| c.peer_key = Some(PEER_KEY.into())).await;
    let wrong = Client::connect(&server.addr, hello(Role::Gateway, Some("guess"))).await;
    assert!(
        matches!(wrong, Err(ClientError::Refused(_))),
        "a wrong key is refused"
    );
    let none = Client::connect(&server.addr, hello(Role::Gateway, None)).await;
    assert!(
        matches!(none, Err(ClientError::Refused(_))),
        "a missing key is refused"
    );

    let gw = gateway(&server.addr).await;
    assert_eq!(
        code(gw.call(RequestBody::GetCart).await),
        ErrorCode::NotAuthenticated
    );
    sign_up(&gw, &harness::unique_email("gw")).await;
    assert!(matches!(
        gw.call(RequestBody::GetCart).await,
        Ok(Reply::Cart(_))
    ));
    assert_eq!(
        code(gw.call(RequestBody::Status).await),
        ErrorCode::Forbidden,
        "a gateway is no operator"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_remembered_key_logs_in_through_a_gateway_and_a_customer_cannot_claim_a_key() {
    let server = TestServer::start_with(|c| c.peer_key = Some(PEER_KEY.into())).await;
    let key = fingerprint(1);

    // A plain customer connection may not vouch for a key, logged in or not.
    let (customer, _events) = Client::connect(&server.addr, hello(Role::Customer, None))
        .await
        .unwrap();
    let claim = RequestBody::KeyLogIn {
        fingerprint: key.clone(),
    };
    assert_eq!(
        code(customer.call(claim.clone()).await),
        ErrorCode::Forbidden
    );
    sign_up(&customer, &harness::unique_email("plain")).await;
    let remember = RequestBody::RememberKey {
        fingerprint: key.clone(),
    };
    assert_eq!(
        code(customer.call(remember.clone()).await),
        ErrorCode::Forbidden
    );

    // Through a gateway: unknown key → BadCredentials; remember; then the key logs in.
    let first = gateway(&server.addr).await;
    assert_eq!(
        code(first.call(claim.clone()).await),
        ErrorCode::BadCredentials
    );
    let owner = sign_up(&first, &harness::unique_email("owner")).await;
    first.call(remember.clone()).await.expect("remember");
    first
        .call(remember.clone())
        .await
        .expect("remembering twice is fine");
    let again = gateway(&server.addr).await;
    match again.call(claim.clone()).await.expect("key login") {
        Reply::Session(s) => assert_eq!(s.account.id, owner.account.id),
        other => panic!("unexpected reply {other:?}"),
    }

    // One account per key: another account cannot take it.
    let other = gateway(&server.addr).await;
    sign_up(&other, &harness::unique_email("other")).await;
    assert_eq!(
        code(other.call(remember.clone()).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            other
                .call(RequestBody::ForgetKey {
                    fingerprint: key.clone()
                })
                .await
        ),
        ErrorCode::NotFound,
        "another account cannot forget it either"
    );

    // Garbage is not a fingerprint.
    assert_eq!(
        code(
            other
                .call(RequestBody::RememberKey {
                    fingerprint: "SHA256:x' OR 1=1 --".into()
                })
                .await
        ),
        ErrorCode::InvalidInput
    );

    // Forgotten by its owner, the key logs in no more.
    again
        .call(RequestBody::ForgetKey {
            fingerprint: key.clone(),
        })
        .await
        .expect("forget");
    let later = gateway(&server.addr).await;
    assert_eq!(code(later.call(claim).await), ErrorCode::BadCredentials);

    // The store keeps fingerprints only.
    let conn = rusqlite::Connection::open(&server.db).unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('ssh_keys')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(columns, ["fingerprint", "account_id", "created_at_ms"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn deleting_an_account_unlinks_its_keys() {
    let server = TestServer::start().await;
    let gw = Client::connect(
        &server.addr,
        hello(Role::Gateway, Some(harness::operator_key())),
    )
    .await
    .unwrap()
    .0;
    sign_up(&gw, &harness::unique_email("gone")).await;
    let key = fingerprint(2);
    gw.call(RequestBody::RememberKey {
        fingerprint: key.clone(),
    })
    .await
    .unwrap();
    gw.call(RequestBody::DeleteAccount {
        password: "correct horse battery".into(),
    })
    .await
    .unwrap();
    let next = Client::connect(
        &server.addr,
        hello(Role::Gateway, Some(harness::operator_key())),
    )
    .await
    .unwrap()
    .0;
    assert_eq!(
        code(next.call(RequestBody::KeyLogIn { fingerprint: key }).await),
        ErrorCode::BadCredentials
    );
    server.stop().await.unwrap();
}

/// A gateway's customers all reach the distributor from the gateway's address. With
/// `CustomerAddress` each counts against its own: a sprayer behind the gateway is throttled, and a
/// neighbour behind the same gateway, at another address, logs in at once. A plain customer cannot
/// pick its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_customers_are_throttled_by_their_own_addresses_not_the_gateways() {
    let server = TestServer::start_with(|c| {
        c.peer_key = Some(PEER_KEY.into());
        c.limits.logins_per_minute = 20;
    })
    .await;
    let carry = |ip: &'static str| {
        let addr = server.addr.clone();
        async move {
            let client = gateway(&addr).await;
            let ip = ip.parse().expect("an ip");
            let said = client.call(RequestBody::CustomerAddress { ip }).await;
            assert!(matches!(said, Ok(Reply::Done)), "{said:?}");
            client
        }
    };
    let owner = carry("203.0.113.7").await;
    sign_up(&owner, "owner@example.com").await;
    let sprayer = carry("198.51.100.9").await;
    let mut throttled_after = None;
    for i in 0..200 {
        let reply = sprayer
            .call(RequestBody::LogIn {
                email: format!("victim{i}@example.com"),
                password: "guess guess".into(),
            })
            .await;
        match code(reply) {
            ErrorCode::BadCredentials => {}
            ErrorCode::Throttled => {
                throttled_after = Some(i);
                break;
            }
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    let attempts = throttled_after.expect("the sprayer's address was never throttled");
    assert!(attempts >= 20, "refused after only {attempts} attempts");
    // Another customer of the same gateway, from another address: not slowed at all.
    let neighbour = carry("203.0.113.8").await;
    let start = std::time::Instant::now();
    let reply = neighbour
        .call(RequestBody::LogIn {
            email: "owner@example.com".into(),
            password: "correct horse battery".into(),
        })
        .await;
    assert!(matches!(reply, Ok(Reply::Session(_))), "{reply:?}");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(900),
        "the neighbour was held for {:?}",
        start.elapsed()
    );
    // A customer connection may not say where it comes from.
    let (customer, _) = Client::connect(&server.addr, hello(Role::Customer, None))
        .await
        .expect("connect customer");
    let claim = customer
        .call(RequestBody::CustomerAddress {
            ip: "203.0.113.9".parse().expect("an ip"),
        })
        .await;
    assert_eq!(code(claim), ErrorCode::Forbidden);
    server.stop().await.unwrap();
}
