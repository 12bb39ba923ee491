//! The operator key: the one secret behind every operator-grade role (operator tools today, gateways
//! such as `shop serve-ssh` next).
//!
//! At start the distributor takes `--peer-key` / `DISTRIBUTOR_PEER_KEY` if given (an empty one is a
//! configuration error), else reads `operator.key` beside the database, writing a random 256-bit key
//! there with mode 0600 on first start. Tools run by the same user on the same machine read that
//! file, so nothing needs a flag. Only its SHA-256 stays in memory.

use protocol::{operator_key, ErrorCode, WireError};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key an operator-grade connection must present, as a hash.
#[derive(Clone)]
pub struct OperatorKey {
    hash: [u8; 32],
    /// Where it came from, for the start-up log and for refusals.
    pub source: String,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why there is no usable operator key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `--peer-key` or `DISTRIBUTOR_PEER_KEY` is set but empty.
    #[error("the operator key (--peer-key / DISTRIBUTOR_PEER_KEY) is empty; set a real key or unset it to use {0}")]
    Empty(String),
    /// The key file could not be read or written, or is open to other users.
    #[error("operator key file {}: {why}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl OperatorKey {
    /// Resolves the key for a distributor whose database is `db`.
    pub fn establish(db: &Path, explicit: Option<&str>) -> Result<OperatorKey, KeyError> {
        Self::establish_at(operator_key::path_for_db(db), explicit)
    }

    /// Resolves the key from the key file at `path` (written if missing), unless `explicit` is given.
    /// A PostgreSQL node has no database file: its key file is in `--data-dir`.
    pub fn establish_at(path: PathBuf, explicit: Option<&str>) -> Result<OperatorKey, KeyError> {
        if let Some(key) = explicit {
            if key.trim().is_empty() {
                return Err(KeyError::Empty(path.display().to_string()));
            }
            return Ok(OperatorKey::from_secret(key, "--peer-key".into()));
        }
        let file_err = |why: String| KeyError::File {
            path: path.clone(),
            why,
        };
        let key = match operator_key::read(&path) {
            Ok(key) => {
                refuse_open_permissions(&path).map_err(file_err)?;
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_new(&path).map_err(|e| file_err(e.to_string()))?
            }
            Err(e) => return Err(file_err(e.to_string())),
        };
        Ok(OperatorKey::from_secret(&key, path.display().to_string()))
    }

    /// A key from its secret text.
    pub fn from_secret(key: &str, source: String) -> OperatorKey {
        OperatorKey {
            hash: Sha256::digest(key.trim().as_bytes()).into(),
            source,
        }
    }

    /// The one check for every operator-grade credential: `presented` must be the operator key.
    /// Hashes are compared, so the time taken says nothing about the key.
    pub fn check(&self, presented: Option<&str>) -> Result<(), WireError> {
        let ok = presented
            .is_some_and(|p| <[u8; 32]>::from(Sha256::digest(p.trim().as_bytes())) == self.hash);
        if ok {
            Ok(())
        } else {
            Err(WireError::new(
                ErrorCode::WrongCredential,
                format!(
                    "operator requests need the operator key ({}); it was missing or wrong",
                    self.source
                ),
            ))
        }
    }
}

/// Writes a new random key with mode 0600. `create_new`: never overwrites a key another process
/// wrote meanwhile.
fn write_new(path: &Path) -> std::io::Result<String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "wrote a new operator key (mode 0600)");
    Ok(key)
}

/// Like ssh with a private key, a key file that other users can read is refused.
fn refuse_open_permissions(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {:o} lets other users read it; run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_written_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("distributor.db");
        let first = OperatorKey::establish(&db, None).unwrap();
        let key = operator_key::read(&dir.path().join("operator.key")).unwrap();
        assert_eq!(key.len(), 64);
        let again = OperatorKey::establish(&db, None).unwrap();
        assert!(first.check(Some(&key)).is_ok() && again.check(Some(&key)).is_ok());
        assert!(first.check(None).is_err() && first.check(Some("guess")).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("operator.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            OperatorKey::establish(&db, Some(" ")),
            Err(KeyError::Empty(_))
        ));
    }
}
