//! What a manufacturer asks: to offer goods for a month (whole, or in parts when the offer is
//! bigger than a frame) and to report an order dispatched. Its sale notices are `relay.rs`.

use super::{err, internal, Answer, Session};
use crate::engine::Command;
use crate::store::writer::Op;
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
        let id = self.manufacturer()?;
        self.shared
            .writer
            .run(Op::Dispatch {
                manufacturer: id,
                order,
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => err(ErrorCode::NotFound, "no such order among yours"),
                e => internal(e),
            })?;
        Ok(Reply::Done)
    }
}
