//! Request dispatch: which handler answers each request, and who may send it.

use super::relay::Delivery;
use super::{err, internal, Answer, Session};
use crate::engine::{CartOp, Command};
use crate::store::now_ms;
use crate::store::writer::Op;
use crate::store::StoreError;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Whether this connection carries a customer: a shop, or a gateway on behalf of one.
    pub(super) fn carries_customer(&self) -> bool {
        matches!(self.role, Role::Customer | Role::Gateway)
    }

    pub(super) fn account(&self) -> Result<AccountId, WireError> {
        let customer = self.carries_customer();
        match &self.login {
            Some(login) if customer && login.expires_at_ms > now_ms() => Ok(login.account),
            Some(_) if customer => Err(err(
                ErrorCode::SessionExpired,
                "your session expired; please log in again",
            )),
            None if customer => Err(err(
                ErrorCode::NotAuthenticated,
                "please sign up or log in first",
            )),
            _ => Err(err(ErrorCode::Forbidden, "only customers can do that")),
        }
    }

    pub(super) fn manufacturer(&self) -> Result<ManufacturerId, WireError> {
        self.link
            .as_ref()
            .map(|l| l.id)
            .ok_or_else(|| err(ErrorCode::Forbidden, "only manufacturers can do that"))
    }

    pub(super) fn operator(&self) -> Result<(), WireError> {
        match self.role {
            Role::Operator => Ok(()),
            _ => Err(err(ErrorCode::Forbidden, "only operators can do that")),
        }
    }

    pub(super) async fn handle(&mut self, body: RequestBody) -> Answer {
        let engine = self.shared.engine.clone();
        match body {
            RequestBody::Ping => Ok(Reply::Pong),
            RequestBody::SignUp(form) => self.sign_up(form).await,
            RequestBody::LogIn { email, password } => self.log_in(email, password).await,
            RequestBody::Resume { token } => self.resume(token).await,
            RequestBody::LogOut => {
                self.account()?;
                if let Some(login) = self.login.take() {
                    self.shared.registry.detach_customer(login.account, self.id);
                    self.shared
                        .writer
                        .run(Op::DeleteSession(login.token_hash))
                        .await
                        .map_err(internal)?;
                }
                self.watch = None;
                Ok(Reply::Done)
            }
            RequestBody::GetAccount => {
                let account = self.account()?;
                Ok(Reply::Account(self.load_account(account).await?))
            }
            RequestBody::UpdateAccount(update) => self.update_account(update).await,
            RequestBody::DeleteAccount { password } => self.delete_account(password).await,
            RequestBody::SetCard(input) => {
                let account = self.account()?;
                let card = crate::card::validate(&input, crate::card::this_month())?;
                drop(input);
                let expiry = (card.exp_year, card.exp_month);
                self.shared
                    .writer
                    .run(Op::SetCard(account, Some(card)))
                    .await
                    .map_err(internal)?;
                engine.send(Command::CardChanged(account, Some(expiry)))?;
                Ok(Reply::Account(self.load_account(account).await?))
            }
            RequestBody::RemoveCard => {
                let account = self.account()?;
                self.shared
                    .writer
                    .run(Op::SetCard(account, None))
                    .await
                    .map_err(internal)?;
                engine.send(Command::CardChanged(account, None))?;
                Ok(Reply::Account(self.load_account(account).await?))
            }
            RequestBody::Catalog => self.catalog_page(None),
            RequestBody::CatalogPage { after } => self.catalog_page(Some(after)),
            RequestBody::GetCart => self.cart(CartOp::View).await,
            RequestBody::AddToCart { listing, quantity } => {
                self.cart(CartOp::Add(listing, quantity)).await
            }
            RequestBody::SetCartQuantity { listing, quantity } => {
                self.cart(CartOp::Set(listing, quantity)).await
            }
            RequestBody::RemoveFromCart { listing } => self.cart(CartOp::Remove(listing)).await,
            RequestBody::ClearCart => self.cart(CartOp::Clear).await,
            RequestBody::Checkout {
                checkout_id,
                lines,
                confirmed_total,
            } => {
                let account = self.account()?;
                engine
                    .ask(|tx| Command::Checkout(account, checkout_id, lines, confirmed_total, tx))
                    .await
            }
            RequestBody::Orders => {
                let account = self.account()?;
                let orders = self
                    .shared
                    .reads
                    .orders(account, MAX_ORDERS_LISTED)
                    .await
                    .map_err(internal)?;
                Ok(Reply::Orders(orders))
            }
            RequestBody::OrdersPage { before } => self.orders_page(before).await,
            RequestBody::GetOrder { order } => {
                let account = self.account()?;
                let found = self
                    .shared
                    .reads
                    .order_of(account, order)
                    .await
                    .map_err(internal)?;
                found
                    .map(Reply::Order)
                    .ok_or_else(|| err(ErrorCode::NotFound, "no such order"))
            }
            RequestBody::SubmitOffer { month, lines } => {
                let id = self.manufacturer()?;
                engine
                    .ask(|tx| Command::SubmitOffer(id, month, lines, tx))
                    .await
            }
            RequestBody::SubmitOfferPart { month, lines, last } => {
                self.offer_part(month, lines, last).await
            }
            RequestBody::AckNotices { through } => {
                let id = self.manufacturer()?;
                let reply = engine.ask(|tx| Command::Ack(id, through, tx)).await?;
                if let Some(link) = self.link.as_mut() {
                    link.acked = link.acked.max(through);
                    if let Delivery::Broker(relay) = &link.delivery {
                        relay.acked(link.acked);
                    }
                }
                self.relay()
                    .await
                    .map_err(|_| err(ErrorCode::Internal, "relay failed"))?;
                Ok(reply)
            }
            RequestBody::ReportDispatch { order } => {
                let id = self.manufacturer()?;
                self.shared
                    .writer
                    .run(Op::Dispatch {
                        manufacturer: id,
                        order,
                    })
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound => {
                            err(ErrorCode::NotFound, "no such order among yours")
                        }
                        e => internal(e),
                    })?;
                Ok(Reply::Done)
            }
            RequestBody::CloseMonth => {
                self.operator()?;
                engine.ask(Command::CloseMonth).await
            }
            RequestBody::Status => self.status().await,
            RequestBody::SetMonthLength { secs } => {
                self.operator()?;
                engine.ask(|tx| Command::SetMonthLength(secs, tx)).await
            }
            RequestBody::KeyLogIn { fingerprint } => self.key_log_in(fingerprint).await,
            RequestBody::RememberKey { fingerprint } => self.remember_key(fingerprint).await,
            RequestBody::ForgetKey { fingerprint } => self.forget_key(fingerprint).await,
            RequestBody::CustomerAddress { ip } => self.customer_address(ip),
            RequestBody::NoticesFromBroker => self.notices_from_broker(),
            RequestBody::RevokeManufacturer { name } => {
                self.operator()?;
                engine.ask(|tx| Command::RevokeManufacturer(name, tx)).await
            }
        }
    }

    pub(super) fn anonymous_only(&self) -> Result<(), WireError> {
        match self.carries_customer() {
            true => Ok(()),
            false => Err(err(ErrorCode::Forbidden, "only customers have accounts")),
        }
    }
}
