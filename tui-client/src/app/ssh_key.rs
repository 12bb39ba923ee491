//! The SSH key a session came with (`shop serve-ssh`), as a login: log straight in with it, offer to
//! remember it after a login by hand, and forget it from the account menu.
//!
//! Only the gateway knows the key; the model holds its fingerprint, and only when the shop runs over
//! SSH. Locally there is none, and nothing here happens.

use super::{App, Cmd, FlashKind, Overlay, ReqKind, RequestError};
use crate::keys;
use crate::strings;
use crossterm::event::{KeyCode, KeyEvent};
use protocol::{Reply, RequestBody};

/// The session's SSH key, if it came with one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshKeyState {
    /// `SHA256:...`, as `ssh-keygen -lf` prints it. `None` locally, and over SSH without a key
    /// (keyboard-interactive: anonymous).
    pub fingerprint: Option<String>,
    /// Whether the key is known to log in to the current account (then no offer to remember it).
    pub linked: bool,
    /// Whether the key login was already tried on this run (once is enough).
    pub tried: bool,
}

impl App {
    /// On a connection without a session: try the key once.
    pub(super) fn try_key_login(&mut self) -> Vec<Cmd> {
        let Some(fingerprint) = self.ssh_key.fingerprint.clone() else {
            return Vec::new();
        };
        if self.ssh_key.tried || self.logged_in() {
            return Vec::new();
        }
        self.ssh_key.tried = true;
        vec![self.request(ReqKind::KeyLogIn, RequestBody::KeyLogIn { fingerprint })]
    }

    /// After a login by hand: offer to remember the key, unless it already logs in here.
    pub(super) fn offer_remember_key(&mut self) {
        if self.ssh_key.fingerprint.is_some()
            && !self.ssh_key.linked
            && self.logged_in()
            && self.overlay.is_none()
        {
            self.overlay = Some(Overlay::RememberKey);
        }
    }

    pub(super) fn remember_key_dialog(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let yes = keys::is_char(&key, 'y') || key.code == KeyCode::Enter;
        let no = keys::is_char(&key, 'n') || key.code == KeyCode::Esc;
        match (yes, no, self.ssh_key.fingerprint.clone()) {
            (true, _, Some(fingerprint)) => {
                vec![self.request(
                    ReqKind::RememberKey,
                    RequestBody::RememberKey { fingerprint },
                )]
            }
            (_, true, _) | (true, _, None) => Vec::new(),
            _ => {
                self.overlay = Some(Overlay::RememberKey);
                Vec::new()
            }
        }
    }

    /// Account → "Forget this key".
    pub(super) fn forget_key(&mut self) -> Vec<Cmd> {
        match self.ssh_key.fingerprint.clone() {
            Some(fingerprint) => {
                vec![self.request(ReqKind::ForgetKey, RequestBody::ForgetKey { fingerprint })]
            }
            None => Vec::new(),
        }
    }

    pub(super) fn ssh_key_reply(
        &mut self,
        kind: ReqKind,
        result: Result<Reply, RequestError>,
    ) -> Vec<Cmd> {
        match (kind, result) {
            (ReqKind::KeyLogIn, Ok(Reply::Session(info))) => {
                self.ssh_key.linked = true;
                let cmds = self.start_session(info);
                self.flash(FlashKind::Success, strings::KEY_LOGGED_IN);
                cmds
            }
            // Not linked (or not reachable): the login screen stays, as for anyone.
            (ReqKind::KeyLogIn, _) => Vec::new(),
            (ReqKind::RememberKey, Ok(_)) => {
                self.ssh_key.linked = true;
                self.flash(FlashKind::Success, strings::KEY_REMEMBERED);
                Vec::new()
            }
            (ReqKind::ForgetKey, Ok(_)) => {
                self.ssh_key.linked = false;
                self.flash(FlashKind::Success, strings::KEY_FORGOTTEN);
                Vec::new()
            }
            (_, Err(RequestError::Server(e))) => {
                self.flash(FlashKind::Error, e.message);
                Vec::new()
            }
            (_, _) => {
                self.flash(FlashKind::Error, strings::NOT_CONNECTED);
                Vec::new()
            }
        }
    }
}
