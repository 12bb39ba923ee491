//! `shop serve-ssh`: the command line of the SSH endpoint (see [`crate::ssh`]).

use crate::net::{self, Target};
use crate::ssh::{self, Gateway, SshConfig};
use protocol::{operator_key, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// The most connections from one address at once, unless `--max-per-address` says otherwise.
pub const DEFAULT_MAX_PER_ADDRESS: usize = 20;

/// `shop serve-ssh`.
#[derive(Debug, clap::Args)]
pub struct ServeSshArgs {
    /// The distributor to connect each session to.
    #[arg(long, default_value = "127.0.0.1:7878", env = "SHOP_SERVER")]
    pub server: String,
    /// Where to accept SSH connections. Addresses outside loopback need --public.
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub listen: SocketAddr,
    /// The host key (OpenSSH format). Created with mode 0600 on the first start, then kept.
    #[arg(long, value_name = "FILE", default_value = "data/ssh_host_ed25519")]
    pub host_key: PathBuf,
    /// The most SSH connections at once.
    #[arg(long, default_value_t = 200)]
    pub max_sessions: usize,
    /// The most SSH connections at once from one address.
    #[arg(long, default_value_t = DEFAULT_MAX_PER_ADDRESS)]
    pub max_per_address: usize,
    /// The credential this gateway presents to the distributor. Default: the operator key file.
    #[arg(long, env = "DISTRIBUTOR_PEER_KEY", hide_env_values = true)]
    pub peer_key: Option<String>,
    /// The operator key file, written by the distributor beside its database.
    #[arg(long, value_name = "FILE", default_value = operator_key::DEFAULT_PATH)]
    pub key_file: PathBuf,
    /// Connect to the distributor with TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Allow a non-loopback --listen address: then anyone who can reach it can shop here.
    #[arg(long)]
    pub public: bool,
}

/// The distributor as a gateway sees it: the gateway role, with the operator key.
pub fn gateway_target(
    addr: &str,
    peer_key: Option<&str>,
    key_file: &Path,
) -> Result<Target, String> {
    let key = operator_key::resolve(peer_key, key_file)
        .map_err(|e| format!("reading the operator key {}: {e}", key_file.display()))?;
    Ok(Target {
        role: Role::Gateway,
        key,
        ..Target::customer(addr)
    })
}

/// Binds the SSH listener and serves until `shutdown`. `label` goes in every session's header.
pub async fn serve(
    listen: SocketAddr,
    target: Target,
    label: Option<String>,
    config: SshConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    eprintln!(
        "shop serve-ssh: listening on {local}; connect with: {}",
        ssh_command(local)
    );
    ssh::serve(listener, Gateway { target, label }, config, shutdown).await
}

/// The command a user types to reach `addr`.
pub fn ssh_command(addr: SocketAddr) -> String {
    let host = if addr.ip().is_loopback() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    match addr.port() {
        22 => format!("ssh {host}"),
        port => format!("ssh -p {port} {host}"),
    }
}

/// Runs `shop serve-ssh` until SIGINT or SIGTERM.
pub async fn main(args: ServeSshArgs) -> Result<(), String> {
    if !args.listen.ip().is_loopback() && !args.public {
        return Err(format!(
            "refusing to listen on {} outside loopback: pass --public to let anyone who can reach it shop",
            args.listen
        ));
    }
    let mut target = gateway_target(&args.server, args.peer_key.as_deref(), &args.key_file)?;
    if let Some(ca) = &args.tls_ca {
        target.tls = Some(net::tls_config(ca)?);
    }
    let host_key = ssh::host_key::load_or_create(&args.host_key)
        .map_err(|e| format!("host key {}: {e}", args.host_key.display()))?;
    let config = SshConfig {
        host_key,
        max_sessions: args.max_sessions.max(1),
        max_per_address: args.max_per_address.max(1),
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        stop.cancel();
    });
    serve(args.listen, target, Some("ssh".into()), config, shutdown)
        .await
        .map_err(|e| format!("serving SSH on {}: {e}", args.listen))
}
