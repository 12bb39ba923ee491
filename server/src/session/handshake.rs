//! The handshake: the Hello, the credential its role needs, and a manufacturer's admission by the
//! engine, which opens its link.

use super::relay::{Delivery, Link, DELIVERY_GRACE};
use super::{err, End, Session};
use crate::engine::Command;
use protocol::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
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
            let _ = self.send(&ServerMessage::Refused(reason)).await;
            return Err(End::Gone);
        }
        self.role = hello.role;
        let mut manufacturer = None;
        let mut credential = None;
        if let Err(reason) = self.operator_grade(&hello) {
            tracing::warn!(peer = %self.peer, role = ?hello.role, "refused: missing or wrong operator key");
            let _ = self.send(&ServerMessage::Refused(reason)).await;
            return Err(End::Gone);
        }
        if hello.role == Role::Manufacturer {
            let name = match crate::names::catalog_name(
                hello.name.as_deref().unwrap_or_default(),
                "a manufacturer name",
                MAX_MANUFACTURER_NAME_BYTES,
            ) {
                Ok(name) => name,
                Err(why) => {
                    let reason = WireError::new(ErrorCode::BadHandshake, why);
                    let _ = self.send(&ServerMessage::Refused(reason)).await;
                    return Err(End::Gone);
                }
            };
            let (events_tx, events) = mpsc::unbounded_channel();
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.shared
                .engine
                .send(Command::ManufacturerHello {
                    name: name.clone(),
                    key: hello.key,
                    events: events_tx.clone(),
                    reply: tx,
                })
                .map_err(End::Close)?;
            let admitted = rx
                .await
                .map_err(|_| End::Close(err(ErrorCode::ShuttingDown, "shutting down")))?;
            let (id, acked, issued) = match admitted {
                Ok(admitted) => admitted,
                Err(reason) => {
                    let _ = self.send(&ServerMessage::Refused(reason)).await;
                    return Err(End::Gone);
                }
            };
            let durable = self.shared.registry.watch_outbox(id, acked);
            let delivery = match self.shared.broker {
                Some(_) => Delivery::Undecided(Instant::now() + DELIVERY_GRACE),
                None => Delivery::Tcp,
            };
            self.link = Some(Link {
                id,
                events,
                events_tx: events_tx.downgrade(),
                durable,
                sent: acked,
                acked,
                name: name.clone(),
                delivery,
            });
            manufacturer = Some(id);
            credential = issued;
        }
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

    /// Whether the Hello carries the credential its role needs. Customers need none; every other
    /// role (manufacturers, operators, gateways) presents the peer key when the distributor has one.
    /// The one place that decides it.
    /// Operator-grade roles (operators, and gateways that vouch for the customers they carry) must
    /// present the operator key: the one check, [`crate::identity::operator::OperatorKey::check`].
    /// Manufacturers are checked by the engine against their own name's credential.
    pub(super) fn operator_grade(&self, hello: &Hello) -> Result<(), WireError> {
        match hello.role {
            Role::Operator | Role::Gateway => self.shared.operator_key.check(hello.key.as_deref()),
            Role::Customer | Role::Manufacturer => Ok(()),
        }
    }
}
