//! The argon2 pool: a fixed set of hashing threads, at most one per core, fed by a bounded queue.
//!
//! - Each thread allocates its argon2 memory (19 MiB) at its first hash and reuses it for every
//!   later one. Memory is
//!   therefore bounded by the thread count, and nothing is handed back to the allocator between
//!   hashes, so the allocator cannot keep freed blocks around either (glibc raises its mmap threshold
//!   after the first free of a big block and then keeps later ones in its heap: that is how a burst of
//!   sign-ups used to leave the server at 1.1–1.4 GB).
//! - The queue holds at most `queue` jobs. Sign-ups (hashing a new password) may fill only half of
//!   it, and the threads always take a login (verifying a password) first, so a flood of sign-ups
//!   cannot make honest logins wait behind it.
//! - A job that does not fit is refused at once with [`ErrorCode::Busy`]: the client retries later,
//!   and nothing waits in memory.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use protocol::*;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use tokio::sync::oneshot;

/// OWASP's argon2id minimum: m = 19,456 KiB, t = 2, p = 1.
fn params() -> Params {
    Params::new(19_456, 2, 1, Some(32)).unwrap_or_default()
}

/// Whose job it is: logins are served first, and sign-ups may take only half the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Checking a password (login, account changes): someone is waiting at the keyboard.
    Login,
    /// Hashing a new password (sign-up, password change).
    SignUp,
}

enum Work {
    Hash(String, oneshot::Sender<Result<String, WireError>>),
    Verify(String, Option<String>, oneshot::Sender<bool>),
}

#[derive(Default)]
struct Queue {
    logins: VecDeque<Work>,
    signups: VecDeque<Work>,
    closed: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pool. Dropping it lets the threads finish their current job and exit.
pub struct HashPool {
    inner: Arc<Inner>,
    threads: usize,
}

/// The number of hashing threads for a request of `wanted` (0: one per core): never more than the
/// machine's cores.
pub fn thread_count(wanted: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match wanted {
        0 => cores,
        n => n.min(cores),
    }
}

fn busy() -> WireError {
    WireError::new(
        ErrorCode::Busy,
        "the server is busy with other logins; nothing was changed, try again in a moment",
    )
}

impl HashPool {
    /// Starts `threads` hashing threads (see [`thread_count`]) behind a queue of `queue` jobs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<HashPool> {
        let inner = Arc::new(Inner {
            queue: Mutex::default(),
            ready: Condvar::new(),
            capacity: queue.max(2),
        });
        let threads = thread_count(threads);
        for i in 0..threads {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&inner))?;
        }
        Ok(HashPool { inner, threads })
    }

    /// How many hashing threads run.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn submit(&self, work: Work, priority: Priority) -> Result<(), WireError> {
        let mut queue = self.inner.lock();
        let waiting = queue.logins.len() + queue.signups.len();
        let fits = match priority {
            Priority::Login => waiting < self.inner.capacity,
            Priority::SignUp => {
                waiting < self.inner.capacity && queue.signups.len() < self.inner.capacity / 2
            }
        };
        if queue.closed || !fits {
            return Err(busy());
        }
        match priority {
            Priority::Login => queue.logins.push_back(work),
            Priority::SignUp => queue.signups.push_back(work),
        }
        drop(queue);
        self.inner.ready.notify_one();
        Ok(())
    }

    /// Hashes a new password into a PHC string, or refuses with `Busy` when the queue is full.
    pub async fn hash(&self, password: String, priority: Priority) -> Result<String, WireError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Work::Hash(password, tx), priority)?;
        rx.await.map_err(|_| busy())?
    }

    /// Checks a password against a stored hash (or, with none, against a dummy hash, so that an
    /// unknown email costs the same time as a wrong password).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
        priority: Priority,
    ) -> Result<bool, WireError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Work::Verify(password, stored, tx), priority)?;
        rx.await.map_err(|_| busy())
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.ready.notify_all();
    }
}

/// One hashing thread: takes logins first, and reuses one block of argon2 memory for every job.
fn work(inner: &Inner) {
    // Allocated at the first job, so an idle server does not hold it.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let mut queue = inner.lock();
            loop {
                if let Some(job) = queue
                    .logins
                    .pop_front()
                    .or_else(|| queue.signups.pop_front())
                {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue = inner.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        if memory.is_empty() {
            memory = vec![Block::default(); params().block_count()];
        }
        match job {
            Work::Hash(password, reply) => {
                let _ = reply.send(hash_with(&password, &mut memory));
            }
            Work::Verify(password, stored, reply) => {
                let _ = reply.send(verify_with(&password, stored.as_deref(), &mut memory));
            }
        }
    }
}

fn internal() -> WireError {
    WireError::new(ErrorCode::Internal, "could not hash the password")
}

/// Hashes `password` with a fresh salt, using `memory` as argon2's working memory.
pub fn hash_with(password: &str, memory: &mut [Block]) -> Result<String, WireError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let params = params();
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|_| internal())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = Output::init_with(32, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, out, &mut *memory)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|_| internal())?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| internal())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Verifies `password` against a PHC string, using `memory` when it is big enough for the stored
/// parameters (it always is for hashes this server made).
pub fn verify_with(password: &str, stored: Option<&str>, memory: &mut [Block]) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        let mut scratch = vec![Block::default(); params().block_count()];
        hash_with("dummy password for timing", &mut scratch).unwrap_or_default()
    });
    let ok = matches_hash(password, stored.unwrap_or(dummy), memory);
    ok && stored.is_some()
}

fn matches_hash(password: &str, phc: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut own;
    let memory = if memory.len() >= params.block_count() {
        memory
    } else {
        own = vec![Block::default(); params.block_count()];
        own.as_mut_slice()
    };
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_raw, out, &mut *memory)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    });
    // `Output`'s equality is constant-time.
    computed.is_ok_and(|c| c == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Vec<Block> {
        vec![Block::default(); params().block_count()]
    }

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let mut m = memory();
        let hash = hash_with("correct horse", &mut m).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_with("correct horse", Some(&hash), &mut m));
        assert!(!verify_with("wrong horse", Some(&hash), &mut m));
        assert!(!verify_with("correct horse", None, &mut m));
    }

    #[test]
    fn hashes_made_by_the_argon2_crate_itself_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let argon = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(19_456, 2, 1, None).unwrap(),
        );
        let hash = argon
            .hash_password(b"old account", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with("old account", Some(&hash), &mut memory()));
        assert!(!verify_with("old acc0unt", Some(&hash), &mut memory()));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_sign_ups_with_busy_but_keeps_room_for_logins() {
        // No threads take work, so the queue only fills.
        let pool = HashPool {
            inner: Arc::new(Inner {
                queue: Mutex::default(),
                ready: Condvar::new(),
                capacity: 4,
            }),
            threads: 0,
        };
        let mut pending = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = oneshot::channel();
            pool.submit(Work::Hash("p".into(), tx), Priority::SignUp)
                .unwrap();
            pending.push(rx);
        }
        let (tx, _rx) = oneshot::channel();
        let refused = pool
            .submit(Work::Hash("p".into(), tx), Priority::SignUp)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        for _ in 0..2 {
            let (tx, _rx) = oneshot::channel();
            pool.submit(Work::Verify("p".into(), None, tx), Priority::Login)
                .unwrap();
        }
        let (tx, _rx) = oneshot::channel();
        let full = pool
            .submit(Work::Verify("p".into(), None, tx), Priority::Login)
            .unwrap_err();
        assert_eq!(full.code, ErrorCode::Busy);
    }

    #[tokio::test]
    async fn the_pool_hashes_and_verifies_on_its_own_threads() {
        let pool = HashPool::start(0, 8).unwrap();
        assert!(pool.threads() >= 1);
        assert!(pool.threads() <= std::thread::available_parallelism().unwrap().get());
        let hash = pool
            .hash("pool password".into(), Priority::SignUp)
            .await
            .unwrap();
        assert!(pool
            .verify("pool password".into(), Some(hash.clone()), Priority::Login)
            .await
            .unwrap());
        assert!(!pool
            .verify("other".into(), Some(hash), Priority::Login)
            .await
            .unwrap());
    }
}
