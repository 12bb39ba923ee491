//! Keeping the database in one file, and noticing when part of it went missing.
//!
//! SQLite in WAL mode keeps recent commits in `<db>-wal` until a checkpoint copies them into the main
//! file. Whoever copies only the `.db`, or deletes the `-wal` after a crash, would otherwise get an
//! older or empty database on the next start without a word. So:
//! - a fresh file gets its schema (and `application_id`) in rollback-journal mode, before WAL is
//!   switched on, so the main file holds the schema from its first moment;
//! - every start marks the database running and checkpoints (`RESTART`: the main file then holds
//!   the schema and every earlier commit, and the `-wal` keeps its frames), so a run that does not
//!   stop cleanly always leaves a `-wal` with frames; a clean stop marks it stopped and checkpoints
//!   with `TRUNCATE`, leaving everything in the main file and an empty `-wal`;
//! - at start, a file marked running (its last run did not stop cleanly) whose `-wal` is missing or
//!   empty, or a WAL-mode file with no schema and no frames in a `-wal`, has lost commits: it is
//!   refused, never reset. (Empty, because any reader, `audit` included, creates an empty `-wal`.)
//!
//! `distributor backup` (see [`crate::backup`]) is the supported way to copy a live database.

use super::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// `<db>-wal`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// What the files looked like before SQLite touched them.
#[derive(Debug, Clone, Copy)]
pub struct OnDisk {
    /// `<db>-wal` exists and holds frames.
    pub wal: bool,
    /// The main file is in WAL mode (header bytes 18 and 19 are 2).
    pub wal_mode_header: bool,
}

impl OnDisk {
    /// Looks at the files. Must run before the database is opened: opening creates the `-wal`.
    pub fn inspect(db: &Path) -> OnDisk {
        let mut header = [0u8; 20];
        let wal_mode_header = std::fs::File::open(db)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
            .map(|()| header[18] == 2 && header[19] == 2)
            .unwrap_or(false);
        OnDisk {
            wal: std::fs::metadata(wal_path(db)).is_ok_and(|m| m.len() > 0),
            wal_mode_header,
        }
    }
}

/// Refuses a database that lost commits along with its `-wal`. `schema_version` is
/// `PRAGMA user_version`; `tables` counts schema objects.
pub fn refuse_if_lost(
    conn: &Connection,
    db: &Path,
    on_disk: OnDisk,
    schema_version: i64,
    tables: i64,
) -> Result<(), StoreError> {
    if on_disk.wal {
        return Ok(()); // SQLite recovers from the WAL itself.
    }
    let wal = wal_path(db);
    if tables == 0 && on_disk.wal_mode_header {
        return Err(StoreError::Foreign(format!(
            "{}: this WAL-mode database has no schema and its {} file is missing or empty: everything \
             it held was in that file. Refusing to start on an empty database; put the -wal file back beside \
             it, or restore a copy made with `distributor backup`",
            db.display(),
            wal.display()
        )));
    }
    if schema_version == 0 || !has_lifecycle(conn)? {
        return Ok(());
    }
    let running: i64 = conn.query_row("SELECT running FROM lifecycle WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    if running != 0 {
        return Err(StoreError::Foreign(format!(
            "{}: the last run did not stop cleanly and its {} file is missing or empty, so the \
             commits it held are lost from this copy. Refusing to start on it; put the -wal file back beside \
             it, or restore a copy made with `distributor backup`",
            db.display(),
            wal.display()
        )));
    }
    Ok(())
}

fn has_lifecycle(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'lifecycle'",
        [],
        |r| r.get::<_, i64>(0),
    )? > 0)
}

/// Marks the database running (or stopped) and checkpoints, so the main file holds the mark and
/// every commit before it.
///
/// Running: `RESTART`, which copies everything into the main file but leaves the `-wal` file its
/// length, so there is no moment at which the main file says "running" and the `-wal` is empty: a
/// crash at any point leaves a start that is accepted. Stopped: `TRUNCATE`, which empties it.
pub fn mark(conn: &Connection, running: bool) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE lifecycle SET running = ?1 WHERE id = 1",
        [i64::from(running)],
    )?;
    checkpoint(conn, if running { "RESTART" } else { "TRUNCATE" })
}

/// `PRAGMA wal_checkpoint(MODE)`: copies the WAL into the main file (`TRUNCATE` also empties it). A
/// reader in the middle of a query can keep it from finishing; that is logged, not an error, because
/// the WAL still holds every commit.
pub(super) fn checkpoint(conn: &Connection, mode: &str) -> Result<(), StoreError> {
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        tracing::warn!(log, done, "checkpoint could not finish: a reader was busy");
    }
    Ok(())
}
