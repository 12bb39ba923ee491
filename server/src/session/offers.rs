//! A manufacturer's offers, which may arrive in parts.

use super::{Answer, Session};
use crate::engine::Command;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
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
}
