//! An exclusive lock file held for a process's life, so that two processes never share one SQLite
//! file (a distributor's database, a manufacturer's books).
//!
//! The lock is an advisory `flock` on `<file>.lock` (std's [`std::fs::File::try_lock`]); the kernel
//! drops it when the process exits, however it exits, so a `kill -9` never leaves a stale lock. The
//! file holds the holder's pid so that a refused process can say who holds it. The file itself is
//! never deleted: deleting a lock file while another process waits on it is the classic race.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A held lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{data} is in use by {} (lock file {}); only one process may use it at a time", holder_text(*.pid), .path.display())]
    Held {
        /// The file the lock protects.
        data: String,
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it wrote it.
        pid: Option<u32>,
    },
    /// The lock file could not be created or read.
    #[error("cannot write the lock file {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("another process (pid {pid})"),
        None => "another process".to_string(),
    }
}

/// The lock file that guards `data`: `<data>.lock` beside it.
pub fn path_for(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl LockFile {
    /// Takes the lock for `data` at once or fails: it never waits. Creates the lock file (and its
    /// directory) if needed, and writes this process's pid into it.
    pub fn acquire(data: &Path) -> Result<LockFile, LockError> {
        let path = path_for(data);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        // A lock file left by another user can still be locked through a read-only handle (the
        // pid then stays unwritten); the data file's own permissions decide the rest.
        let (mut file, writable) = match opened {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.exists() => {
                (File::open(&path).map_err(io_err)?, false)
            }
            Err(e) => return Err(io_err(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    data: data.display().to_string(),
                    path,
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let write_pid = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        if writable {
            write_pid(&mut file).map_err(io_err)?;
        }
        Ok(LockFile { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_holders_pid_until_it_lets_go() {
        let dir = std::env::temp_dir().join(format!("lock-file-test-{}", std::process::id()));
        let data = dir.join("x.db");
        let first = LockFile::acquire(&data).expect("first lock");
        match LockFile::acquire(&data) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(LockFile::acquire(&data).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
