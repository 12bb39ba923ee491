//! TLS for the distributor: `--tls-cert` and `--tls-key` (PEM files), served with rustls.

/// Loads a certificate chain and a private key (both PEM) into a TLS server configuration.
pub fn load(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::rustls::ServerConfig, String> {
    use rustls_pemfile::{certs, private_key};
    let mut cert_reader = std::io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?,
    );
    let chain = certs(&mut cert_reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate {}: {e}", cert.display()))?;
    let mut key_reader = std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?,
    );
    let key = private_key(&mut key_reader)
        .map_err(|e| format!("bad key {}: {e}", key.display()))?
        .ok_or_else(|| format!("no private key in {}", key.display()))?;
    tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS configuration: {e}"))
}
