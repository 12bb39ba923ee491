//! One lock per books file per process (see [`protocol::lock_file`]): a second `manufacturer-sim` on
//! the same books is refused at once and told which pid holds them, while the manufacturers of one
//! process, which may share a file, share its lock. (`flock` treats two opens of one file in one
//! process as two holders, hence the table.)

use protocol::lock_file::{LockError, LockFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

fn held() -> &'static Mutex<HashMap<PathBuf, Weak<LockFile>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<LockFile>>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The lock on `books`, shared with any other holder in this process.
pub(crate) fn lock(books: &Path) -> Result<Arc<LockFile>, LockError> {
    let key = std::path::absolute(books).unwrap_or_else(|_| books.to_path_buf());
    let mut held = crate::lock(held());
    if let Some(lock) = held.get(&key).and_then(Weak::upgrade) {
        return Ok(lock);
    }
    held.retain(|_, lock| lock.strong_count() > 0);
    let lock = Arc::new(LockFile::acquire(books)?);
    held.insert(key, Arc::downgrade(&lock));
    Ok(lock)
}
