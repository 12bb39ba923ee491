//! The connection task against a real distributor (in-process): it reconnects by itself after the
//! server goes away and resumes the session with its token, without a new login; and it speaks TLS
//! with `--tls-ca`.

use protocol::{Reply, RequestBody, SignUp};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tui_client::app::{NetEvent, ReqKind, RequestError, Tag};
use tui_client::net::{self, NetCmd, Target};

const WAIT: Duration = Duration::from_secs(30);

struct Server {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

async fn start(db: &Path, addr: Option<SocketAddr>) -> (Server, SocketAddr) {
    let listener = match addr {
        None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
        // The old socket may linger for a moment after the server stops.
        Some(a) => {
            let mut tries = 0;
            loop {
                match TcpListener::bind(a).await {
                    Ok(l) => break l,
                    Err(_) if tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("rebinding {a}: {e}"),
                }
            }
        }
    };
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::run(server::Config::new(db), listener, stop.clone()));
    (Server { stop, task }, addr)
}

/// The next event that `pick` accepts, skipping others, within `WAIT`.
async fn next<T>(
    events: &mut mpsc::UnboundedReceiver<NetEvent>,
    mut pick: impl FnMut(NetEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("net task alive");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    })
    .await
    .expect("event in time")
}

fn tag(seq: u64, kind: ReqKind) -> Tag {
    Tag { seq, gen: 1, kind }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_restarts_the_session_resumes_without_a_new_login() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("distributor.db");
    let (server, addr) = start(&db, None).await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let (net, task) = net::spawn(Target::customer(addr.to_string()), events_tx, stop.clone());
    next(&mut events, |e| match e {
        NetEvent::Connected { session: None, .. } => Some(()),
        _ => None,
    })
    .await;

    let sign_up = RequestBody::SignUp(SignUp {
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada.resume@example.com".into(),
        password: "correct-horse".into(),
    });
    net.send(NetCmd::Send {
        tag: tag(1, ReqKind::SignUp),
        body: sign_up,
    })
    .unwrap();
    let info = next(&mut events, |e| match e {
        NetEvent::Reply {
            tag,
            result: Ok(Reply::Session(info)),
        } if tag.seq == 1 => Some(info),
        NetEvent::Reply { result: Err(e), .. } => panic!("sign up failed: {e:?}"),
        _ => None,
    })
    .await;
    net.send(NetCmd::Session(Some(info.token.clone()))).unwrap();

    server.stop.cancel();
    server.task.await.unwrap().unwrap();
    next(&mut events, |e| {
        matches!(e, NetEvent::Disconnected { .. }).then_some(())
    })
    .await;

    // While offline a request fails at once instead of hanging.
    net.send(NetCmd::Send {
        tag: tag(2, ReqKind::Account),
        body: RequestBody::GetAccount,
    })
    .unwrap();
    next(&mut events, |e| match e {
        NetEvent::Reply { tag, result } if tag.seq == 2 => {
            assert_eq!(result, Err(RequestError::Lost));
            Some(())
        }
        _ => None,
    })
    .await;

    let (server, _) = start(&db, Some(addr)).await;
    let resumed = next(&mut events, |e| match e {
        NetEvent::Connected { session, .. } => Some(session),
        _ => None,
    })
    .await;
    let resumed = resumed
        .expect("a resume was attempted")
        .expect("the session resumed");
    assert_eq!(resumed.account.email, "ada.resume@example.com");

    net.send(NetCmd::Send {
        tag: tag(3, ReqKind::Account),
        body: RequestBody::GetAccount,
    })
    .unwrap();
    next(&mut events, |e| match e {
        NetEvent::Reply {
            tag,
            result: Ok(Reply::Account(a)),
        } if tag.seq == 3 => {
            assert_eq!(a.first_name, "Ada");
            Some(())
        }
        NetEvent::Reply { tag, result } if tag.seq == 3 => panic!("{result:?}"),
        _ => None,
    })
    .await;

    stop.cancel();
    task.await.unwrap();
    server.stop.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_ca_the_connection_task_connects_over_tls_and_a_wrong_ca_never_connects() {
    let dir = tempfile::tempdir().unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = server::Config::new(dir.path().join("distributor.db"));
    config.tls = Some(std::sync::Arc::new(server::tls::load(&cert, &key).unwrap()));
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(server::run(config, listener, server_stop.clone()));

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let tls = net::tls_config(&cert).unwrap();
    let (_net, task) = net::spawn(
        Target {
            tls: Some(tls),
            ..Target::customer(addr.clone())
        },
        events_tx,
        stop.clone(),
    );
    next(&mut events, |e| {
        matches!(e, NetEvent::Connected { .. }).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap();

    // Trusting another CA: the handshake fails and the task keeps retrying, never connected.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let tls = net::tls_config(&other_ca).unwrap();
    let (_net, task) = net::spawn(
        Target {
            tls: Some(tls),
            ..Target::customer(addr)
        },
        events_tx,
        stop.clone(),
    );
    let reason = next(&mut events, |e| match e {
        NetEvent::Connected { .. } => panic!("connected while trusting the wrong CA"),
        NetEvent::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert!(reason.contains("TLS"), "{reason}");
    stop.cancel();
    task.await.unwrap();

    assert!(net::tls_config(&dir.path().join("missing.pem")).is_err());
    server_stop.cancel();
    server.await.unwrap().unwrap();
}
