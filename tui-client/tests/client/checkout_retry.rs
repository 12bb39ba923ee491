//! The whole client (model + connection task, no terminal) against a real distributor, through a
//! proxy that cuts the connection right after the server has answered a checkout and before the
//! answer reaches the app. The app re-sends the same checkout id after reconnecting, and the
//! distributor ends up with exactly one order: a double submit has no effect.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use protocol::{
    Cents, Client, Event, Hello, OfferLine, Reply, RequestBody, Role, PROTOCOL_VERSION,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tui_client::app::{App, Cmd, ConnState, Msg, NetEvent, Screen, Stage};
use tui_client::net::{self, NetCmd, Target};
use tui_client::theme::Theme;

const WAIT: Duration = Duration::from_secs(30);

fn hello(role: Role, name: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role,
        client: "checkout-retry-test".into(),
        name: name.map(str::to_string),
        key: None,
    }
}

/// A TCP proxy. While `cut` is armed, the first bytes the server sends are dropped together with
/// the connection (and the flag is disarmed, so the next connection goes through).
async fn proxy(upstream: String, cut: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let cut = cut.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || cut.swap(false, Ordering::SeqCst) {
                            return; // dropping both sockets cuts the connection
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    addr
}

/// A manufacturer that offers one product whenever asked, and never acks (so no pushes follow a
/// sale that could trip the proxy).
async fn manufacturer(addr: &str) -> tokio::task::JoinHandle<()> {
    let (client, mut events) =
        Client::connect(addr, hello(Role::Manufacturer, Some("retry-maker")))
            .await
            .unwrap();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::OfferRequested { month } = event {
                let lines = vec![OfferLine {
                    sku: "RTY".into(),
                    product: "Retry widget".into(),
                    category: "test".into(),
                    quantity: 10,
                    unit_price: Cents(300),
                }];
                let _ = client.call(RequestBody::SubmitOffer { month, lines }).await;
            }
        }
    })
}

/// The app without a terminal: keys in, commands out to the real connection task.
struct Driver {
    app: App,
    net: mpsc::UnboundedSender<NetCmd>,
    events: mpsc::UnboundedReceiver<NetEvent>,
}

impl Driver {
    fn run(&mut self, cmds: Vec<Cmd>) {
        for cmd in cmds {
            match cmd {
                Cmd::Send { tag, body } => self.net.send(NetCmd::Send { tag, body }).unwrap(),
                Cmd::Session(token) => self.net.send(NetCmd::Session(token)).unwrap(),
                Cmd::SendOperator { .. } => panic!("a customer app has no operator connection"),
                Cmd::Quit => {}
            }
        }
    }

    fn key(&mut self, code: KeyCode) {
        let cmds = self
            .app
            .update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        self.run(cmds);
    }

    fn ctrl(&mut self, c: char) {
        let cmds = self.app.update(Msg::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::CONTROL,
        )));
        self.run(cmds);
    }

    fn text(&mut self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// Feeds network events to the app until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.app) {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("connection task alive");
            let cmds = self.app.update(Msg::Net(event));
            self.run(cmds);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_whose_answer_is_lost_is_resent_with_its_id_and_buys_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap().to_string();
    let stop_server = CancellationToken::new();
    let server = tokio::spawn(server::run(
        server::Config::new(dir.path().join("distributor.db")),
        listener,
        stop_server.clone(),
    ));
    let maker = manufacturer(&server_addr).await;
    // The server wrote its operator key beside the database before it served the maker.
    let key = protocol::operator_key::read(&dir.path().join("operator.key")).unwrap();
    let operator_hello = Hello {
        key: Some(key),
        ..hello(Role::Operator, None)
    };
    let (operator, _) = Client::connect(&server_addr, operator_hello).await.unwrap();
    // The maker offers into the open month as it connects: no operator step.

    let cut = Arc::new(AtomicBool::new(false));
    let addr = proxy(server_addr.clone(), cut.clone()).await;
    let (events_tx, events) = mpsc::unbounded_channel();
    let stop_net = CancellationToken::new();
    let (net, task) = net::spawn(Target::customer(addr), events_tx, stop_net.clone());
    let mut d = Driver {
        app: App::new(Theme::plain(), 0),
        net,
        events,
    };
    d.until("connected", |a| a.conn == ConnState::Online).await;

    // Sign up, add one to the cart, attach a card, confirm.
    d.ctrl('n');
    for (i, field) in ["Rita", "Retry", "rita@example.com", "correct-horse"]
        .iter()
        .enumerate()
    {
        d.text(field);
        d.key(if i < 3 { KeyCode::Tab } else { KeyCode::Enter });
    }
    d.until("the catalog", |a| a.catalog.current().is_some())
        .await;
    d.key(KeyCode::Enter);
    d.until("the cart", |a| a.cart_units() == 1).await;
    d.key(KeyCode::Tab);
    d.until("the cart screen", |a| {
        a.cart.loaded && a.screen == Screen::Cart
    })
    .await;
    d.key(KeyCode::Enter);
    assert_eq!(d.app.checkout.stage, Stage::Card);
    d.text("4242424242424242");
    d.key(KeyCode::Tab);
    d.text("1231");
    d.key(KeyCode::Tab);
    d.text("123");
    d.key(KeyCode::Enter);
    d.until("the card", |a| a.checkout.stage == Stage::Review)
        .await;
    d.key(KeyCode::Enter);
    assert_eq!(d.app.checkout.stage, Stage::Confirm);

    // Pay, and lose the answer.
    cut.store(true, Ordering::SeqCst);
    d.key(KeyCode::Enter);
    let id = d.app.checkout.attempt.expect("an attempt in flight").id;
    d.until("the order, after a reconnect", |a| {
        a.screen == Screen::Orders
    })
    .await;
    assert!(
        !cut.load(Ordering::SeqCst),
        "the proxy really cut the connection"
    );
    assert!(d.app.ever_online);
    assert_eq!(
        d.app.orders.list[0].checkout_id, id,
        "the same checkout id was re-sent"
    );

    // The distributor has exactly one order.
    let Reply::Status(status) = operator.call(RequestBody::Status).await.unwrap() else {
        panic!("status");
    };
    assert_eq!(status.orders, 1);
    assert_eq!(status.sold_units, 1);

    stop_net.cancel();
    task.await.unwrap();
    maker.abort();
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
