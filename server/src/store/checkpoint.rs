//! When the writer copies the WAL into the main file: after a batch's answers are out, not inside
//! its COMMIT.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold (1,000 frames).
//! The commit is durable by then, but its clients are answered only once COMMIT returns, so every
//! twentieth batch or so waited another ~5 ms (the pages copied, then the main file's fsync) for
//! work that is not theirs. The writer connection turns that off (`wal_autocheckpoint = 0`,
//! [`crate::store::schema::open_writer`]) and checkpoints itself, on the same connection and at
//! about the same rate, right after answering: the checkout that arrives during it waits as it did
//! before, and the batch that crossed the threshold no longer does.
//!
//! On the same connection, between transactions, the checkpoint can reach the WAL's end, so the
//! next write restarts the WAL from its start as before; it stays a few MB long.

use super::StoreError;
use rusqlite::Connection;
use std::time::{Duration, Instant};

/// Batches between checkpoints under load: about the 1,000 frames of SQLite's default threshold at
/// the 40–60 frames a batch of checkouts writes.
const EVERY_COMMITS: u32 = 20;
/// Never more often than this, whatever the batches.
const AT_LEAST: Duration = Duration::from_millis(50);
/// A server writing little still checkpoints: with the first commit this long after the last
/// checkpoint. (An idle one has nothing new to copy until it commits again; the WAL holds it.)
const AT_MOST: Duration = Duration::from_secs(1);

/// The writer's checkpoint clock.
pub(crate) struct Checkpoints {
    last: Instant,
    commits: u32,
}

impl Checkpoints {
    pub(crate) fn new() -> Self {
        Checkpoints {
            last: Instant::now(),
            commits: 0,
        }
    }

    /// Counts a commit whose answers are out, and checkpoints if one is due.
    pub(crate) fn committed(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.commits += 1;
        if !due(self.commits, self.last.elapsed()) {
            return Ok(());
        }
        self.commits = 0;
        self.last = Instant::now();
        super::lifecycle::checkpoint(conn, "PASSIVE")
    }
}

/// Whether `commits` commits over `elapsed` since the last checkpoint make one due.
fn due(commits: u32, elapsed: Duration) -> bool {
    commits > 0 && (elapsed >= AT_MOST || (commits >= EVERY_COMMITS && elapsed >= AT_LEAST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_enough_commits_or_a_second_and_never_without_a_commit() {
        let ms = Duration::from_millis;
        assert!(!due(0, ms(5_000)), "nothing written, nothing to copy");
        assert!(!due(19, ms(500)));
        assert!(due(20, ms(50)));
        assert!(
            !due(200, ms(10)),
            "a burst of tiny batches waits for the minimum interval"
        );
        assert!(
            due(1, ms(1_000)),
            "a server writing little still copies what it wrote"
        );
    }
}
