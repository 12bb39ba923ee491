//! The engine's side of manufacturer identities: admitting a connection under a name, and revoking
//! a name's credential. The rules themselves live in [`crate::identity::credentials`].

use super::{Admitted, Engine, ReplyTx};
use crate::identity::credentials::{self, Admission};
use crate::store::now_ms;
use crate::store::writer::{Done, Op};
use protocol::*;
use tokio::sync::{mpsc, oneshot};

impl Engine {
    fn manufacturer_named(&self, name: &str) -> Option<ManufacturerId> {
        self.market
            .manufacturers()
            .find(|(_, m)| m.name == name)
            .map(|(id, _)| id)
    }

    /// A connection under `name`. A wrong or missing credential for a registered name is refused and
    /// leaves the current link alone; the right one replaces the current link (the manufacturer
    /// restarted before its old connection timed out); a name without a credential registers.
    pub(super) fn on_manufacturer_hello(
        &mut self,
        name: String,
        key: Option<String>,
        events: mpsc::UnboundedSender<Event>,
        reply: oneshot::Sender<Result<Admitted, WireError>>,
    ) {
        let issued = match self
            .credentials
            .admit(self.manufacturer_named(&name), key.as_deref())
        {
            Admission::Admitted => None,
            Admission::Issue(issued) => Some(issued),
            Admission::Refused => {
                tracing::warn!(manufacturer = %name, "refused a connection without the name's credential");
                let _ = reply.send(Err(credentials::refusal(&name)));
                return;
            }
        };
        let (id, is_new) = self.market.register_manufacturer(&name);
        // Dropping the old sender tells the old session to close.
        self.manufacturers.insert(id, events);
        self.market.set_connected(id, true);
        self.ops.link_changed(id, now_ms());
        self.market.reset_offer_request(id);
        let acked = self
            .market
            .manufacturer(id)
            .map_or(NoticeSeq(0), |m| m.acked_seq);
        let last = self
            .market
            .manufacturer(id)
            .map_or(NoticeSeq(0), |m| m.last_seq);
        self.registry.outbox_durable(id, last);
        if is_new {
            self.submit(Op::RegisterManufacturer(id, name.clone()), Done::Nothing);
        }
        match issued {
            Some(issued) => {
                self.credentials.set(id, issued.hash);
                // The token goes out only once its hash is durable, so a distributor crash cannot
                // leave a manufacturer holding a token the distributor never stored.
                let (tx, rx) = oneshot::channel();
                self.submit(
                    Op::SetCredential(id, Some(issued.hash)),
                    Done::Reply(tx, Ok(Reply::Done)),
                );
                let token = issued.token;
                tokio::spawn(async move {
                    let result = match rx.await {
                        Ok(Ok(_)) => Ok((id, acked, Some(token))),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(WireError::new(ErrorCode::ShuttingDown, "shutting down")),
                    };
                    let _ = reply.send(result);
                });
                tracing::info!(manufacturer = %name, id = id.0, "manufacturer registered; credential issued");
            }
            None => {
                let _ = reply.send(Ok((id, acked, None)));
                tracing::info!(manufacturer = %name, id = id.0, "manufacturer connected");
            }
        }
        self.request_offers();
    }

    /// An operator forgets a name's credential and ends its link; the next connection under the name
    /// registers it again.
    pub(super) fn on_revoke_manufacturer(&mut self, name: String, reply: ReplyTx) {
        let Some(id) = self.manufacturer_named(&name) else {
            let _ = reply.send(Err(WireError::new(
                ErrorCode::NotFound,
                format!("no manufacturer is registered as {name:?}"),
            )));
            return;
        };
        self.credentials.revoke(id);
        if self.manufacturers.remove(&id).is_some() {
            self.market.set_connected(id, false);
            self.ops.link_changed(id, now_ms());
        }
        tracing::info!(manufacturer = %name, id = id.0, "credential revoked by an operator");
        self.submit(
            Op::SetCredential(id, None),
            Done::Reply(reply, Ok(Reply::Done)),
        );
    }
}
