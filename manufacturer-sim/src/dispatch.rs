//! Shipping: after a sale is in the books and acked, the goods leave the warehouse a little later
//! and the distributor is told with `ReportDispatches{orders}`, a round of them at a time.
//!
//! Pending dispatches are in the books, so a report lost to a crash or a dropped connection is sent
//! again on the next connection (the distributor treats a repeat as a no-op). One dispatcher runs
//! per connection and ends with it.

use crate::books::Books;
use crate::tally::Tally;
use protocol::{Client, ClientError, OrderId, Reply, RequestBody, MAX_DISPATCHES_PER_REPORT};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// At most this many reports (each of up to [`MAX_DISPATCHES_PER_REPORT`] orders) in flight at once,
/// so a backlog after a reconnect cannot flood the distributor.
const MAX_IN_FLIGHT: usize = 8;
/// Reports sent per round: one wave of full reports. The round's results are booked in one
/// transaction (one fsync), so a round costs the books the same whatever its size.
const MAX_PER_ROUND: usize = MAX_IN_FLIGHT * MAX_DISPATCHES_PER_REPORT;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Reports dispatches for one connection until it ends or `stop` fires.
pub(crate) async fn dispatcher(
    name: String,
    client: Client,
    books: Arc<Mutex<Books>>,
    delay: Duration,
    backlog: Vec<OrderId>,
    mut orders: mpsc::UnboundedReceiver<OrderId>,
    stop: CancellationToken,
) {
    let start = Instant::now() + delay;
    let mut queue: VecDeque<(Instant, OrderId)> = backlog.into_iter().map(|o| (start, o)).collect();
    let mut tally = Tally::new();
    loop {
        let next_due = queue.front().map(|(due, _)| *due);
        tokio::select! {
            _ = stop.cancelled() => return,
            order = orders.recv() => match order {
                // Same delay for every order, so the queue stays sorted by due time.
                Some(order) => queue.push_back((Instant::now() + delay, order)),
                None => return,
            },
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some((at, order)) = queue.front().copied() {
                    if at > now || due.len() >= MAX_PER_ROUND {
                        break;
                    }
                    queue.pop_front();
                    due.push(order);
                }
                if !report(&name, &client, &books, &due, &mut tally).await {
                    // The connection is gone; the books still list what was not reported.
                    return;
                }
            }
        }
    }
}

/// Sends the reports and books the ones the distributor took. `false` if the connection failed.
async fn report(
    name: &str,
    client: &Client,
    books: &Arc<Mutex<Books>>,
    due: &[OrderId],
    tally: &mut Tally,
) -> bool {
    use futures::StreamExt;
    // One request per chunk of the round (usually the whole round): the distributor marks them in
    // one writer job, instead of one request, savepoint and answer per order.
    let chunks: Vec<Vec<OrderId>> = due
        .chunks(MAX_DISPATCHES_PER_REPORT)
        .map(<[OrderId]>::to_vec)
        .collect();
    let results: Vec<_> = futures::stream::iter(chunks)
        .map(|orders| async move {
            let body = RequestBody::ReportDispatches {
                orders: orders.clone(),
            };
            let answer = tokio::time::timeout(CALL_TIMEOUT, client.call(body)).await;
            (orders, answer)
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await;
    let mut taken = Vec::with_capacity(due.len());
    let mut connected = true;
    for (orders, result) in results {
        match result {
            Ok(Ok(Reply::Dispatched { unknown })) => {
                // An order the distributor does not know as ours: retrying would get the same
                // answer, so it is booked as reported.
                for order in &unknown {
                    warn!("{name}: dispatch of {order} refused: no such order among ours");
                }
                taken.extend_from_slice(&orders);
            }
            Ok(Ok(other)) => {
                warn!("{name}: unexpected answer to a dispatch report: {other:?}");
                taken.extend_from_slice(&orders);
            }
            Ok(Err(ClientError::Server(e))) => {
                // The distributor refused the report as a whole; the same report would be refused
                // again.
                warn!(
                    "{name}: dispatch report of {} orders refused: {e}",
                    orders.len()
                );
                taken.extend_from_slice(&orders);
            }
            Ok(Err(_)) | Err(_) => connected = false,
        }
    }
    if !taken.is_empty() {
        let books = books.clone();
        let marked = taken.clone();
        let booked =
            tokio::task::spawn_blocking(move || crate::lock(&books).mark_dispatched(&marked)).await;
        match booked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!("{name}: cannot record dispatches: {e}");
                return false;
            }
            Err(e) => {
                error!("{name}: dispatch bookkeeping failed: {e}");
                return false;
            }
        }
        for order in &taken {
            if tally.show(1) {
                info!("{name}: dispatched {order}");
            }
        }
        if let Some((n, _)) = tally.summary() {
            info!("{name}: dispatched {n} more orders");
        }
    }
    connected
}
