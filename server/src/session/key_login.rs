//! SSH keys as logins, for the one customer a gateway connection carries (`shop serve-ssh`).
//!
//! The distributor never sees SSH. A gateway proved itself with the operator-grade key in its Hello,
//! and then vouches that its customer holds the key with this fingerprint. A plain customer
//! connection could claim any fingerprint, so the guard table (`dispatch.rs`) lets only gateways
//! send these requests.

use super::{err, internal, Answer, Session};
use crate::store::read::Reads;
use crate::store::writer::Op;
use crate::store::StoreError;
use protocol::{ErrorCode, Reply, WireError};
use tokio::io::{AsyncRead, AsyncWrite};

/// `SHA256:` and 43 characters of unpadded base64, as `ssh-keygen -lf` prints it.
fn check_fingerprint(fingerprint: &str) -> Result<(), WireError> {
    let digest = fingerprint.strip_prefix("SHA256:").unwrap_or("");
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if digest.len() == 43 && digest.chars().all(base64) {
        return Ok(());
    }
    Err(err(
        ErrorCode::InvalidInput,
        "an SSH key fingerprint looks like SHA256: and 43 base64 characters",
    ))
}

async fn linked_account(
    reads: &Reads,
    fingerprint: String,
) -> Result<Option<protocol::AccountId>, WireError> {
    reads.account_by_key(fingerprint).await.map_err(internal)
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Counts sign-ups and logins of this connection against the customer's own address. Before a
    /// login only: the throttle's buckets are per address, and a gateway's customers all come from
    /// the gateway's.
    pub(super) fn customer_address(&mut self, ip: std::net::IpAddr) -> Answer {
        self.client_ip = ip;
        Ok(Reply::Done)
    }

    /// Starts a session as the account the key is linked to.
    pub(super) async fn key_log_in(&mut self, fingerprint: String) -> Answer {
        check_fingerprint(&fingerprint)?;
        match linked_account(&self.shared.reads, fingerprint).await? {
            Some(account) => self.start_session(account).await,
            None => Err(err(
                ErrorCode::BadCredentials,
                "this SSH key is not linked to an account; log in by hand",
            )),
        }
    }

    /// Links the key to the logged-in account.
    pub(super) async fn remember_key(&mut self, fingerprint: String) -> Answer {
        let account = self.account()?;
        check_fingerprint(&fingerprint)?;
        match self
            .shared
            .writer
            .run(Op::LinkKey(fingerprint, account))
            .await
        {
            Ok(_) => Ok(Reply::Done),
            Err(StoreError::Duplicate) => Err(err(
                ErrorCode::Conflict,
                "this key already logs in to another account; forget it there first",
            )),
            Err(e) => Err(internal(e)),
        }
    }

    /// Unlinks the key from the logged-in account.
    pub(super) async fn forget_key(&mut self, fingerprint: String) -> Answer {
        let account = self.account()?;
        check_fingerprint(&fingerprint)?;
        match self
            .shared
            .writer
            .run(Op::UnlinkKey(fingerprint, account))
            .await
        {
            Ok(_) => Ok(Reply::Done),
            Err(StoreError::NotFound) => Err(err(
                ErrorCode::NotFound,
                "this key is not linked to your account",
            )),
            Err(e) => Err(internal(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_fingerprint;

    #[test]
    fn only_sha256_fingerprints_in_ssh_keygen_form_are_accepted() {
        assert!(check_fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s").is_ok());
        assert!(check_fingerprint("MD5:aa:bb").is_err());
        assert!(check_fingerprint("SHA256:short").is_err());
        assert!(
            check_fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s'--").is_err()
        );
    }
}
