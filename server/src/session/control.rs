//! The operator's requests: the live status, the month's length and its close, and revoking a
//! manufacturer's credential. The market answers them all.

use super::{err, Answer, Session};
use crate::engine::Command;
use crate::operator::watch::StatusWatch;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// The operator's snapshot; from now on this connection also gets the deltas.
    pub(super) async fn status(&mut self) -> Answer {
        // Subscribe first, so that no change between the snapshot and the subscription is lost.
        let newest = self.shared.registry.watch_status();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.engine.send(Command::Status(tx))?;
        let mut status = rx
            .await
            .map_err(|_| err(ErrorCode::ShuttingDown, "shutting down"))?;
        // The market may be another node: the connections counted here are this node's own.
        status.node_clients = self.shared.registry.customer_counts().0;
        let local = self.shared.registry.clone();
        self.status_watch = Some(StatusWatch::new(newest, status.clone(), local));
        Ok(Reply::Status(Box::new(status)))
    }

    pub(super) async fn close_month(&mut self) -> Answer {
        self.shared.engine.ask(Command::CloseMonth).await
    }

    pub(super) async fn set_month_length(&mut self, secs: u64) -> Answer {
        self.shared
            .engine
            .ask(|tx| Command::SetMonthLength(secs, tx))
            .await
    }

    pub(super) async fn revoke_manufacturer(&mut self, name: String) -> Answer {
        self.shared
            .engine
            .ask(|tx| Command::RevokeManufacturer(name, tx))
            .await
    }
}
