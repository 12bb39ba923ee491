//! `shop` end to end, in a real terminal: tmux runs the app against a real distributor and a
//! manufacturer, and the test types like a person (send-keys) and reads the screen (capture-pane):
//! sign up, add to the cart, attach a card, check out, and see the order in the history, with its
//! status moving live.
//!
//! Cargo does not build a dependency's binary for another crate's tests, so by default the app runs
//! as this test executable re-run with `--ignored --exact shop_tmux::child_shop_process` and the command line
//! in `SHOP_CHILD_ARGS`; that test hands it to `tui_client::cli::main_from`, the very entry point of
//! the `shop` binary. Set `SHOP_BIN=/path/to/shop` to run a built binary instead.
//!
//! Skipped (with a message) when tmux is missing, unless `CI` is set: then it must run.

use protocol::RequestBody;
use std::process::Command;
use std::time::{Duration, Instant};
use tests::harness::{self, ManufacturerScript, TestManufacturer, TestServer};

const ARGS_ENV: &str = "SHOP_CHILD_ARGS";
/// How long one step may take: a debug build hashes a password slowly on a busy 2-core box.
const STEP: Duration = Duration::from_secs(40);

/// Not a test: the body of the `shop` process started inside tmux (see the module docs).
#[test]
#[ignore = "entry point for the shop process the tmux test starts"]
fn child_shop_process() {
    let Ok(args) = std::env::var(ARGS_ENV) else {
        return;
    };
    let argv = std::iter::once("shop".to_string()).chain(args.split_whitespace().map(String::from));
    let code = tui_client::cli::main_from(argv);
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// A detached tmux session on a private tmux server (its own socket, so a developer's own tmux is
/// never touched), killed when dropped (also when the test fails half-way).
struct Tmux {
    name: String,
    socket: String,
}

/// `tmux -S <socket>`: every command talks to this test's private server.
fn tmux(socket: &str) -> Command {
    let mut c = Command::new("tmux");
    c.args(["-S", socket]);
    c
}

impl Tmux {
    fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let socket = std::env::temp_dir()
            .join(format!("{name}.tmux"))
            .display()
            .to_string();
        let status = tmux(&socket)
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                command,
            ])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux {
            name: name.to_string(),
            socket,
        }
    }

    /// Sends keys by tmux name (`Enter`, `Tab`, `C-n`).
    fn keys(&self, keys: &[&str]) {
        let status = tmux(&self.socket)
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Types text literally.
    fn text(&self, text: &str) {
        let status = tmux(&self.socket)
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .expect("tmux send-keys -l");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = tmux(&self.socket)
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        tmux(&self.socket)
            .args(["has-session", "-t", &self.name])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Polls the screen until every needle shows, or fails with the last screen after `STEP`.
    async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needles:?}; the screen was:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux(&self.socket).arg("kill-server").output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shell command that runs `shop` with `args` (no quotes inside).
fn shop_command(args: &str) -> String {
    match std::env::var("SHOP_BIN") {
        Ok(bin) => format!("{bin} {args}"),
        Err(_) => {
            let exe = std::env::current_exe().expect("test executable path");
            format!(
                "env {ARGS_ENV}='{args}' {} --ignored --exact shop_tmux::child_shop_process --nocapture --test-threads=1",
                exe.display()
            )
        }
    }
}

fn skip_without_tmux() -> bool {
    if tmux_installed() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "tmux is required under CI"
    );
    eprintln!("skipping shop_tmux: tmux is not installed (CI is not set)");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_in_tmux_signs_up_checks_out_with_a_new_card_and_sees_the_order_move_live() {
    if skip_without_tmux() {
        return;
    }
    let server = TestServer::start_with(|c| c.month_secs = 900).await;
    let script = ManufacturerScript {
        offer: vec![harness::offer_line("TMX", 40, 250)],
        ack: true,
        dispatch: true,
    };
    let _maker =
        TestManufacturer::connect(&server.addr, "tmux-maker", script, Default::default()).await;
    // The first month opened before the maker connected; the next one asks it for its offer.
    harness::connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let watcher = harness::customer(&server.addr).await;
    harness::wait_for_catalog(&watcher.client, 1, STEP).await;

    let name = format!("shop-e2e-{}", std::process::id());
    let tmux = Tmux::start(
        &name,
        100,
        30,
        &shop_command(&format!("--server {}", server.addr)),
    );
    tmux.wait_for(&["Log in", "online"]).await;

    // Sign up.
    let email = harness::unique_email("tmux");
    tmux.keys(&["C-n"]);
    tmux.wait_for(&["Create an account"]).await;
    for (i, field) in ["Ada", "Lovelace", email.as_str(), "correct-horse-battery"]
        .iter()
        .enumerate()
    {
        tmux.text(field);
        tmux.keys(&[if i < 3 { "Tab" } else { "Enter" }]);
    }
    tmux.wait_for(&["Ada Lovelace", "Product TMX", "40"]).await;

    // Choose 2 and add them to the cart.
    tmux.keys(&["l"]);
    tmux.wait_for(&["Quantity < 2 >"]).await;
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["cart 2 items $5.00"]).await;

    // Cart, checkout, a new card (typed masked), confirm, pay.
    tmux.keys(&["Tab"]);
    tmux.wait_for(&["Enter to check out", "Product TMX"]).await;
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Checkout: add a card"]).await;
    tmux.text("4242424242424242");
    let screen = tmux.wait_for(&["**** **** **** 4242", "Visa ok"]).await;
    let number_line = screen
        .lines()
        .find(|l| l.contains("Card number"))
        .unwrap_or_default();
    assert!(
        !number_line.contains("4242 4242"),
        "the number is masked while typing: {number_line}"
    );
    tmux.keys(&["Tab"]);
    tmux.text("1231");
    tmux.keys(&["Tab"]);
    tmux.text("123");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Checkout: review", "Visa ending 4242"])
        .await;
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Pay $5.00 for 2 items"]).await;
    tmux.keys(&["Enter"]);

    // The order is in the history; its status moves live as the maker confirms and dispatches.
    tmux.wait_for(&["Order #", "Product TMX", "$2.50", "$5.00", "cart 0 items"])
        .await;
    tmux.wait_for(&["dispatched"]).await;

    // q quits and the session ends.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!tmux.alive(), "shop did not quit on q");
    drop(tmux);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_demo_brings_up_a_whole_system_with_moving_stock_and_quitting_stops_it() {
    if skip_without_tmux() {
        return;
    }
    let name = format!("shop-demo-{}", std::process::id());
    let command = shop_command("--demo --month-secs 60 --shoppers 5");
    let tmux = Tmux::start(&name, 100, 30, &command);
    tmux.wait_for(&["[demo]", "Log in", "online"]).await;
    tmux.keys(&["C-n"]);
    tmux.wait_for(&["Create an account"]).await;
    for (i, field) in [
        "Demo",
        "Viewer",
        "viewer@example.com",
        "correct-horse-battery",
    ]
    .iter()
    .enumerate()
    {
        tmux.text(field);
        tmux.keys(&[if i < 3 { "Tab" } else { "Enter" }]);
    }
    // The three simulated makers' goods are on sale, and the month is counting down.
    let screen = tmux
        .wait_for(&["Demo Viewer", "orchard", "dairy", "bakery", "left"])
        .await;
    assert!(screen.contains("Month"), "{screen}");
    // The simulated shoppers buy: some product shows fewer left than were offered. The shoppers pick
    // at random, so walk the rows (fewest left first): the panel below the selected row shows
    // "N of M left".
    tmux.keys(&["s", "s", "s"]); // sort: fewest left first
    let deadline = Instant::now() + STEP;
    for step in 0usize.. {
        tmux.keys(&["g"]); // the top row
        for _ in 0..step % 12 {
            tmux.keys(&["Down"]);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let screen = tmux.screen();
        if screen.lines().any(stock_has_moved) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stock moved; the screen was:\n{screen}"
        );
    }
    // q stops the app and everything the demo started.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while tmux.alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!tmux.alive(), "shop --demo did not stop on q");
}

/// Whether a line reads "... N of M left" with N < M.
fn stock_has_moved(line: &str) -> bool {
    let Some((before, _)) = line.split_once(" left") else {
        return false;
    };
    let Some((left, offered)) = before.rsplit_once(" of ") else {
        return false;
    };
    let left = left.rsplit(' ').next().and_then(|n| n.parse::<u32>().ok());
    let offered = offered.trim().parse::<u32>().ok();
    matches!((left, offered), (Some(l), Some(o)) if l < o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_console_in_tmux_shows_sales_live_and_closes_the_month_after_confirmation() {
    if skip_without_tmux() {
        return;
    }
    let server = TestServer::start_with(|c| c.month_secs = 900).await;
    let script = ManufacturerScript {
        offer: vec![harness::offer_line("OPS", 40, 250)],
        // It never acks, so its notices stay pending and the console must show them.
        ack: false,
        dispatch: false,
    };
    let _maker =
        TestManufacturer::connect(&server.addr, "ops-maker", script, Default::default()).await;
    let buyer = harness::customer(&server.addr).await;
    let listing = harness::wait_for_catalog(&buyer.client, 1, STEP)
        .await
        .items[0]
        .listing;

    // The harness's server runs with an explicit `--peer-key`; the console reads it from a key
    // file, as it reads the one a distributor writes beside its database.
    let key_file = server.db.with_file_name("console-operator.key");
    std::fs::write(&key_file, harness::operator_key()).expect("write the key file");
    let name = format!("shop-ops-{}", std::process::id());
    let tmux = Tmux::start(
        &name,
        100,
        30,
        &shop_command(&format!(
            "--operator --server {} --key-file {}",
            server.addr,
            key_file.display()
        )),
    );
    tmux.wait_for(&["Operator", "online", "ops-maker", "Last months"])
        .await;

    // A sale shows up without a keypress: units, revenue, and the pending notice.
    buyer
        .client
        .call(RequestBody::Checkout {
            checkout_id: protocol::CheckoutId::generate(),
            lines: Some(vec![protocol::CartItem {
                listing,
                quantity: 3,
            }]),
            confirmed_total: protocol::Cents(750),
        })
        .await
        .expect("checkout");
    let screen = tmux.wait_for(&["$7.50 · 1 checkout · 3 units"]).await;
    let row = screen
        .lines()
        .find(|l| l.contains("ops-maker"))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains("up"), "{row}");

    // c asks first; Esc keeps the month; c and Enter close it, and the history says who did.
    let month = harness::connect_operator(&server.addr)
        .await
        .call(RequestBody::Status)
        .await
        .ok()
        .and_then(|r| match r {
            protocol::Reply::Status(s) => s.month.map(|m| m.id.0),
            _ => None,
        })
        .expect("an open month");
    tmux.keys(&["c"]);
    tmux.wait_for(&[&format!("Close month {month} now?")]).await;
    tmux.keys(&["Escape"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!tmux.screen().contains("now?"), "Esc closes the dialog");
    tmux.keys(&["c"]);
    tmux.wait_for(&["now?"]).await;
    tmux.keys(&["Enter"]);
    let screen = tmux
        .wait_for(&[&format!("Month {} ", month + 1), "operator"])
        .await;
    assert!(
        screen
            .lines()
            .any(|l| l.contains(&format!("#{month} ")) && l.contains("operator")),
        "the history lists month {month} as closed by the operator:\n{screen}"
    );

    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!tmux.alive(), "the console did not quit on q");
    drop(tmux);
    server.stop().await.unwrap();
}
