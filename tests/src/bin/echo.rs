//! `echo`: the benchmark's ceiling, the same lean pair as `../shared/perfbase/`. A bare tokio server
//! with the distributor's framing (u32 length prefix, `LengthDelimitedCodec`) and codec (each frame is
//! decoded as a small bincode message, changed, encoded and sent back; replies are flushed once per
//! read burst), and a client that drives it the way `loadgen --mode checkout` drives the distributor:
//! N connections, one request in flight on each, for a fixed time after a short warm-up. Nothing
//! per request but the round trip: no channel, no lock, latencies in a per-connection histogram.
//!
//! - `echo server [--listen 127.0.0.1:0]` prints `listening <addr>` on stdout, then serves.
//! - `echo client --addr A [--connections 256] [--duration 10] [--payload 40]` prints one JSON line,
//!   with its own CPU per request (`client_us_per_request`) beside loadgen's.
//! - `--workers N` on either side: tokio worker threads (default 2, as the distributor has here).

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tests::traffic::stats::{new_histogram, percentile_ms, record};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Same order of magnitude as the distributor's client frame limit.
const MAX_FRAME: usize = 64 * 1024;
/// Hard cap on how long anything here runs.
const MAX_SECS: u64 = 3600;

#[derive(Debug, Parser)]
#[command(name = "echo")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Echo every frame back.
    Server {
        /// Where to listen (127.0.0.1 only; port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Stop by itself after this many seconds.
        #[arg(long, default_value_t = MAX_SECS)]
        max_secs: u64,
        /// Tokio worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Load an echo server and print req/s as JSON.
    Client {
        /// The echo server, host:port.
        #[arg(long)]
        addr: String,
        /// Connections, each with one request in flight.
        #[arg(long, default_value_t = 256)]
        connections: usize,
        /// Seconds of load, after every connection is open.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Payload bytes per request (a checkout request is about 30–40 bytes).
        #[arg(long, default_value_t = 40)]
        payload: usize,
        /// Tokio worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
}

#[derive(Debug, Serialize)]
struct Report {
    connections: usize,
    payload: usize,
    duration_s: f64,
    requests: u64,
    errors: u64,
    req_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The client's own CPU over the measured window, per request.
    client_us_per_request: Option<f64>,
}

/// What travels: a message of about a checkout request's size, in the distributor's codec.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Msg {
    id: u64,
    status: u32,
    quantity: u32,
    note: Vec<u8>,
}

/// The server's work per frame: decode, change, encode.
fn answer(frame: &[u8]) -> Option<Bytes> {
    let mut msg: Msg = protocol::codec::decode_client_payload(frame).ok()?;
    msg.status = 1;
    msg.quantity = msg.quantity.wrapping_sub(1);
    protocol::codec::encode_payload(&msg, MAX_FRAME)
        .ok()
        .map(Bytes::from)
}

/// This process's user + system CPU seconds, from `/proc/self/stat`.
fn own_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

async fn serve(listen: &str, max_secs: u64) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let stop = tokio::time::sleep(Duration::from_secs(max_secs.min(MAX_SECS)));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(echo_connection(stream));
            }
            _ = &mut stop => return Ok(()),
        }
    }
}

async fn echo_connection(stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut frames = Framed::new(stream, codec());
    while let Some(Ok(frame)) = frames.next().await {
        let Some(reply) = answer(&frame) else { return };
        if frames.feed(reply).await.is_err() {
            return;
        }
        // Whatever else already arrived is answered before one flush.
        while let Some(Some(Ok(frame))) = frames.next().now_or_never() {
            let Some(reply) = answer(&frame) else { return };
            if frames.feed(reply).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut frames).await.is_err() {
            return;
        }
    }
}

/// One connection's loop: send, wait for the answer, repeat until `deadline`. Only round trips
/// that start after `measured` count.
async fn drive(
    mut frames: Framed<TcpStream, LengthDelimitedCodec>,
    payload: usize,
    measured: Instant,
    deadline: Instant,
) -> (u64, u64, Histogram<u64>) {
    let mut latency = new_histogram();
    let (mut done, mut errors) = (0, 0);
    let mut msg = Msg {
        id: 0,
        status: 0,
        quantity: 1,
        note: vec![0x5a; payload.saturating_sub(18)],
    };
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        msg.id += 1;
        let Ok(request) = protocol::codec::encode_payload(&msg, MAX_FRAME) else {
            errors += 1;
            break;
        };
        if frames.send(Bytes::from(request)).await.is_err() {
            errors += 1;
            break;
        }
        let reply = frames.next().await;
        let answered = reply
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .and_then(|frame| protocol::codec::decode_server_payload::<Msg>(frame).ok());
        match answered {
            Some(reply) if reply.id == msg.id && reply.status == 1 => {
                if sent >= measured {
                    record(&mut latency, sent.elapsed());
                    done += 1;
                }
            }
            _ => {
                errors += 1;
                break;
            }
        }
    }
    (done, errors, latency)
}

async fn load(
    addr: &str,
    connections: usize,
    duration: Duration,
    payload: usize,
) -> std::io::Result<Report> {
    let opened: Vec<std::io::Result<TcpStream>> = futures::stream::iter(0..connections)
        .map(|_| async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut streams = Vec::with_capacity(connections);
    for stream in opened {
        streams.push(Framed::new(stream?, codec()));
    }
    // Half a second of warm-up, not counted.
    let measured = Instant::now() + Duration::from_millis(500);
    let deadline = measured + duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|frames| tokio::spawn(drive(frames, payload, measured, deadline)))
        .collect();
    tokio::time::sleep_until(measured.into()).await;
    let cpu_before = own_cpu_s();
    tokio::time::sleep_until(deadline.into()).await;
    let cpu_after = own_cpu_s();
    let mut latency = new_histogram();
    let (mut requests, mut errors) = (0, 0);
    for task in tasks {
        match task.await {
            Ok((done, failed, h)) => {
                requests += done;
                errors += failed;
                // Same bounds on both sides, so adding cannot fail.
                let _ = latency.add(&h);
            }
            Err(_) => errors += 1,
        }
    }
    let secs = duration.as_secs_f64();
    let cpu = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    Ok(Report {
        connections,
        payload,
        duration_s: secs,
        requests,
        errors,
        req_per_s: requests as f64 / secs,
        p50_ms: percentile_ms(&latency, 50.0),
        p99_ms: percentile_ms(&latency, 99.0),
        client_us_per_request: cpu
            .filter(|_| requests > 0)
            .map(|s| s * 1e6 / requests as f64),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let workers = match args.command {
        Command::Server { workers, .. } | Command::Client { workers, .. } => workers.max(1),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("echo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Server {
                listen, max_secs, ..
            } => serve(&listen, max_secs).await,
            Command::Client {
                addr,
                connections,
                duration,
                payload,
                ..
            } => {
                let duration = Duration::from_secs(duration.min(MAX_SECS));
                let report = load(&addr, connections, duration, payload.min(MAX_FRAME)).await?;
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(std::io::Error::other)?
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}
