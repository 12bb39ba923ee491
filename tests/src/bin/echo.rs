//! `echo`: the benchmark's ceiling. A bare tokio server with the distributor's framing (u32 length
//! prefix, `LengthDelimitedCodec`) that sends every frame straight back, and a client that drives it
//! the way `loadgen --mode checkout` drives the distributor: N connections, one request in flight on
//! each, for a fixed time.
//!
//! - `echo server [--listen 127.0.0.1:0]` prints `listening <addr>` on stdout, then serves.
//! - `echo client --addr A [--connections 256] [--duration 10] [--payload 40]` prints one JSON line.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
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
        if frames.send(frame.freeze()).await.is_err() {
            return;
        }
    }
}

/// One connection's loop: send, wait for the echo, repeat until `deadline`.
async fn drive(
    mut frames: Framed<TcpStream, LengthDelimitedCodec>,
    payload: Bytes,
    deadline: Instant,
) -> (u64, u64, Histogram<u64>) {
    let mut latency = new_histogram();
    let (mut done, mut errors) = (0, 0);
    while Instant::now() < deadline {
        let sent = Instant::now();
        if frames.send(payload.clone()).await.is_err() {
            errors += 1;
            break;
        }
        match frames.next().await {
            Some(Ok(frame)) if frame.len() == payload.len() => {
                record(&mut latency, sent.elapsed());
                done += 1;
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
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        opened.push(Framed::new(stream, codec()));
    }
    let payload = Bytes::from(vec![0x5a; payload]);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|frames| tokio::spawn(drive(frames, payload.clone(), deadline)))
        .collect();
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
    let secs = started.elapsed().as_secs_f64();
    Ok(Report {
        connections,
        payload: payload.len(),
        duration_s: secs,
        requests,
        errors,
        req_per_s: requests as f64 / secs,
        p50_ms: percentile_ms(&latency, 50.0),
        p99_ms: percentile_ms(&latency, 99.0),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("echo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Server { listen, max_secs } => serve(&listen, max_secs).await,
            Command::Client {
                addr,
                connections,
                duration,
                payload,
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
