//! Session tokens and password rules.
//!
//! - A session token is 32 random bytes. Only its SHA-256 is stored, so a copy of the database
//!   cannot be replayed as logins.
//! - An account holds at most [`MAX_SESSIONS`] tokens: a new login evicts the oldest, and changing
//!   the password ends every other one.
//! - Passwords are hashed on the argon2 pool ([`crate::hashing`]); login throttling is
//!   [`crate::throttle`].

use protocol::*;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a session token stays valid.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most live session tokens one account holds; a new login evicts the oldest.
pub const MAX_SESSIONS: usize = 20;

/// A fresh random session token.
pub fn new_token() -> SessionToken {
    let bytes: [u8; 32] = rand::random();
    SessionToken(hex::encode(bytes))
}

/// The stored form of a token.
pub fn token_hash(token: &SessionToken) -> [u8; 32] {
    Sha256::digest(token.0.as_bytes()).into()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_stored_only_as_hashes() {
        let a = new_token();
        assert_eq!(a.0.len(), 64);
        assert_ne!(a, new_token());
        assert_ne!(hex::encode(token_hash(&a)), a.0);
    }

    #[test]
    fn passwords_need_eight_characters_and_name_their_field() {
        assert_eq!(
            validate_password("short").unwrap_err().field,
            Some(Field::Password)
        );
        assert!(validate_password("long enough").is_ok());
    }
}
