//! Request dispatch: who may send each request, and which handler answers it.
//!
//! Two tables with one line per request. [`guard`] says which roles may send it; `handle` checks
//! that once, before any handler runs, and then names the handler. So a handler never checks the
//! role itself: it only checks what its role leaves open, such as whether a customer has logged in
//! ([`Session::account`]).

use super::{err, Answer, Session};
use crate::engine::CartOp;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

/// Which roles may send a request, and what the others are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Guard {
    roles: &'static [Role],
    refusal: &'static str,
}

/// The roles that carry a customer: a shop, or a gateway on behalf of one.
const CUSTOMER_ROLES: &[Role] = &[Role::Customer, Role::Gateway];

const ANYONE: Guard = Guard {
    roles: &[
        Role::Customer,
        Role::Gateway,
        Role::Manufacturer,
        Role::Operator,
    ],
    refusal: "",
};
/// Sign-up, log-in and resume: the requests that make a customer connection a logged-in one.
const NEWCOMERS: Guard = Guard {
    roles: CUSTOMER_ROLES,
    refusal: "only customers have accounts",
};
/// What a logged-in customer does; the handler checks the login.
const CUSTOMERS: Guard = Guard {
    roles: CUSTOMER_ROLES,
    refusal: "only customers can do that",
};
/// The catalog: customers (once logged in) and operators.
const BROWSERS: Guard = Guard {
    roles: &[Role::Customer, Role::Gateway, Role::Operator],
    refusal: "manufacturers do not browse the catalog",
};
const MANUFACTURERS: Guard = Guard {
    roles: &[Role::Manufacturer],
    refusal: "only manufacturers can do that",
};
const OPERATORS: Guard = Guard {
    roles: &[Role::Operator],
    refusal: "only operators can do that",
};
/// A plain customer connection could claim any key, so only a gateway (which proved itself with
/// the operator-grade key) may vouch for one.
const KEY_GATEWAYS: Guard = Guard {
    roles: &[Role::Gateway],
    refusal: "only a gateway may vouch for an SSH key",
};
/// A plain customer could dodge the throttle by naming another address.
const ADDRESS_GATEWAYS: Guard = Guard {
    roles: &[Role::Gateway],
    refusal: "only a gateway may say where its customer connects from",
};

impl Guard {
    /// Lets `role` through, or refuses it as `Forbidden`.
    pub(super) fn check(self, role: Role) -> Result<(), WireError> {
        match self.roles.contains(&role) {
            true => Ok(()),
            false => Err(err(ErrorCode::Forbidden, self.refusal)),
        }
    }
}

/// Who may send `body`.
pub(super) fn guard(body: &RequestBody) -> Guard {
    match body {
        RequestBody::Ping => ANYONE,
        RequestBody::SignUp(_) => NEWCOMERS,
        RequestBody::LogIn { .. } => NEWCOMERS,
        RequestBody::Resume { .. } => NEWCOMERS,
        RequestBody::LogOut => CUSTOMERS,
        RequestBody::GetAccount => CUSTOMERS,
        RequestBody::UpdateAccount(_) => CUSTOMERS,
        RequestBody::DeleteAccount { .. } => CUSTOMERS,
        RequestBody::SetCard(_) => CUSTOMERS,
        RequestBody::RemoveCard => CUSTOMERS,
        RequestBody::Catalog => BROWSERS,
        RequestBody::CatalogPage { .. } => BROWSERS,
        RequestBody::GetCart => CUSTOMERS,
        RequestBody::AddToCart { .. } => CUSTOMERS,
        RequestBody::SetCartQuantity { .. } => CUSTOMERS,
        RequestBody::RemoveFromCart { .. } => CUSTOMERS,
        RequestBody::ClearCart => CUSTOMERS,
        RequestBody::Checkout { .. } => CUSTOMERS,
        RequestBody::Orders => CUSTOMERS,
        RequestBody::OrdersPage { .. } => CUSTOMERS,
        RequestBody::GetOrder { .. } => CUSTOMERS,
        RequestBody::SubmitOffer { .. } => MANUFACTURERS,
        RequestBody::SubmitOfferPart { .. } => MANUFACTURERS,
        RequestBody::AckNotices { .. } => MANUFACTURERS,
        RequestBody::ReportDispatch { .. } => MANUFACTURERS,
        RequestBody::ReportDispatches { .. } => MANUFACTURERS,
        RequestBody::NoticesFromBroker => MANUFACTURERS,
        RequestBody::CloseMonth => OPERATORS,
        RequestBody::Status => OPERATORS,
        RequestBody::SetMonthLength { .. } => OPERATORS,
        RequestBody::RevokeManufacturer { .. } => OPERATORS,
        RequestBody::KeyLogIn { .. } => KEY_GATEWAYS,
        RequestBody::RememberKey { .. } => KEY_GATEWAYS,
        RequestBody::ForgetKey { .. } => KEY_GATEWAYS,
        RequestBody::CustomerAddress { .. } => ADDRESS_GATEWAYS,
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// Whether this connection carries a customer: a shop, or a gateway on behalf of one.
    pub(super) fn carries_customer(&self) -> bool {
        CUSTOMER_ROLES.contains(&self.role)
    }

    /// Answers one request: the guard first, then its handler.
    #[rustfmt::skip] // A table, one line per request; rustfmt would break the longest arms.
    pub(super) async fn handle(&mut self, body: RequestBody) -> Answer {
        guard(&body).check(self.role)?;
        match body {
            RequestBody::Ping => Ok(Reply::Pong),
            RequestBody::SignUp(form) => self.sign_up(form).await,
            RequestBody::LogIn { email, password } => self.log_in(email, password).await,
            RequestBody::Resume { token } => self.resume(token).await,
            RequestBody::LogOut => self.log_out().await,
            RequestBody::GetAccount => self.get_account().await,
            RequestBody::UpdateAccount(update) => self.update_account(update).await,
            RequestBody::DeleteAccount { password } => self.delete_account(password).await,
            RequestBody::SetCard(input) => self.set_card(input).await,
            RequestBody::RemoveCard => self.remove_card().await,
            RequestBody::Catalog => self.catalog_page(None),
            RequestBody::CatalogPage { after } => self.catalog_page(Some(after)),
            RequestBody::GetCart => self.cart(CartOp::View).await,
            RequestBody::AddToCart { listing, quantity } => self.cart(CartOp::Add(listing, quantity)).await,
            RequestBody::SetCartQuantity { listing, quantity } => self.cart(CartOp::Set(listing, quantity)).await,
            RequestBody::RemoveFromCart { listing } => self.cart(CartOp::Remove(listing)).await,
            RequestBody::ClearCart => self.cart(CartOp::Clear).await,
            RequestBody::Checkout { checkout_id, lines, confirmed_total } => self.checkout(checkout_id, lines, confirmed_total).await,
            RequestBody::Orders => self.orders().await,
            RequestBody::OrdersPage { before } => self.orders_page(before).await,
            RequestBody::GetOrder { order } => self.order(order).await,
            RequestBody::SubmitOffer { month, lines } => self.submit_offer(month, lines).await,
            RequestBody::SubmitOfferPart { month, lines, last } => self.offer_part(month, lines, last).await,
            RequestBody::AckNotices { through } => self.ack_notices(through).await,
            RequestBody::ReportDispatch { order } => self.report_dispatch(order).await,
            RequestBody::ReportDispatches { orders } => self.report_dispatches(orders).await,
            RequestBody::NoticesFromBroker => self.notices_from_broker(),
            RequestBody::CloseMonth => self.close_month().await,
            RequestBody::Status => self.status().await,
            RequestBody::SetMonthLength { secs } => self.set_month_length(secs).await,
            RequestBody::RevokeManufacturer { name } => self.revoke_manufacturer(name).await,
            RequestBody::KeyLogIn { fingerprint } => self.key_log_in(fingerprint).await,
            RequestBody::RememberKey { fingerprint } => self.remember_key(fingerprint).await,
            RequestBody::ForgetKey { fingerprint } => self.forget_key(fingerprint).await,
            RequestBody::CustomerAddress { ip } => self.customer_address(ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::guard;
    use protocol::*;

    fn admits(body: RequestBody) -> Vec<Role> {
        let roles = [
            Role::Customer,
            Role::Gateway,
            Role::Manufacturer,
            Role::Operator,
        ];
        let guard = guard(&body);
        roles
            .into_iter()
            .filter(|r| guard.check(*r).is_ok())
            .collect()
    }

    #[test]
    fn each_kind_of_request_admits_only_its_roles() {
        assert_eq!(admits(RequestBody::Ping).len(), 4);
        assert_eq!(
            admits(RequestBody::GetCart),
            [Role::Customer, Role::Gateway]
        );
        assert_eq!(
            admits(RequestBody::Catalog),
            [Role::Customer, Role::Gateway, Role::Operator]
        );
        assert_eq!(admits(RequestBody::NoticesFromBroker), [Role::Manufacturer]);
        assert_eq!(admits(RequestBody::CloseMonth), [Role::Operator]);
        let key = RequestBody::KeyLogIn {
            fingerprint: String::new(),
        };
        assert_eq!(admits(key), [Role::Gateway]);
    }

    #[test]
    fn a_refused_role_is_told_forbidden_with_the_reason() {
        let refusal = guard(&RequestBody::Status).check(Role::Customer);
        let refusal = refusal.err().map(|e| (e.code, e.message));
        assert_eq!(
            refusal,
            Some((ErrorCode::Forbidden, "only operators can do that".into()))
        );
    }
}
