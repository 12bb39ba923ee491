//! `DirectClient` over real TCP on loopback, against a scripted in-test server: replies, pushes
//! interleaved with them, closes, and answers it must skip.

use futures::{SinkExt, StreamExt};
use protocol::*;
use std::future::Future;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

type Server = Framed<TcpStream, ServerCodec>;

/// Nothing here should take anywhere near this long.
const LIMIT: Duration = Duration::from_secs(10);

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: Role::Customer,
        client: "direct-test".into(),
        name: None,
        key: None,
    }
}

fn welcome() -> Welcome {
    Welcome {
        version: PROTOCOL_VERSION,
        server: "scripted".into(),
        manufacturer: None,
        month: None,
        credential: None,
    }
}

fn closed(month: u32) -> Event {
    Event::MonthClosed {
        month: MonthId(month),
        reason: CloseReason::Operator,
    }
}

/// Serves one connection on 127.0.0.1: answers the `Hello` with a `Welcome`, then runs `script`.
/// Returns the address and the server task (the test awaits it, so a failing script fails the test).
async fn serve<F, Fut>(script: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Server) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Framed::new(stream, ServerCodec::new());
        match frames.next().await {
            Some(Ok(ClientMessage::Hello(_))) => {}
            other => panic!("expected Hello, got {other:?}"),
        }
        frames
            .send(ServerMessage::Welcome(welcome()))
            .await
            .unwrap();
        script(frames).await;
    });
    (addr, task)
}

/// The next request's id and body.
async fn request(frames: &mut Server) -> Request {
    match tokio::time::timeout(LIMIT, frames.next()).await {
        Ok(Some(Ok(ClientMessage::Request(r)))) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

async fn answer(frames: &mut Server, id: RequestId, result: Result<Reply, WireError>) {
    let response = ServerMessage::Response(Response { id, result });
    frames.send(response).await.unwrap();
}

async fn connect(addr: &str) -> DirectClient {
    tokio::time::timeout(LIMIT, DirectClient::connect(addr, hello()))
        .await
        .expect("connects in time")
        .expect("handshakes")
}

#[tokio::test]
async fn pushes_around_a_response_are_kept_in_order_and_the_reply_is_returned() {
    let (addr, server) = serve(|mut frames| async move {
        let r = request(&mut frames).await;
        assert_eq!(r.body, RequestBody::Ping);
        frames.feed(ServerMessage::Event(closed(1))).await.unwrap();
        frames.feed(ServerMessage::Event(closed(2))).await.unwrap();
        answer(&mut frames, r.id, Ok(Reply::Pong)).await;
        // One more push after the answer, while the client is not reading.
        tokio::time::sleep(Duration::from_millis(50)).await;
        frames.send(ServerMessage::Event(closed(3))).await.unwrap();
        // Hold the connection until the client has read everything.
        let _ = frames.next().await;
    })
    .await;
    let mut client = connect(&addr).await;
    assert_eq!(client.welcome().server, "scripted");
    assert_eq!(client.call(RequestBody::Ping).await.unwrap(), Reply::Pong);
    assert_eq!(client.try_event(), Some(closed(1)));
    assert_eq!(client.try_event(), Some(closed(2)));
    let third = tokio::time::timeout(LIMIT, client.next_event()).await;
    assert_eq!(third.expect("the third push arrives"), Some(closed(3)));
    assert!(!client.is_closed());
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn try_event_returns_nothing_at_once_when_nothing_has_arrived_and_a_push_once_it_has() {
    let (addr, server) = serve(|mut frames| async move {
        let r = request(&mut frames).await;
        answer(&mut frames, r.id, Ok(Reply::Done)).await;
        // Sent only once the client has seen that nothing was there.
        let r = request(&mut frames).await;
        frames.feed(ServerMessage::Event(closed(7))).await.unwrap();
        answer(&mut frames, r.id, Ok(Reply::Done)).await;
        let _ = frames.next().await;
    })
    .await;
    let mut client = connect(&addr).await;
    assert_eq!(client.call(RequestBody::Ping).await.unwrap(), Reply::Done);
    let started = std::time::Instant::now();
    assert_eq!(client.try_event(), None);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(client.call(RequestBody::Ping).await.unwrap(), Reply::Done);
    assert_eq!(client.try_event(), Some(closed(7)));
    assert_eq!(client.try_event(), None);
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn a_push_that_arrives_while_nobody_calls_is_read_by_try_event_without_waiting() {
    let (addr, server) = serve(|mut frames| async move {
        frames.send(ServerMessage::Event(closed(4))).await.unwrap();
        let _ = frames.next().await;
    })
    .await;
    let mut client = connect(&addr).await;
    // Give the push time to cross loopback, then take it without any call.
    let mut seen = None;
    for _ in 0..100 {
        seen = client.try_event();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, Some(closed(4)));
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn a_closing_frame_ends_the_call_with_the_servers_reason_and_the_connection_stays_closed() {
    let (addr, server) = serve(|mut frames| async move {
        let _ = request(&mut frames).await;
        let bye = WireError::new(ErrorCode::ShuttingDown, "shutting down");
        frames.send(ServerMessage::Closing(bye)).await.unwrap();
    })
    .await;
    let mut client = connect(&addr).await;
    match client.call(RequestBody::Ping).await {
        Err(ClientError::Closed(Some(e))) => {
            assert_eq!(e.code, ErrorCode::ShuttingDown);
            assert_eq!(e.message, "shutting down");
        }
        other => panic!("expected Closed with a reason, got {other:?}"),
    }
    assert!(client.is_closed());
    // Later calls fail at once with the same reason; no event will come.
    match client.call(RequestBody::Ping).await {
        Err(ClientError::Closed(Some(e))) => assert_eq!(e.code, ErrorCode::ShuttingDown),
        other => panic!("expected Closed again, got {other:?}"),
    }
    assert_eq!(client.next_event().await, None);
    server.await.unwrap();
}

#[tokio::test]
async fn a_connection_dropped_before_the_answer_is_closed_without_a_reason() {
    let (addr, server) = serve(|mut frames| async move {
        let _ = request(&mut frames).await;
        drop(frames);
    })
    .await;
    let mut client = connect(&addr).await;
    let result = tokio::time::timeout(LIMIT, client.call(RequestBody::Ping)).await;
    assert!(
        matches!(result, Ok(Err(ClientError::Closed(None)))),
        "{result:?}"
    );
    assert!(client.is_closed());
    server.await.unwrap();
}

#[tokio::test]
async fn a_response_to_another_id_is_skipped_and_the_call_gets_its_own() {
    let (addr, server) = serve(|mut frames| async move {
        let r = request(&mut frames).await;
        answer(&mut frames, RequestId(r.id.0 + 1000), Ok(Reply::Done)).await;
        let rejection = WireError::new(ErrorCode::OutOfStock, "gone");
        answer(&mut frames, r.id, Err(rejection)).await;
        let _ = frames.next().await;
    })
    .await;
    let mut client = connect(&addr).await;
    match client.call(RequestBody::Ping).await {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::OutOfStock),
        other => panic!("expected the server's rejection, got {other:?}"),
    }
    assert!(!client.is_closed());
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn the_late_answer_of_a_call_dropped_under_a_timeout_is_skipped_by_the_next_call() {
    let (addr, server) = serve(|mut frames| async move {
        let first = request(&mut frames).await;
        let second = request(&mut frames).await;
        // The abandoned call's answer comes first, then the live one's.
        answer(&mut frames, first.id, Ok(Reply::Done)).await;
        answer(&mut frames, second.id, Ok(Reply::Pong)).await;
        let _ = frames.next().await;
    })
    .await;
    let mut client = connect(&addr).await;
    let abandoned = tokio::time::timeout(Duration::from_millis(50), client.call(RequestBody::Ping));
    assert!(abandoned.await.is_err(), "the first call times out");
    let second = tokio::time::timeout(LIMIT, client.call(RequestBody::Ping)).await;
    assert_eq!(second.unwrap().unwrap(), Reply::Pong);
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn a_refused_handshake_is_refused_with_the_servers_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Framed::new(stream, ServerCodec::new());
        let _ = frames.next().await;
        let no = WireError::new(ErrorCode::VersionMismatch, "speak version 2");
        frames.send(ServerMessage::Refused(no)).await.unwrap();
    });
    match DirectClient::connect(&addr, hello()).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::VersionMismatch),
        Err(other) => panic!("expected Refused, got {other:?}"),
        Ok(_) => panic!("expected Refused, got a connection"),
    }
    server.await.unwrap();
}
