//! The account: details, password, card, log out, delete.

use super::checkout::{card_form, card_input, Stage};
use super::{App, Cmd, FlashKind, Overlay, ReqKind, RequestError, Screen};
use crate::keys::{self, Nav};
use crate::strings;
use crate::widgets::form::{Form, FormField, FormKey};
use crate::widgets::text_input::InputKind;
use crossterm::event::KeyEvent;
use protocol::{AccountUpdate, Field, Reply, RequestBody};

/// The account menu entries, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    EditDetails,
    ChangePassword,
    Card,
    RemoveCard,
    LogOut,
    Delete,
    /// Only over SSH with a key: unlink it from the account.
    ForgetKey,
}

impl AccountAction {
    /// The menu, top to bottom.
    pub const ALL: [AccountAction; 6] = [
        AccountAction::EditDetails,
        AccountAction::ChangePassword,
        AccountAction::Card,
        AccountAction::RemoveCard,
        AccountAction::LogOut,
        AccountAction::Delete,
    ];

    /// As shown in the menu.
    pub fn label(self) -> &'static str {
        match self {
            AccountAction::EditDetails => "Edit name and email",
            AccountAction::ChangePassword => "Change password",
            AccountAction::Card => "Add or replace card",
            AccountAction::RemoveCard => "Remove card",
            AccountAction::LogOut => "Log out",
            AccountAction::Delete => "Delete account",
            AccountAction::ForgetKey => "Forget this key",
        }
    }
}

/// The account screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountState {
    /// Selected menu entry.
    pub menu: usize,
    /// The open form and what it is for.
    pub form: Option<(AccountAction, Form)>,
}

impl App {
    /// The account menu as this session shows it: "Forget this key" only over SSH with a key.
    pub fn account_menu(&self) -> Vec<AccountAction> {
        let mut menu = AccountAction::ALL.to_vec();
        if self.ssh_key.fingerprint.is_some() {
            menu.insert(menu.len() - 1, AccountAction::ForgetKey);
        }
        menu
    }
}

fn delete_form() -> Form {
    Form::new(vec![FormField::new(
        "Password",
        InputKind::Password,
        Some(Field::Password),
    )])
}

impl App {
    pub(super) fn account_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        if let Some((action, mut form)) = self.account.form.take() {
            return match form.handle_key(key) {
                FormKey::Submit => self.submit_account_form(action, form),
                FormKey::Cancel => Vec::new(),
                _ => {
                    self.account.form = Some((action, form));
                    Vec::new()
                }
            };
        }
        let menu = self.account_menu();
        let n = menu.len();
        match keys::nav(&key) {
            Some(Nav::Up) => self.account.menu = self.account.menu.saturating_sub(1),
            Some(Nav::Down) => self.account.menu = (self.account.menu + 1).min(n - 1),
            Some(Nav::Top | Nav::PageUp) => self.account.menu = 0,
            Some(Nav::Bottom | Nav::PageDown) => self.account.menu = n - 1,
            Some(Nav::Enter) => {
                if let Some(action) = menu.get(self.account.menu) {
                    return self.account_choose(*action);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn account_choose(&mut self, action: AccountAction) -> Vec<Cmd> {
        let Some(account) = self.session.as_ref().map(|s| s.account.clone()) else {
            return Vec::new();
        };
        match action {
            AccountAction::EditDetails => {
                let form = Form::new(vec![
                    FormField::filled(
                        "First name",
                        InputKind::Text,
                        Some(Field::FirstName),
                        &account.first_name,
                    ),
                    FormField::filled(
                        "Last name",
                        InputKind::Text,
                        Some(Field::LastName),
                        &account.last_name,
                    ),
                    FormField::filled("Email", InputKind::Text, Some(Field::Email), &account.email),
                ]);
                self.account.form = Some((action, form));
                Vec::new()
            }
            AccountAction::ChangePassword => {
                let form = Form::new(vec![
                    FormField::new("Current", InputKind::Password, Some(Field::Password)),
                    FormField::new("New password", InputKind::Password, None),
                    FormField::new("Repeat new", InputKind::Password, None),
                ]);
                self.account.form = Some((action, form));
                Vec::new()
            }
            AccountAction::Card => {
                self.account.form = Some((action, card_form()));
                Vec::new()
            }
            AccountAction::RemoveCard => {
                if account.card.is_none() {
                    self.flash(FlashKind::Info, strings::NO_CARD);
                    return Vec::new();
                }
                vec![self.request(ReqKind::RemoveCard, RequestBody::RemoveCard)]
            }
            AccountAction::LogOut => {
                let bye = self.request(ReqKind::LogOut, RequestBody::LogOut);
                let mut cmds = vec![bye];
                cmds.extend(self.end_session(strings::LOGGED_OUT));
                cmds
            }
            AccountAction::Delete => {
                self.overlay = Some(Overlay::ConfirmDelete(delete_form()));
                Vec::new()
            }
            AccountAction::ForgetKey => self.forget_key(),
        }
    }

    fn submit_account_form(&mut self, action: AccountAction, mut form: Form) -> Vec<Cmd> {
        let Some(account) = self.session.as_ref().map(|s| s.account.clone()) else {
            return Vec::new();
        };
        let request = match action {
            AccountAction::EditDetails => {
                let changed = |i: usize, old: &str| {
                    let v = form.value(i).trim();
                    (v != old).then(|| v.to_string())
                };
                let update = AccountUpdate {
                    first_name: changed(0, &account.first_name),
                    last_name: changed(1, &account.last_name),
                    email: changed(2, &account.email),
                    password: None,
                };
                Some((ReqKind::UpdateAccount, RequestBody::UpdateAccount(update)))
            }
            AccountAction::ChangePassword => {
                if form.value(1).chars().count() < 8 {
                    form.field_error(1, strings::PASSWORD_SHORT);
                    None
                } else if form.value(1) != form.value(2) {
                    form.field_error(2, strings::PASSWORDS_DIFFER);
                    None
                } else {
                    let update = AccountUpdate {
                        password: Some((form.value(0).to_string(), form.value(1).to_string())),
                        ..AccountUpdate::default()
                    };
                    Some((ReqKind::ChangePassword, RequestBody::UpdateAccount(update)))
                }
            }
            AccountAction::Card => {
                card_input(&mut form).map(|input| (ReqKind::SetCard, RequestBody::SetCard(input)))
            }
            _ => None,
        };
        // The form stays open until the server answers, so its errors can land on its fields.
        self.account.form = Some((action, form));
        match request {
            Some((kind, body)) => vec![self.request(kind, body)],
            None => Vec::new(),
        }
    }

    pub(super) fn delete_dialog_key(&mut self, mut form: Form, key: KeyEvent) -> Vec<Cmd> {
        match form.handle_key(key) {
            FormKey::Cancel => Vec::new(),
            FormKey::Submit => {
                let password = form.value(0).to_string();
                self.overlay = Some(Overlay::ConfirmDelete(form));
                vec![self.request(
                    ReqKind::DeleteAccount,
                    RequestBody::DeleteAccount { password },
                )]
            }
            _ => {
                self.overlay = Some(Overlay::ConfirmDelete(form));
                Vec::new()
            }
        }
    }

    pub(super) fn account_reply(
        &mut self,
        kind: ReqKind,
        result: Result<Reply, RequestError>,
    ) -> Vec<Cmd> {
        match result {
            Ok(Reply::Account(account)) => {
                if let Some(s) = &mut self.session {
                    s.account = account;
                }
                match kind {
                    ReqKind::SetCard => {
                        // Drop the typed number from memory as soon as the server has it.
                        if self.screen == Screen::Checkout && self.checkout.stage == Stage::Card {
                            self.checkout.card = card_form();
                            self.checkout.stage = Stage::Review;
                        }
                        if matches!(self.account.form, Some((AccountAction::Card, _))) {
                            self.account.form = None;
                        }
                        self.flash(FlashKind::Success, strings::CARD_SAVED);
                    }
                    ReqKind::RemoveCard => self.flash(FlashKind::Success, strings::CARD_REMOVED),
                    ReqKind::UpdateAccount | ReqKind::ChangePassword => {
                        self.account.form = None;
                        self.flash(FlashKind::Success, strings::SAVED);
                    }
                    _ => {}
                }
                Vec::new()
            }
            Ok(Reply::Done) if kind == ReqKind::DeleteAccount => {
                self.end_session(strings::ACCOUNT_DELETED)
            }
            Ok(_) => Vec::new(),
            Err(RequestError::Server(e)) => {
                let form = match kind {
                    ReqKind::DeleteAccount => match &mut self.overlay {
                        Some(Overlay::ConfirmDelete(f)) => Some(f),
                        _ => None,
                    },
                    ReqKind::SetCard if self.screen == Screen::Checkout => {
                        Some(&mut self.checkout.card)
                    }
                    _ => self.account.form.as_mut().map(|(_, f)| f),
                };
                match form {
                    Some(f) => f.show_error(&e),
                    None => self.flash(FlashKind::Error, e.message),
                }
                Vec::new()
            }
            Err(RequestError::Lost) => {
                self.flash(FlashKind::Error, strings::NOT_CONNECTED);
                Vec::new()
            }
        }
    }
}
