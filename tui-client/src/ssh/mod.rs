//! `shop serve-ssh`: the shop over SSH, so that nobody has to install anything. `ssh -p 2222 host`
//! opens the same app as the local `shop`, on the same model, update and view.
//!
//! - [`handler`]: one SSH connection (russh): authentication, the session channel, pty, environment,
//!   and the refusal of everything else.
//! - [`shell`]: one shop on one channel: the app, its own distributor connection as a gateway, and
//!   the task that sends its output.
//! - [`backend`]: the ratatui backend that writes to the channel, with a capped output buffer.
//! - [`input`]: the channel's bytes as crossterm events (terminput).
//! - [`host_key`]: the host key file, created once.
//!
//! Security model: the SSH key is the customer's identity (its SHA-256 fingerprint); keyboard-
//! interactive without prompts is an anonymous visitor. The distributor never sees SSH: this server
//! proves itself with the operator key in the gateway role, and only a gateway may say "this
//! customer holds key F". Connections are capped overall and per address, authentication has a
//! deadline, idle connections time out, and the listener binds to loopback unless told otherwise.

pub mod backend;
pub mod handler;
pub mod host_key;
pub mod input;
pub mod shell;

use crate::net::Target;
use russh::keys::PrivateKey;
use russh::{MethodKind, MethodSet};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to authenticate.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(30);
/// A connection with no traffic from the client for this long is closed.
pub const INACTIVITY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Keepalives find clients that vanished without closing.
pub const KEEPALIVE: Duration = Duration::from_secs(60);

/// What every SSH session shares: where the distributor is, and how to prove ourselves to it.
pub struct Gateway {
    /// The distributor, in [`protocol::Role::Gateway`] with the operator key.
    pub target: Target,
    /// Shown in the header of every session.
    pub label: Option<String>,
}

/// The SSH endpoint's settings.
pub struct SshConfig {
    /// The host key (see [`host_key::load_or_create`]).
    pub host_key: PrivateKey,
    /// The most connections at once.
    pub max_sessions: usize,
    /// The most connections at once from one address.
    pub max_per_address: usize,
}

/// Counts connections per address; a slot is given back when its guard drops.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = table.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

fn russh_config(config: &SshConfig) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-shop_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH's first probe is `none`; refusing it at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![config.host_key.clone()],
        max_auth_attempts: 6,
        inactivity_timeout: Some(INACTIVITY_TIMEOUT),
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// Serves SSH on `listener` until `shutdown` is cancelled; then ends every session and returns.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    config: SshConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // crossterm drops every colour when NO_COLOR is in *this process's* environment. Over SSH each
    // session picks its own theme (its client's NO_COLOR or TERM=dumb; the plain theme sets no
    // colour at all), so the server's own environment must not decide for everyone.
    crossterm::style::force_color_output(true);
    let gateway = Arc::new(gateway);
    let ssh = Arc::new(russh_config(&config));
    // A permit is taken before a connection is served and given back when it ends, so the cap holds
    // however fast clients connect.
    let permits = Arc::new(Semaphore::new(config.max_sessions));
    let per_address = Arc::new(PerAddress::default());
    let tracker = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::info!(%peer, "ssh: at the connection limit; refused");
            continue; // dropping the socket closes it
        };
        let Some(slot) = per_address.take(peer.ip(), config.max_per_address) else {
            tracing::info!(%peer, "ssh: too many connections from this address; refused");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let stop = shutdown.child_token();
        let gateway = gateway.clone();
        let ssh = ssh.clone();
        tracker.spawn(async move {
            serve_connection(socket, peer, gateway, ssh, stop).await;
            drop((permit, slot));
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    ssh: Arc<russh::server::Config>,
    stop: CancellationToken,
) {
    let connection = handler::Connection::new(gateway, peer.ip(), stop.clone());
    let authenticated = connection.authenticated.clone();
    let session = match russh::server::run_stream(ssh, socket, connection).await {
        Ok(session) => session,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "ssh handshake failed");
            return;
        }
    };
    let handle = session.handle();
    let deadline = tokio::time::sleep(AUTH_DEADLINE);
    tokio::pin!(deadline);
    tokio::pin!(session);
    let mut deadline_passed = false;
    loop {
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "ssh session ended");
                }
                break;
            }
            _ = &mut deadline, if !deadline_passed => {
                deadline_passed = true;
                if !authenticated.load(Ordering::Relaxed) {
                    let _ = handle.disconnect(russh::Disconnect::ByApplication, "authentication took too long".into(), String::new()).await;
                }
            }
            _ = stop.cancelled() => {
                let _ = handle.disconnect(russh::Disconnect::ByApplication, "the shop is closing".into(), String::new()).await;
                break;
            }
        }
    }
}
