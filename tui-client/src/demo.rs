//! `shop --demo`: a whole system in one process, so one command shows everything moving.
//!
//! - a distributor (`server::run`) on a 127.0.0.1:0 listener, its SQLite file in a temp dir (or
//!   `--data-dir`), with short months so people see them turn;
//! - three simulated manufacturers (`manufacturer_sim::run`, presets orchard, dairy, bakery);
//! - a few simulated shoppers ([`shopper`]) that add to their carts and check out at a human pace,
//!   so stock visibly moves. Each is bounded in actions and stops with the rest.
//!
//! Everything runs under one [`CancellationToken`]; [`DemoSystem::stop`] cancels it and waits.

use protocol::{
    CardInput, CartItem, Cents, CheckoutId, Client, ClientError, Hello, Reply, RequestBody, Role,
    SignUp, PROTOCOL_VERSION,
};
use rand::Rng;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The manufacturers the demo starts.
pub const MAKERS: [&str; 3] = ["orchard", "dairy", "bakery"];
/// The most actions one simulated shopper takes, so the demo's traffic is bounded.
pub const MAX_ACTIONS: u32 = 5_000;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Where the databases live; a fresh temp dir when `None`.
    pub data_dir: Option<PathBuf>,
    /// Month length in seconds.
    pub month_secs: u64,
    /// How many simulated shoppers.
    pub shoppers: usize,
}

/// What can stop the demo from starting.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo: manufacturer preset {0} is missing")]
    Preset(&'static str),
    #[error("demo: the distributor did not come up: {0}")]
    Server(String),
}

/// A running demo system.
pub struct DemoSystem {
    /// Where the distributor listens.
    pub addr: String,
    /// Where the databases (and key files) live.
    pub data_dir: PathBuf,
    /// The operator key from the distributor's key file, if it wrote one.
    pub operator_key: Option<String>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    /// Kept so the temp dir lives as long as the system.
    _tmp: Option<tempfile::TempDir>,
}

impl DemoSystem {
    /// Stops everything the demo started and waits (at most a few seconds) for it to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

/// Starts the distributor, the manufacturers and the shoppers.
pub async fn start(
    config: DemoConfig,
    shutdown: CancellationToken,
) -> Result<DemoSystem, DemoError> {
    let (dir, tmp) = match &config.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("shop-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let db = dir.join("distributor.db");
    let mut server_config = server::Config::new(&db);
    server_config.month_secs = config.month_secs;
    let server_stop = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = server::run(server_config, listener, server_stop.clone()).await {
            tracing::error!("demo distributor stopped: {e}");
            server_stop.cancel();
        }
    });
    wait_until_up(&addr).await?;
    let key_file = protocol::operator_key::path_for_db(&db);
    let operator_key = protocol::operator_key::resolve(None, &key_file)?;

    for name in MAKERS {
        let catalog = manufacturer_sim::preset(name).ok_or(DemoError::Preset(name))?;
        let mut sim = manufacturer_sim::SimConfig::new(
            addr.clone(),
            name,
            dir.join(format!("{name}.db")),
            catalog,
        );
        // Long enough that "confirmed" shows before "dispatched".
        sim.dispatch_delay = Some(Duration::from_secs(4));
        let sim_stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) = manufacturer_sim::run(sim, sim_stop).await {
                tracing::error!("demo manufacturer {name} stopped: {e}");
            }
        });
    }
    // The makers offer into the open month as soon as they connect; this only steps in if the
    // shelves are still empty once they are all here.
    kick_first_month(&addr, &db).await;
    for i in 0..config.shoppers {
        tasks.spawn(shopper(i, addr.clone(), stop.clone()));
    }
    Ok(DemoSystem {
        addr,
        data_dir: dir,
        operator_key,
        stop,
        tasks,
        _tmp: tmp,
    })
}

fn hello(client: &str) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: Role::Customer,
        client: client.to_string(),
        name: None,
        key: None,
    }
}

/// Waits (up to 10 s) until a demo maker's goods are on sale, which is a no-op: a maker that connects
/// while a month is open offers into it at once. Only if every maker is connected and still none
/// has offered 3 s later does it close the empty month as an operator (with the operator key the
/// distributor wrote beside `db`), so that the next one asks them again. Best effort: if anything
/// fails the demo still runs.
async fn kick_first_month(addr: &str, db: &std::path::Path) {
    let Ok(key) = protocol::operator_key::read(&protocol::operator_key::path_for_db(db)) else {
        tracing::warn!("demo: no operator key beside {}", db.display());
        return;
    };
    let operator = Hello {
        role: Role::Operator,
        key: Some(key),
        ..hello("shop-demo-operator")
    };
    let Ok((client, _events)) = Client::connect(addr, operator).await else {
        return;
    };
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Reply::Status(status)) = client.call(RequestBody::Status).await {
            let connected = status.manufacturers.iter().filter(|m| m.connected).count();
            let offered = status.manufacturers.iter().any(|m| m.offered_this_month);
            if offered {
                return; // goods arrived: nothing to do
            }
            if connected >= MAKERS.len() && started.elapsed() >= Duration::from_secs(3) {
                let _ = client.call(RequestBody::CloseMonth).await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until_up(addr: &str) -> Result<(), DemoError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(addr, hello("shop-demo-probe")).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(DemoError::Server(e.to_string()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One simulated shopper: logs in (or signs up), keeps a card on file and something in its cart,
/// then every 1.5 to 5 seconds either buys one to five units of something at once or adds to its
/// cart. Reconnects after
/// a failure. Stops after [`MAX_ACTIONS`] actions or when `stop` is cancelled.
pub async fn shopper(i: usize, addr: String, stop: CancellationToken) {
    let mut actions = 0u32;
    while actions < MAX_ACTIONS && !stop.is_cancelled() {
        let session = tokio::select! {
            _ = stop.cancelled() => return,
            r = shop_session(i, &addr, &stop, &mut actions) => r,
        };
        if session.is_err() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

async fn shop_session(
    i: usize,
    addr: &str,
    stop: &CancellationToken,
    actions: &mut u32,
) -> Result<(), ClientError> {
    let (client, _events) = Client::connect(addr, hello("shop-demo-shopper")).await?;
    let email = format!("shopper{}@demo.shop", i + 1);
    let password = format!("demo-shopper-{}", i + 1);
    let login = client
        .call(RequestBody::LogIn {
            email: email.clone(),
            password: password.clone(),
        })
        .await;
    if login.is_err() {
        const NAMES: [(&str, &str); 5] = [
            ("Grace", "Hopper"),
            ("Alan", "Turing"),
            ("Barbara", "Liskov"),
            ("Edsger", "Dijkstra"),
            ("Frances", "Allen"),
        ];
        let (first, last) = NAMES[i % NAMES.len()];
        client
            .call(RequestBody::SignUp(SignUp {
                first_name: first.into(),
                last_name: last.into(),
                email,
                password,
            }))
            .await?;
    }
    if let Ok(Reply::Account(a)) = client.call(RequestBody::GetAccount).await {
        if a.card.is_none() {
            client
                .call(RequestBody::SetCard(CardInput {
                    number: "4242424242424242".into(),
                    exp_month: 12,
                    exp_year: 2031,
                    cvc: "123".into(),
                }))
                .await?;
        }
    }
    let mut cart_lines = match client.call(RequestBody::GetCart).await? {
        Reply::Cart(c) => c.lines.len(),
        _ => 0,
    };
    while *actions < MAX_ACTIONS {
        let pause = rand::rng().random_range(1_500..5_000);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
        *actions += 1;
        let Reply::Catalog(snapshot) = client.call(RequestBody::Catalog).await? else {
            continue;
        };
        if snapshot.items.is_empty() {
            continue;
        }
        let (line, price, buy_now) = {
            let mut rng = rand::rng();
            let item = &snapshot.items[rng.random_range(0..snapshot.items.len())];
            let quantity = rng.random_range(1..=5u32).min(item.remaining.max(1));
            (
                CartItem {
                    listing: item.listing,
                    quantity,
                },
                item.unit_price,
                rng.random_bool(0.7),
            )
        };
        // Mostly "buy now", which leaves the cart alone. A shopper always keeps something in its
        // cart: the distributor closes a month early once every active customer has checked out
        // with an empty cart, and the demo's months should run their full length.
        let result = if buy_now && cart_lines > 0 {
            client
                .call(RequestBody::Checkout {
                    checkout_id: CheckoutId::generate(),
                    lines: Some(vec![line]),
                    // The catalog's price for the line, as a shopper who just looked confirms it.
                    confirmed_total: price.times(line.quantity).unwrap_or(Cents(u64::MAX)),
                })
                .await
        } else {
            if cart_lines >= 4 {
                client.call(RequestBody::ClearCart).await?;
            }
            let added = client
                .call(RequestBody::AddToCart {
                    listing: line.listing,
                    quantity: 1,
                })
                .await;
            if let Ok(Reply::Cart(c)) = &added {
                cart_lines = c.lines.len();
            }
            added
        };
        match result {
            // Sold out in the meantime, or the month just closed: carry on shopping.
            Ok(_) | Err(ClientError::Server(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
