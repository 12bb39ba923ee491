//! Opening a client's byte stream: TCP without Nagle's delay, wrapped in TLS when a CA is given.
//!
//! Shared by [`crate::client::Client`] and [`crate::direct::DirectClient`], so both connect, verify
//! the server's certificate and name it the same way.

use crate::client::ClientError;
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

/// A connected byte stream, plain or TLS.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// Connects to `addr` over plain TCP, with `TCP_NODELAY` (one small request must not wait for more).
pub(crate) async fn tcp(addr: &str) -> Result<TcpStream, ClientError> {
    tcp_from(addr, None).await
}

/// As [`tcp`], from the local address `source` when one is given (a load generator playing
/// customers at many addresses), else from wherever the kernel picks.
pub(crate) async fn tcp_from(
    addr: &str,
    source: Option<SocketAddr>,
) -> Result<TcpStream, ClientError> {
    let stream = match source {
        None => TcpStream::connect(addr).await?,
        Some(source) => {
            let server = tokio::net::lookup_host(addr)
                .await?
                .find(|a| a.is_ipv4() == source.is_ipv4())
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{addr} has no address of the family of {source}"
                    ))
                })?;
            let socket = match source {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.bind(source)?;
            socket.connect(server).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects over TLS when `tls_ca` names a CA certificate (PEM) to trust, else over plain TCP.
/// The server's certificate must be valid for the host part of `addr`.
pub(crate) async fn dial(
    addr: &str,
    source: Option<SocketAddr>,
    tls_ca: Option<&Path>,
) -> Result<Box<dyn Transport>, ClientError> {
    let Some(ca) = tls_ca else {
        return Ok(Box::new(tcp_from(addr, source).await?));
    };
    let connector = tls_connector(ca)?;
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| ClientError::Tls(format!("bad server name: {e}")))?;
    let stream = tcp_from(addr, source).await?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

/// A TLS connector that trusts the CA certificates in a PEM file.
fn tls_connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, ClientError> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let file = std::fs::File::open(ca)
        .map_err(|e| ClientError::Tls(format!("cannot read {}: {e}", ca.display())))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("bad CA file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("bad CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(format!(
            "no certificate in {}",
            ca.display()
        )));
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}
