//! The operator's requests.

use super::{err, Answer, Session};
use crate::engine::Command;
use crate::operator::watch::StatusWatch;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    /// The operator's snapshot; from now on this connection also gets the deltas.
    pub(super) async fn status(&mut self) -> Answer {
        self.operator()?;
        // Subscribe first, so that no change between the snapshot and the subscription is lost.
        let newest = self.shared.registry.watch_status();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.engine.send(Command::Status(tx))?;
        let status = rx
            .await
            .map_err(|_| err(ErrorCode::ShuttingDown, "shutting down"))?;
        self.status_watch = Some(StatusWatch::new(newest, status.clone()));
        Ok(Reply::Status(Box::new(status)))
    }
}
