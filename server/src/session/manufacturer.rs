//! What a manufacturer asks: to offer goods for a month (whole, or in parts when the offer is
//! bigger than a frame) and to report an order dispatched. Its sale notices are `relay.rs`.

use super::{err, internal, Answer, Session};
use crate::engine::Command;
use crate::store::writer::{Op, Outcome};
use crate::store::StoreError;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn submit_offer(&mut self, month: MonthId, lines: Vec<OfferLine>) -> Answer {
        let id = self.manufacturer()?;
        self.shared
            .engine
            .ask(|tx| Command::SubmitOffer(id, month, lines, tx))
            .await
    }

    /// One part of a multi-part offer; the last one submits the whole offer.
    pub(super) async fn offer_part(
        &mut self,
        month: MonthId,
        lines: Vec<OfferLine>,
        last: bool,
    ) -> Answer {
        let id = self.manufacturer()?;
        let Some(lines) = self.offer_parts.add(month, lines, last)? else {
            return Ok(Reply::Done);
        };
        self.shared
            .engine
            .ask(|tx| Command::SubmitOffer(id, month, lines, tx))
            .await
    }

    pub(super) async fn report_dispatch(&mut self, order: OrderId) -> Answer {
        match self.dispatch(vec![order]).await?.is_empty() {
            true => Ok(Reply::Done),
            false => Err(err(ErrorCode::NotFound, "no such order among yours")),
        }
    }

    /// A round of dispatches in one writer job: one savepoint and one answer for all of them.
    pub(super) async fn report_dispatches(&mut self, orders: Vec<OrderId>) -> Answer {
        if orders.len() > MAX_DISPATCHES_PER_REPORT {
            return Err(WireError::new(
                ErrorCode::InvalidInput,
                format!(
                    "a dispatch report names at most {MAX_DISPATCHES_PER_REPORT} orders, not {}",
                    orders.len()
                ),
            ));
        }
        let unknown = match orders.is_empty() {
            true => Vec::new(),
            false => self.dispatch(orders).await?,
        };
        Ok(Reply::Dispatched { unknown })
    }

    /// Marks this manufacturer's lines of `orders` dispatched; returns the orders that hold none.
    async fn dispatch(&mut self, orders: Vec<OrderId>) -> Result<Vec<OrderId>, WireError> {
        let manufacturer = self.manufacturer()?;
        match self
            .shared
            .writer
            .run(Op::Dispatch {
                manufacturer,
                orders,
            })
            .await
        {
            Ok(Outcome::Dispatched { unknown }) => Ok(unknown),
            Ok(_) => Err(internal(StoreError::Corrupt(
                "the writer answered a dispatch with something else".into(),
            ))),
            Err(e) => Err(internal(e)),
        }
    }
}
