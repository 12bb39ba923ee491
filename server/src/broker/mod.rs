//! The message broker (NATS JetStream) that can carry sale notices to manufacturers instead of their
//! TCP links (`distributor --nats URL`; issue 14, "the original's message broker").
//!
//! - [`Broker::connect`] connects once at start, and creates or updates the stream
//!   [`protocol::broker::SALES_STREAM`] with limits (file storage, bounded bytes and age);
//! - [`relay`]: one publishing task per manufacturer link that asked for the broker
//!   ([`protocol::RequestBody::NoticesFromBroker`]);
//! - in cluster mode (a PostgreSQL store), the market's traffic between nodes: [`wire`] (the
//!   messages), [`edge`] (every node: forwarding commands, fanning out events) and [`market`] (the
//!   lease holder: answering them, publishing events).
//!
//! The broker is the transport, never the only copy: an outbox row stays until the manufacturer's
//! own cumulative `AckNotices` over TCP, exactly as without a broker. Debian's nats-server 2.9 syncs
//! JetStream files to disk only every 60 s, so after a broker restart (the client reconnects) every
//! notice not yet acked is published again; the stream's duplicate window drops the ones it still
//! has, and the manufacturer's high-water mark drops any it already applied.

pub mod edge;
pub mod market;
pub mod relay;
pub mod wire;

use async_nats::jetstream::{self, stream};
use std::time::Duration;
use tokio::sync::watch;

/// How long JetStream remembers a message id: a re-publish within it is dropped as a duplicate.
/// Re-publishes happen on a reconnect or a stalled manufacturer, within seconds of the first
/// publish; older ones land again and the manufacturer's high-water mark skips them.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The stream's limits. Notices are small (hundreds of bytes) and the outbox keeps the real copy,
/// so a bounded stream that forgets old messages loses nothing.
const MAX_BYTES: i64 = 256 * 1024 * 1024;
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong reaching the broker at start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The server did not answer.
    #[error("cannot reach the message broker at {url}: {why}")]
    Connect {
        /// The URL given with `--nats`.
        url: String,
        /// The client's reason.
        why: String,
    },
    /// JetStream refused the stream (for example JetStream is not enabled: start nats-server with
    /// `-js`).
    #[error("the message broker at {url} refused the {stream} stream: {why} (is JetStream enabled? start nats-server with -js)")]
    Stream {
        /// The URL given with `--nats`.
        url: String,
        /// The stream's name.
        stream: &'static str,
        /// JetStream's reason.
        why: String,
    },
}

/// A connection to JetStream, shared by every manufacturer's relay.
#[derive(Clone)]
pub struct Broker {
    /// The plain client, for the market's request/reply and events between nodes.
    client: async_nats::Client,
    js: jetstream::Context,
    /// Counts the client's connections: it changes on every reconnect, and each relay then
    /// publishes again what its manufacturer has not acked (the restarted server may have lost it).
    connects: watch::Receiver<u64>,
    /// The name this distributor's (or cluster's) notices sit under in the stream.
    cluster: String,
}

impl Broker {
    /// Connects to `url` and creates (or updates) the stream, for the distributor or cluster named
    /// `cluster` (see [`Broker::feed`]). Fails at once when the broker cannot be reached: a
    /// distributor told to use one must not start without it.
    pub async fn connect(url: &str, cluster: &str) -> Result<Broker, BrokerError> {
        let (connects_tx, connects) = watch::channel(0u64);
        let client = async_nats::ConnectOptions::new()
            .name(format!("distributor/{}", env!("CARGO_PKG_VERSION")))
            .connection_timeout(CONNECT_TIMEOUT)
            // Never give up after start: notices wait in the outbox while the broker is away.
            .max_reconnects(None)
            .event_callback(move |event| {
                let connects_tx = connects_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("message broker connected");
                            connects_tx.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("message broker disconnected; reconnecting")
                        }
                        other => tracing::debug!("message broker: {other}"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| BrokerError::Connect {
                url: url.to_string(),
                why: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        js.create_or_update_stream(sales_stream())
            .await
            .map_err(|e| BrokerError::Stream {
                url: url.to_string(),
                stream: protocol::broker::SALES_STREAM,
                why: e.to_string(),
            })?;
        tracing::info!(
            url,
            stream = protocol::broker::SALES_STREAM,
            "message broker ready"
        );
        Ok(Broker {
            client,
            js,
            connects,
            cluster: cluster.to_string(),
        })
    }

    /// Where the notices of the manufacturer named `manufacturer` go: under this distributor's
    /// cluster name as well as the manufacturer's, so that two distributors on one nats-server, each
    /// with a manufacturer of that name, never feed each other's.
    pub fn feed(&self, manufacturer: &str) -> protocol::broker::NoticeFeed {
        protocol::broker::NoticeFeed::new(&self.cluster, manufacturer)
    }

    /// The NATS client under the broker.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }
}

/// The default name of a cluster on NATS: after the PostgreSQL database its nodes share.
pub fn cluster_for_database(database: &str) -> String {
    format!("cds-{database}")
}

/// The default name of a one-machine distributor on NATS: after its database file, with a short
/// hash of the file's absolute path, so that two distributors whose files share a name (each in its
/// own directory) stay apart, and the same file keeps its name however it is given. A file that moves
/// gets a new name: its relay then publishes everything unacked under the new one, and the
/// manufacturer's high-water mark skips what it already applied.
pub fn cluster_for_file(db: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let name = db
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    // The directory exists (the lock file is in it); the file itself may not yet.
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let path = dir.join(db.file_name().unwrap_or_default());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("cds-{name}-{hash}")
}

/// A cluster's bus: the NATS client, and the subjects of this cluster on it.
#[derive(Clone)]
pub struct Bus {
    /// The plain client.
    pub client: async_nats::Client,
    /// This cluster's subjects.
    pub subjects: wire::Subjects,
}

/// The sale-notice stream: one subject per manufacturer, on disk, bounded.
fn sales_stream() -> stream::Config {
    stream::Config {
        name: protocol::broker::SALES_STREAM.to_string(),
        subjects: vec![protocol::broker::SALES_SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_bytes: MAX_BYTES,
        max_age: MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_file_names_one_distributor_however_its_path_is_written_and_only_that_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let here = cluster_for_file(&a.join("shop.db"));
        assert!(here.starts_with("cds-shop-"), "{here}");
        assert_eq!(
            cluster_for_file(&a.join("..").join("a").join("shop.db")),
            here
        );
        assert_ne!(cluster_for_file(&b.join("shop.db")), here);
    }
}
