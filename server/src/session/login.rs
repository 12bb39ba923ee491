//! Logging in: sign-up, log-in with a password, resuming with a token, and the login state that
//! carries a customer's pushes. Refusals by the throttle are held a moment (the tarpit).

use super::{err, internal, Answer, End, Session};
use crate::auth;
use crate::engine::Command;
use crate::hashing::Priority;
use crate::store::writer::{Op, Outcome};
use crate::store::{now_ms, StoreError};
use crate::throttle::{Refusal, Throttle};
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a sign-up refused as `Busy` is held before the refusal is sent.
const BUSY_HOLD: std::time::Duration = std::time::Duration::from_millis(250);

/// The longest a throttled request is held before its refusal is sent.
const TARPIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds a throttled request for its wait (at most [`TARPIT`]) before refusing it. A client that
/// waits for answers, as a flooding script does, then cannot turn refusals into thousands of
/// requests a second; the wait costs the server one timer, and a person reads the message a moment
/// later.
async fn tarpit(refusal: Refusal) -> WireError {
    let wait_ms = refusal.retry_after_ms().min(TARPIT.as_millis() as u64);
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
    throttled(refusal, refusal.retry_after_ms() - wait_ms)
}

/// A throttle's refusal as the client sees it: what to wait for, and how long is `left_ms`.
fn throttled(refusal: Refusal, left_ms: u64) -> WireError {
    let when = match left_ms.div_ceil(1000) {
        0 => "now".to_string(),
        secs if secs < 3600 => format!("in {secs} s"),
        secs => format!("in {} h", secs.div_ceil(3600)),
    };
    let message = match refusal {
        Refusal::Pair { .. } => {
            format!("too many wrong passwords for this email; try again {when}")
        }
        Refusal::Account { .. } => format!(
            "this account had too many failed logins today; log in from a place you used before, or try again {when}"
        ),
        Refusal::Address { .. } => {
            format!("too many attempts from your address; try again {when}")
        }
    };
    WireError::new(ErrorCode::Throttled, message)
}

/// A customer's login state.
pub(super) struct Login {
    pub(super) account: AccountId,
    pub(super) token_hash: [u8; 32],
    pub(super) expires_at_ms: u64,
    pub(super) pushes: mpsc::Receiver<Event>,
    /// Cancelled when this login's token is revoked elsewhere (password change, session cap).
    pub(super) revoked: CancellationToken,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// The logged-in customer's account, or why there is none. Only the login is checked here: the
    /// guard table (`dispatch.rs`) has already refused roles that carry no customer.
    pub(super) fn account(&self) -> Result<AccountId, WireError> {
        match &self.login {
            Some(login) if login.expires_at_ms > now_ms() => Ok(login.account),
            Some(_) => Err(err(
                ErrorCode::SessionExpired,
                "your session expired; please log in again",
            )),
            None => Err(err(
                ErrorCode::NotAuthenticated,
                "please sign up or log in first",
            )),
        }
    }

    /// A push for the logged-in customer, with whatever else is already waiting so that a burst
    /// costs one write; or the end of the session, if its token was revoked elsewhere.
    pub(super) async fn on_login_push(
        &mut self,
        push: Result<Option<Event>, ()>,
    ) -> Result<(), End> {
        let Ok(push) = push else {
            return Err(End::Close(err(ErrorCode::SessionExpired, "this session was ended: the password was changed, or the account logged in too many times elsewhere; please log in again")));
        };
        let Some(event) = push else {
            return Ok(());
        };
        self.queue(&ServerMessage::Event(event))?;
        self.queue_waiting_pushes()?;
        self.flush().await
    }

    /// Queues the customer's pushes that are already waiting, so one write carries them all. Called
    /// too before a reply is queued: the "confirmed" of the last order, which comes while the next
    /// checkout is being committed, then shares that checkout's write instead of costing its own.
    pub(super) fn queue_waiting_pushes(&mut self) -> Result<(), End> {
        while let Some(event) = self.login.as_mut().and_then(|l| l.pushes.try_recv().ok()) {
            self.queue(&ServerMessage::Event(event))?;
        }
        Ok(())
    }

    /// Ends this login: its token is deleted, so it cannot be resumed, and this connection stops
    /// getting the customer's pushes and stock.
    pub(super) async fn log_out(&mut self) -> Answer {
        self.account()?;
        if let Some(login) = self.login.take() {
            self.shared.registry.detach_customer(login.account, self.id);
            self.shared
                .writer
                .run(Op::DeleteSession(login.token_hash))
                .await
                .map_err(internal)?;
        }
        self.stock = None;
        Ok(Reply::Done)
    }

    pub(super) async fn hash(&self, password: String) -> Result<String, WireError> {
        self.shared.hashing.hash(password, Priority::SignUp).await
    }

    pub(super) async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, WireError> {
        self.shared
            .hashing
            .verify(password, hash, Priority::Login)
            .await
    }

    pub(super) fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // The maps stay consistent even if a holder panicked; keep serving.
        self.shared
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn sign_up(&mut self, form: SignUp) -> Answer {
        let first_name = crate::names::person_name(&form.first_name, Field::FirstName)?;
        let last_name = crate::names::person_name(&form.last_name, Field::LastName)?;
        let email = crate::email::validate(&form.email)?;
        auth::validate_password(&form.password)?;
        // Checked after the fields, so a typo does not cost one of the address's sign-ups, and
        // before hashing, so a flood is refused for the price of a map lookup.
        let address = crate::throttle::address_key(self.client_ip);
        let allowed = self.throttle().check_signup(&address, now_ms());
        if let Err(refusal) = allowed {
            return Err(tarpit(refusal).await);
        }
        let password_hash = match self.hash(form.password).await {
            Ok(hash) => hash,
            Err(e) => {
                if e.code == ErrorCode::Busy {
                    self.throttle().refund_signup(&address);
                    // Held a moment, like a throttled request, so that retrying at once cannot
                    // become a busy loop of refusals.
                    tokio::time::sleep(BUSY_HOLD).await;
                }
                return Err(e);
            }
        };
        let op = Op::CreateAccount {
            first_name,
            last_name,
            email,
            password_hash,
        };
        let account = match self.shared.writer.run(op).await {
            Ok(Outcome::Account(id)) => id,
            Ok(_) => return Err(err(ErrorCode::Internal, "no account id")),
            Err(StoreError::Duplicate) => {
                return Err(WireError::field(
                    ErrorCode::EmailTaken,
                    Field::Email,
                    "an account with this email already exists; log in instead",
                ))
            }
            Err(e) => return Err(internal(e)),
        };
        self.start_session(account).await
    }

    pub(super) async fn log_in(&mut self, email: String, password: String) -> Answer {
        let account_key = crate::email::key(&email);
        let address = crate::throttle::address_key(self.client_ip);
        let allowed = self
            .throttle()
            .check_login(&account_key, &address, now_ms());
        if let Err(refusal) = allowed {
            return Err(tarpit(refusal).await);
        }
        let key = account_key.clone();
        let row = self
            .shared
            .reads
            .account_by_email(key)
            .await
            .map_err(internal)?;
        let hash = row.as_ref().map(|r| r.password_hash.clone());
        let ok = self.verify(password, hash).await?;
        let record = match ok {
            true => None,
            false => Some(
                self.throttle()
                    .login_failed(&account_key, &address, now_ms()),
            ),
        };
        if let Some(record) = record {
            // Durable before the answer, so a restart does not hand out fresh guesses.
            let op = Op::LoginFailed {
                account_key,
                address,
                pair: record.pair,
                account: record.account,
            };
            self.shared.writer.run(op).await.map_err(internal)?;
            return Err(err(ErrorCode::BadCredentials, "email or password is wrong"));
        }
        self.throttle().login_succeeded(&account_key, &address);
        let op = Op::LoginSucceeded {
            account_key,
            address,
            at_ms: now_ms(),
        };
        // Not waited for: it commits with the session below (one group commit, one fsync), and
        // losing it in a crash only leaves old failure counts that the next success clears.
        let (done, _) = tokio::sync::oneshot::channel();
        let _ = self
            .shared
            .writer
            .submit(op, crate::store::writer::Done::Outcome(done));
        match row {
            Some(row) => self.start_session(row.view.id).await,
            None => Err(err(ErrorCode::BadCredentials, "email or password is wrong")),
        }
    }

    pub(super) async fn resume(&mut self, token: SessionToken) -> Answer {
        let hash = auth::token_hash(&token);
        let found = self
            .shared
            .reads
            .session(hash, now_ms())
            .await
            .map_err(internal)?;
        let Some((account, expires_at_ms)) = found else {
            return Err(err(
                ErrorCode::SessionExpired,
                "your session expired; please log in again",
            ));
        };
        let view = self.load_account(account).await?;
        self.attach(account, hash, expires_at_ms);
        Ok(Reply::Session(SessionInfo {
            token,
            expires_at_ms,
            account: view,
        }))
    }

    pub(super) async fn start_session(&mut self, account: AccountId) -> Answer {
        let token = auth::new_token();
        let hash = auth::token_hash(&token);
        let expires_at_ms = now_ms() + auth::SESSION_TTL.as_millis() as u64;
        let created = self
            .shared
            .writer
            .run(Op::CreateSession {
                token_hash: hash,
                account,
                expires_at_ms,
            })
            .await
            .map_err(internal)?;
        if let Outcome::Session { evicted } = created {
            self.shared.registry.revoke_tokens(account, &evicted);
        }
        let view = self.load_account(account).await?;
        self.attach(account, hash, expires_at_ms);
        Ok(Reply::Session(SessionInfo {
            token,
            expires_at_ms,
            account: view,
        }))
    }

    pub(super) fn attach(&mut self, account: AccountId, token_hash: [u8; 32], expires_at_ms: u64) {
        if let Some(old) = self.login.take() {
            self.shared.registry.detach_customer(old.account, self.id);
        }
        let (pushes, revoked) = self
            .shared
            .registry
            .attach_customer(account, self.id, token_hash);
        // Best effort: an engine that has stopped has no month to count this login in.
        let _ = self.shared.engine.send(Command::CustomerLoggedIn(account));
        self.login = Some(Login {
            account,
            token_hash,
            expires_at_ms,
            pushes,
            revoked,
        });
    }
}

/// The next push for a logged-in session, or `Err` once its token was revoked elsewhere.
pub(super) async fn recv_login(login: &mut Option<Login>) -> Result<Option<Event>, ()> {
    match login {
        Some(login) => tokio::select! {
            _ = login.revoked.cancelled() => Err(()),
            event = login.pushes.recv() => Ok(event),
        },
        None => std::future::pending().await,
    }
}
