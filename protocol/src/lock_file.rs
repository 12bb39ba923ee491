//! An exclusive lock file held for a process's life, so that two processes never share one SQLite
//! file (a distributor's database, a manufacturer's books).
//!
//! The lock is an advisory `flock` on `<file>.lock` (std's [`std::fs::File::try_lock`]); the kernel
//! drops it when the process exits, however it exits, so a `kill -9` never leaves a stale lock. The
//! file holds the holder's pid so that a refused process can say who holds it. The file itself is
//! never deleted: deleting a lock file while another process waits on it is the classic race.
//!
//! A `flock` belongs to an open file description, which a child shares from `fork` until its `exec`
//! closes the descriptor. A process that spawns children (a test binary running tmux, ssh or a
//! manufacturer beside an in-process server) can therefore find its own, just-released lock still
//! held for a moment. So the lock files this process holds are also kept in a process-wide set: a
//! refusal that names this process but is not in the set is such a child's copy, and is waited out
//! (briefly); a second holder inside the process is refused at once, as another process would be.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The lock files this process holds (see the module notes).
static HELD_HERE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// How long a lock held only by a spawning child's copy is waited for: a `fork` to `exec` window
/// is well under a millisecond, even on a loaded machine.
const CHILD_COPY_WAIT: Duration = Duration::from_secs(1);

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
    /// Takes the lock for `data` or fails. It waits only for a spawning child's copy of this
    /// process's own released lock (at most [`CHILD_COPY_WAIT`]; see the module notes), never for
    /// another holder. Creates the lock file (and its directory) if needed, and writes this process's
    /// pid into it.
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
        if held_here(&path) {
            return Err(held(data, path.clone(), Some(std::process::id())));
        }
        let waited_from = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let pid = read_pid(&mut file);
                    let childs_copy = pid == Some(std::process::id()) && !held_here(&path);
                    if !childs_copy || waited_from.elapsed() >= CHILD_COPY_WAIT {
                        return Err(held(data, path.clone(), pid));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
        }
        HELD_HERE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.clone());
        // From here on, dropping `lock` lets go of both the set entry and the flock.
        let mut lock = LockFile { _file: file, path };
        let write_pid = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        if writable {
            write_pid(&mut lock._file).map_err(|source| LockError::Io {
                path: lock.path.clone(),
                source,
            })?;
        }
        Ok(lock)
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Before the file closes (fields drop after this): a waiter that then sees the flock still
        // held by this pid knows it is a child's copy.
        HELD_HERE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.path);
    }
}

fn held_here(path: &Path) -> bool {
    HELD_HERE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(path)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn held(data: &Path, path: PathBuf, pid: Option<u32>) -> LockError {
    LockError::Held {
        data: data.display().to_string(),
        path,
        pid,
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

    /// What a spawning child's copy looks like from here: the flock held through another open file
    /// description, with this process's pid in the file, but no `LockFile` behind it.
    fn hold_like_a_child(data: &Path) -> File {
        let path = path_for(data);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dir");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        file.try_lock().expect("flock");
        writeln!(file, "{}", std::process::id()).expect("pid");
        file
    }

    #[test]
    fn a_childs_copy_of_our_own_released_lock_is_waited_out_not_reported_as_held() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("x.db");
        let copy = hold_like_a_child(&data);
        let exec = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(copy);
        });
        let lock = LockFile::acquire(&data);
        exec.join().expect("thread");
        assert!(lock.is_ok(), "{lock:?}");
    }

    #[test]
    fn a_copy_that_never_lets_go_is_reported_as_held_after_the_wait() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("x.db");
        let _copy = hold_like_a_child(&data);
        let started = Instant::now();
        match LockFile::acquire(&data) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(started.elapsed() >= CHILD_COPY_WAIT);
    }

    #[test]
    fn a_lock_let_go_is_free_again_while_the_process_spawns_children() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("x.db");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spawning = stop.clone();
        let spawner = std::thread::spawn(move || {
            while !spawning.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
            }
        });
        let refused = (0..500)
            .filter(|_| LockFile::acquire(&data).is_err())
            .count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spawner.join().expect("spawner");
        assert_eq!(
            refused, 0,
            "our own released lock was refused {refused} times of 500"
        );
    }
}
