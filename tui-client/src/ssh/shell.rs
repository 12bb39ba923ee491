//! One shop on one SSH channel: the app, its own distributor connection, and the task that sends
//! its output as the client's window allows.

use super::backend::{Outbox, PtySize, SshBackend};
use crate::app::App;
use crate::net::Target;
use crate::run::{self, now_ms};
use crate::theme::Theme;
use crossterm::event::Event;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use russh::server::{Handle, Msg};
use russh::{ChannelWriteHalf, Disconnect};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most output one session may have queued: a few full redraws of a large window. A client
/// that stops reading reaches it and is dropped.
pub const OUTBOX_CAP: usize = 1024 * 1024;
/// The largest piece handed to the channel at once (the limit is 64 KiB).
pub const CHUNK: usize = 32 * 1024;

/// What a shell needs to start.
pub struct Shell {
    /// The distributor, as a gateway.
    pub target: Target,
    /// Shown in the header (`ssh`, or `demo`).
    pub label: Option<String>,
    /// The customer's key, `SHA256:...`, if they came with one.
    pub fingerprint: Option<String>,
    /// The no-colour theme: `NO_COLOR` set or `TERM=dumb` on this session.
    pub plain: bool,
    /// The pty's size, updated on `window-change`.
    pub size: Arc<PtySize>,
}

/// Runs the shop until the customer quits, the client goes away (`stop`), or the client stops
/// reading; then restores the client's terminal and ends the channel with exit status 0 (1 after
/// an error).
pub async fn run(
    shell: Shell,
    events: mpsc::Receiver<std::io::Result<Event>>,
    write: ChannelWriteHalf<Msg>,
    handle: Handle,
    stop: CancellationToken,
) {
    let outbox = Arc::new(Outbox::new(OUTBOX_CAP));
    let pump = tokio::spawn(pump(outbox.clone(), write));
    let result = app(&shell, events, outbox.clone(), &stop).await;
    if let Err(e) = &result {
        tracing::info!(error = %e, "ssh session ended");
    }
    if outbox.overflowed() {
        // Never drop part of a frame; drop the client instead.
        pump.abort();
        let _ = handle
            .disconnect(
                Disconnect::ByApplication,
                "the client stopped reading".into(),
                String::new(),
            )
            .await;
        return;
    }
    outbox.close();
    if let Ok(Some(write)) = pump.await {
        let _ = write.exit_status(u32::from(result.is_err())).await;
        let _ = write.eof().await;
        let _ = write.close().await;
    }
}

async fn app(
    shell: &Shell,
    mut events: mpsc::Receiver<std::io::Result<Event>>,
    outbox: Arc<Outbox>,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let size = shell.size.get();
    let backend = SshBackend::new(outbox, shell.size.clone());
    let viewport = Viewport::Fixed(Rect::new(0, 0, size.width, size.height));
    let mut terminal = Terminal::with_options(backend, TerminalOptions { viewport })?;
    terminal.backend_mut().enter()?;
    let theme = if shell.plain {
        Theme::plain()
    } else {
        Theme::colored()
    };
    let mut app = App::new(theme, now_ms());
    app.label = shell.label.clone();
    app.ssh_key.fingerprint = shell.fingerprint.clone();
    let stream = futures::stream::poll_fn(move |cx| events.poll_recv(cx));
    let result = run::drive(&mut terminal, stream, app, shell.target.clone(), None, stop).await;
    let left = terminal.backend_mut().leave();
    result.and(left)
}

/// Sends the outbox in chunks as the client's window allows, until it is closed and empty. Returns
/// the write half to end the channel with, or `None` if the client is gone.
async fn pump(outbox: Arc<Outbox>, write: ChannelWriteHalf<Msg>) -> Option<ChannelWriteHalf<Msg>> {
    while let Some(chunk) = outbox.next_chunk(CHUNK).await {
        // Waits while the client's window is full: this is where a slow client pushes back.
        write.data_bytes(chunk).await.ok()?;
    }
    Some(write)
}

/// Ends a channel that has no terminal with a one-line hint.
pub async fn refuse_without_pty(write: ChannelWriteHalf<Msg>) {
    let hint = "The shop needs a terminal: connect with `ssh -t` (and without -T).\r\n";
    let _ = write.extended_data_bytes(1, hint.as_bytes().to_vec()).await;
    let _ = write.exit_status(1).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}
