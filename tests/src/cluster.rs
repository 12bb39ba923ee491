//! What the cluster tests share (`e2e::cluster`, `e2e::edges`): HAProxy in front of distributor
//! nodes, rendered from `deploy/haproxy.cfg`, and what a test reads of a cluster from the outside:
//! the lease row, the units sold, and a node's operator status.

use crate::child::{free_port, ChildProcess};
use protocol::{Client, Reply, RequestBody, SystemStatus};
use std::collections::BTreeMap;
use std::path::Path;

/// HAProxy in front of some nodes, from deploy/haproxy.cfg; killed when dropped.
pub struct Haproxy {
    /// The one address everybody uses.
    pub addr: String,
    _child: ChildProcess,
}

impl Haproxy {
    /// Starts HAProxy on a free port in front of `servers`, each `(name, host:port)`.
    pub fn start(servers: &[(&str, &str)], dir: &Path) -> Haproxy {
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
        let template = std::fs::read_to_string(template).expect("deploy/haproxy.cfg");
        let addr = format!("127.0.0.1:{}", free_port());
        let servers: String = servers
            .iter()
            .map(|(name, server)| format!("    server {name} {server}\n"))
            .collect();
        let config = template
            .replace("@FRONTEND@", &addr)
            .replace("@SERVERS@\n", &servers);
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let haproxy = crate::pg::which("haproxy").expect("haproxy");
        let child = ChildProcess::spawn_bin(
            &haproxy,
            &["-db".into(), "-f".into(), path.display().to_string()],
            &dir.join("haproxy.log"),
        )
        .expect("start haproxy");
        Haproxy {
            addr,
            _child: child,
        }
    }
}

/// A connection to the cluster's PostgreSQL.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The node the lease row names: the market (`None` before the first takeover, or while
/// PostgreSQL is away).
pub async fn lease_holder(url: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    let row = client
        .query_opt("SELECT holder FROM lease WHERE id = 1", &[])
        .await
        .ok()??;
    row.get::<_, Option<String>>(0)
}

/// Units the distributor sold, by manufacturer and SKU.
pub async fn distributor_sold(url: &str) -> BTreeMap<(String, String), u64> {
    pg_client(url)
        .await
        .query(
            "SELECT m.name, l.sku, sum(ol.quantity)::bigint FROM order_lines ol
             JOIN listings l ON l.id = ol.listing_id JOIN manufacturers m ON m.id = ol.manufacturer_id
             GROUP BY m.name, l.sku",
            &[],
        )
        .await
        .expect("sold by sku")
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64))
        .collect()
}

/// The operator status a node (or HAProxy) answers with, if it answers.
pub async fn operator_status(addr: &str) -> Option<SystemStatus> {
    let hello = crate::harness::operator_hello(crate::harness::operator_key());
    let (op, _) = Client::connect(addr, hello).await.ok()?;
    match op.call(RequestBody::Status).await.ok()? {
        Reply::Status(s) => Some(*s),
        _ => None,
    }
}
