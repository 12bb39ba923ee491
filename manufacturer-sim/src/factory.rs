//! The production loop: each product is made continuously at its own rate, whether or not the
//! distributor is reachable, and the made units go into the books once a second.
//!
//! Production is continuous in time: every tick adds `rate × elapsed` to each product's fractional
//! counter, and whole units are booked. Each manufacturer runs its own loop on its own task, so
//! manufacturers produce in parallel; within one, all products advance together.

use crate::books::Books;
use crate::catalog::Catalog;
use crate::SimError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How often made units are written to the books.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often a production summary is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One product on the production line.
struct Line {
    sku: String,
    name: String,
    /// Units per second, already scaled.
    rate: f64,
    /// Made but not yet whole units.
    fraction: f64,
    /// Booked since the last summary.
    since_log: u64,
}

/// Runs until `shutdown`, then books what was made so far.
pub(crate) async fn produce(
    name: String,
    catalog: Catalog,
    rate_scale: f64,
    books: Arc<Mutex<Books>>,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    let scale = if rate_scale.is_finite() && rate_scale >= 0.0 {
        rate_scale
    } else {
        1.0
    };
    let mut lines: Vec<Line> = catalog
        .products
        .iter()
        .map(|p| Line {
            sku: p.sku.clone(),
            name: p.name.clone(),
            rate: p.rate_per_sec * scale,
            fraction: 0.0,
            since_log: 0,
        })
        .collect();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let now = Instant::now();
        let elapsed = now.duration_since(last).as_secs_f64();
        last = now;
        let made: Vec<(String, u64)> = lines
            .iter_mut()
            .map(|l| {
                l.fraction += l.rate * elapsed;
                let whole = l.fraction.floor();
                l.fraction -= whole;
                (l.sku.clone(), whole as u64)
            })
            .collect();
        if made.iter().any(|(_, n)| *n > 0) {
            let books = books.clone();
            let added =
                tokio::task::spawn_blocking(move || crate::lock(&books).add_production(&made))
                    .await??;
            for (line, n) in lines.iter_mut().zip(added) {
                line.since_log += n;
            }
        }
        if stopping {
            return Ok(());
        }
        if last_log.elapsed() >= LOG_EVERY {
            last_log = Instant::now();
            let total: u64 = lines.iter().map(|l| l.since_log).sum();
            if total > 0 {
                let made: Vec<&Line> = lines.iter().filter(|l| l.since_log > 0).collect();
                // A short line even for big catalogs: the first four products, then a count.
                let mut parts: Vec<String> = made
                    .iter()
                    .take(4)
                    .map(|l| format!("{} +{}", l.name, l.since_log))
                    .collect();
                if made.len() > 4 {
                    parts.push(format!("{} more", made.len() - 4));
                }
                info!(
                    "{name}: produced {total} units in {}s ({})",
                    LOG_EVERY.as_secs(),
                    parts.join(", ")
                );
            }
            for l in &mut lines {
                l.since_log = 0;
            }
        }
    }
}
