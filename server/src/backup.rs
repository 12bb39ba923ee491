//! `distributor backup --db PATH --to FILE`: a consistent copy of the database, safe while the
//! server runs. This is the supported way to copy the database: copying the `.db` file alone misses
//! whatever is still in its `-wal` (see [`crate::store::lifecycle`]).
//!
//! It uses SQLite's online backup API, all pages in one step: in WAL mode that step reads one
//! snapshot while the server keeps committing. The copy is written beside `FILE`, marked stopped,
//! switched to a single-file (rollback-journal) database, synced, and only then renamed to `FILE`, so
//! `FILE` is either absent or complete. An existing `FILE` is never overwritten.

use crate::store::schema::{open_reader, Check};
use crate::store::StoreError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to keep retrying while the source is locked (it rarely is: WAL readers do not wait).
const BUSY_LIMIT: Duration = Duration::from_secs(30);

/// What a finished backup copied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    /// The copy.
    pub to: String,
    /// Pages copied.
    pub pages: i32,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// Why a backup failed. Nothing is left at `to` when it does.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The source is not a usable distributor database.
    #[error(transparent)]
    Source(#[from] StoreError),
    /// The target exists already.
    #[error("{0} exists; refusing to overwrite it (pick a new name or remove it first)")]
    Exists(String),
    /// Copying or writing failed.
    #[error("backup to {to} failed: {why}")]
    Failed {
        /// The target.
        to: String,
        /// What went wrong.
        why: String,
    },
}

/// Copies `db` to `to` consistently, while the server may be running.
pub fn backup(db: &Path, to: &Path) -> Result<BackupReport, BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.display().to_string()));
    }
    let source = open_reader(db, Check::Deep)?;
    let partial = partial_path(to);
    let failed = |why: String| BackupError::Failed {
        to: to.display().to_string(),
        why,
    };
    let _ = std::fs::remove_file(&partial); // a leftover of an earlier, interrupted backup
    let result = copy(&source, &partial).and_then(|pages| {
        std::fs::rename(&partial, to).map_err(|e| e.to_string())?;
        Ok(pages)
    });
    match result {
        Ok(pages) => Ok(BackupReport {
            to: to.display().to_string(),
            pages,
            bytes: std::fs::metadata(to).map(|m| m.len()).unwrap_or(0),
        }),
        Err(why) => {
            let _ = std::fs::remove_file(&partial);
            Err(failed(why))
        }
    }
}

fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Copies every page in one step, then makes the copy a stopped, single-file database.
fn copy(source: &Connection, partial: &Path) -> Result<i32, String> {
    let text = |e: rusqlite::Error| e.to_string();
    let mut target = Connection::open(partial).map_err(text)?;
    let pages = {
        let backup = Backup::new(source, &mut target).map_err(text)?;
        let started = Instant::now();
        loop {
            match backup.step(-1).map_err(text)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked
                    if started.elapsed() < BUSY_LIMIT =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => return Err(format!("the source stayed busy ({other:?})")),
            }
        }
        backup.progress().pagecount
    };
    // The source was running; the copy is not, and it has no -wal to lose.
    target
        .execute("UPDATE lifecycle SET running = 0 WHERE id = 1", [])
        .map_err(text)?;
    target
        .pragma_update(None, "journal_mode", "DELETE")
        .map_err(text)?;
    let check: String = target
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(text)?;
    if check != "ok" {
        return Err(format!("the copy failed its check: {check}"));
    }
    drop(target);
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| e.to_string())?;
    Ok(pages)
}
