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
