//! `shop serve-ssh` end to end: the real OpenSSH client in tmux at 80×24, against `shop serve-ssh`
//! (a child process: this test executable re-run through `tui_client::cli::main_from`, the entry
//! point of the `shop` binary) and a real distributor with a manufacturer.
//!
//! Skipped (with a message) when tmux or ssh is missing, unless `CI` is set: then they must run.

use protocol::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::child::{self, ChildProcess};
use tests::harness::{self, ManufacturerScript, TestManufacturer, TestServer};
use tests::tmux::{self, Pane, TmuxServer};

/// How long one step may take: a debug build hashes a password slowly on a busy 2-core box.
const STEP: Duration = Duration::from_secs(40);
const PASSWORD: &str = "correct-horse-battery";

/// Not a test: the body of the `shop serve-ssh` child process.
#[test]
#[ignore = "entry point for the serve-ssh process the ssh tests start"]
fn child_serve_ssh() {
    let Some(args) = child::child_args() else {
        return;
    };
    let argv = ["shop".to_string(), "serve-ssh".to_string()]
        .into_iter()
        .chain(args);
    let code = tui_client::cli::main_from(argv);
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

fn skip() -> bool {
    let ssh = Command::new("ssh")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if tmux::installed() && ssh {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tmux and openssh-client are required under CI"
    );
    eprintln!("skipping the ssh tests: tmux or ssh is not installed (CI is not set)");
    true
}

/// A distributor with one manufacturer selling `TMX`, and `shop serve-ssh` in front of it.
struct Rig {
    server: TestServer,
    _maker: TestManufacturer,
    serve_ssh: ChildProcess,
    port: u16,
    dir: tempfile::TempDir,
    tmux: TmuxServer,
}

impl Rig {
    async fn start(units: u32, extra: &[&str]) -> Rig {
        Rig::start_with_env(units, extra, &[]).await
    }

    /// As [`Rig::start`], with `env` in serve-ssh's own environment.
    async fn start_with_env(units: u32, extra: &[&str], env: &[(&str, &str)]) -> Rig {
        let server = TestServer::start_with(|c| c.month_secs = 900).await;
        let script = ManufacturerScript {
            offer: vec![harness::offer_line("TMX", units, 250)],
            ack: true,
            dispatch: true,
        };
        let maker =
            TestManufacturer::connect(&server.addr, "ssh-maker", script, Default::default()).await;
        // A manufacturer that joins an open month offers into it at once.
        let watcher = harness::customer(&server.addr).await;
        harness::wait_for_catalog(&watcher.client, 1, STEP).await;

        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve-ssh.log");
        // serve-ssh proves itself with the operator key, read from a file as on a real machine.
        std::fs::write(dir.path().join("operator.key"), harness::operator_key()).unwrap();
        let mut args: Vec<String> = [
            "--server",
            &server.addr,
            "--listen",
            "127.0.0.1:0",
            "--host-key",
            &dir.path().join("host_key").display().to_string(),
            "--key-file",
            &dir.path().join("operator.key").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let serve_ssh =
            ChildProcess::spawn_self_with_env("ssh::child_serve_ssh", &args, &log, env).unwrap();
        let port = listening_port(&log).await;
        let tmux = TmuxServer::new(dir.path());
        Rig {
            server,
            _maker: maker,
            serve_ssh,
            port,
            dir,
            tmux,
        }
    }

    /// A fresh client key pair; returns the private key's path.
    fn key(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "ssh-keygen failed");
        path
    }

    /// The ssh command line (the client options) with `extra` options.
    fn ssh(&self, key: &Path, extra: &str) -> String {
        format!(
            "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes -i {} -p {} {extra} localhost",
            key.display(),
            self.port
        )
    }

    /// An ssh session in tmux at 80×24; the shell prints ssh's exit status when it ends.
    fn open(&self, name: &str, key: &Path, extra: &str) -> Pane {
        let command = format!("{}; echo EXIT=$?; sleep 600", self.ssh(key, extra));
        self.tmux.start(name, 80, 24, &command)
    }

    /// The serve-ssh process's resident memory, KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.serve_ssh.id())
    }

    async fn stop(mut self) {
        drop(self.tmux);
        let status = self.serve_ssh.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "serve-ssh did not stop cleanly on SIGTERM: {status:?}"
        );
        self.server.stop().await.unwrap();
    }
}

async fn listening_port(log: &Path) -> u16 {
    let deadline = Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on 127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(port) = digits.parse() {
                return port;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve-ssh did not start; its log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `SHA256:...` of a key, as `ssh-keygen -lf` prints it.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Signs up `first` through a gateway connection and links `key` to the account, as a login by hand
/// over ssh followed by "remember this key" would.
async fn account_with_key(addr: &str, first: &str, key: &Path) {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Gateway,
        client: "tests".into(),
        name: None,
        key: Some(harness::operator_key().to_string()),
    };
    let (gateway, _events) = Client::connect(addr, hello).await.unwrap();
    gateway
        .call(RequestBody::SignUp(SignUp {
            first_name: first.into(),
            last_name: "Tester".into(),
            email: harness::unique_email(first),
            password: PASSWORD.into(),
        }))
        .await
        .unwrap();
    gateway
        .call(RequestBody::RememberKey {
            fingerprint: fingerprint(key),
        })
        .await
        .unwrap();
}

/// Types the sign-up form.
async fn sign_up(pane: &Pane, first: &str, last: &str) {
    pane.keys(&["C-n"]);
    pane.wait_for(&["Create an account"], STEP).await;
    let email = harness::unique_email(first);
    for (i, field) in [first, last, email.as_str(), PASSWORD].iter().enumerate() {
        pane.text(field);
        pane.keys(&[if i < 3 { "Tab" } else { "Enter" }]);
    }
}

/// Whether an SGR sequence in `screen` sets a colour (30–38, 40–48, 90–97, 100–107; 39 and 49 only
/// reset to the default).
fn sets_colour(screen: &str) -> bool {
    screen.split("\x1b[").skip(1).any(|seq| {
        let Some(end) = seq.find('m') else {
            return false;
        };
        seq[..end].split(';').any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

/// Waits for the shell's `EXIT=` line and checks the terminal is back as it was.
async fn assert_exits_cleanly(pane: &Pane) {
    pane.wait_for(&["EXIT=0"], STEP).await;
    assert_eq!(
        pane.format("#{alternate_on}"),
        "0",
        "back on the main screen"
    );
    assert_eq!(pane.format("#{cursor_flag}"), "1", "the cursor is visible");
    let screen = pane.screen_with_escapes();
    assert!(!sets_colour(&screen), "no stray colours: {screen:?}");
    assert!(!screen.contains("Catalog"), "the shop is gone: {screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ssh_a_customer_signs_up_buys_sees_it_dispatched_and_q_exits_0_restoring_the_terminal()
{
    if skip() {
        return;
    }
    let rig = Rig::start(40, &[]).await;
    let key = rig.key("buyer");
    let pane = rig.open("buyer", &key, "");
    pane.wait_for(&["Log in", "online"], STEP).await;
    sign_up(&pane, "Ada", "Lovelace").await;
    pane.wait_for(&["Remember this key?"], STEP).await;
    pane.keys(&["n"]);
    pane.wait_for(&["Ada Lovelace", "Product TMX", "40"], STEP)
        .await;

    pane.keys(&["l"]);
    pane.wait_for(&["Quantity < 2 >"], STEP).await;
    pane.keys(&["Enter"]);
    pane.wait_for(&["cart 2 items $5.00"], STEP).await;
    pane.keys(&["Tab"]);
    pane.wait_for(&["Enter to check out", "Product TMX"], STEP)
        .await;
    pane.keys(&["Enter"]);
    pane.wait_for(&["Checkout: add a card"], STEP).await;
    pane.text("4242424242424242");
    pane.wait_for(&["**** **** **** 4242", "Visa ok"], STEP)
        .await;
    pane.keys(&["Tab"]);
    pane.text("1231");
    pane.keys(&["Tab"]);
    pane.text("123");
    pane.keys(&["Enter"]);
    pane.wait_for(&["Checkout: review", "Visa ending 4242"], STEP)
        .await;
    pane.keys(&["Enter"]);
    pane.wait_for(&["Pay $5.00 for 2 items"], STEP).await;
    pane.keys(&["Enter"]);
    pane.wait_for(&["Order #", "Product TMX", "$5.00", "cart 0 items"], STEP)
        .await;
    pane.wait_for(&["dispatched"], STEP).await;

    pane.keys(&["q"]);
    assert_exits_cleanly(&pane).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_key_logs_straight_in_another_key_does_not_and_a_forgotten_key_no_more() {
    if skip() {
        return;
    }
    let rig = Rig::start(40, &[]).await;
    let mine = rig.key("mine");
    let other = rig.key("other");

    let first = rig.open("first", &mine, "");
    first.wait_for(&["Log in"], STEP).await;
    sign_up(&first, "Grace", "Hopper").await;
    first.wait_for(&["Remember this key?"], STEP).await;
    first.keys(&["y"]);
    first
        .wait_for(&["This key now logs you straight in."], STEP)
        .await;
    first.keys(&["q"]);
    first.wait_for(&["EXIT=0"], STEP).await;

    let again = rig.open("again", &mine, "");
    again
        .wait_for(&["Grace Hopper", "Logged in with your SSH key."], STEP)
        .await;

    let stranger = rig.open("stranger", &other, "");
    let screen = stranger.wait_for(&["Log in", "online"], STEP).await;
    assert!(!screen.contains("Grace"), "{screen}");
    stranger.keys(&["C-c"]);
    stranger.wait_for(&["EXIT=0"], STEP).await;

    // Account → "Forget this key" (the sixth entry).
    again.keys(&["4"]);
    again.wait_for(&["Forget this key"], STEP).await;
    again.keys(&["Down", "Down", "Down", "Down", "Down", "Enter"]);
    again
        .wait_for(&["This key no longer logs you in."], STEP)
        .await;
    again.keys(&["q"]);
    again.wait_for(&["EXIT=0"], STEP).await;

    let after = rig.open("after", &mine, "");
    let screen = after.wait_for(&["Log in", "online"], STEP).await;
    assert!(!screen.contains("Grace"), "{screen}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_follows_window_resizes_and_says_when_the_window_is_too_small() {
    if skip() {
        return;
    }
    let rig = Rig::start(40, &[]).await;
    let key = rig.key("resizer");
    let pane = rig.open("resizer", &key, "");
    pane.wait_for(&["Log in", "online"], STEP).await;
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        pane.resize(w, h);
        let deadline = Instant::now() + STEP;
        loop {
            let screen = pane.screen();
            let header = screen.lines().next().unwrap_or_default();
            // The status sits at the right edge of the header (tmux trims the trailing space), and
            // the footer on the last row.
            let width = header.chars().count();
            let fits = (usize::from(w) - 2..=usize::from(w)).contains(&width)
                && header.ends_with("online")
                && screen.lines().count() == usize::from(h)
                && screen.lines().last().unwrap_or_default().contains("quit");
            if fits {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the screen did not follow to {w}x{h}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    pane.resize(50, 15);
    pane.wait_for(&["Terminal too small", "50 x 15"], STEP)
        .await;
    pane.resize(80, 24);
    pane.wait_for(&["Log in", "online"], STEP).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_or_term_dumb_gives_that_session_a_screen_without_colour() {
    if skip() {
        return;
    }
    // serve-ssh itself runs under NO_COLOR (the operator's terminal): that is its own business, and
    // must not take colour from sessions that did not ask for NO_COLOR.
    let rig = Rig::start_with_env(40, &[], &[("NO_COLOR", "1")]).await;
    let key = rig.key("colours");
    let coloured = rig.open("coloured", &key, "");
    coloured.wait_for(&["Log in", "online"], STEP).await;
    assert!(
        sets_colour(&coloured.screen_with_escapes()),
        "the default theme has colours (or this test could not fail)"
    );
    let plain = rig.open("plain", &key, "-o SetEnv=NO_COLOR=1");
    plain.wait_for(&["Log in", "online"], STEP).await;
    let screen = plain.screen_with_escapes();
    assert!(!sets_colour(&screen), "NO_COLOR: {screen:?}");
    let dumb = rig.tmux.start(
        "dumb",
        80,
        24,
        &format!("env TERM=dumb {}; sleep 600", rig.ssh(&key, "")),
    );
    dumb.wait_for(&["Log in", "online"], STEP).await;
    let screen = dumb.screen_with_escapes();
    assert!(!sets_colour(&screen), "TERM=dumb: {screen:?}");
    // The other session keeps its colours: the theme is per session.
    assert!(sets_colour(&coloured.screen_with_escapes()));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_port_forwarding_and_sessions_without_a_pty_are_refused() {
    if skip() {
        return;
    }
    let rig = Rig::start(40, &[]).await;
    let key = rig.key("prober");
    let run = |extra: &str, command: &str| {
        let line = format!("{} {command}", rig.ssh(&key, extra));
        Command::new("sh")
            .args(["-c", &format!("timeout 30 {line}")])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    let exec = run("", "ls /");
    assert_eq!(exec.status.code(), Some(255), "exec: {exec:?}");
    assert!(String::from_utf8_lossy(&exec.stderr).contains("exec request failed"));
    assert!(exec.stdout.is_empty(), "nothing ran: {exec:?}");

    let no_pty = run("-T", "");
    assert_eq!(no_pty.status.code(), Some(1), "ssh -T: {no_pty:?}");
    assert!(
        String::from_utf8_lossy(&no_pty.stderr).contains("ssh -t"),
        "the hint: {no_pty:?}"
    );

    // -L: the forward is set up on the client, but the server refuses the channel, so the target
    // never sees a connection.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let target_port = target.local_addr().unwrap().port();
    let local_port = child::free_port();
    let mut forward = Command::new("sh")
        .args([
            "-c",
            &format!(
                "exec {} -N",
                rig.ssh(
                    &key,
                    &format!("-L 127.0.0.1:{local_port}:127.0.0.1:{target_port}")
                )
            ),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STEP;
    let mut stream = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", local_port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "the client never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = std::io::Read::read(&mut stream, &mut buf);
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut),
        "the forwarded connection is closed: {read:?}"
    );
    assert!(target.accept().is_err(), "the forward reached its target");
    let _ = Command::new("kill").arg(forward.id().to_string()).status();
    let _ = forward.wait();
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_ssh_sessions_sign_in_browse_and_stay_responsive() {
    if skip() {
        return;
    }
    const N: usize = 50;
    let rig = Rig::start(1000, &["--max-per-address", "64"]).await;
    let keys: Vec<PathBuf> = (0..N).map(|i| rig.key(&format!("k{i}"))).collect();
    for (i, key) in keys.iter().enumerate() {
        account_with_key(&rig.server.addr, &format!("Shopper{i}"), key).await;
    }
    let before = rig.rss_kib();
    let started = Instant::now();
    let panes: Vec<Pane> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| rig.open(&format!("s{i}"), key, ""))
        .collect();
    for (i, pane) in panes.iter().enumerate() {
        let name = format!("Shopper{i} Tester");
        pane.wait_for(&[name.as_str(), "Product TMX"], STEP * 2)
            .await;
    }
    let signed_in = started.elapsed();
    let after = rig.rss_kib();
    let per_session = after.saturating_sub(before) / N as u64;
    eprintln!(
        "50 ssh sessions: all signed in after {signed_in:?}; serve-ssh VmRSS {before} KiB before, {after} KiB after: {per_session} KiB per session"
    );

    // Browse: every session switches to its orders and back, and each answers in time.
    let mut slowest = Duration::ZERO;
    for (key, needle) in [("3", "No orders yet"), ("1", "Product TMX")] {
        let t = Instant::now();
        for pane in &panes {
            pane.keys(&[key]);
        }
        for pane in &panes {
            pane.wait_for(&[needle], STEP).await;
        }
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("50 ssh sessions: a key press reached every screen within {slowest:?}");
    assert!(
        slowest < Duration::from_secs(20),
        "sessions were slow to answer: {slowest:?}"
    );
    assert!(
        per_session < 2048,
        "each session should cost well under 2 MiB; it cost {per_session} KiB"
    );
    drop(panes);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_leaves_server_memory_bounded_and_others_unaffected() {
    if skip() {
        return;
    }
    let rig = Rig::start(1_000_000, &[]).await;
    let stalled_key = rig.key("stalled");
    let live_key = rig.key("live");
    account_with_key(&rig.server.addr, "Stalled", &stalled_key).await;
    account_with_key(&rig.server.addr, "Live", &live_key).await;
    // `exec`, so the pane's process is ssh itself and can be stopped.
    let stalled = rig.tmux.start(
        "stalled",
        80,
        24,
        &format!("exec {}", rig.ssh(&stalled_key, "")),
    );
    let live = rig.open("live", &live_key, "");
    stalled
        .wait_for(&["Stalled Tester", "Product TMX"], STEP)
        .await;
    live.wait_for(&["Live Tester", "Product TMX"], STEP).await;

    // Stock streams: a buyer takes one unit after another.
    let buyer = harness::customer(&rig.server.addr).await;
    let listing = harness::catalog(&buyer.client).await.items[0].listing;
    let stop_buying = tokio_util::sync::CancellationToken::new();
    let buying = {
        let stop = stop_buying.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let _ = buyer
                    .client
                    .call(RequestBody::Checkout {
                        checkout_id: CheckoutId::generate(),
                        lines: Some(vec![CartItem {
                            listing,
                            quantity: 1,
                        }]),
                        // The rig's maker sells TMX at $2.50.
                        confirmed_total: Cents(250),
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let before = rig.rss_kib();
    let ssh_pid = stalled.format("#{pane_pid}");
    assert!(Command::new("kill")
        .args(["-STOP", &ssh_pid])
        .status()
        .unwrap()
        .success());
    let mut peak = before;
    let mut live_rows = std::collections::HashSet::new();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        peak = peak.max(rig.rss_kib());
        if let Some(row) = live.screen().lines().find(|l| l.contains("TMX")) {
            live_rows.insert(row.to_string());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The live session still answers keys while the other is stopped.
    live.keys(&["3"]);
    live.wait_for(&["No orders yet"], STEP).await;
    live.keys(&["1"]);
    live.wait_for(&["Product TMX"], STEP).await;
    assert!(Command::new("kill")
        .args(["-CONT", &ssh_pid])
        .status()
        .unwrap()
        .success());
    stop_buying.cancel();
    buying.await.unwrap();
    eprintln!(
        "stalled client: serve-ssh VmRSS {before} KiB before, peak {peak} KiB while it was stopped; the live session showed {} different stock rows",
        live_rows.len()
    );
    assert!(
        live_rows.len() >= 5,
        "the live session kept showing new stock: {live_rows:?}"
    );
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "server memory grew by {} KiB behind one stopped client",
        peak.saturating_sub(before)
    );
    // Once it reads again, the stalled client catches up with the same stock as everyone.
    let deadline = Instant::now() + STEP;
    loop {
        let row = |p: &Pane| {
            p.screen()
                .lines()
                .find(|l| l.contains("TMX"))
                .map(str::to_string)
        };
        let (a, b) = (row(&stalled), row(&live));
        if a.is_some() && a == b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled client did not catch up: {a:?} vs {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_a_visitor_is_let_in_anonymously_to_log_in_by_hand() {
    if skip() {
        return;
    }
    let rig = Rig::start(40, &[]).await;
    let key = rig.key("unused");
    let pane = rig.open(
        "visitor",
        &key,
        "-o PubkeyAuthentication=no -o PreferredAuthentications=keyboard-interactive",
    );
    let screen = pane.wait_for(&["Log in", "online"], STEP).await;
    assert!(!screen.contains("Logged in with your SSH key"), "{screen}");
    sign_up(&pane, "Anon", "Visitor").await;
    // No key, so nothing to remember: straight to the catalog.
    let screen = pane.wait_for(&["Anon Visitor", "Product TMX"], STEP).await;
    assert!(!screen.contains("Remember this key?"), "{screen}");
    pane.keys(&["q"]);
    assert_exits_cleanly(&pane).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_cap_are_refused_and_others_keep_theirs() {
    if skip() {
        return;
    }
    let rig = Rig::start(40, &["--max-per-address", "1"]).await;
    let key = rig.key("capped");
    let first = rig.open("first", &key, "");
    first.wait_for(&["Log in", "online"], STEP).await;
    // The same command that opened the first shop: past the cap it is closed at once.
    let second = rig.open("second", &key, "");
    let screen = second.wait_for(&["EXIT=255"], STEP).await;
    assert!(!screen.contains("Log in"), "{screen}");
    // The first session is untouched.
    first.keys(&["C-n"]);
    first.wait_for(&["Create an account"], STEP).await;
    rig.stop().await;
}

#[tokio::test]
async fn serve_ssh_refuses_a_non_loopback_address_without_public() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve-ssh.log");
    let args: Vec<String> = [
        "--listen",
        "0.0.0.0:0",
        "--host-key",
        &dir.path().join("host_key").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = ChildProcess::spawn_self("ssh::child_serve_ssh", &args, &log).unwrap();
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve-ssh kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("--public"), "{text}");
    assert!(
        !dir.path().join("host_key").exists(),
        "nothing was created before refusing"
    );
}
