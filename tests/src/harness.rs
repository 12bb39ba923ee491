//! The in-process test harness: a real distributor on 127.0.0.1:0 with a real SQLite file, and real
//! protocol clients for customers, manufacturers and operators.

use protocol::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The test card: a Visa that passes Luhn.
pub const TEST_CARD: &str = "4242 4242 4242 4242";

/// A distributor running inside the test process.
pub struct TestServer {
    /// "127.0.0.1:port".
    pub addr: String,
    /// The database file.
    pub db: PathBuf,
    /// Keeps the temporary directory alive (if the harness made it).
    pub dir: Option<Arc<tempfile::TempDir>>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), server::ServerError>>>,
}

impl TestServer {
    /// Starts a server with default settings on a fresh database.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh database, letting the caller adjust the config.
    pub async fn start_with(adjust: impl FnOnce(&mut server::Config)) -> TestServer {
        Self::start_on_store(store_switch(), adjust).await
    }

    /// Starts a server on a fresh database of `store`, whatever [`store_switch`] says.
    pub async fn start_on_store(
        store: Store,
        adjust: impl FnOnce(&mut server::Config),
    ) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let db = match store {
            Store::Sqlite => dir.path().join("distributor.db"),
            Store::Postgres => {
                let url = tokio::task::spawn_blocking(crate::pg::PgServer::fresh_database)
                    .await
                    .expect("a database on the shared PostgreSQL");
                PathBuf::from(url)
            }
        };
        let mut server = Self::start_on(db, adjust).await;
        server.dir = Some(dir);
        server
    }

    /// Starts a server on an existing (or new) database path. Its operator key is [`operator_key`]
    /// (as an explicit `--peer-key`), unless `adjust` changes it.
    pub async fn start_on(db: PathBuf, adjust: impl FnOnce(&mut server::Config)) -> TestServer {
        let mut config = server::Config::new(&db);
        config.peer_key = Some(operator_key().to_string());
        // Every test client comes from 127.0.0.1, and many tests open hundreds of accounts at once:
        // the per-address buckets and the hashing queue are raised here. The tests of those limits
        // set them back through `adjust`.
        config.limits.signups_per_minute = 1_000_000;
        config.limits.logins_per_minute = 1_000_000;
        config.hash_queue = 4096;
        if db.to_str().is_some_and(|d| d.starts_with("postgres://")) {
            // A node on PostgreSQL does not start without a broker.
            let nats = tokio::task::spawn_blocking(crate::nats::NatsServer::shared_url)
                .await
                .expect("the shared nats-server");
            config.nats = Some(nats);
        }
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let result = server::run(config, listener, stop).await;
            // A server that fails to start drops its listener, and its test then sees only a reset
            // connection: say why here.
            if let Err(e) = &result {
                eprintln!("test server stopped with an error: {e}");
            }
            result
        });
        TestServer {
            addr,
            db,
            dir: None,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the server gracefully and waits for it; returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), server::ServerError> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.expect("server task panicked"),
            None => Ok(()),
        }
    }

    /// Stops the server and starts a new one on the same database (a clean restart).
    pub async fn restart(mut self, adjust: impl FnOnce(&mut server::Config)) -> TestServer {
        let dir = self.dir.take();
        let db = self.db.clone();
        self.stop().await.expect("clean stop");
        let mut next = Self::start_on(db, adjust).await;
        next.dir = dir;
        next
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which store [`TestServer::start`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A SQLite file in a temporary directory (the default).
    Sqlite,
    /// A database on a throwaway PostgreSQL, one per server.
    Postgres,
}

/// The harness switch: `DISTRIBUTOR_TEST_STORE=postgres` runs every [`TestServer::start`] and
/// [`TestServer::start_with`] on a fresh database of one throwaway PostgreSQL per test process
/// ([`crate::pg::PgServer::shared`]), so the same end-to-end tests cover both stores.
pub fn store_switch() -> Store {
    match std::env::var("DISTRIBUTOR_TEST_STORE").as_deref() {
        Ok("postgres") => Store::Postgres,
        _ => Store::Sqlite,
    }
}

/// The `Hello` the harness sends for `role` (and a manufacturer's `name`).
pub fn hello(role: Role, name: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role,
        client: "tests".into(),
        name: name.map(str::to_string),
        key: None,
    }
}

/// The operator key of every [`TestServer`] in this process: random, made once.
pub fn operator_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| format!("{:064x}", rand::random::<u128>()))
}

/// The operator key a distributor process wrote beside its database `db`, waiting (up to 30 s) for
/// it to appear.
pub async fn operator_key_beside(db: &std::path::Path) -> String {
    let path = protocol::operator_key::path_for_db(db);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(key) = protocol::operator_key::read(&path) {
            return key;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no operator key at {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `Hello` for an operator presenting `key`.
pub fn operator_hello(key: &str) -> Hello {
    Hello {
        key: Some(key.to_string()),
        ..hello(Role::Operator, None)
    }
}

static NEXT_EMAIL: AtomicU64 = AtomicU64::new(1);

/// A unique email for this test process.
pub fn unique_email(prefix: &str) -> String {
    let n = NEXT_EMAIL.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}@example.com", std::process::id())
}

/// A signed-up customer with the test card attached.
pub struct Customer {
    /// The connection.
    pub client: Client,
    /// Pushed events.
    pub events: Events,
    /// The session.
    pub session: SessionInfo,
    /// The email it signed up with.
    pub email: String,
}

/// Connects an anonymous customer.
pub async fn connect_customer(addr: &str) -> (Client, Events) {
    Client::connect(addr, hello(Role::Customer, None))
        .await
        .expect("connect")
}

/// Another terminal of a logged-in customer: a new connection that resumes the session of `token`.
pub async fn resume(addr: &str, token: &SessionToken) -> Client {
    let (client, _) = connect_customer(addr).await;
    client
        .call(RequestBody::Resume {
            token: token.clone(),
        })
        .await
        .expect("resume");
    client
}

/// Connects an operator to a [`TestServer`] (it presents [`operator_key`]).
pub async fn connect_operator(addr: &str) -> Client {
    connect_operator_events(addr).await.0
}

/// Connects an operator presenting `key`.
pub async fn connect_operator_with(addr: &str, key: &str) -> Client {
    Client::connect(addr, operator_hello(key))
        .await
        .expect("connect operator")
        .0
}

/// Connects an operator and keeps its pushed events (the live status after a `Status` request).
pub async fn connect_operator_events(addr: &str) -> (Client, Events) {
    Client::connect(addr, operator_hello(operator_key()))
        .await
        .expect("connect operator")
}

/// Signs up a new customer and attaches the test card.
pub async fn customer(addr: &str) -> Customer {
    let (client, events) = connect_customer(addr).await;
    let email = unique_email("buyer");
    let session = match client
        .call(RequestBody::SignUp(SignUp {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: email.clone(),
            password: "correct horse battery".into(),
        }))
        .await
        .expect("sign up")
    {
        Reply::Session(s) => s,
        other => panic!("unexpected sign-up reply {other:?}"),
    };
    client
        .call(RequestBody::SetCard(CardInput {
            number: TEST_CARD.into(),
            exp_month: 12,
            exp_year: 2035,
            cvc: "123".into(),
        }))
        .await
        .expect("set card");
    Customer {
        client,
        events,
        session,
        email,
    }
}

/// Fetches the whole catalog, page by page (and subscribes to live stock).
pub async fn catalog(client: &Client) -> CatalogSnapshot {
    client.whole_catalog().await.expect("catalog")
}

/// Waits until the catalog holds at least `n` items, or panics after `timeout`.
pub async fn wait_for_catalog(client: &Client, n: usize, timeout: Duration) -> CatalogSnapshot {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let c = catalog(client).await;
        if c.items.len() >= n {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "catalog never reached {n} items: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a [`TestManufacturer`] has seen.
#[derive(Debug, Default, Clone)]
pub struct Books {
    /// Highest applied notice.
    pub high_water: u64,
    /// Units sold per SKU, from applied sale notices.
    pub sold: std::collections::BTreeMap<String, u64>,
    /// Every notice seq delivered, duplicates included.
    pub delivered: Vec<u64>,
    /// Months it offered in.
    pub offered_months: Vec<u32>,
    /// Settlements received.
    pub settlements: Vec<Settlement>,
    /// The credential the distributor issued to this name, presented on every later connection.
    pub credential: Option<String>,
}

/// A scripted manufacturer: offers a fixed catalog whenever asked, applies notices once by sequence
/// number, and acks them (unless told not to).
pub struct TestManufacturer {
    /// The connection.
    pub client: Client,
    /// Its id.
    pub id: ManufacturerId,
    /// What it has seen.
    pub books: Arc<Mutex<Books>>,
    task: JoinHandle<()>,
}

impl Drop for TestManufacturer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`TestManufacturer`] behaves.
#[derive(Debug, Clone)]
pub struct ManufacturerScript {
    /// What it offers each month.
    pub offer: Vec<OfferLine>,
    /// Whether it acks notices.
    pub ack: bool,
    /// Whether it reports dispatch after applying a sale.
    pub dispatch: bool,
}

/// An offer line with sensible defaults.
pub fn offer_line(sku: &str, quantity: u32, cents: u64) -> OfferLine {
    OfferLine {
        sku: sku.into(),
        product: format!("Product {sku}"),
        category: "test".into(),
        quantity,
        unit_price: Cents(cents),
    }
}

impl TestManufacturer {
    /// Connects under `name` and starts following `script`, with `books` carried over from an earlier
    /// connection (pass `Default::default()` for a fresh one).
    pub async fn connect(
        addr: &str,
        name: &str,
        script: ManufacturerScript,
        books: Arc<Mutex<Books>>,
    ) -> TestManufacturer {
        let hello = Hello {
            key: books.lock().unwrap().credential.clone(),
            ..hello(Role::Manufacturer, Some(name))
        };
        let (client, mut events) = Client::connect(addr, hello)
            .await
            .expect("connect manufacturer");
        let id = client.welcome().manufacturer.expect("manufacturer id");
        if let Some(issued) = client.welcome().credential.clone() {
            books.lock().unwrap().credential = Some(issued);
        }
        let worker = client.clone();
        let shared = books.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::OfferRequested { month } => {
                        let reply = worker.submit_offer(month, script.offer.clone()).await;
                        if reply.is_ok() {
                            shared.lock().unwrap().offered_months.push(month.0);
                        }
                    }
                    Event::Notice(notice) => {
                        let mut dispatch = None;
                        {
                            let mut b = shared.lock().unwrap();
                            b.delivered.push(notice.seq.0);
                            if notice.seq.0 == b.high_water + 1 {
                                b.high_water = notice.seq.0;
                                match &notice.body {
                                    NoticeBody::Sale(sale) => {
                                        for line in &sale.lines {
                                            *b.sold.entry(line.sku.clone()).or_default() +=
                                                u64::from(line.quantity);
                                        }
                                        dispatch = Some(sale.order);
                                    }
                                    NoticeBody::Settlement(s) => b.settlements.push(s.clone()),
                                }
                            }
                        }
                        if script.ack {
                            let _ = worker
                                .call(RequestBody::AckNotices {
                                    through: notice.seq,
                                })
                                .await;
                            if let (true, Some(order)) = (script.dispatch, dispatch) {
                                let _ = worker.call(RequestBody::ReportDispatch { order }).await;
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
        TestManufacturer {
            client,
            id,
            books,
            task,
        }
    }
}

/// A script that offers `lines`, acks and dispatches.
pub fn script(lines: Vec<OfferLine>) -> ManufacturerScript {
    ManufacturerScript {
        offer: lines,
        ack: true,
        dispatch: true,
    }
}

/// Polls `check` every 20 ms until it returns true, or panics with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `lines` cost at the prices of `items` (a catalog the client holds): the total a client
/// confirms for a "buy now" checkout. Lines of unknown listings count as free.
pub fn total_of(items: &[CatalogItem], lines: &[CartItem]) -> Cents {
    lines
        .iter()
        .filter_map(|line| {
            let item = items.iter().find(|i| i.listing == line.listing)?;
            item.unit_price.times(line.quantity)
        })
        .fold(Cents(0), |sum, cost| sum.plus(cost).unwrap_or(sum))
}

/// A checkout of the cart with a fresh id, confirming `total` (what the customer was last shown).
pub async fn checkout_cart(client: &Client, total: Cents) -> Result<OrderView, ClientError> {
    match client
        .call(RequestBody::Checkout {
            checkout_id: CheckoutId::generate(),
            lines: None,
            confirmed_total: total,
        })
        .await?
    {
        Reply::Order(o) => Ok(o),
        other => panic!("unexpected checkout reply {other:?}"),
    }
}

/// A "buy now" checkout of one line with a fresh id: `quantity` of `listing`, confirming `total`.
pub fn buy_now(listing: ListingId, quantity: u32, total: Cents) -> RequestBody {
    buy_with_id(CheckoutId::generate(), listing, quantity, total)
}

/// A checkout of `quantity` of one listing under a given checkout id (a retry sends the same one).
pub fn buy_with_id(
    checkout_id: CheckoutId,
    listing: ListingId,
    quantity: u32,
    total: Cents,
) -> RequestBody {
    RequestBody::Checkout {
        checkout_id,
        confirmed_total: total,
        lines: Some(vec![CartItem { listing, quantity }]),
    }
}

/// Runs `sql` (no parameters) on the store behind `db`, either store, and returns every row with each
/// value as text (`None` for NULL): for tests that look at, or change, the database behind the
/// server's back.
pub fn store_rows(db: &std::path::Path, sql: &str) -> Vec<Vec<Option<String>>> {
    match db.to_str().filter(|s| s.starts_with("postgres://")) {
        None => {
            let conn = rusqlite::Connection::open(db).expect("open the database");
            let mut stmt = conn.prepare(sql).expect("prepare");
            let columns = stmt.column_count();
            stmt.query_map([], |r| {
                (0..columns)
                    .map(|i| {
                        Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                            rusqlite::types::Value::Null => None,
                            rusqlite::types::Value::Integer(v) => Some(v.to_string()),
                            rusqlite::types::Value::Real(v) => Some(v.to_string()),
                            rusqlite::types::Value::Text(v) => Some(v),
                            rusqlite::types::Value::Blob(v) => Some(hex_of(&v)),
                        })
                    })
                    .collect()
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
        }
        Some(url) => {
            let (url, sql) = (url.to_string(), sql.to_string());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .expect("connect to PostgreSQL");
                    tokio::spawn(connection);
                    client
                        .simple_query(&sql)
                        .await
                        .expect("query")
                        .into_iter()
                        .filter_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                                (0..row.len())
                                    .map(|i| row.get(i).map(str::to_string))
                                    .collect(),
                            ),
                            _ => None,
                        })
                        .collect()
                })
            })
            .join()
            .expect("query thread")
        }
    }
}

/// Runs a statement that changes rows (no parameters) on either store; returns how many it changed.
pub fn store_execute(db: &std::path::Path, sql: &str) -> u64 {
    match db.to_str().filter(|s| s.starts_with("postgres://")) {
        None => {
            let conn = rusqlite::Connection::open(db).expect("open the database");
            conn.execute(sql, []).expect("execute") as u64
        }
        Some(url) => {
            let (url, sql) = (url.to_string(), sql.to_string());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .expect("connect to PostgreSQL");
                    tokio::spawn(connection);
                    client.execute(&sql, &[]).await.expect("execute")
                })
            })
            .join()
            .expect("statement thread")
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
