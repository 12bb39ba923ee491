//! The accept loop: connection cap, a trusted balancer's PROXY header, optional TLS, one task per
//! connection, graceful shutdown.

use crate::proxy_header;
use crate::session::{self, Shared};
use protocol::*;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections until `stop` is cancelled, then waits for every session to finish.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    // A permit is taken before a connection is served and returned when its task ends, so the number
    // of live sessions never exceeds the cap.
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually EMFILE: out of file descriptors. Back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracker.spawn(refuse(stream));
            continue;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let trusted = &shared.config.trusted_proxies;
            let deadline = shared.config.frame_timeout;
            let peer =
                match proxy_header::client_address(&mut stream, peer, trusted, deadline).await {
                    Ok(client) => client,
                    Err(e @ proxy_header::HeaderError::Timeout(_)) => {
                        return tracing::debug!(%peer, "closing: {e}");
                    }
                    Err(e) => return tracing::warn!(%peer, "closing: {e}"),
                };
            match tls {
                None => session::serve(stream, peer, shared, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(shared.config.frame_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls_stream)) => session::serve(tls_stream, peer, shared, stop).await,
                        _ => tracing::debug!(%peer, "TLS handshake failed"),
                    }
                }
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Tells a connection over the cap why it is being closed.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let reason = WireError::new(
        ErrorCode::TooManyConnections,
        "the server is at its connection limit; try again shortly",
    );
    if let Ok(bytes) = protocol::codec::frame(&ServerMessage::Refused(reason)) {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&bytes)).await;
    }
}
