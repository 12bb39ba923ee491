//! A customer's shopping: the cart and past orders.

use super::{internal, Answer, Session};
use crate::engine::{CartOp, Command};
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
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

    pub(super) async fn cart(&mut self, op: CartOp) -> Answer {
        let account = self.account()?;
        self.shared
            .engine
            .ask(|tx| Command::Cart(account, op, tx))
            .await
    }
}
