//! The logged-in customer's account: reading it, changing its details or password, its card, and
//! deleting it.

use super::{err, internal, Answer, Session};
use crate::auth;
use crate::engine::Command;
use crate::store::writer::Op;
use crate::store::StoreError;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn get_account(&mut self) -> Answer {
        let account = self.account()?;
        Ok(Reply::Account(self.load_account(account).await?))
    }

    /// Stores a valid card; the market learns only its expiry, to refuse checkouts after it.
    pub(super) async fn set_card(&mut self, input: CardInput) -> Answer {
        let account = self.account()?;
        let card = crate::card::validate(&input, crate::card::this_month())?;
        drop(input);
        let expiry = (card.exp_year, card.exp_month);
        self.shared
            .writer
            .run(Op::SetCard(account, Some(card)))
            .await
            .map_err(internal)?;
        self.shared
            .engine
            .send(Command::CardChanged(account, Some(expiry)))?;
        Ok(Reply::Account(self.load_account(account).await?))
    }

    pub(super) async fn remove_card(&mut self) -> Answer {
        let account = self.account()?;
        self.shared
            .writer
            .run(Op::SetCard(account, None))
            .await
            .map_err(internal)?;
        self.shared
            .engine
            .send(Command::CardChanged(account, None))?;
        Ok(Reply::Account(self.load_account(account).await?))
    }

    pub(super) async fn load_account(&self, account: AccountId) -> Result<AccountView, WireError> {
        self.shared
            .reads
            .account_by_id(account)
            .await
            .map_err(internal)?
            .map(|row| row.view)
            .ok_or_else(|| err(ErrorCode::NotFound, "this account no longer exists"))
    }

    pub(super) async fn check_password(
        &self,
        account: AccountId,
        password: String,
    ) -> Result<(), WireError> {
        let row = self
            .shared
            .reads
            .account_by_id(account)
            .await
            .map_err(internal)?;
        let hash = row.map(|r| r.password_hash);
        if self.verify(password, hash).await? {
            Ok(())
        } else {
            Err(WireError::field(
                ErrorCode::BadCredentials,
                Field::Password,
                "the current password is wrong",
            ))
        }
    }

    pub(super) async fn update_account(&mut self, update: AccountUpdate) -> Answer {
        let account = self.account()?;
        let first_name = update
            .first_name
            .map(|v| crate::names::person_name(&v, Field::FirstName))
            .transpose()?;
        let last_name = update
            .last_name
            .map(|v| crate::names::person_name(&v, Field::LastName))
            .transpose()?;
        let email = update
            .email
            .map(|v| crate::email::validate(&v))
            .transpose()?;
        let mut password_hash = None;
        if let Some((current, new)) = update.password {
            auth::validate_password(&new)?;
            self.check_password(account, current).await?;
            password_hash = Some(self.hash(new).await?);
        }
        // A new password ends every other session of the account; this one stays.
        let keep_session = self.login.as_ref().map(|l| l.token_hash);
        let changes_password = password_hash.is_some();
        let op = Op::UpdateAccount {
            account,
            first_name,
            last_name,
            email,
            password_hash,
            keep_session,
        };
        match self.shared.writer.run(op).await {
            Ok(_) => {
                if let (true, Some(keep)) = (changes_password, keep_session) {
                    self.shared.registry.revoke_all_but(account, keep);
                }
                Ok(Reply::Account(self.load_account(account).await?))
            }
            Err(StoreError::Duplicate) => Err(WireError::field(
                ErrorCode::EmailTaken,
                Field::Email,
                "another account already uses this email",
            )),
            Err(StoreError::NotFound) => {
                Err(err(ErrorCode::NotFound, "this account no longer exists"))
            }
            Err(e) => Err(internal(e)),
        }
    }

    pub(super) async fn delete_account(&mut self, password: String) -> Answer {
        let account = self.account()?;
        self.check_password(account, password).await?;
        // The engine forgets the account and queues the delete itself, so no cart or checkout job
        // for this account can reach the writer after its row is gone.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .engine
            .send(Command::DeleteAccount(account, tx))?;
        match rx.await {
            Ok(Ok(_)) | Ok(Err(StoreError::NotFound)) => {}
            Ok(Err(e)) => return Err(internal(e)),
            Err(_) => return Err(err(ErrorCode::ShuttingDown, "the server is shutting down")),
        }
        if let Some(login) = self.login.take() {
            self.shared.registry.detach_customer(login.account, self.id);
        }
        self.stock = None;
        Ok(Reply::Done)
    }
}
