//! The event loop: one `tokio::select!` over the terminal's key events, the connection task's
//! events and a tick. It feeds [`Msg`]s to [`App::update`], carries out the [`Cmd`]s, and redraws
//! only when something changed. One driver ([`drive`]) for every terminal: the local one ([`run`])
//! and each SSH session ([`crate::ssh`]).

use crate::app::{App, Cmd, Msg};
use crate::net::{self, NetCmd, Target};
use crate::screens;
use crate::theme::Theme;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream};
use futures::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::layout::Rect;
use ratatui::Terminal;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often time moves forward in the model (countdown, spinner, highlights).
const TICK: Duration = Duration::from_millis(100);

/// Wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The operator console's connection: `shop --operator`, or the demo's fifth tab.
pub struct OperatorLink {
    /// Where the distributor is, in the operator role, with the operator key if it has one.
    pub target: Target,
    /// The console is the whole app: no customer connection, no login.
    pub only: bool,
}

/// Runs the app in the local terminal until the customer quits, a SIGHUP or SIGTERM arrives, or
/// `shutdown` is cancelled.
pub async fn run(
    target: Target,
    label: Option<String>,
    mouse: bool,
    operator: Option<OperatorLink>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut app = App::new(Theme::from_env(), now_ms());
    app.label = label;
    if let Some(link) = &operator {
        app = app.with_operator(link.only);
    }

    // Runs after ratatui's own hook (installed below), which restores the terminal first. A panic
    // anywhere (also in a background task: the connection, or the demo's servers) ends the app, so
    // it never goes on drawing into a restored terminal.
    let previous = std::panic::take_hook();
    let stop_on_panic = shutdown.clone();
    std::panic::set_hook(Box::new(move |info| {
        if mouse {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        }
        stop_on_panic.cancel();
        previous(info);
    }));
    // Installs a panic hook that restores the terminal before the panic message is printed.
    let mut terminal = ratatui::try_init()?;
    if mouse {
        crossterm::execute!(std::io::stdout(), EnableMouseCapture)?;
    }
    let stop = shutdown.child_token();
    let signals = tokio::spawn(stop_on_signals(stop.clone()));
    let result = drive(
        &mut terminal,
        EventStream::new(),
        app,
        target,
        operator,
        &stop,
    )
    .await;
    signals.abort();
    if mouse {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    }
    ratatui::restore();
    result
}

/// The app's loop on any terminal: locally crossterm's `EventStream` and stdout, over SSH the parsed
/// channel bytes and a backend that writes to the channel (see [`crate::ssh`]). It starts the
/// connection task for `target` (and for `operator`'s console, if any; alone in `shop --operator`),
/// and stops them on the way out. Returns when the customer quits, the events end, or `shutdown` is
/// cancelled.
pub async fn drive<B, E>(
    terminal: &mut Terminal<B>,
    events: E,
    mut app: App,
    target: Target,
    operator: Option<OperatorLink>,
    shutdown: &CancellationToken,
) -> std::io::Result<()>
where
    B: Backend<Error = std::io::Error>,
    E: Stream<Item = std::io::Result<TermEvent>> + Unpin,
{
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (ops_tx, mut ops_rx) = mpsc::unbounded_channel();
    let net_stop = shutdown.child_token();
    let only = operator.as_ref().is_some_and(|o| o.only);
    let ops = operator.map(|link| net::spawn(link.target, ops_tx, net_stop.clone()));
    let (net, net_task) = if only {
        // The console alone: a customer channel that goes nowhere.
        (mpsc::unbounded_channel().0, None)
    } else {
        let (net, task) = net::spawn(target, events_tx, net_stop.clone());
        (net, Some(task))
    };
    let links = Links {
        net,
        customer: !only,
        ops: ops.as_ref().map(|(tx, _)| tx.clone()),
    };
    let result = event_loop(
        terminal,
        &mut app,
        events,
        &mut events_rx,
        &mut ops_rx,
        &links,
        shutdown,
    )
    .await;
    net_stop.cancel();
    for task in net_task.into_iter().chain(ops.map(|(_, task)| task)) {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    result
}

/// Where commands go: the customer's connection and the operator's.
struct Links {
    net: mpsc::UnboundedSender<NetCmd>,
    /// Whether the customer connection runs (not in `shop --operator`).
    customer: bool,
    ops: Option<mpsc::UnboundedSender<NetCmd>>,
}

async fn event_loop<B, E>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut keys: E,
    net_events: &mut mpsc::UnboundedReceiver<crate::app::NetEvent>,
    ops_events: &mut mpsc::UnboundedReceiver<crate::app::NetEvent>,
    links: &Links,
    shutdown: &CancellationToken,
) -> std::io::Result<()>
where
    B: Backend<Error = std::io::Error>,
    E: Stream<Item = std::io::Result<TermEvent>> + Unpin,
{
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    loop {
        if dirty {
            terminal.draw(|frame| screens::draw(frame, app))?;
            dirty = false;
        }
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) => Msg::Key(k),
                Some(Ok(TermEvent::Mouse(m))) => Msg::Mouse(m),
                Some(Ok(TermEvent::Resize(width, height))) => {
                    // Also what makes a fixed viewport (over SSH) follow the window.
                    terminal.resize(Rect::new(0, 0, width, height))?;
                    dirty = true;
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            event = net_events.recv(), if links.customer => match event {
                Some(event) => Msg::Net(event),
                None => return Err(std::io::Error::other("the connection task stopped")),
            },
            event = ops_events.recv(), if links.ops.is_some() => match event {
                Some(event) => Msg::Operator(event),
                None => return Err(std::io::Error::other("the operator connection task stopped")),
            },
            _ = tick.tick() => Msg::Tick { now_ms: now_ms() },
        };
        let is_tick = matches!(msg, Msg::Tick { .. });
        let before = app.now_ms;
        for cmd in app.update(msg) {
            match cmd {
                Cmd::Send { tag, body } => {
                    let _ = links.net.send(NetCmd::Send { tag, body });
                }
                Cmd::SendOperator { tag, body } => {
                    if let Some(ops) = &links.ops {
                        let _ = ops.send(NetCmd::Send { tag, body });
                    }
                }
                Cmd::Session(token) => {
                    let _ = links.net.send(NetCmd::Session(token));
                }
                Cmd::Quit => return Ok(()),
            }
        }
        dirty = !is_tick || app.tick_changes_view(before);
    }
}

/// Cancels `stop` on SIGHUP (the terminal went away) or SIGTERM.
async fn stop_on_signals(stop: CancellationToken) {
    let mut hangup = signal(tokio::signal::unix::SignalKind::hangup());
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    tokio::select! {
        _ = recv_signal(&mut hangup) => stop.cancel(),
        _ = recv_signal(&mut terminate) => stop.cancel(),
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
