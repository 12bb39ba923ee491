//! `failover-probe`: times one fail-over from the outside, for bench/run.
//!
//! `failover-probe --server FRONT --kill PID [--timeout 30]` signs up a customer through FRONT (the
//! load balancer), checks that it can buy, then sends `kill -9` to PID (the active node) and buys
//! again on fresh connections until a checkout succeeds. It prints one JSON line:
//! `{"ms": <kill -9 to the first successful checkout>}`. Exit status 1 when it never succeeds.

use clap::Parser;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tests::failover::Probe;

/// Times one fail-over: kill -9 the active node, then buy until a checkout succeeds.
#[derive(Parser)]
#[command(name = "failover-probe", version)]
struct Args {
    /// The load balancer's address.
    #[arg(long)]
    server: String,
    /// The active node's pid.
    #[arg(long)]
    kill: u32,
    /// Seconds to wait for a checkout after the kill.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let probe = Probe::new(&args.server).await;
        probe.buy(&args.server, Duration::from_secs(30)).await;
        let killed = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-9", &args.kill.to_string()])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("error: cannot kill {}", args.kill);
            return ExitCode::FAILURE;
        }
        let deadline = killed + Duration::from_secs(args.timeout);
        loop {
            if probe.buy_once(&args.server).await.is_ok() {
                println!(
                    "{}",
                    serde_json::json!({"ms": killed.elapsed().as_secs_f64() * 1000.0})
                );
                return ExitCode::SUCCESS;
            }
            if Instant::now() > deadline {
                eprintln!("error: no checkout within {} s of the kill", args.timeout);
                return ExitCode::FAILURE;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}
