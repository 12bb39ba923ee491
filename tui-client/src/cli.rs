//! The command line of `shop`, in the library so that tests can run the very same entry point in a
//! child process (cargo does not build a dependency's binary for another crate's tests).
//!
//! - `shop [--server ADDR] [--tls-ca FILE]` connects to a running distributor.
//! - `shop --demo` starts a whole system in this process (see [`crate::demo`]) and opens the shop on
//!   it, with the operator's console as a fifth tab. Quitting stops everything it started. With
//!   `--ssh ADDR` the demo also serves itself over SSH.
//! - `shop serve-ssh` serves the shop over SSH (see [`crate::serve_ssh`] and [`crate::ssh`]).
//! - `shop --operator [--peer-key K]` opens only the operator's console on a running distributor.

use crate::serve_ssh::{self, ServeSshArgs};
use crate::{demo, net, run, ssh};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "shop",
    version,
    about = "The customer terminal app of the central distribution system"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The distributor to connect to.
    #[arg(long, default_value = "127.0.0.1:7878", env = "SHOP_SERVER")]
    server: String,
    /// Connect with TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Start a complete local system (distributor, three manufacturers, simulated shoppers) and
    /// open the shop on it.
    #[arg(long)]
    demo: bool,
    /// With --demo: keep the databases here instead of a temp dir.
    #[arg(long, value_name = "DIR", requires = "demo")]
    data_dir: Option<PathBuf>,
    /// With --demo: month length in seconds.
    #[arg(long, default_value_t = 75, requires = "demo")]
    month_secs: u64,
    /// With --demo: how many simulated shoppers buy in the background.
    #[arg(long, default_value_t = 4, requires = "demo")]
    shoppers: usize,
    /// Open the operator's console instead of the shop: the month, sales, manufacturers and
    /// customers, live, with actions to close the month and set the month length.
    #[arg(long, conflicts_with = "demo")]
    operator: bool,
    /// With --operator: the operator key. Without it, the key file is read (if it exists).
    #[arg(long, requires = "operator", env = "DISTRIBUTOR_PEER_KEY")]
    peer_key: Option<String>,
    /// With --operator: the distributor's operator key file.
    #[arg(long, value_name = "FILE", requires = "operator", default_value = protocol::operator_key::DEFAULT_PATH)]
    key_file: PathBuf,
    /// Use the mouse: the wheel scrolls lists, a click on a tab opens it. Off by default, so the
    /// terminal's own text selection keeps working.
    #[arg(long)]
    mouse: bool,
    /// With --demo: also serve the demo over SSH on this address (for example 127.0.0.1:2222), and
    /// print the ssh command.
    #[arg(long, value_name = "ADDR", requires = "demo")]
    ssh: Option<SocketAddr>,
    /// Write logs to this file (the terminal belongs to the app).
    #[arg(long, value_name = "FILE", env = "SHOP_LOG")]
    log: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the shop over SSH: `ssh -p 2222 localhost` opens it, with your key as your login.
    ServeSsh(ServeSshArgs),
}

/// Runs `shop` with these arguments (the first is the program name) and returns its exit code.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if matches!(args.command, Some(Command::ServeSsh(_))) && args.log.is_none() {
        // A server: its logs go to stderr.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(protocol::logging::colour_on_stderr())
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .try_init();
    }
    if let Some(path) = &args.log {
        match std::fs::File::create(path) {
            Ok(file) => {
                let _ = tracing_subscriber::fmt()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_env_filter(
                        tracing_subscriber::EnvFilter::try_from_default_env()
                            .unwrap_or_else(|_| "info".into()),
                    )
                    .try_init();
            }
            Err(e) => {
                eprintln!("shop: cannot write log {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let tls = match &args.tls_ca {
        Some(ca) => match net::tls_config(ca) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("shop: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shop: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::ServeSsh(ssh_args)) = args.command {
        return match runtime.block_on(serve_ssh::main(ssh_args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shop serve-ssh: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(app_main(args, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn app_main(
    args: Args,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = CancellationToken::new();
    let mut operator = None;
    let (target, system, label) = if args.demo {
        let config = demo::DemoConfig {
            data_dir: args.data_dir,
            month_secs: args.month_secs,
            shoppers: args.shoppers,
        };
        let system = demo::start(config, shutdown.child_token()).await?;
        let target = net::Target::customer(system.addr.clone());
        let label = match args.ssh {
            Some(listen) => {
                let command = demo_over_ssh(&system, listen, shutdown.child_token()).await?;
                // Printed before the shop takes the screen, so it is there again after quitting.
                eprintln!("shop --demo: also open over SSH: {command}");
                format!("demo: {command}")
            }
            None => "demo".to_string(),
        };
        operator = Some(run::OperatorLink {
            target: net::Target {
                role: protocol::Role::Operator,
                key: system.operator_key.clone(),
                ..target.clone()
            },
            only: false,
        });
        (target, Some(system), Some(label))
    } else {
        (
            net::Target {
                tls,
                ..net::Target::customer(args.server)
            },
            None,
            None,
        )
    };
    if args.operator {
        let key = protocol::operator_key::resolve(args.peer_key.as_deref(), &args.key_file)
            .map_err(|e| format!("the operator key ({}): {e}", args.key_file.display()))?;
        operator = Some(run::OperatorLink {
            target: net::Target {
                role: protocol::Role::Operator,
                key,
                ..target.clone()
            },
            only: true,
        });
    }
    let result = run::run(target, label, args.mouse, operator, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(system) = system {
        system.stop().await;
    }
    Ok(result?)
}

/// Serves the demo over SSH too; returns the ssh command. The host key and the operator key live in
/// the demo's data directory.
async fn demo_over_ssh(
    system: &demo::DemoSystem,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> Result<String, Box<dyn std::error::Error>> {
    if !listen.ip().is_loopback() {
        return Err(format!("--ssh {listen}: the demo serves SSH on loopback only").into());
    }
    let key_file = protocol::operator_key::path_for_db(&system.data_dir.join("distributor.db"));
    let target = serve_ssh::gateway_target(&system.addr, None, &key_file)?;
    let host_key = ssh::host_key::load_or_create(&system.data_dir.join("ssh_host_ed25519"))?;
    let config = ssh::SshConfig {
        host_key,
        max_sessions: 200,
        max_per_address: serve_ssh::DEFAULT_MAX_PER_ADDRESS,
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let command = serve_ssh::ssh_command(listener.local_addr()?);
    let gateway = ssh::Gateway {
        target,
        label: Some("demo".into()),
    };
    tokio::spawn(async move {
        if let Err(e) = ssh::serve(listener, gateway, config, shutdown).await {
            tracing::error!("demo ssh stopped: {e}");
        }
    });
    Ok(command)
}
