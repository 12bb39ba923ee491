//! Log in and sign up.

use super::{App, Cmd, ReqKind, RequestError};
use crate::keys;
use crate::strings;
use crate::widgets::form::{Form, FormField, FormKey};
use crate::widgets::text_input::InputKind;
use crossterm::event::KeyEvent;
use protocol::{Field, Reply, RequestBody, SignUp};

/// Which of the two forms is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    LogIn,
    SignUp,
}

/// The login screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    pub mode: LoginMode,
    pub form: Form,
}

impl LoginState {
    /// An empty form of the given mode.
    pub fn new(mode: LoginMode) -> Self {
        let form = match mode {
            LoginMode::LogIn => Form::new(vec![
                FormField::new("Email", InputKind::Text, Some(Field::Email)),
                FormField::new("Password", InputKind::Password, Some(Field::Password)),
            ]),
            LoginMode::SignUp => Form::new(vec![
                FormField::new("First name", InputKind::Text, Some(Field::FirstName)),
                FormField::new("Last name", InputKind::Text, Some(Field::LastName)),
                FormField::new("Email", InputKind::Text, Some(Field::Email)),
                FormField::new("Password", InputKind::Password, Some(Field::Password)),
            ]),
        };
        LoginState { mode, form }
    }

    fn email_index(&self) -> usize {
        match self.mode {
            LoginMode::LogIn => 0,
            LoginMode::SignUp => 2,
        }
    }
}

impl App {
    pub(super) fn login_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        if keys::is_ctrl(&key, 'n') {
            let email = self.login.form.value(self.login.email_index()).to_string();
            let mode = match self.login.mode {
                LoginMode::LogIn => LoginMode::SignUp,
                LoginMode::SignUp => LoginMode::LogIn,
            };
            self.login = LoginState::new(mode);
            let i = self.login.email_index();
            for c in email.chars() {
                self.login.form.fields[i].input.push(c);
            }
            return Vec::new();
        }
        match self.login.form.handle_key(key) {
            FormKey::Submit => self.submit_login(),
            _ => Vec::new(),
        }
    }

    fn submit_login(&mut self) -> Vec<Cmd> {
        // One attempt at a time: a second Enter while the first is on its way does nothing.
        if self
            .in_flight
            .values()
            .any(|k| matches!(k, ReqKind::LogIn | ReqKind::SignUp))
        {
            return Vec::new();
        }
        let form = &mut self.login.form;
        for i in 0..form.fields.len() {
            if form.value(i).trim().is_empty() {
                form.field_error(i, strings::REQUIRED);
                return Vec::new();
            }
        }
        let body = match self.login.mode {
            LoginMode::LogIn => RequestBody::LogIn {
                email: form.value(0).trim().to_string(),
                password: form.value(1).to_string(),
            },
            LoginMode::SignUp => {
                if form.value(3).chars().count() < 8 {
                    form.field_error(3, strings::PASSWORD_SHORT);
                    return Vec::new();
                }
                RequestBody::SignUp(SignUp {
                    first_name: form.value(0).trim().to_string(),
                    last_name: form.value(1).trim().to_string(),
                    email: form.value(2).trim().to_string(),
                    password: form.value(3).to_string(),
                })
            }
        };
        let kind = match self.login.mode {
            LoginMode::LogIn => ReqKind::LogIn,
            LoginMode::SignUp => ReqKind::SignUp,
        };
        vec![self.request(kind, body)]
    }

    pub(super) fn login_reply(&mut self, result: Result<Reply, RequestError>) -> Vec<Cmd> {
        match result {
            Ok(Reply::Session(info)) => self.start_session(info),
            Ok(_) => Vec::new(),
            Err(RequestError::Server(e)) => {
                self.login.form.show_error(&e);
                Vec::new()
            }
            Err(RequestError::Lost) => {
                self.login.form.error = Some(strings::NOT_CONNECTED.into());
                Vec::new()
            }
        }
    }
}
