//! Passwords, session tokens and login throttling.
//!
//! - Passwords are hashed with argon2id using OWASP's minimum parameters (19 MiB, 2 passes, 1 lane).
//! - A session token is 32 random bytes. Only its SHA-256 is stored, so a copy of the database
//!   cannot be replayed as logins.
//! - Failed logins are counted per account and per address. An unknown email runs the same argon2
//!   verification against a dummy hash, so both failures take the same time and get the same error.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use protocol::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a session token stays valid.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn argon2() -> Argon2<'static> {
    // OWASP: m=19456 KiB, t=2, p=1. These are valid parameters, so `new` cannot fail.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password (slow on purpose: run it on a blocking thread).
pub fn hash_password(password: &str) -> Result<String, WireError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| WireError::new(ErrorCode::Internal, "could not hash the password"))
}

/// Checks a password against a stored hash, or against a dummy hash when there is no account, so that
/// the two failures cost the same time.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy =
        DUMMY.get_or_init(|| hash_password("dummy password for timing").unwrap_or_default());
    let hash = stored.unwrap_or(dummy);
    let ok = PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    ok && stored.is_some()
}

/// A fresh random session token.
pub fn new_token() -> SessionToken {
    let bytes: [u8; 32] = rand::random();
    SessionToken(hex::encode(bytes))
}

/// The stored form of a token.
pub fn token_hash(token: &SessionToken) -> [u8; 32] {
    Sha256::digest(token.0.as_bytes()).into()
}

/// Validates sign-up and account fields; errors name their field.
pub fn validate_name(value: &str, field: Field) -> Result<(), WireError> {
    let len = value.trim().chars().count();
    if len == 0 || len > MAX_NAME_CHARS || value.chars().any(char::is_control) {
        return Err(WireError::field(
            ErrorCode::InvalidInput,
            field,
            format!("enter 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A minimal email check: one `@`, something on both sides, a dot in the domain, no spaces.
pub fn validate_email(email: &str) -> Result<(), WireError> {
    let bad = || {
        Err(WireError::field(
            ErrorCode::InvalidInput,
            Field::Email,
            "enter an email like ada@example.com",
        ))
    };
    if email.len() > MAX_EMAIL_BYTES || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => bad(),
    }
}

use protocol::limits::{MAX_EMAIL_BYTES, MAX_NAME_CHARS};
pub use protocol::limits::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

/// Passwords need 8 to 1024 characters; the message names the limit that was missed.
pub fn validate_password(password: &str) -> Result<(), WireError> {
    let len = password.chars().count();
    let problem = if len < MIN_PASSWORD_CHARS {
        format!("use at least {MIN_PASSWORD_CHARS} characters")
    } else if len > MAX_PASSWORD_CHARS {
        format!("use at most {MAX_PASSWORD_CHARS} characters (this one has {len})")
    } else {
        return Ok(());
    };
    Err(WireError::field(
        ErrorCode::InvalidInput,
        Field::Password,
        problem,
    ))
}

/// Counts failed logins per key (an email or an address) in a sliding window.
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    limit: u32,
    window: Duration,
}

impl Throttle {
    /// At most `limit` failures per key within `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Throttle {
            failures: Mutex::default(),
            limit,
            window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this key may try now.
    pub fn allowed(&self, key: &str) -> bool {
        let map = self.lock();
        match map.get(key) {
            Some((count, since)) => *count < self.limit || since.elapsed() > self.window,
            None => true,
        }
    }

    /// Records a failure.
    pub fn fail(&self, key: &str) {
        let mut map = self.lock();
        if map.len() > 100_000 {
            // Bound memory under a spray of keys: drop expired entries.
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() <= window);
        }
        let entry = map.entry(key.to_string()).or_insert((0, Instant::now()));
        if entry.1.elapsed() > self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Clears a key after a success.
    pub fn succeed(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong horse", Some(&hash)));
        assert!(!verify_password("correct horse", None));
    }

    #[test]
    fn tokens_are_256_bit_and_stored_only_as_hashes() {
        let a = new_token();
        assert_eq!(a.0.len(), 64);
        assert_ne!(a, new_token());
        assert_ne!(hex::encode(token_hash(&a)), a.0);
    }

    #[test]
    fn throttle_blocks_after_the_limit_and_a_success_clears_it() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.allowed("a@x.io"));
            t.fail("a@x.io");
        }
        assert!(!t.allowed("a@x.io"));
        assert!(t.allowed("b@x.io"));
        t.succeed("a@x.io");
        assert!(t.allowed("a@x.io"));
    }

    #[test]
    fn field_validation_names_the_field() {
        assert_eq!(
            validate_email("nope").unwrap_err().field,
            Some(Field::Email)
        );
        assert!(validate_email("Ada@Example.com").is_ok());
        assert_eq!(
            validate_password("short").unwrap_err().field,
            Some(Field::Password)
        );
        assert_eq!(
            validate_name("", Field::FirstName).unwrap_err().field,
            Some(Field::FirstName)
        );
    }
}
