//! What the operator subcommands share: the connection flags, finding the operator key, and one
//! request over a fresh operator connection.

use protocol::operator_key;
use protocol::{Client, Hello, Reply, RequestBody, Role, PROTOCOL_VERSION};
use std::path::PathBuf;

/// Where the distributor is and how to prove we are its operator.
#[derive(clap::Args)]
pub struct OperatorArgs {
    /// The distributor's address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub server: String,
    /// The operator key. Without it, the key file beside --db is read (if it exists).
    #[arg(long, env = "DISTRIBUTOR_PEER_KEY")]
    pub peer_key: Option<String>,
    /// The distributor's database; only used to find its `operator.key` beside it.
    #[arg(long, default_value = "data/distributor.db")]
    pub db: PathBuf,
}

/// An operator connection, ready for requests.
pub struct Operator {
    client: Client,
}

impl Operator {
    /// Connects as operator with the resolved key.
    pub async fn connect(args: &OperatorArgs, program: &str) -> Result<Operator, String> {
        let key_file = operator_key::path_for_db(&args.db);
        let key = operator_key::resolve(args.peer_key.as_deref(), &key_file)
            .map_err(|e| format!("cannot read the operator key ({}): {e}", key_file.display()))?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Operator,
            client: format!("{program}/{}", env!("CARGO_PKG_VERSION")),
            name: None,
            key,
        };
        let (client, _events) = Client::connect(&args.server, hello)
            .await
            .map_err(|e| format!("cannot connect to {} as operator: {e}", args.server))?;
        Ok(Operator { client })
    }

    /// Sends one request and waits for its answer.
    pub async fn call(&self, body: RequestBody) -> Result<Reply, String> {
        self.client.call(body).await.map_err(|e| e.to_string())
    }

    /// The current status.
    pub async fn status(&self) -> Result<protocol::SystemStatus, String> {
        match self.call(RequestBody::Status).await? {
            Reply::Status(status) => Ok(*status),
            other => Err(format!("unexpected answer to Status: {other:?}")),
        }
    }
}

/// Runs an async operator command on a small runtime of its own.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(f)
}
