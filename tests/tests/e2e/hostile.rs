//! Hostile input over raw TCP against an in-process distributor: huge length prefixes, frames that
//! never finish, garbage, the wrong version, thousands of silent connections, and requests out of
//! turn. Each test proves the server answers clearly (or closes), stays bounded in memory and time,
//! and keeps serving an honest customer throughout.
//!
//! The server runs inside the test process, so `/proc/self/status` VmRSS is (mostly) the server's
//! memory. Tests that measure it take [`SERIAL`] so that no other test's server grows meanwhile.

use bytes::BytesMut;
use protocol::codec::MAX_CLIENT_FRAME;
use protocol::*;
use std::time::{Duration, Instant};
use tests::harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

const WAIT: Duration = Duration::from_secs(20);

/// Memory-measuring tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Resident memory of this process in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// The soft limit on open files, from /proc/self/limits.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn hello(version: u16, role: Role) -> ClientMessage {
    ClientMessage::Hello(Hello {
        version,
        role,
        client: "hostile".into(),
        name: (role == Role::Manufacturer).then(|| "hostile-maker".to_string()),
        key: (role == Role::Operator).then(|| operator_key().to_string()),
    })
}

fn request(id: u64, body: RequestBody) -> ClientMessage {
    ClientMessage::Request(Request {
        id: RequestId(id),
        body,
    })
}

fn frame(message: &ClientMessage) -> Vec<u8> {
    protocol::codec::frame(message).unwrap()
}

/// A frame with a correct length prefix around arbitrary payload bytes.
fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// What the server said before it closed the connection.
#[derive(Debug)]
struct Ending {
    /// Every frame received, in order.
    messages: Vec<ServerMessage>,
    /// Whether the server closed the connection within the time allowed.
    closed: bool,
    /// How long after the call the connection closed (or the wait gave up).
    after: Duration,
}

impl Ending {
    /// The code of the last `Closing` or `Refused` frame.
    fn reason(&self) -> Option<ErrorCode> {
        self.messages.iter().rev().find_map(|m| match m {
            ServerMessage::Closing(e) | ServerMessage::Refused(e) => Some(e.code),
            _ => None,
        })
    }

    fn responses(&self) -> Vec<&Response> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

/// Reads everything until the server closes or `limit` passes, then decodes the frames.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Ending {
    let started = Instant::now();
    let mut bytes = BytesMut::new();
    // Small: thousands of these run at once in one test, and their memory counts as the server's.
    let mut buf = vec![0u8; 1024];
    let closed = loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let after = started.elapsed();
    let mut codec = ClientCodec::new();
    let mut messages = Vec::new();
    while let Ok(Some(m)) = codec.decode(&mut bytes) {
        messages.push(m);
    }
    Ending {
        messages,
        closed,
        after,
    }
}

/// Reads frames until one `Response` arrives (skipping pushes), within `limit`.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> Response {
    let started = Instant::now();
    let mut bytes = BytesMut::new();
    let mut codec = ClientCodec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(m) = codec.decode(&mut bytes).expect("server frames decode") {
            match m {
                ServerMessage::Response(r) => return r,
                ServerMessage::Event(_) | ServerMessage::Welcome(_) => {}
                other => panic!("expected a response, got {other:?}"),
            }
        }
        let left = limit.saturating_sub(started.elapsed());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "the server closed instead of answering");
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// A raw connection that has shaken hands as `role`.
async fn handshaken(addr: &str, role: Role) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame(&hello(PROTOCOL_VERSION, role)))
        .await
        .unwrap();
    // The Welcome is the first frame; read exactly it.
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut body).await.unwrap();
    let welcome: ServerMessage = protocol::codec::decode_server_payload(&body).unwrap();
    assert!(matches!(welcome, ServerMessage::Welcome(_)), "{welcome:?}");
    s
}

/// A server with one listing on sale, ready for honest customers.
async fn open_market(adjust: impl FnOnce(&mut server::Config)) -> (TestServer, TestManufacturer) {
    let server = TestServer::start_with(adjust).await;
    let m = TestManufacturer::connect(
        &server.addr,
        "honest-maker",
        script(vec![offer_line("apple", 100_000, 100)]),
        Default::default(),
    )
    .await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close month 1");
    (server, m)
}

/// An honest customer buys one apple; returns the order.
async fn honest_purchase(client: &Client) -> OrderView {
    let listing = wait_for_catalog(client, 1, WAIT).await.items[0].listing;
    match client
        .call(tests::harness::buy_now(listing, 1, Cents(100)))
        .await
    {
        Ok(Reply::Order(o)) => o,
        other => panic!("the honest purchase failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_prefixes_up_to_4_gib_are_refused_without_allocating_and_honest_customers_keep_buying(
) {
    let _serial = SERIAL.lock().await;
    let (server, _m) = open_market(|c| c.frame_timeout = Duration::from_secs(2)).await;
    let honest = customer(&server.addr).await;
    honest_purchase(&honest.client).await;
    let before = rss_mib();

    let prefixes: [u32; 5] = [
        0xFFFF_FFFF,
        0x8000_0000,
        0x7FFF_FFFF,
        0x1000_0000,
        MAX_CLIENT_FRAME as u32 + 1,
    ];
    let mut tried = 0;
    for prefix in prefixes {
        // Twenty connections per prefix: ten before the handshake, ten after it. If any of them
        // made the server reserve the announced length, memory would jump by gigabytes.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let addr = server.addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = if i % 2 == 0 {
                    TcpStream::connect(&addr).await.unwrap()
                } else {
                    handshaken(&addr, Role::Customer).await
                };
                let mut bytes = prefix.to_be_bytes().to_vec();
                bytes.extend_from_slice(&[0xAB; 64]);
                // The server may close before reading it all; a failed write is fine.
                let _ = s.write_all(&bytes).await;
                read_to_close(&mut s, Duration::from_secs(5)).await
            }));
        }
        for task in tasks {
            let ending = task.await.unwrap();
            tried += 1;
            assert!(ending.closed, "prefix {prefix:#x}: still open: {ending:?}");
            assert!(
                ending.after < Duration::from_secs(1),
                "prefix {prefix:#x}: refused only after {:?}",
                ending.after
            );
            assert_eq!(
                ending.reason(),
                Some(ErrorCode::Malformed),
                "prefix {prefix:#x}: {ending:?}"
            );
        }
    }
    assert_eq!(tried, 100);
    // The honest customer's connection was never disturbed, and new ones are served.
    honest_purchase(&honest.client).await;
    let late = customer(&server.addr).await;
    honest_purchase(&late.client).await;
    let after = rss_mib();
    eprintln!("{tried} huge prefixes refused; RSS {before} MiB -> {after} MiB");
    assert!(
        after <= before + 50,
        "memory grew from {before} to {after} MiB"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_never_finishes_is_dropped_at_the_frame_deadline_before_and_after_hello() {
    let server = TestServer::start_with(|c| {
        c.frame_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    for handshake_first in [false, true] {
        let mut s = if handshake_first {
            handshaken(&server.addr, Role::Customer).await
        } else {
            TcpStream::connect(&server.addr).await.unwrap()
        };
        // A prefix announcing 200 bytes, then half of them, then silence.
        let mut bytes = 200u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 100]);
        s.write_all(&bytes).await.unwrap();
        let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(ending.closed, "never closed: {ending:?}");
        assert!(
            ending.after >= Duration::from_millis(800) && ending.after < Duration::from_secs(3),
            "closed after {:?}",
            ending.after
        );
        assert_eq!(ending.reason(), Some(ErrorCode::Timeout), "{ending:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_length_prefix_after_hello_is_dropped_at_the_frame_deadline_not_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.frame_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut s = handshaken(&server.addr, Role::Customer).await;
    // Exactly the four prefix bytes of a 200-byte frame: a frame has started, so its deadline runs.
    s.write_all(&200u32.to_be_bytes()).await.unwrap();
    let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        ending.closed,
        "a started frame outlived the 1 s frame deadline by 4 s: {ending:?}"
    );
    assert_eq!(ending.reason(), Some(ErrorCode::Timeout), "{ending:?}");
    server.stop().await.unwrap();
}

/// A client that pipelines a long stream of requests, written so that every write ends in the middle
/// of a frame, is making progress: it is served to the end, although the stream lasts much longer
/// than the frame deadline (which only cuts a frame that does not complete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pipelined_stream_whose_writes_end_mid_frame_outlives_the_frame_deadline() {
    let server = TestServer::start_with(|c| {
        c.frame_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let s = handshaken(&server.addr, Role::Customer).await;
    let (mut read, mut write) = s.into_split();
    const REQUESTS: u64 = 300;
    let frames: Vec<Vec<u8>> = (1..=REQUESTS)
        .map(|id| frame(&request(id, RequestBody::Ping)))
        .collect();
    // Cut points one byte into every tenth frame: 30 writes, each ending mid-frame but the last.
    let mut cuts = Vec::new();
    let mut offset = 0;
    for (i, f) in frames.iter().enumerate() {
        if i > 0 && i % 10 == 0 {
            cuts.push(offset + 1);
        }
        offset += f.len();
    }
    cuts.push(offset);
    let stream: Vec<u8> = frames.concat();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        // About 1.5 s in all: three frame deadlines.
        let mut from = 0;
        for to in cuts {
            write
                .write_all(&stream[from..to])
                .await
                .expect("the server kept reading");
            from = to;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        write
    });
    let mut codec = ClientCodec::new();
    let mut bytes = BytesMut::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut answered = 0u64;
    while answered < REQUESTS {
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf))
            .await
            .expect("answers in time")
            .expect("read");
        assert!(
            n > 0,
            "closed after {answered} answers, {:?} in",
            started.elapsed()
        );
        bytes.extend_from_slice(&buf[..n]);
        while let Some(m) = codec.decode(&mut bytes).expect("server frames decode") {
            match m {
                ServerMessage::Response(r) => {
                    assert!(matches!(r.result, Ok(Reply::Pong)), "{r:?}");
                    answered += 1;
                }
                ServerMessage::Event(_) => {}
                other => panic!("after {answered} answers: {other:?}"),
            }
        }
    }
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the stream was too quick to prove anything"
    );
    drop(writer.await);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_dribbled_one_byte_every_200_ms_is_still_cut_at_the_frame_deadline() {
    let server = TestServer::start_with(|c| {
        c.frame_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut s = handshaken(&server.addr, Role::Customer).await;
    s.write_all(&[0, 0, 0, 50, 0]).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = s.split();
    let dribble = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(&[0]).await.is_err() {
                return;
            }
        }
    };
    let mut buf = [0u8; 256];
    let closed = async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let after = tokio::select! {
        after = closed => after,
        _ = dribble => panic!("the dribbling connection outlived 8 s"),
    };
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_payloads_get_a_malformed_error_and_the_connection_is_closed() {
    let (server, _m) = open_market(|_| {}).await;
    let valid_hello = frame(&hello(PROTOCOL_VERSION, Role::Customer));
    let mut with_trailing = valid_hello[4..].to_vec();
    with_trailing.extend_from_slice(&[1, 2, 3]);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("all ones", vec![0xFF; 32]),
        ("an unknown message variant", vec![9, 0, 0]),
        ("an empty payload", vec![]),
        ("a Hello cut short", valid_hello[4..8].to_vec()),
        ("a Hello with trailing bytes", with_trailing),
        // Hello, version 1, role Customer, then a string claiming 2^60 bytes.
        (
            "a string length of 2^60",
            vec![0, 1, 0, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0x10],
        ),
        (
            "a string that is not UTF-8",
            vec![0, 1, 0, 2, 0xC3, 0x28, 0],
        ),
        ("a role that does not exist", vec![0, 1, 7, 0, 0, 0]),
    ];
    let mut tried = 0;
    for (what, payload) in &payloads {
        for handshake_first in [false, true] {
            let mut s = if handshake_first {
                handshaken(&server.addr, Role::Customer).await
            } else {
                TcpStream::connect(&server.addr).await.unwrap()
            };
            s.write_all(&raw_frame(payload)).await.unwrap();
            let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
            tried += 1;
            assert!(ending.closed, "{what}: still open: {ending:?}");
            assert_eq!(
                ending.reason(),
                Some(ErrorCode::Malformed),
                "{what} (after hello: {handshake_first}): {ending:?}"
            );
        }
    }
    // Garbage request bodies after a good handshake: an unknown request variant.
    let mut s = handshaken(&server.addr, Role::Customer).await;
    s.write_all(&raw_frame(&[1, 1, 200, 1])).await.unwrap();
    let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(ending.reason(), Some(ErrorCode::Malformed), "{ending:?}");
    eprintln!("{} garbage payloads refused", tried + 1);
    let c = customer(&server.addr).await;
    honest_purchase(&c.client).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_speaking_another_protocol_version_is_refused_with_version_mismatch() {
    let server = TestServer::start().await;
    for version in [0, PROTOCOL_VERSION + 1, u16::MAX] {
        let mut s = TcpStream::connect(&server.addr).await.unwrap();
        s.write_all(&frame(&hello(version, Role::Customer)))
            .await
            .unwrap();
        let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(ending.closed);
        match ending.messages.as_slice() {
            [ServerMessage::Refused(e)] => {
                assert_eq!(e.code, ErrorCode::VersionMismatch);
                assert!(
                    e.message.contains(&PROTOCOL_VERSION.to_string())
                        && e.message.contains(&version.to_string()),
                    "the message names both versions: {}",
                    e.message
                );
            }
            other => panic!("version {version}: {other:?}"),
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_connections_are_capped_and_timed_out_while_an_honest_customer_buys() {
    let _serial = SERIAL.lock().await;
    // Each silent connection costs two descriptors in this process (ours and the server's).
    let budget = open_files_limit().saturating_sub(300) / 2;
    let silent = budget.min(2_000) as usize;
    let cap = (silent / 4).max(10);
    assert!(
        silent > cap,
        "too few file descriptors ({budget}) to test the cap"
    );
    // The frame deadline is long enough for every connection to be open before the first served
    // one times out, so "served" can be counted against the cap.
    let (server, _m) = open_market(|c| {
        c.max_connections = cap + 10; // Room for the manufacturer and the honest customers.
        c.frame_timeout = Duration::from_secs(3);
    })
    .await;
    let honest = customer(&server.addr).await;
    honest_purchase(&honest.client).await;
    let before = rss_mib();

    // Open the silent connections in waves of 100 (so the kernel's accept queue never overflows);
    // none of them ever sends a byte.
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(silent);
    for wave in 0..silent.div_ceil(100) {
        let mut connected = Vec::new();
        for _ in 0..(silent - wave * 100).min(100) {
            let addr = server.addr.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            tasks.push(tokio::spawn(async move {
                let s = TcpStream::connect(&addr).await;
                let _ = tx.send(());
                let mut s = s.ok()?;
                Some(read_to_close(&mut s, Duration::from_secs(10)).await)
            }));
            connected.push(rx);
        }
        for rx in connected {
            let _ = rx.await;
        }
    }
    let all_open = started.elapsed();
    // While they pile up and time out, the honest customer (connected before) keeps buying.
    let mut bought = 0;
    while started.elapsed() < Duration::from_secs(4) {
        honest_purchase(&honest.client).await;
        bought += 1;
    }
    let peak = rss_mib();
    let (mut refused, mut timed_out, mut other) = (0, 0, Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            Some(e) if e.closed && e.reason() == Some(ErrorCode::TooManyConnections) => {
                refused += 1
            }
            Some(e) if e.closed && e.reason() == Some(ErrorCode::Timeout) => timed_out += 1,
            e => other.push(e),
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{silent} silent connections (cap {cap}, all open after {all_open:?}): {refused} refused, \
         {timed_out} timed out, {} other, in {elapsed:?}; honest customer bought {bought} times; \
         RSS {before} -> peak {peak} MiB",
        other.len()
    );
    assert!(
        other.is_empty(),
        "connections neither refused nor timed out: {other:?}"
    );
    assert!(
        timed_out <= cap + 10,
        "{timed_out} served beyond the cap of {cap} + 10"
    );
    assert!(refused >= silent - cap - 10, "only {refused} refused");
    assert!(
        all_open < Duration::from_secs(3),
        "opening took {all_open:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(bought > 0);
    assert!(
        peak <= before + 50,
        "memory grew from {before} to {peak} MiB"
    );

    // Once they are gone, a brand-new customer signs up and buys.
    let late = customer(&server.addr).await;
    honest_purchase(&late.client).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_hello_is_refused_with_bad_handshake_and_closed() {
    let server = TestServer::start().await;
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    s.write_all(&frame(&request(1, RequestBody::Ping)))
        .await
        .unwrap();
    let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(ending.closed);
    assert!(ending.responses().is_empty(), "{ending:?}");
    assert_eq!(ending.reason(), Some(ErrorCode::BadHandshake));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_is_refused_with_bad_handshake_and_closed() {
    let server = TestServer::start().await;
    let mut s = handshaken(&server.addr, Role::Customer).await;
    s.write_all(&frame(&hello(PROTOCOL_VERSION, Role::Operator)))
        .await
        .unwrap();
    let ending = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(ending.closed);
    assert_eq!(ending.reason(), Some(ErrorCode::BadHandshake));
    server.stop().await.unwrap();
}

/// Sends `body` on `s` and returns the error code of the answer (which must be an error).
async fn refused_code(s: &mut TcpStream, id: u64, body: RequestBody) -> ErrorCode {
    s.write_all(&frame(&request(id, body))).await.unwrap();
    let r = read_response(s, Duration::from_secs(5)).await;
    assert_eq!(r.id, RequestId(id));
    match r.result {
        Err(e) => e.code,
        Ok(reply) => panic!("request {id} should have been refused, got {reply:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_a_role_get_clear_errors_and_the_connection_keeps_serving() {
    let (server, _m) = open_market(|_| {}).await;
    let checkout = || RequestBody::Checkout {
        checkout_id: CheckoutId::generate(),
        lines: None,
        confirmed_total: Cents(0),
    };

    // A manufacturer may not buy, browse, or act as an operator.
    let mut maker = handshaken(&server.addr, Role::Manufacturer).await;
    assert_eq!(
        refused_code(&mut maker, 1, checkout()).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused_code(&mut maker, 2, RequestBody::Catalog).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused_code(&mut maker, 3, RequestBody::CloseMonth).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused_code(
            &mut maker,
            4,
            RequestBody::LogIn {
                email: "a@b.c".into(),
                password: "whatever1".into()
            }
        )
        .await,
        ErrorCode::Forbidden
    );

    // An anonymous customer may not see orders, a cart, or check out; nor act as a manufacturer.
    let mut anon = handshaken(&server.addr, Role::Customer).await;
    assert_eq!(
        refused_code(&mut anon, 1, RequestBody::Orders).await,
        ErrorCode::NotAuthenticated
    );
    assert_eq!(
        refused_code(&mut anon, 2, RequestBody::GetCart).await,
        ErrorCode::NotAuthenticated
    );
    assert_eq!(
        refused_code(&mut anon, 3, checkout()).await,
        ErrorCode::NotAuthenticated
    );
    assert_eq!(
        refused_code(
            &mut anon,
            4,
            RequestBody::AckNotices {
                through: NoticeSeq(1_000_000)
            }
        )
        .await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused_code(&mut anon, 5, RequestBody::Status).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused_code(
            &mut anon,
            6,
            RequestBody::Resume {
                token: SessionToken("00".repeat(32))
            }
        )
        .await,
        ErrorCode::SessionExpired
    );

    // An operator may not buy.
    let mut operator = handshaken(&server.addr, Role::Operator).await;
    assert_eq!(
        refused_code(&mut operator, 1, checkout()).await,
        ErrorCode::Forbidden
    );

    // Every one of those connections is still open and answers a ping.
    for s in [&mut maker, &mut anon, &mut operator] {
        s.write_all(&frame(&request(99, RequestBody::Ping)))
            .await
            .unwrap();
        let r = read_response(s, Duration::from_secs(5)).await;
        assert_eq!(r.result, Ok(Reply::Pong));
    }
    let c = customer(&server.addr).await;
    honest_purchase(&c.client).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_manufacturer_acking_notices_it_never_received_gets_an_error_not_a_hole_in_the_books(
) {
    let (server, _m) = open_market(|_| {}).await;
    let mut fake = handshaken(&server.addr, Role::Manufacturer).await;
    let code = refused_code(
        &mut fake,
        1,
        RequestBody::AckNotices {
            through: NoticeSeq(u64::MAX),
        },
    )
    .await;
    assert_ne!(code, ErrorCode::Internal);
    let c = customer(&server.addr).await;
    honest_purchase(&c.client).await;
    let (db, _dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    let report = server::audit(&db, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
}

/// Real messages of every kind, for the fuzz seed corpus.
fn sample_messages() -> (Vec<ClientMessage>, Vec<ServerMessage>) {
    let client = vec![
        hello(PROTOCOL_VERSION, Role::Customer),
        hello(PROTOCOL_VERSION, Role::Manufacturer),
        request(1, RequestBody::Ping),
        request(
            2,
            RequestBody::SignUp(SignUp {
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                email: "ada@example.com".into(),
                password: "correct horse battery".into(),
            }),
        ),
        request(
            3,
            RequestBody::Checkout {
                checkout_id: CheckoutId::from_parts(1_700_000_000_000, 42),
                lines: Some(vec![CartItem {
                    listing: ListingId(7),
                    quantity: 2,
                }]),
                confirmed_total: Cents(250),
            },
        ),
        request(
            4,
            RequestBody::SubmitOffer {
                month: MonthId(3),
                lines: vec![offer_line("apple", 10, 125)],
            },
        ),
        request(
            5,
            RequestBody::AckNotices {
                through: NoticeSeq(9),
            },
        ),
        request(
            6,
            RequestBody::RevokeManufacturer {
                name: "orchard".into(),
            },
        ),
    ];
    let item = CatalogItem {
        listing: ListingId(7),
        manufacturer: ManufacturerId(1),
        manufacturer_name: "orchard".into(),
        sku: "apple".into(),
        product: "Apple".into(),
        category: "fruit".into(),
        unit_price: Cents(125),
        offered: 10,
        remaining: 4,
    };
    let mut short = WireError::new(ErrorCode::OutOfStock, "apples ran out");
    short.shortages.push(Shortage {
        listing: ListingId(7),
        product: "Apple".into(),
        manufacturer: "orchard".into(),
        requested: 5,
        available: 4,
    });
    let server = vec![
        ServerMessage::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            server: "distributor/0.1.0".into(),
            manufacturer: Some(ManufacturerId(1)),
            month: None,
            credential: Some("ab".repeat(32)),
        }),
        ServerMessage::Response(Response {
            id: RequestId(2),
            result: Ok(Reply::Catalog(CatalogSnapshot {
                month: None,
                items: vec![item],
                version: 12,
            })),
        }),
        ServerMessage::Response(Response {
            id: RequestId(3),
            result: Err(short),
        }),
        ServerMessage::Event(Event::Notice(Notice {
            seq: NoticeSeq(1),
            body: NoticeBody::Sale(SaleNotice {
                month: MonthId(3),
                order: OrderId(5),
                lines: vec![SaleLine {
                    sku: "apple".into(),
                    quantity: 2,
                    unit_price: Cents(125),
                }],
            }),
        })),
        ServerMessage::Closing(WireError::new(ErrorCode::Malformed, "malformed frame")),
    ];
    (client, server)
}

/// Writes `fuzz/corpus/{frame_decoder,message_decode}/` from real encoded messages. Run it by hand
/// after a wire change: `cargo test -p tests --test hostile -- --ignored fuzz_seed_corpus`.
#[test]
#[ignore = "writes files into fuzz/corpus; run by hand after a wire change"]
fn the_fuzz_seed_corpus_is_written_from_real_encoded_messages() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let (client, server) = sample_messages();
    let payloads: Vec<Vec<u8>> = client
        .iter()
        .map(|m| protocol::codec::encode_payload(m, usize::MAX).unwrap())
        .chain(
            server
                .iter()
                .map(|m| protocol::codec::encode_payload(m, usize::MAX).unwrap()),
        )
        .collect();
    let dir = root.join("message_decode");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, p) in payloads.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), p).unwrap();
    }
    // frame_decoder: the first byte picks the piece size; then one or more whole frames.
    let dir = root.join("frame_decoder");
    std::fs::create_dir_all(&dir).unwrap();
    let frames: Vec<Vec<u8>> = payloads.iter().map(|p| raw_frame(p)).collect();
    for (i, f) in frames.iter().enumerate() {
        let mut seed = vec![i as u8];
        seed.extend_from_slice(f);
        // Every other seed carries a second frame behind the first, as a pipelining client sends.
        if i % 2 == 1 {
            seed.extend_from_slice(&frames[(i + 1) % frames.len()]);
        }
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
    }
    // And two hostile ones: a 4 GiB prefix, and a frame cut short.
    std::fs::write(dir.join("huge-prefix"), [0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2]).unwrap();
    std::fs::write(dir.join("cut-short"), [3, 0, 0, 0, 40, 0, 1, 0]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_catalog_requests_from_clients_that_never_read_keep_server_memory_bounded() {
    let _serial = SERIAL.lock().await;
    // A big catalog: 200 listings with long names, about 40 KiB per snapshot.
    let lines: Vec<OfferLine> = (0..200)
        .map(|i| OfferLine {
            sku: format!("sku-{i:04}-{}", "s".repeat(50)),
            product: format!("Product {i:04} {}", "p".repeat(100)),
            category: "c".repeat(60),
            quantity: 1000,
            unit_price: Cents(100),
        })
        .collect();
    let server = TestServer::start_with(|c| c.frame_timeout = Duration::from_secs(2)).await;
    let _m =
        TestManufacturer::connect(&server.addr, "bulk", script(lines), Default::default()).await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let honest = customer(&server.addr).await;
    wait_for_catalog(&honest.client, 200, WAIT).await;
    let token = honest.session.token.clone();
    let before = rss_mib();

    // Forty connections of the same session each send 64 KiB of Catalog requests (about 9,000)
    // and never read a byte of the answers.
    const CONNECTIONS: usize = 40;
    let one = frame(&request(1, RequestBody::Catalog));
    let flood: Vec<u8> = one.repeat(64 * 1024 / one.len());
    let mut floods = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut s = handshaken(&server.addr, Role::Customer).await;
        s.write_all(&frame(&request(
            0,
            RequestBody::Resume {
                token: token.clone(),
            },
        )))
        .await
        .unwrap();
        let r = read_response(&mut s, Duration::from_secs(5)).await;
        assert!(r.result.is_ok(), "{r:?}");
        let flood = flood.clone();
        floods.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&flood)).await;
            // Hold the connection, unread, until the server gives up on it.
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(s);
        }));
    }
    let mut peak = before;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        peak = peak.max(rss_mib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in floods {
        f.await.unwrap();
    }
    eprintln!(
        "{CONNECTIONS} connections x {} pipelined Catalog requests, never read: RSS {before} -> peak {peak} MiB",
        flood.len() / one.len()
    );
    honest_purchase(&honest.client).await;
    assert!(
        peak <= before + 50,
        "memory grew from {before} to {peak} MiB: replies pile up for clients that do not read"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_quantities_and_unknown_listings_are_refused_and_never_break_the_books() {
    let (server, _m) = open_market(|_| {}).await;
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let line = |listing, quantity| CartItem { listing, quantity };
    // Each line costs what it asks for at 100 cents a unit, so no refusal below is a price check.
    let buy = |lines: Vec<CartItem>| RequestBody::Checkout {
        checkout_id: CheckoutId::generate(),
        confirmed_total: Cents(lines.iter().map(|l| u64::from(l.quantity) * 100).sum()),
        lines: Some(lines),
    };
    let attempts: Vec<(&str, RequestBody)> = vec![
        (
            "add u32::MAX",
            RequestBody::AddToCart {
                listing,
                quantity: u32::MAX,
            },
        ),
        (
            "set u32::MAX",
            RequestBody::SetCartQuantity {
                listing,
                quantity: u32::MAX,
            },
        ),
        (
            "add to an unknown listing",
            RequestBody::AddToCart {
                listing: ListingId(u32::MAX),
                quantity: 1,
            },
        ),
        ("buy u32::MAX", buy(vec![line(listing, u32::MAX)])),
        (
            "two lines of 2^31 (they sum to 2^32)",
            buy(vec![line(listing, 1 << 31), line(listing, 1 << 31)]),
        ),
        ("a zero quantity", buy(vec![line(listing, 0)])),
        ("an unknown listing", buy(vec![line(ListingId(9_999), 1)])),
        ("no lines at all", buy(vec![])),
        ("1,000 lines", buy(vec![line(listing, 1); 1_000])),
    ];
    let mut codes = Vec::new();
    for (what, body) in attempts {
        match c.client.call(body).await {
            Err(ClientError::Server(e)) => {
                assert_ne!(e.code, ErrorCode::Internal, "{what}: {e:?}");
                codes.push((what, e.code));
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    eprintln!("{codes:?}");
    // The cart is still usable and nothing was bought by any of it.
    assert_eq!(honest_purchase(&c.client).await.units(), 1);
    let Reply::Orders(orders) = c.client.call(RequestBody::Orders).await.unwrap() else {
        panic!()
    };
    assert_eq!(orders.len(), 1);
    let (db, _dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    let report = server::audit(&db, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
    assert_eq!(report.sold_units, 1);
}
