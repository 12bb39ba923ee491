//! The handshake: the Hello, the credential its role needs, and for a manufacturer its admission
//! by the market, which opens its link (`relay.rs`).

use super::{err, End, Session};
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    pub(super) async fn handshake(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + self.shared.config.frame_timeout;
        let hello = match self.next_message(deadline).await? {
            ClientMessage::Hello(hello) => hello,
            ClientMessage::Request(_) => {
                return Err(End::Close(err(
                    ErrorCode::BadHandshake,
                    "the first frame must be Hello",
                )))
            }
        };
        if hello.version != PROTOCOL_VERSION {
            let reason = WireError::new(
                ErrorCode::VersionMismatch,
                format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, the client speaks {}; please upgrade",
                    hello.version
                ),
            );
            return Err(self.refuse(reason).await);
        }
        self.role = hello.role;
        if let Err(reason) = self.operator_grade(&hello) {
            tracing::warn!(peer = %self.peer, role = ?hello.role, "refused: missing or wrong operator key");
            return Err(self.refuse(reason).await);
        }
        let (manufacturer, credential) = match hello.role {
            Role::Manufacturer => {
                let (id, issued) = self.open_link(hello.name.as_deref(), hello.key).await?;
                (Some(id), issued)
            }
            Role::Customer | Role::Operator | Role::Gateway => (None, None),
        };
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            server: format!("distributor/{}", env!("CARGO_PKG_VERSION")),
            manufacturer,
            month: self.shared.board.catalog.borrow().snapshot.month.clone(),
            credential,
        };
        self.send(&ServerMessage::Welcome(welcome)).await?;
        if self.link.is_some() {
            self.relay().await?;
        }
        Ok(())
    }

    /// Tells the peer why it may not connect. A refused peer gets no `Closing` after this.
    pub(super) async fn refuse(&mut self, reason: WireError) -> End {
        let _ = self.send(&ServerMessage::Refused(reason)).await;
        End::Gone
    }

    /// Whether the Hello carries the credential its role needs; the one place that decides it.
    /// Operator-grade roles (operators, and gateways that vouch for the customers they carry) must
    /// present the operator key: the one check, [`crate::identity::operator::OperatorKey::check`].
    /// Customers need none. Manufacturers are checked by the engine against their own name's
    /// credential.
    fn operator_grade(&self, hello: &Hello) -> Result<(), WireError> {
        match hello.role {
            Role::Operator | Role::Gateway => self.shared.operator_key.check(hello.key.as_deref()),
            Role::Customer | Role::Manufacturer => Ok(()),
        }
    }
}
