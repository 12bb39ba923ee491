//! The connection to the distributor, in the manufacturer role: connect, reconnect with backoff,
//! apply and ack notices, answer offer requests.
//!
//! Ordering rules that make the books exact:
//! - notices are applied (and the high-water mark moved) in one transaction, and acked only after
//!   it commits; everything waiting is applied as one batch with one cumulative ack;
//! - an offer is recorded in the books before `SubmitOffer` is sent, and a repeated request for the
//!   same month re-sends the recorded offer;
//! - an offer bigger than one frame goes as `SubmitOfferPart`s that the distributor puts back
//!   together into one offer; a refusal of the offer itself (bad lines, a frame it cannot read) is
//!   permanent: the manufacturer says so and stops, instead of reconnecting and offering again.

use crate::books::{AppliedNotice, Books, RecordedOffer};
use crate::dispatch::dispatcher;
use crate::tally::Tally;
use crate::SimError;
use async_nats::jetstream::consumer;
use protocol::broker::NoticeFeed;
use protocol::paging::offer_requests;
use protocol::{
    Client, ClientError, ErrorCode, Event, Events, Hello, MonthId, Notice, Reply, RequestBody,
    Role, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Most notices applied in one transaction.
const MAX_BATCH: usize = 4096;
/// A request the distributor has not answered in this time means the connection is dead.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keeps an idle connection under the distributor's idle timeout, and notices a dead one.
const PING_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Everything one manufacturer's connection needs.
pub(crate) struct Link {
    pub name: String,
    pub server: String,
    pub key: Option<String>,
    /// A CA certificate (PEM) to trust: connect over TLS.
    pub tls_ca: Option<std::path::PathBuf>,
    pub offer_share: f64,
    /// `None`: do not report dispatches.
    pub dispatch_delay: Option<Duration>,
    pub books: Arc<Mutex<Books>>,
    /// SKU → product name, for log lines.
    pub product_names: HashMap<String, String>,
    /// With `--nats`: notices come from the broker, not as events on the link.
    pub broker: Option<crate::jetstream::Broker>,
}

/// Why a connection ended.
enum Ended {
    /// Shutdown was requested.
    Shutdown,
    /// The connection failed; reconnect.
    Lost(String),
}

/// Connects, serves, and reconnects with backoff until `shutdown`. Returns an error only for what
/// reconnecting cannot fix: the books failing, or the distributor refusing our name or key.
pub(crate) async fn serve(link: Link, shutdown: CancellationToken) -> Result<(), SimError> {
    let name = &link.name;
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let books = link.books.clone();
        let stored =
            tokio::task::spawn_blocking(move || crate::lock(&books).credential()).await??;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Manufacturer,
            client: format!("manufacturer-sim/{}", env!("CARGO_PKG_VERSION")),
            name: Some(link.name.clone()),
            key: link.key.clone().or(stored),
        };
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect_with(&link.server, link.tls_ca.as_deref(), hello)) => r,
        };
        let problem = match attempt {
            Ok(Ok((client, events))) => {
                backoff = BACKOFF_MIN;
                failures = 0;
                let id = client
                    .welcome()
                    .manufacturer
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "?".into());
                info!("{name}: connected to {} as {id}", link.server);
                if let Some(token) = client.welcome().credential.clone() {
                    // Kept before anything else happens on this link: without it the name is lost.
                    let books = link.books.clone();
                    tokio::task::spawn_blocking(move || crate::lock(&books).set_credential(&token))
                        .await??;
                    info!("{name}: registered; the distributor's credential for this name is kept in the books");
                }
                match session(&link, client, events, &shutdown).await? {
                    Ended::Shutdown => return Ok(()),
                    Ended::Lost(reason) => format!("connection lost: {reason}"),
                }
            }
            Ok(Err(ClientError::Refused(e)))
                if matches!(
                    e.code,
                    ErrorCode::VersionMismatch
                        | ErrorCode::BadHandshake
                        | ErrorCode::WrongCredential
                ) =>
            {
                return Err(SimError::Refused(format!("{name}: {e}")));
            }
            Ok(Err(e)) => format!("cannot reach distributor at {}: {e}", link.server),
            Err(_) => format!(
                "distributor at {} did not answer the handshake",
                link.server
            ),
        };
        failures += 1;
        // The first failure and then every tenth, so a long outage does not fill the terminal.
        if failures == 1 || failures.is_multiple_of(10) {
            warn!(
                "{name}: {problem}; retrying (every ≤{}s, production continues)",
                BACKOFF_MAX.as_secs()
            );
        } else {
            debug!("{name}: {problem}");
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % 100);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff + jitter) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Serves one connection until it ends.
async fn session(
    link: &Link,
    client: Client,
    mut events: Events,
    shutdown: &CancellationToken,
) -> Result<Ended, SimError> {
    let name = &link.name;
    let (orders_tx, orders_rx) = mpsc::unbounded_channel();
    let stop_dispatch = shutdown.child_token();
    // Ends the dispatcher with this connection, however the function returns.
    let _dispatch_guard = stop_dispatch.clone().drop_guard();
    if let Some(delay) = link.dispatch_delay {
        let books = link.books.clone();
        let backlog =
            tokio::task::spawn_blocking(move || crate::lock(&books).pending_dispatches()).await??;
        if !backlog.is_empty() {
            info!("{name}: {} dispatch report(s) still to send", backlog.len());
        }
        tokio::spawn(dispatcher(
            name.clone(),
            client.clone(),
            link.books.clone(),
            delay,
            backlog,
            orders_rx,
            stop_dispatch,
        ));
    }
    // Where the distributor publishes this link's notices, and the subscription to them.
    let (route, mut feed) = match &link.broker {
        Some(broker) => match from_broker_from_now_on(link, &client, broker).await? {
            Ok((route, feed)) => (Some(route), Some(feed)),
            Err(reason) => return Ok(Ended::Lost(reason)),
        },
        None => (None, None),
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut summary = tokio::time::interval(Duration::from_secs(1));
    let mut sales = Tally::new();
    let mut held: Option<Event> = None;
    loop {
        let event = match held.take() {
            Some(e) => e,
            None => tokio::select! {
                _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
                _ = ping.tick() => {
                    if let Err(reason) = call(&client, RequestBody::Ping).await {
                        return Ok(Ended::Lost(reason));
                    }
                    continue;
                }
                _ = summary.tick() => {
                    if let Some((n, units)) = sales.summary() {
                        info!("{name}: … and {n} more sales ({units} units)");
                    }
                    continue;
                }
                e = events.recv() => match e {
                    Some(e) => e,
                    None => return Ok(Ended::Lost("closed by the distributor".into())),
                },
                messages = next_broker_batch(&mut feed) => {
                    let outcome = tokio::select! {
                        _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
                        r = from_broker(link, &client, messages, &orders_tx, &mut sales, (route.as_ref(), &mut feed)) => r?,
                    };
                    if let Err(reason) = outcome {
                        return Ok(Ended::Lost(reason));
                    }
                    continue;
                }
            },
        };
        let handle = async {
            Ok::<_, SimError>(match event {
                Event::Notice(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match events.try_recv() {
                            Ok(Event::Notice(n)) => batch.push(n),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    apply_and_ack(link, &client, batch, &orders_tx, &mut sales).await?
                }
                Event::OfferRequested { month } => offer(link, &client, month).await?,
                Event::MonthOpened(view) => {
                    info!("{name}: {} opened", view.id);
                    Ok(())
                }
                Event::MonthClosed { month, reason } => {
                    info!("{name}: {month} closed ({reason:?})");
                    Ok(())
                }
                _ => Ok(()),
            })
        };
        // A request in flight must not hold up shutdown; whatever was committed stays committed,
        // and an unsent ack is simply redelivered next time.
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
            r = handle => r?,
        };
        if let Err(reason) = outcome {
            return Ok(Ended::Lost(reason));
        }
    }
}

/// Tells the distributor to send this link's notices through the broker, then subscribes to where
/// it says they go. The outer error is fatal (a distributor without a broker); the inner one drops
/// the connection.
async fn from_broker_from_now_on(
    link: &Link,
    client: &Client,
    broker: &crate::jetstream::Broker,
) -> Result<Result<(NoticeFeed, consumer::pull::Stream), String>, SimError> {
    let route = match call(client, RequestBody::NoticesFromBroker).await {
        Err(reason) => return Ok(Err(reason)),
        Ok(Err(ClientError::Server(e))) => {
            return Err(SimError::Refused(format!(
                "{}: the distributor does not send notices through the broker: {}",
                link.name, e.message
            )))
        }
        Ok(Err(e)) => return Ok(Err(e.to_string())),
        Ok(Ok(Reply::NoticeFeed(route))) => route,
        Ok(Ok(other)) => {
            return Ok(Err(format!(
                "the distributor answered NoticesFromBroker with {other:?}"
            )))
        }
    };
    let subscribed = broker.subscribe(&route).await;
    if subscribed.is_ok() {
        info!(
            "{}: notices come from the broker ({} through consumer {})",
            link.name, route.subject, route.consumer
        );
    }
    Ok(subscribed.map(|feed| (route, feed)))
}

/// The next batch from the broker; never resolves without one.
async fn next_broker_batch(
    feed: &mut Option<consumer::pull::Stream>,
) -> Result<Vec<async_nats::jetstream::Message>, String> {
    match feed {
        Some(messages) => crate::jetstream::next_batch(messages).await,
        None => std::future::pending().await,
    }
}

/// Applies a batch from the broker exactly as one from the link (one transaction, one cumulative
/// ack over TCP), then acks its messages on the broker. A failed subscription is made again.
async fn from_broker(
    link: &Link,
    client: &Client,
    messages: Result<Vec<async_nats::jetstream::Message>, String>,
    orders: &mpsc::UnboundedSender<protocol::OrderId>,
    sales: &mut Tally,
    (route, feed): (Option<&NoticeFeed>, &mut Option<consumer::pull::Stream>),
) -> Result<Result<(), String>, SimError> {
    let name = &link.name;
    let messages = match messages {
        Ok(messages) => messages,
        Err(reason) => {
            debug!("{name}: broker messages: {reason}; subscribing again");
            // A few tries before the link is dropped and made again (which subscribes afresh).
            let (Some(broker), Some(route)) = (&link.broker, route) else {
                return Ok(Ok(()));
            };
            let mut last = reason;
            for _ in 0..3 {
                tokio::time::sleep(BACKOFF_MAX).await;
                match broker.subscribe(route).await {
                    Ok(messages) => {
                        *feed = Some(messages);
                        return Ok(Ok(()));
                    }
                    Err(reason) => last = reason,
                }
            }
            return Ok(Err(last));
        }
    };
    // Read fresh for every batch: a notice that came over the link meanwhile moved it too.
    let books = link.books.clone();
    let high_water =
        tokio::task::spawn_blocking(move || crate::lock(&books).high_water()).await??;
    let mut batch = crate::jetstream::sort(name, messages, high_water).await;
    let notices = std::mem::take(&mut batch.notices);
    let outcome = if notices.is_empty() {
        Ok(())
    } else {
        apply_and_ack(link, client, notices, orders, sales).await?
    };
    // Committed (apply_and_ack returned without a books error): the broker may forget them.
    batch.settle(name).await;
    Ok(outcome)
}

/// A request with a timeout. `Err` carries a reason when the connection should be dropped.
async fn call(client: &Client, body: RequestBody) -> Result<Result<Reply, ClientError>, String> {
    match tokio::time::timeout(CALL_TIMEOUT, client.call(body)).await {
        Err(_) => Err("the distributor stopped answering".into()),
        Ok(Err(e @ ClientError::Server(_))) => Ok(Err(e)),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(reply)) => Ok(Ok(reply)),
    }
}

/// Applies a batch of notices in one transaction, then acks once. The outer error is fatal (books);
/// the inner one drops the connection.
async fn apply_and_ack(
    link: &Link,
    client: &Client,
    batch: Vec<Notice>,
    orders: &mpsc::UnboundedSender<protocol::OrderId>,
    sales: &mut Tally,
) -> Result<Result<(), String>, SimError> {
    let name = &link.name;
    let books = link.books.clone();
    let applied =
        tokio::task::spawn_blocking(move || crate::lock(&books).apply_notices(&batch)).await??;
    for seq in &applied.gaps {
        warn!("{name}: notice {seq} skips ahead of our books; earlier notices were never received");
    }
    if applied.duplicates > 0 {
        debug!(
            "{name}: skipped {} notice(s) already in the books",
            applied.duplicates
        );
    }
    for notice in &applied.notices {
        match notice {
            AppliedNotice::Sale {
                seq,
                month,
                order,
                lines,
            } => {
                let units: u64 = lines.iter().map(|(_, q)| u64::from(*q)).sum();
                if sales.show(units) {
                    let what: Vec<String> = lines
                        .iter()
                        .map(|(sku, q)| {
                            format!("{q} × {}", link.product_names.get(sku).unwrap_or(sku))
                        })
                        .collect();
                    info!(
                        "{name}: sale {order} in {month}: {} ({seq})",
                        what.join(", ")
                    );
                }
            }
            AppliedNotice::Settlement {
                seq,
                month,
                reason,
                sold,
                returned,
                mismatches,
            } => {
                info!(
                    "{name}: settlement for {month} ({reason:?}): {sold} sold, {returned} back in stock ({seq})"
                );
                for m in mismatches {
                    warn!("{name}: settlement disagrees with our books: {m}");
                }
            }
        }
    }
    if applied.high_water.0 == 0 {
        return Ok(Ok(()));
    }
    // Only now, with the batch committed, may the distributor forget these notices.
    match call(
        client,
        RequestBody::AckNotices {
            through: applied.high_water,
        },
    )
    .await
    {
        Err(reason) => return Ok(Err(reason)),
        Ok(Err(e)) => warn!("{name}: ack through {} refused: {e}", applied.high_water),
        Ok(Ok(_)) => debug!("{name}: acked through {}", applied.high_water),
    }
    if link.dispatch_delay.is_some() {
        for notice in &applied.notices {
            if let AppliedNotice::Sale { order, .. } = notice {
                let _ = orders.send(*order);
            }
        }
    }
    Ok(Ok(()))
}

/// Records (or looks up) the offer for `month`, then sends it.
async fn offer(
    link: &Link,
    client: &Client,
    month: MonthId,
) -> Result<Result<(), String>, SimError> {
    let name = &link.name;
    let books = link.books.clone();
    let share = link.offer_share;
    let recorded: RecordedOffer =
        tokio::task::spawn_blocking(move || crate::lock(&books).offer_for(month, share)).await??;
    for m in &recorded.lapsed {
        info!("{name}: offer for {m} was never settled; its unsold units are back in stock");
    }
    let units: u64 = recorded.lines.iter().map(|l| u64::from(l.quantity)).sum();
    let what = if recorded.lines.len() <= 4 {
        recorded
            .lines
            .iter()
            .map(|l| format!("{} {} @ {}", l.product, l.quantity, l.unit_price))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!("{} products, {units} units", recorded.lines.len())
    };
    let again = if recorded.fresh {
        ""
    } else {
        " (again, as recorded)"
    };
    info!("{name}: offering for {month}{again}: {what}");
    let mut answer = Ok(Reply::Done);
    for request in offer_requests(month, recorded.lines) {
        answer = match tokio::time::timeout(CALL_TIMEOUT, client.call(request)).await {
            Err(_) => return Ok(Err("the distributor stopped answering".into())),
            Ok(result) => result,
        };
        if answer.is_err() {
            break;
        }
    }
    match answer {
        Ok(Reply::OfferAccepted { listings, .. }) => {
            let books = link.books.clone();
            tokio::task::spawn_blocking(move || crate::lock(&books).mark_offer_accepted(month))
                .await??;
            info!(
                "{name}: offer for {month} accepted: {} listing(s)",
                listings.len()
            );
        }
        Ok(other) => warn!("{name}: unexpected answer to the offer for {month}: {other:?}"),
        Err(e) => {
            if let Some(refusal) = permanent_refusal(&e) {
                return Err(SimError::OfferRefused(format!(
                    "{name}: offer for {month}: {refusal}; fix the catalog and start again"
                )));
            }
            match e {
                // The units stay set aside; they come back when the next month's request lapses
                // this offer.
                ClientError::Server(e) => warn!("{name}: offer for {month} not taken: {e}"),
                e => return Ok(Err(e.to_string())),
            }
        }
    }
    Ok(Ok(()))
}

/// Why an offer failed, when offering the same catalog again cannot change it: the lines break
/// the distributor's rules, it could not read the frame and closed the connection, or the frame
/// could not even be written. Anything else (a month that moved on, a lost connection) is worth
/// another try.
fn permanent_refusal(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Server(w) if w.code == ErrorCode::InvalidInput => Some(w.message.clone()),
        ClientError::Closed(Some(w)) if w.code == ErrorCode::Malformed => Some(w.message.clone()),
        ClientError::Codec(c) => Some(c.to_string()),
        _ => None,
    }
}
