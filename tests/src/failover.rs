//! Timing a fail-over from the outside: a customer that buys one unit on a fresh connection (resume
//! the session, read the catalog, check out, hang up), retried until it succeeds. Used by the cluster
//! tests and by `failover-probe` (bench/run's fail-over row).

use protocol::*;
use std::time::{Duration, Instant};

fn customer_hello() -> Hello {
    crate::harness::hello(Role::Customer, None)
}

/// A customer account that buys one unit through `addr` on a fresh connection: resume the session,
/// buy, hang up. Used to time fail-overs from the outside.
pub struct Probe {
    token: SessionToken,
}

impl Probe {
    /// Signs up a customer with a card through `addr`.
    pub async fn new(addr: &str) -> Probe {
        let c = crate::harness::customer(addr).await;
        Probe {
            token: c.session.token,
        }
    }

    /// One attempt; `Ok` when a checkout (or a definite out-of-stock answer) came back.
    pub async fn buy_once(&self, addr: &str) -> Result<(), String> {
        let (client, _events) = Client::connect(addr, customer_hello())
            .await
            .map_err(|e| e.to_string())?;
        client
            .call(RequestBody::Resume {
                token: self.token.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
        let catalog = client.whole_catalog().await.map_err(|e| e.to_string())?;
        let Some(item) = catalog.items.iter().find(|i| i.remaining > 0) else {
            return Ok(()); // sold out: the node answered
        };
        let result = client
            .call(RequestBody::Checkout {
                checkout_id: CheckoutId::generate(),
                confirmed_total: item.unit_price,
                lines: Some(vec![CartItem {
                    listing: item.listing,
                    quantity: 1,
                }]),
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.server_error()
                    .is_some_and(|w| w.code == ErrorCode::OutOfStock) =>
            {
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Retries until a checkout succeeds; returns when.
    pub async fn buy(&self, addr: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if self.buy_once(addr).await.is_ok() {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "no checkout got through {addr} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
