//! `deploy/cluster` as an operator runs it: `up --nodes 3` (PostgreSQL, nats-server, three nodes,
//! HAProxy, a manufacturer), `status` with each node's client connections, `restart-nats`, and
//! `down`, which stops every process it started. The script runs this build's code: its `DISTRIBUTOR_BIN` and
//! `MANUFACTURER_SIM_BIN` are small shell wrappers that re-run this test executable's entry points.
//!
//! Also here: a node in cluster mode without `--nats` refuses to start.

use super::{can_run, NODE_ENTRY};
use protocol::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::child::{free_port, run_child, ChildProcess};

const MAKER_ENTRY: &str = "cluster::deploy::child_cluster_maker_process";

/// Not a test: the body of a manufacturer-sim that `deploy/cluster up` starts (through a wrapper).
#[test]
#[ignore = "entry point for the manufacturers deploy/cluster starts in the cluster tests"]
fn child_cluster_maker_process() {
    run_child("manufacturer-sim", manufacturer_sim::cli::main_from, 1);
}

/// A shell script that runs this test executable's `entry` with the script's own arguments (passed
/// on as the JSON array `tests::child::run_child` reads). `exec`, so the pid the cluster script
/// records is the process that serves.
fn wrapper(dir: &Path, name: &str, entry: &str) {
    let exe = std::env::current_exe().expect("the test executable");
    let script = format!(
        r#"#!/bin/sh
json='['; sep=''
for a in "$@"; do
  a=$(printf '%s' "$a" | sed 's/\\/\\\\/g; s/"/\\"/g')
  json="$json$sep\"$a\""; sep=','
done
TESTS_CHILD_ARGS="$json]" exec '{}' --ignored --exact {entry} --nocapture --test-threads=1
"#,
        exe.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write wrapper");
    let status = std::process::Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .expect("chmod");
    assert!(status.success());
}

/// One cluster made by `deploy/cluster up` in a directory of its own; `down` when dropped, so a
/// failing test leaves no process behind.
struct Deployed {
    dir: PathBuf,
    /// The wrappers: `distributor` and `manufacturer-sim`.
    bins: PathBuf,
    _keep: tempfile::TempDir,
}

impl Deployed {
    fn new(dir: PathBuf) -> Deployed {
        let keep = tempfile::tempdir().expect("temp dir");
        let bins = keep.path().to_path_buf();
        wrapper(&bins, "distributor", NODE_ENTRY);
        wrapper(&bins, "manufacturer-sim", MAKER_ENTRY);
        Deployed {
            dir,
            bins,
            _keep: keep,
        }
    }

    /// `deploy/cluster ARGS --dir DIR`, off the async threads; its stdout's last (JSON) line.
    async fn run(&self, args: &[&str]) -> Result<Value, String> {
        let (dir, bins) = (self.dir.clone(), self.bins.clone());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || run_script(&dir, &bins, &args))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn status(&self) -> Value {
        self.run(&["status"]).await.expect("deploy/cluster status")
    }
}

/// Runs `deploy/cluster ARGS --dir DIR` with the wrappers in `bins` as its binaries.
fn run_script(dir: &Path, bins: &Path, args: &[String]) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cluster");
    let output = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("DISTRIBUTOR_BIN", bins.join("distributor"))
        .env("MANUFACTURER_SIM_BIN", bins.join("manufacturer-sim"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run deploy/cluster: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("deploy/cluster {args:?} failed: {stderr}"));
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{e}: {line:?} ({stderr})"))
}

impl Drop for Deployed {
    fn drop(&mut self) {
        if self.dir.join("cluster.env").exists() {
            let _ = run_script(&self.dir, &self.bins, &["down".to_string()]);
        }
    }
}

/// Whether a process runs (a zombie does not count: it has exited, and only waits to be reaped).
fn running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Client connections summed over the nodes.
fn clients(status: &Value) -> u64 {
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    nodes.iter().filter_map(|n| n["clients"].as_u64()).sum()
}

/// Polls `deploy/cluster status` (every 200 ms, each one asks every node) until `check` holds.
async fn status_until(deployed: &Deployed, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = deployed.status().await;
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_cluster_up_runs_nats_status_counts_each_nodes_clients_restart_nats_restarts_it_and_down_stops_it(
) {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL runs as the `postgres` user when the tests run as root: it must reach its folder.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the temp dir");
    let deployed = Deployed::new(dir.path().join("cluster"));
    let up = deployed
        .run(&[
            "up",
            "--nodes",
            "3",
            "--manufacturers",
            "1",
            "--month-secs",
            "600",
        ])
        .await
        .expect("deploy/cluster up");

    // Every field `up` printed before, and the broker's URL, which takes connections.
    assert_eq!(up["nodes"].as_array().map(Vec::len), Some(3), "{up}");
    assert_eq!(
        up["manufacturers"].as_array().map(Vec::len),
        Some(1),
        "{up}"
    );
    assert!(up["postgres"]
        .as_str()
        .is_some_and(|u| u.starts_with("postgres://")));
    let front = up["customers"]
        .as_str()
        .expect("customers address")
        .to_string();
    let nats = up["nats"].as_str().expect("nats URL").to_string();
    assert!(nats.starts_with("nats://127.0.0.1:"), "{nats}");
    let broker = async_nats::connect(nats.as_str())
        .await
        .expect("nats-server takes connections");
    broker.flush().await.expect("nats-server answers");
    drop(broker);

    // Each node reports its clients; with no customer yet, none has any.
    let before = status_until(&deployed, "an active node and every node's clients", |s| {
        s["active"].is_string()
            && s["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["clients"].is_u64()))
    })
    .await;
    assert_eq!(before["nats"]["state"], "up", "{before}");
    assert_eq!(before["nats"]["url"], nats.as_str());
    assert_eq!(before["postgres"]["state"], "up", "{before}");
    assert_eq!(before["haproxy"]["state"], "up", "{before}");
    let total_before = clients(&before);

    // A customer connects through HAProxy: the node that serves it counts one more.
    let (customer, _events) = Client::connect(&front, tests::harness::hello(Role::Customer, None))
        .await
        .expect("a customer connects through HAProxy");
    let with = status_until(&deployed, "one more client", |s| {
        clients(s) == total_before + 1
    })
    .await;
    // Every node serves customers (HAProxy balances with leastconn): exactly one of them, whichever
    // HAProxy picked, counts the customer.
    let per_node = |s: &Value| -> Vec<u64> {
        s["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| n["clients"].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    };
    let grown = per_node(&before)
        .iter()
        .zip(per_node(&with))
        .filter(|(was, now)| *now == **was + 1)
        .count();
    assert_eq!(
        grown, 1,
        "one node counts the new customer: {before} → {with}"
    );
    drop(customer);
    status_until(&deployed, "the client gone", |s| clients(s) == total_before).await;

    // `restart-nats --kill`: kill -9, and the broker is back on the same URL under a new pid.
    let old_nats = with["nats"]["pid"].as_u64().expect("nats pid");
    assert!(
        running(old_nats),
        "nats-server runs while the cluster is up"
    );
    let restarted = deployed
        .run(&["restart-nats", "--kill"])
        .await
        .expect("deploy/cluster restart-nats");
    assert_eq!(restarted["url"], nats.as_str());
    let nats_pid = restarted["pid"].as_u64().expect("the new nats pid");
    assert!(nats_pid != old_nats && !running(old_nats), "{restarted}");
    let broker = async_nats::connect(nats.as_str())
        .await
        .expect("the restarted nats-server takes connections");
    broker
        .flush()
        .await
        .expect("the restarted nats-server answers");
    drop(broker);
    let after = deployed.status().await;
    assert_eq!(after["nats"]["pid"].as_u64(), Some(nats_pid), "{after}");
    assert_eq!(after["nats"]["state"], "up", "{after}");

    // `down` stops nats-server with the rest.
    let node_pids: Vec<u64> = with["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["pid"].as_u64())
        .collect();
    let down = deployed.run(&["down"]).await.expect("deploy/cluster down");
    assert_eq!(down["ok"], true);
    assert!(
        !running(nats_pid),
        "nats-server (pid {nats_pid}) still runs after down"
    );
    for pid in node_pids {
        assert!(!running(pid), "node pid {pid} still runs after down");
    }
}

#[tokio::test]
async fn a_cluster_node_without_nats_refuses_to_start_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let addr = format!("127.0.0.1:{}", free_port());
    // Nothing listens at this URL either: the node must refuse before it tries the database.
    let url = format!("postgres://postgres@127.0.0.1:{}/cds", free_port());
    let args = [
        "--db",
        &url,
        "--listen",
        &addr,
        "--node",
        "lonely",
        "--peer-key",
        tests::harness::operator_key(),
    ]
    .map(String::from)
    .to_vec();
    let started = Instant::now();
    let mut child = ChildProcess::spawn_self(NODE_ENTRY, &args, &log).expect("spawn node");
    let status = child
        .wait_exit(Duration::from_secs(10))
        .expect("the node exits at once");
    assert!(!status.success(), "it must exit non-zero");
    eprintln!("refused in {:?}", started.elapsed());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {text}");
    assert!(
        lines[0].contains("--nats URL") && lines[0].contains("cluster mode"),
        "{text}"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "a refused node listens on nothing"
    );
}
