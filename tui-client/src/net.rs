//! The connection task. It owns the [`protocol::Client`], so the UI never waits on the network:
//! the app sends [`NetCmd`]s and receives [`NetEvent`]s.
//!
//! - Connects over TCP, or TLS with `--tls-ca`.
//! - On loss, reports it, waits with exponential backoff (with jitter), and reconnects.
//! - Resumes the session with `Resume{token}` before anything else is sent on a new connection,
//!   so requests after a reconnect run as the same customer without a new login.
//! - Runs requests concurrently and hands each reply back with the [`Tag`] it was sent with.
//!   Requests still open when the connection drops come back as [`RequestError::Lost`].
//! - Pings while idle so a silently dead connection is noticed.

use crate::app::{NetEvent, RequestError, Tag};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use protocol::{
    Client, ClientError, ErrorCode, Events, Hello, Reply, RequestBody, Role, SessionToken,
    WireError, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Ping after this much time (the server drops idle connections).
const PING_EVERY: Duration = Duration::from_secs(10);
/// A ping not answered within this is a dead connection.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// First and largest reconnect delay.
const BACKOFF_MIN_MS: u64 = 250;
const BACKOFF_MAX_MS: u64 = 5_000;

/// What the app asks of the connection task.
#[derive(Debug)]
pub enum NetCmd {
    /// Send a request; the reply comes back as [`NetEvent::Reply`] with this tag.
    Send { tag: Tag, body: RequestBody },
    /// The token to resume with after a reconnect (`None` after logging out).
    Session(Option<SessionToken>),
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// TLS settings, when `--tls-ca` was given.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// [`Role::Customer`] for the shop; [`Role::Gateway`] for `shop serve-ssh`, which carries one
    /// customer per connection and may vouch for the customer's SSH key.
    pub role: Role,
    /// The gateway's credential (the operator key), if the distributor has one.
    pub key: Option<String>,
    /// For a gateway: where its customer connects from, said on every connection before anything
    /// else, so that the distributor throttles that address and not the gateway's.
    pub customer_ip: Option<std::net::IpAddr>,
}

impl Target {
    /// A plain customer connection over TCP.
    pub fn customer(addr: impl Into<String>) -> Self {
        Target {
            addr: addr.into(),
            tls: None,
            role: Role::Customer,
            key: None,
            customer_ip: None,
        }
    }
}

/// Builds a TLS client configuration trusting the certificates in a PEM file.
pub fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("parsing {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate in {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate found in {}", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Starts the connection task. It stops when `shutdown` is cancelled or the command sender is
/// dropped.
pub fn spawn(
    target: Target,
    events: mpsc::UnboundedSender<NetEvent>,
    shutdown: CancellationToken,
) -> (mpsc::UnboundedSender<NetCmd>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run(target, rx, events, shutdown));
    (tx, handle)
}

fn hello(target: &Target) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: target.role,
        client: format!("shop/{}", env!("CARGO_PKG_VERSION")),
        name: None,
        key: target.key.clone(),
    }
}

/// A short reason for the banner.
fn client_error(e: ClientError) -> String {
    match e {
        ClientError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "server not reachable".into()
        }
        ClientError::Io(e) => e.kind().to_string(),
        ClientError::Refused(w) => w.message,
        other => other.to_string(),
    }
}

async fn connect(target: &Target) -> Result<(Client, Events), String> {
    let Some(tls) = &target.tls else {
        return Client::connect(&target.addr, hello(target))
            .await
            .map_err(client_error);
    };
    let stream = tokio::net::TcpStream::connect(&target.addr)
        .await
        .map_err(|e| client_error(e.into()))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let host = target
        .addr
        .rsplit_once(':')
        .map_or(target.addr.as_str(), |(h, _)| h)
        .trim_matches(['[', ']']);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name {host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    Client::handshake(stream, hello(target))
        .await
        .map_err(client_error)
}

/// Connects, and for a gateway says whose address the connection counts against, before anything
/// else is sent (a login in particular).
async fn open(target: &Target) -> Result<(Client, Events), String> {
    let (client, events) = connect(target).await?;
    if let Some(ip) = target.customer_ip {
        client
            .call(RequestBody::CustomerAddress { ip })
            .await
            .map_err(|e| format!("the distributor refused the gateway: {e}"))?;
    }
    Ok((client, events))
}

/// The delay before reconnect attempt `attempt` (1-based): doubling from 250 ms up to 5 s, with up
/// to 20 % jitter so many clients do not come back in lockstep.
pub fn backoff_ms(attempt: u32, jitter: f64) -> u64 {
    let base = BACKOFF_MIN_MS
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(10))
        .min(BACKOFF_MAX_MS);
    base + (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as u64
}

fn map_result(result: Result<Reply, ClientError>) -> Result<Reply, RequestError> {
    match result {
        Ok(reply) => Ok(reply),
        Err(ClientError::Server(e)) | Err(ClientError::Refused(e)) => Err(RequestError::Server(e)),
        Err(_) => Err(RequestError::Lost),
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}

async fn run(
    target: Target,
    mut cmds: mpsc::UnboundedReceiver<NetCmd>,
    events: mpsc::UnboundedSender<NetEvent>,
    shutdown: CancellationToken,
) {
    let mut token: Option<SessionToken> = None;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let _ = events.send(NetEvent::Connecting { attempt });
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, open(&target)) => r,
        };
        let reason = match connected {
            Ok(Ok((client, pushes))) => {
                match serve(&client, pushes, &mut cmds, &events, &mut token, &shutdown).await {
                    (Ended::Shutdown, _) => return,
                    (Ended::Lost(reason), was_up) => {
                        if was_up {
                            attempt = 1;
                        }
                        reason
                    }
                }
            }
            Ok(Err(e)) => e,
            Err(_) => "connect timed out".to_string(),
        };
        let delay = backoff_ms(attempt, rand::random::<f64>());
        let _ = events.send(NetEvent::Disconnected {
            reason,
            retry_in_ms: delay,
        });
        // While waiting, requests fail at once instead of queueing behind a dead connection.
        let sleep = tokio::time::sleep(Duration::from_millis(delay));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = shutdown.cancelled() => return,
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(NetCmd::Session(t)) => token = t,
                    Some(NetCmd::Send { tag, .. }) => {
                        let _ = events.send(NetEvent::Reply { tag, result: Err(RequestError::Lost) });
                    }
                },
            }
        }
    }
}

/// Runs one connection until it ends. Returns why, and whether it got as far as `Connected`.
async fn serve(
    client: &Client,
    mut pushes: Events,
    cmds: &mut mpsc::UnboundedReceiver<NetCmd>,
    events: &mpsc::UnboundedSender<NetEvent>,
    token: &mut Option<SessionToken>,
    shutdown: &CancellationToken,
) -> (Ended, bool) {
    // Resume first, before any other request, so that every later request runs in the session.
    let session = match token.clone() {
        Some(t) => match client.call(RequestBody::Resume { token: t }).await {
            Ok(Reply::Session(info)) => {
                *token = Some(info.token.clone());
                Some(Ok(info))
            }
            Ok(_) => Some(Err(WireError::new(
                ErrorCode::Internal,
                "unexpected answer to resume",
            ))),
            Err(ClientError::Server(e)) => {
                *token = None;
                Some(Err(e))
            }
            Err(e) => return (Ended::Lost(e.to_string()), false),
        },
        None => None,
    };
    let _ = events.send(NetEvent::Connected {
        welcome: Box::new(client.welcome().clone()),
        session,
    });

    let mut open: HashMap<u64, Tag> = HashMap::new();
    let mut calls = FuturesUnordered::new();
    let mut pings = FuturesUnordered::new();
    let mut ping_timer = tokio::time::interval(PING_EVERY);
    ping_timer.tick().await;
    let reason = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return (Ended::Shutdown, true),
            cmd = cmds.recv() => match cmd {
                None => return (Ended::Shutdown, true),
                Some(NetCmd::Session(t)) => *token = t,
                Some(NetCmd::Send { tag, body }) => {
                    open.insert(tag.seq, tag);
                    let c = client.clone();
                    // FuturesUnordered polls new futures in the order they were pushed, and the
                    // client's writer lock is fair, so requests go out in the order they were made.
                    calls.push(async move { (tag, c.call(body).await) });
                }
            },
            Some((tag, result)) = calls.next(), if !calls.is_empty() => {
                open.remove(&tag.seq);
                let _ = events.send(NetEvent::Reply { tag, result: map_result(result) });
            }
            push = pushes.recv() => match push {
                Some(event) => { let _ = events.send(NetEvent::Push(event)); }
                None => break "server closed the connection".to_string(),
            },
            _ = ping_timer.tick() => {
                let c = client.clone();
                pings.push(async move {
                    matches!(tokio::time::timeout(PING_TIMEOUT, c.call(RequestBody::Ping)).await, Ok(Ok(_)))
                });
            }
            Some(ok) = pings.next(), if !pings.is_empty() => {
                if !ok {
                    break "server stopped answering".to_string();
                }
            }
        }
    };
    // Whatever was still open may or may not have taken effect; the app decides what to re-send.
    for (_, tag) in open {
        let _ = events.send(NetEvent::Reply {
            tag,
            result: Err(RequestError::Lost),
        });
    }
    (Ended::Lost(reason), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_quarter_second_and_stops_at_five_seconds() {
        assert_eq!(backoff_ms(1, 0.0), 250);
        assert_eq!(backoff_ms(2, 0.0), 500);
        assert_eq!(backoff_ms(3, 0.0), 1000);
        assert_eq!(backoff_ms(30, 0.0), 5000);
        assert_eq!(backoff_ms(30, 1.0), 6000);
    }
}
