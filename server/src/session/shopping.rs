//! A customer's shopping: the cart, checkout and past orders. The market answers the cart and
//! checkout; orders are read from the store.

use super::{err, internal, Answer, Session};
use crate::engine::{CartOp, Command};
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn cart(&mut self, op: CartOp) -> Answer {
        let account = self.account()?;
        self.shared
            .engine
            .ask(|tx| Command::Cart(account, op, tx))
            .await
    }

    pub(super) async fn checkout(
        &mut self,
        checkout_id: CheckoutId,
        lines: Option<Vec<CartItem>>,
        confirmed_total: Cents,
    ) -> Answer {
        let account = self.account()?;
        self.shared
            .engine
            .ask(|tx| Command::Checkout(account, checkout_id, lines, confirmed_total, tx))
            .await
    }

    /// The newest orders.
    pub(super) async fn orders(&mut self) -> Answer {
        let account = self.account()?;
        let orders = self
            .shared
            .reads
            .orders(account, MAX_ORDERS_LISTED)
            .await
            .map_err(internal)?;
        Ok(Reply::Orders(orders))
    }

    /// Orders older than `before`, one page.
    pub(super) async fn orders_page(&mut self, before: OrderId) -> Answer {
        let account = self.account()?;
        let orders = self
            .shared
            .reads
            .orders_before(account, before, ORDERS_PAGE_LEN)
            .await
            .map_err(internal)?;
        Ok(Reply::Orders(orders))
    }

    /// One of this customer's orders; another's is "no such order", so ids cannot be probed.
    pub(super) async fn order(&mut self, order: OrderId) -> Answer {
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
}
