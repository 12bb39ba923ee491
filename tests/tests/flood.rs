//! The sign-up flood of issue 10 against a real distributor process: honest logins stay under 1 s
//! and memory stays bounded. Alone in its own test binary, so no sibling test competes for the CPU.

use protocol::*;
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};
use tests::logins::*;

const WAIT: Duration = Duration::from_secs(20);
const ENTRY: &str = "child_distributor_for_flood";

/// Not a test: the body of the child distributor the flood test floods.
#[test]
#[ignore = "entry point for the child distributor spawned by the flood test"]
fn child_distributor_for_flood() {
    run_child("distributor", server::cli::main_from, 1);
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
