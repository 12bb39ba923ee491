//! Simulated manufacturers: they produce goods in parallel, offer them to the distributor every
//! month, and keep their own books of what was produced, offered, sold and returned.
//!
//! # Layout
//! - [`catalog`]: what a manufacturer makes. The JSON catalog format and the built-in presets
//!   (`orchard`, `dairy`, `bakery`, `bulk`).
//! - `factory`: the production loop. Units are made continuously at each product's rate, up to
//!   capacity, and booked once a second.
//! - [`books`]: the manufacturer's own SQLite file. Notices are applied exactly once by sequence
//!   number, and offers are recorded before they are sent. It also keeps the credential the
//!   distributor issued to the name.
//! - `books_lock`: one lock file per books file, so a second process cannot share them.
//! - `link`: the connection to the distributor. It reconnects with backoff, applies notices in
//!   batches with one ack each, and answers offer requests.
//! - `jetstream`: with `--nats`, notices from the broker: a durable pull consumer, applied in seq
//!   order against the books' high-water mark, acked on the broker only after the books commit.
//! - `dispatch`: reports `ReportDispatches` a little after confirmed sales, a round at a time.
//! - `pricing`: each month's price, a deterministic drift of ±10% around the base price.
//! - [`report`]: read-only totals, the data behind `manufacturer-sim report`.
//! - [`cli`]: the command line (`src/main.rs` only calls it), so tests can host it in a child.
//!
//! # Use as a library
//! ```no_run
//! # async fn demo() -> Result<(), manufacturer_sim::SimError> {
//! use manufacturer_sim::{preset, run, SimConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let catalog = preset("orchard").expect("built-in preset");
//! let config = SimConfig::new("127.0.0.1:7878", "orchard", "orchard.db", catalog);
//! run(config, shutdown).await?;
//! let totals = manufacturer_sim::report(std::path::Path::new("orchard.db"))?;
//! # Ok(()) }
//! ```

pub mod books;
mod books_lock;
pub mod catalog;
pub mod cli;
mod dispatch;
mod factory;
mod jetstream;
mod link;
mod pricing;
pub mod report;
mod tally;

pub use books::{Books, BooksError};
pub use catalog::{preset, Catalog, CatalogError, Product, PRESETS};
pub use pricing::month_price;
pub use report::{ManufacturerReport, MonthReport, ProductReport, Report, ReportError};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// What went wrong running a manufacturer.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The books could not be read or written.
    #[error(transparent)]
    Books(#[from] BooksError),
    /// The catalog is not usable.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The report could not be made.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The distributor refused this manufacturer in a way reconnecting cannot fix (version, or the
    /// name is registered to another credential).
    #[error("distributor refused the connection: {0}")]
    Refused(String),
    /// The configuration makes no sense.
    #[error("{0}")]
    Config(String),
    /// A task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The distributor refused this manufacturer's offer for a reason that offering again cannot
    /// fix (the catalog breaks its rules). Retrying would loop forever, so the manufacturer stops.
    #[error("the distributor refused the offer: {0}")]
    OfferRefused(String),
}

/// One manufacturer's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The distributor's address, `host:port`.
    pub server: String,
    /// The stable name the distributor knows this manufacturer by; also its key in the books.
    pub name: String,
    /// The books file. Several manufacturers may share one.
    pub db: PathBuf,
    /// What it makes.
    pub catalog: Catalog,
    /// Multiplies every production rate.
    pub rate_scale: f64,
    /// The share of the stock offered each month, `0.0..=1.0`.
    pub offer_share: f64,
    /// How long after a confirmed sale the goods are dispatched; `None` never reports dispatch.
    pub dispatch_delay: Option<Duration>,
    /// This manufacturer's credential, overriding the one kept in the books. Normally `None`: the
    /// first connection registers the name and the books keep what the distributor issued.
    pub key: Option<String>,
    /// Connect over TLS, trusting this CA certificate (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Take sale notices from this NATS server's JetStream (`--nats URL`) instead of the link.
    pub nats: Option<String>,
}

impl SimConfig {
    /// A manufacturer with the defaults: rates as in the catalog, the whole stock offered, dispatch
    /// 1.5 s after a confirmed sale, no key.
    pub fn new(
        server: impl Into<String>,
        name: impl Into<String>,
        db: impl Into<PathBuf>,
        catalog: Catalog,
    ) -> Self {
        SimConfig {
            server: server.into(),
            name: name.into(),
            db: db.into(),
            catalog,
            rate_scale: 1.0,
            offer_share: 1.0,
            dispatch_delay: Some(Duration::from_millis(1500)),
            key: None,
            tls_ca: None,
            nats: None,
        }
    }
}

/// Runs one manufacturer until `shutdown`: production on one task, the distributor link on
/// another. Returns early only on an error that retrying cannot fix.
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> Result<(), SimError> {
    if config.name.trim().is_empty() {
        return Err(SimError::Config("a manufacturer needs a name".into()));
    }
    if !(0.0..=1.0).contains(&config.offer_share) {
        return Err(SimError::Config(format!(
            "offer share must be between 0.0 and 1.0, got {}",
            config.offer_share
        )));
    }
    config.catalog.validate(&config.name)?;
    let name = config.name.clone();
    let (db, catalog) = (config.db.clone(), config.catalog.clone());
    let books = tokio::task::spawn_blocking(move || -> Result<Books, BooksError> {
        let mut books = Books::open(&db, &name)?;
        books.sync_catalog(&catalog)?;
        Ok(books)
    })
    .await??;
    let hw = books.high_water()?;
    let units: u64 = books.stock()?.iter().map(|s| s.in_stock).sum();
    info!(
        "{}: books {} open: {units} units in stock, notices applied through {hw}",
        config.name,
        config.db.display()
    );
    let books = Arc::new(Mutex::new(books));
    let broker = match &config.nats {
        Some(url) => Some(jetstream::Broker::connect(url, &config.name).await?),
        None => None,
    };
    let stop = shutdown.child_token();
    let link = link::Link {
        name: config.name.clone(),
        server: config.server.clone(),
        key: config.key.clone(),
        tls_ca: config.tls_ca.clone(),
        offer_share: config.offer_share,
        dispatch_delay: config.dispatch_delay,
        books: books.clone(),
        product_names: config
            .catalog
            .products
            .iter()
            .map(|p| (p.sku.clone(), p.name.clone()))
            .collect::<HashMap<_, _>>(),
        broker,
    };
    let mut factory = tokio::spawn(factory::produce(
        config.name.clone(),
        config.catalog.clone(),
        config.rate_scale,
        books,
        stop.clone(),
    ));
    let mut connection = tokio::spawn(link::serve(link, stop.clone()));
    // Whichever ends first (an error, or shutdown) stops the other.
    let (first, second) = tokio::select! {
        r = &mut factory => (r, None),
        r = &mut connection => (r, Some(())),
    };
    stop.cancel();
    let other = if second.is_some() {
        factory.await
    } else {
        connection.await
    };
    first??;
    other??;
    info!("{}: stopped", config.name);
    Ok(())
}

/// Runs several manufacturers in one process, each on its own tasks, until `shutdown` or until one
/// fails (which stops the others).
pub async fn run_all(configs: Vec<SimConfig>, shutdown: CancellationToken) -> Result<(), SimError> {
    let stop = shutdown.child_token();
    let mut set = tokio::task::JoinSet::new();
    for config in configs {
        set.spawn(run(config, stop.clone()));
    }
    let mut failure = None;
    while let Some(done) = set.join_next().await {
        let result = done.map_err(SimError::from).and_then(|r| r);
        if let Err(e) = result {
            error!("{e}");
            stop.cancel();
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// The totals in a books file, read-only. See [`report::report`].
pub fn report(db: &Path) -> Result<Report, SimError> {
    Ok(report::report(db)?)
}

/// Locks the books. A panic while holding the lock leaves SQLite consistent (the transaction rolls
/// back on drop), so a poisoned lock is safe to keep using.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
