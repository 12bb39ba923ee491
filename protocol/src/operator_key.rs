//! The operator key file: the secret that operator tools and gateways (such as `shop serve-ssh`)
//! present in [`crate::Hello::key`].
//!
//! The distributor writes it on first start, next to its database, with mode 0600, so that tools run
//! by the same user on the same machine find it without flags. `--peer-key` overrides it everywhere.

use std::io;
use std::path::{Path, PathBuf};

/// The file's name inside the distributor's data directory.
pub const FILE_NAME: &str = "operator.key";

/// Where the key lives for the default database (`data/distributor.db`).
pub const DEFAULT_PATH: &str = "data/operator.key";

/// The key file that belongs to a database file: `operator.key` in the same directory.
pub fn path_for_db(db: &Path) -> PathBuf {
    match db.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(FILE_NAME),
        _ => PathBuf::from(FILE_NAME),
    }
}

/// Reads a key file. Surrounding whitespace is ignored; an empty file is an error, because an empty
/// key would let anyone in.
pub fn read(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let key = text.trim();
    if key.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(key.to_string())
}

/// The key a client should present: `explicit` (from `--peer-key`) if given, else the file's
/// contents if the file exists, else `None`. An explicit empty key is an error.
pub fn resolve(explicit: Option<&str>, file: &Path) -> io::Result<Option<String>> {
    match explicit {
        Some(key) if key.trim().is_empty() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the peer key is empty",
        )),
        Some(key) => Ok(Some(key.to_string())),
        None => match read(file) {
            Ok(key) => Ok(Some(key)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_sits_beside_the_database() {
        assert_eq!(
            path_for_db(Path::new("data/distributor.db")),
            PathBuf::from("data/operator.key")
        );
        assert_eq!(
            path_for_db(Path::new("distributor.db")),
            PathBuf::from("operator.key")
        );
    }

    #[test]
    fn an_explicit_empty_key_is_refused_and_a_missing_file_is_none() {
        let missing = Path::new("/nonexistent/operator.key");
        assert!(resolve(Some("  "), missing).is_err());
        assert_eq!(resolve(None, missing).ok(), Some(None));
        assert_eq!(
            resolve(Some("k"), missing).ok(),
            Some(Some("k".to_string()))
        );
    }
}
