//! `distributor revoke-manufacturer --name NAME`: an operator client that revokes a manufacturer's
//! credential, so that the name can register again (for example after its books were lost). It
//! presents the operator key: `--peer-key`, else `operator.key` beside `--db`.

use protocol::{Client, Hello, RequestBody, Role, PROTOCOL_VERSION};
use std::path::Path;

/// Connects to `server` as an operator and revokes `name`'s credential.
pub async fn revoke(
    server: &str,
    db: &Path,
    peer_key: Option<&str>,
    tls_ca: Option<&Path>,
    name: &str,
) -> Result<(), String> {
    let key_file = protocol::operator_key::path_for_db(db);
    let key = protocol::operator_key::resolve(peer_key, &key_file)
        .map_err(|e| format!("operator key: {e}"))?
        .ok_or_else(|| {
            format!(
                "no operator key: {} does not exist (pass --db of the running distributor, or --peer-key)",
                key_file.display()
            )
        })?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Operator,
        client: format!("distributor-revoke/{}", env!("CARGO_PKG_VERSION")),
        name: None,
        key: Some(key),
    };
    let (client, _events) = Client::connect_with(server, tls_ca, hello)
        .await
        .map_err(|e| format!("cannot connect to {server}: {e}"))?;
    client
        .call(RequestBody::RevokeManufacturer {
            name: name.to_string(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
