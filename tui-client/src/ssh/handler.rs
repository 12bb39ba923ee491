//! One SSH connection: authentication, the one session channel, its pty and environment, and the
//! refusal of everything else (exec, subsystems, agent and X11 forwarding, port forwarding).

use super::backend::PtySize;
use super::input::InputParser;
use super::shell::{self, Shell};
use super::Gateway;
use crate::net::Target;
use crossterm::event::Event;
use russh::keys::HashAlg;
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, Pty};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Input events waiting for the app; a client typing faster than this waits (TCP backpressure).
const INPUT_QUEUE: usize = 256;
/// The environment variables a client may set. Everything else is refused.
const ALLOWED_ENV: [&str; 3] = ["NO_COLOR", "TERM", "LANG"];

/// The state of one connection.
pub struct Connection {
    gateway: Arc<Gateway>,
    /// The client's address: the distributor throttles its sign-ups and logins by it.
    peer: std::net::IpAddr,
    /// Set once authentication succeeded (the auth deadline checks it).
    pub authenticated: Arc<AtomicBool>,
    /// The SHA-256 fingerprint of the key the client proved, if any.
    fingerprint: Option<String>,
    channel: Option<SessionChannel>,
    /// Stops the app: cancelled when the channel closes or the connection ends (a child of the
    /// server's shutdown token, so a shutdown stops it too).
    app_stop: CancellationToken,
}

/// The one session channel, from open to shell.
struct SessionChannel {
    id: ChannelId,
    /// Taken when the shell starts.
    write: Option<ChannelWriteHalf<Msg>>,
    pty: Option<Arc<PtySize>>,
    term: String,
    no_color: bool,
    input: InputParser,
    events: Option<mpsc::Sender<std::io::Result<Event>>>,
}

impl Connection {
    /// A fresh connection from `peer` for `gateway`, stopped by `stop`.
    pub fn new(gateway: Arc<Gateway>, peer: std::net::IpAddr, stop: CancellationToken) -> Self {
        Connection {
            gateway,
            peer,
            authenticated: Arc::new(AtomicBool::new(false)),
            fingerprint: None,
            channel: None,
            app_stop: stop.child_token(),
        }
    }

    fn channel_mut(&mut self, id: ChannelId) -> Option<&mut SessionChannel> {
        self.channel.as_mut().filter(|c| c.id == id)
    }

    async fn start_shell(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let fingerprint = self.fingerprint.clone();
        let gateway = self.gateway.clone();
        let peer = self.peer;
        let Some(ch) = self.channel_mut(id) else {
            return session.channel_failure(id);
        };
        let Some(write) = ch.write.take() else {
            return session.channel_failure(id); // a second shell request
        };
        session.channel_success(id)?;
        let Some(size) = ch.pty.clone() else {
            tokio::spawn(shell::refuse_without_pty(write));
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        ch.events = Some(tx);
        let shell = Shell {
            target: Target {
                customer_ip: Some(peer),
                ..gateway.target.clone()
            },
            label: gateway.label.clone(),
            fingerprint,
            plain: ch.no_color || ch.term == "dumb",
            size,
        };
        let handle = session.handle();
        tokio::spawn(shell::run(shell, rx, write, handle, self.app_stop.clone()));
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.app_stop.cancel();
    }
}

fn to_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    // `none` is refused (the default): OpenSSH offers its key only after that refusal.

    async fn auth_publickey_offered(
        &mut self,
        _: &str,
        _: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept) // Any key may prove itself; the key is an identity, not an allow-list.
    }

    async fn auth_publickey(
        &mut self,
        _: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.fingerprint = Some(key.public_key.fingerprint(HashAlg::Sha256).to_string());
        self.authenticated.store(true, Ordering::Relaxed);
        Ok(Auth::Accept)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _: &str,
        _: &str,
        _: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // No prompts: an anonymous visitor, who logs in by hand.
        self.authenticated.store(true, Ordering::Relaxed);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channel.is_some() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let id = channel.id();
        // The read half is dropped: input arrives through `data` below, and a dropped receiver
        // never blocks the connection.
        let (_read, write) = channel.split();
        self.channel = Some(SessionChannel {
            id,
            write: Some(write),
            pty: None,
            term: String::new(),
            no_color: false,
            input: InputParser::default(),
            events: None,
        });
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        id: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _: u32,
        _: u32,
        _: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channel_mut(id).filter(|c| c.pty.is_none()) else {
            return session.channel_failure(id);
        };
        ch.pty = Some(Arc::new(PtySize::new(to_u16(cols), to_u16(rows))));
        ch.term = term.chars().take(64).collect();
        session.channel_success(id)
    }

    async fn env_request(
        &mut self,
        id: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = ALLOWED_ENV.contains(&name) && value.len() <= 256;
        let Some(ch) = self.channel_mut(id).filter(|_| allowed) else {
            return session.channel_failure(id);
        };
        match name {
            "NO_COLOR" => ch.no_color = !value.is_empty(),
            "TERM" => ch.term = value.to_string(),
            _ => {} // LANG: accepted; the shop speaks English and UTF-8 either way.
        }
        session.channel_success(id)
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start_shell(id, session).await
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        _: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        _: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)
    }

    async fn x11_request(
        &mut self,
        id: ChannelId,
        _: bool,
        _: &str,
        _: &str,
        _: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)
    }

    async fn agent_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        session.channel_failure(id)?;
        Ok(false)
    }

    // Port forwarding: `tcpip_forward` and `streamlocal_forward` answer false by default, and a
    // direct-tcpip, streamlocal or X11 channel is refused because its open handle is dropped.

    async fn data(
        &mut self,
        id: ChannelId,
        data: &[u8],
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channel_mut(id) else {
            return Ok(());
        };
        let Some(events) = ch.events.clone() else {
            return Ok(()); // typed before the shell started
        };
        for event in ch.input.feed(data) {
            if events.send(Ok(event)).await.is_err() {
                break; // the app has ended
            }
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        id: ChannelId,
        cols: u32,
        rows: u32,
        _: u32,
        _: u32,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ch) = self.channel_mut(id) else {
            return Ok(());
        };
        let (cols, rows) = (to_u16(cols), to_u16(rows));
        if let Some(size) = &ch.pty {
            size.set(cols, rows);
        }
        if let Some(events) = ch.events.clone() {
            let _ = events.send(Ok(Event::Resize(cols, rows))).await;
        }
        Ok(())
    }

    async fn channel_eof(&mut self, id: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        // The client's input ended: the app's event stream ends with it, and the app quits as if
        // the customer had pressed q.
        if let Some(ch) = self.channel_mut(id) {
            ch.events = None;
        }
        Ok(())
    }

    async fn channel_close(&mut self, id: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        if self.channel_mut(id).is_some() {
            self.app_stop.cancel();
        }
        Ok(())
    }
}
