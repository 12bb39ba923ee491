//! The model and the only place that changes it.
//!
//! [`App::update`] takes a [`Msg`] (a key, a tick carrying the time, or something from the network)
//! and returns the [`Cmd`]s to carry out (requests to send, quit). It never does I/O, and the time
//! comes in with [`Msg::Tick`], so tests drive it with plain values and snapshots are stable.
//!
//! Requests carry a [`Tag`]: the session generation and a sequence number. A reply from an earlier
//! session is dropped, and for resources where only the newest answer matters (catalog, cart,
//! orders, account) a reply older than one already applied is dropped too.

pub mod account;
pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod login;
pub mod operator;
pub mod orders;
pub mod ssh_key;

use crate::keys;
use crate::strings;
use crate::theme::Theme;
use crate::widgets::form::Form;
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use protocol::{
    AccountView, CloseReason, Event, MonthId, MonthState, MonthView, Reply, RequestBody,
    SessionInfo, SessionToken, Welcome, WireError,
};
use std::collections::{BTreeMap, HashMap};

pub use account::{AccountAction, AccountState};
pub use cart::CartState;
pub use catalog::{CatalogState, Sort};
pub use checkout::{CheckoutState, Stage};
pub use login::{LoginMode, LoginState};
pub use operator::{NearestRule, OpReq, OperatorState, OpsDialog};
pub use orders::OrdersState;
pub use ssh_key::SshKeyState;

/// How long a changed number stays highlighted.
pub const HIGHLIGHT_MS: u64 = 1_500;
/// How long a flash message stays.
pub const FLASH_MS: u64 = 6_000;

/// The top-level screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Screen {
    Login,
    Catalog,
    Cart,
    Checkout,
    Orders,
    Account,
    /// The operator's console (`shop --operator`, or the fifth tab of `shop --demo`).
    Operator,
}

/// The customer's screens reachable with Tab, in order.
pub const TABS: [Screen; 4] = [
    Screen::Catalog,
    Screen::Cart,
    Screen::Orders,
    Screen::Account,
];
/// Their names on the tab bar.
pub const TAB_NAMES: [&str; 4] = ["Catalog", "Cart", "Orders", "Account"];
/// The row of the tab bar.
pub const TAB_ROW: u16 = 1;

/// The name of the operator's tab.
pub const OPERATOR_TAB_NAME: &str = "Operator";

/// A tab's name on the tab bar.
pub fn tab_name(screen: Screen) -> &'static str {
    match TABS.iter().position(|s| *s == screen) {
        Some(i) => TAB_NAMES[i],
        None => OPERATOR_TAB_NAME,
    }
}

/// The customer's tab drawn at column `x` of the tab bar.
pub fn tab_at(x: u16) -> Option<Screen> {
    tab_at_in(&TABS, x)
}

/// The tab of `tabs` drawn at column `x` of the tab bar: " 1 Catalog  2 Cart  ..." (the view draws
/// exactly this layout).
pub fn tab_at_in(tabs: &[Screen], x: u16) -> Option<Screen> {
    let mut start = 1u16;
    for screen in tabs {
        let name = tab_name(*screen);
        let end = start + 2 + name.len() as u16;
        if (start..end).contains(&x) {
            return Some(*screen);
        }
        start = end + 2;
    }
    None
}

/// Everything that can happen.
#[derive(Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (only with `--mouse`): the wheel scrolls, a click on a tab opens it.
    Mouse(MouseEvent),
    /// Time passed; carries the wall clock in Unix milliseconds.
    Tick { now_ms: u64 },
    /// The connection task reported something.
    Net(NetEvent),
    /// The operator connection's task reported something.
    Operator(NetEvent),
}

/// What the connection task reports.
#[derive(Debug)]
pub enum NetEvent {
    /// Trying to connect.
    Connecting { attempt: u32 },
    /// Connected and shaken hands. `session` is the outcome of resuming the session the app had,
    /// if it had one.
    Connected {
        welcome: Box<Welcome>,
        session: Option<Result<SessionInfo, WireError>>,
    },
    /// The connection is gone; the next attempt is in `retry_in_ms`.
    Disconnected { reason: String, retry_in_ms: u64 },
    /// The answer to a request.
    Reply {
        tag: Tag,
        result: Result<Reply, RequestError>,
    },
    /// A push from the server.
    Push(Event),
}

/// Why a request has no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The server said no.
    Server(WireError),
    /// The connection failed; the request may or may not have taken effect.
    Lost,
}

/// What a request was for; decides how its reply is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReqKind {
    LogIn,
    SignUp,
    LogOut,
    Account,
    UpdateAccount,
    ChangePassword,
    SetCard,
    RemoveCard,
    DeleteAccount,
    Catalog,
    Cart,
    AddToCart,
    Checkout,
    Orders,
    KeyLogIn,
    RememberKey,
    ForgetKey,
    /// A request on the operator connection.
    Operator(OpReq),
    /// A later catalog page; [`CatalogState`] keeps the one request whose reply it applies.
    CatalogPage,
    /// Older orders; [`OrdersState`] keeps the one request whose reply it applies.
    OrdersPage,
}

impl ReqKind {
    /// Replies of kinds that share a resource supersede each other: only the newest is applied.
    fn resource(self) -> Option<&'static str> {
        match self {
            ReqKind::Catalog => Some("catalog"),
            ReqKind::Cart | ReqKind::AddToCart => Some("cart"),
            ReqKind::Orders => Some("orders"),
            ReqKind::Account | ReqKind::UpdateAccount | ReqKind::SetCard | ReqKind::RemoveCard => {
                Some("account")
            }
            _ => None,
        }
    }
}

/// Travels with a request and comes back with its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Increases with every request.
    pub seq: u64,
    /// The session generation the request belongs to.
    pub gen: u64,
    /// What it was for.
    pub kind: ReqKind,
}

/// What the app asks the outside world to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Send a request.
    Send { tag: Tag, body: RequestBody },
    /// Send a request on the operator connection.
    SendOperator { tag: Tag, body: RequestBody },
    /// Remember (or forget) the session token for resuming after a reconnect.
    Session(Option<SessionToken>),
    /// Stop everything and restore the terminal.
    Quit,
}

/// The connection as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting { attempt: u32 },
    Online,
    Offline { reason: String, retry_at_ms: u64 },
}

/// A short message under the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub kind: FlashKind,
    pub until_ms: u64,
}

/// The tone of a flash message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Info,
    Success,
    Error,
}

/// A window over the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    Help,
    /// Delete the account: asks for the password.
    ConfirmDelete(Form),
    /// Over SSH, after a login by hand: remember this key?
    RememberKey,
    /// One of the operator console's confirmations.
    Operator(OpsDialog),
}

/// A logged-in customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: SessionToken,
    pub account: AccountView,
}

/// The whole model.
#[derive(Debug)]
pub struct App {
    /// Wall clock, Unix ms, from the last tick.
    pub now_ms: u64,
    pub theme: Theme,
    /// Shown in the header, for example `demo`.
    pub label: Option<String>,
    pub conn: ConnState,
    /// Whether a connection ever succeeded: then a new attempt is a reconnect and gets the banner.
    pub ever_online: bool,
    /// Bumped when a session starts or ends: replies from before are dropped.
    pub gen: u64,
    next_seq: u64,
    /// The newest applied reply per resource.
    applied: HashMap<&'static str, u64>,
    /// Requests without a reply yet, for the spinner.
    pub in_flight: BTreeMap<u64, ReqKind>,
    pub session: Option<Session>,
    pub screen: Screen,
    pub overlay: Option<Overlay>,
    pub flash: Option<Flash>,
    pub month: Option<MonthView>,
    /// The month that closed last and why, until the next one opens: its status line says both.
    pub month_closed: Option<(MonthId, CloseReason)>,
    pub login: LoginState,
    pub catalog: CatalogState,
    pub cart: CartState,
    pub checkout: CheckoutState,
    pub orders: OrdersState,
    pub account: AccountState,
    /// The SSH key this session came with (only over `shop serve-ssh`).
    pub ssh_key: SshKeyState,
    /// The operator's console, when this app has one.
    pub operator: Option<OperatorState>,
    /// `shop --operator`: the console is the whole app, there is no customer connection.
    pub console_only: bool,
    pub quit: bool,
}

impl App {
    /// A fresh app on the login screen.
    pub fn new(theme: Theme, now_ms: u64) -> Self {
        App {
            now_ms,
            theme,
            label: None,
            conn: ConnState::Connecting { attempt: 1 },
            ever_online: false,
            gen: 1,
            next_seq: 0,
            applied: HashMap::new(),
            in_flight: BTreeMap::new(),
            session: None,
            screen: Screen::Login,
            overlay: None,
            flash: None,
            month: None,
            month_closed: None,
            login: LoginState::new(LoginMode::LogIn),
            catalog: CatalogState::default(),
            cart: CartState::default(),
            checkout: CheckoutState::default(),
            orders: OrdersState::default(),
            account: AccountState::default(),
            ssh_key: SshKeyState::default(),
            operator: None,
            console_only: false,
            quit: false,
        }
    }

    /// Adds the operator's console: as the only screen (`shop --operator`) or as a fifth tab.
    pub fn with_operator(mut self, console_only: bool) -> Self {
        self.operator = Some(OperatorState::default());
        self.console_only = console_only;
        if console_only {
            self.screen = Screen::Operator;
            self.label.get_or_insert_with(|| "operator".into());
        }
        self
    }

    /// The screens on the tab bar, in order.
    pub fn tabs(&self) -> Vec<Screen> {
        if self.console_only {
            return vec![Screen::Operator];
        }
        let mut tabs = TABS.to_vec();
        if self.operator.is_some() {
            tabs.push(Screen::Operator);
        }
        tabs
    }

    /// Whether the tabs can be used: after logging in, or always in the console.
    pub fn tabs_open(&self) -> bool {
        self.console_only || (self.logged_in() && self.screen != Screen::Login)
    }

    /// Applies one message. The only function that changes the model.
    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        match msg {
            Msg::Tick { now_ms } => {
                self.now_ms = now_ms;
                self.on_tick();
                Vec::new()
            }
            Msg::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key),
            Msg::Key(_) => Vec::new(),
            Msg::Mouse(mouse) => self.on_mouse(mouse),
            Msg::Net(event) => self.on_net(event),
            Msg::Operator(event) => self.on_operator_net(event),
        }
    }

    /// Whether a tick from `prev_ms` to `self.now_ms` changed anything on screen: the countdown's
    /// second, the spinner, a highlight or a flash running out.
    pub fn tick_changes_view(&self, prev_ms: u64) -> bool {
        prev_ms / 1000 != self.now_ms / 1000
            || !self.in_flight.is_empty()
            || !self.catalog.changed.is_empty()
            || !self.orders.changed.is_empty()
    }

    /// Whether the keyboard goes to a text field (then `q`, `?` and digits are typed, not commands).
    pub fn typing(&self) -> bool {
        if matches!(
            self.overlay,
            Some(Overlay::ConfirmDelete(_)) | Some(Overlay::Operator(OpsDialog::MonthLength(_)))
        ) {
            return true;
        }
        match self.screen {
            Screen::Login => true,
            Screen::Catalog => self.catalog.searching,
            Screen::Checkout => self.checkout.stage == Stage::Card,
            Screen::Account => self.account.form.is_some(),
            _ => false,
        }
    }

    /// The key context, for the footer.
    pub fn key_context(&self) -> keys::Context {
        use keys::Context as C;
        match &self.overlay {
            Some(Overlay::Help) => return C::Help,
            Some(Overlay::ConfirmDelete(_) | Overlay::RememberKey | Overlay::Operator(_)) => {
                return C::Dialog
            }
            None => {}
        }
        match self.screen {
            Screen::Login => match self.login.mode {
                LoginMode::LogIn => C::LogIn,
                LoginMode::SignUp => C::SignUp,
            },
            Screen::Catalog if self.catalog.searching => C::Search,
            Screen::Catalog => C::Catalog,
            Screen::Cart => C::Cart,
            Screen::Checkout => match self.checkout.stage {
                Stage::Review => C::Review,
                Stage::Card => C::CardForm,
                Stage::Confirm => C::Confirm,
                Stage::Placing => C::Placing,
            },
            Screen::Orders if self.orders.detail.is_some() => C::OrderDetail,
            Screen::Orders => C::Orders,
            Screen::Account if self.account.form.is_some() => C::AccountForm,
            Screen::Account => C::AccountMenu,
            Screen::Operator => C::Operator,
        }
    }

    /// Units in the cart.
    pub fn cart_units(&self) -> u64 {
        self.cart
            .view
            .lines
            .iter()
            .map(|l| u64::from(l.quantity))
            .sum()
    }

    /// Milliseconds left in the open month.
    pub fn month_left_ms(&self) -> Option<u64> {
        self.month
            .as_ref()
            .filter(|m| m.state == MonthState::Open)
            .map(|m| m.ends_at_ms.saturating_sub(self.now_ms))
    }

    /// Progress through the open month, 0.0 to 1.0.
    pub fn month_progress(&self) -> Option<f64> {
        let m = self
            .month
            .as_ref()
            .filter(|m| m.state == MonthState::Open)?;
        let len = m.ends_at_ms.saturating_sub(m.opened_at_ms).max(1);
        let done = self.now_ms.saturating_sub(m.opened_at_ms).min(len);
        Some(done as f64 / len as f64)
    }

    // ---- plumbing used by the screen modules ----

    /// Builds a request command and remembers it as in flight.
    pub(crate) fn request(&mut self, kind: ReqKind, body: RequestBody) -> Cmd {
        self.next_seq += 1;
        let tag = Tag {
            seq: self.next_seq,
            gen: self.gen,
            kind,
        };
        self.in_flight.insert(tag.seq, kind);
        Cmd::Send { tag, body }
    }

    /// Shows a flash message.
    pub(crate) fn flash(&mut self, kind: FlashKind, text: impl Into<String>) {
        self.flash = Some(Flash {
            text: text.into(),
            kind,
            until_ms: self.now_ms + FLASH_MS,
        });
    }

    pub(crate) fn logged_in(&self) -> bool {
        self.session.is_some()
    }

    /// Moves to a screen, fetching what must be fresh there (stock is checked again when the cart
    /// opens; orders are refreshed in case a push was missed).
    pub(crate) fn go(&mut self, screen: Screen) -> Vec<Cmd> {
        self.screen = screen;
        match screen {
            Screen::Cart => vec![self.request(ReqKind::Cart, RequestBody::GetCart)],
            Screen::Orders => vec![self.request(ReqKind::Orders, RequestBody::Orders)],
            _ => Vec::new(),
        }
    }

    /// A session started (log in, sign up): fetch everything and open the catalog.
    pub(crate) fn start_session(&mut self, info: SessionInfo) -> Vec<Cmd> {
        self.gen += 1;
        self.applied.clear();
        self.session = Some(Session {
            token: info.token.clone(),
            account: info.account,
        });
        self.login = LoginState::new(LoginMode::LogIn);
        self.catalog = CatalogState::default();
        self.cart = CartState::default();
        self.checkout = CheckoutState::default();
        self.orders = OrdersState::default();
        self.account = AccountState::default();
        self.screen = Screen::Catalog;
        let mut cmds = vec![Cmd::Session(Some(info.token))];
        cmds.extend(self.refresh_all());
        cmds
    }

    fn refresh_all(&mut self) -> Vec<Cmd> {
        vec![
            self.request(ReqKind::Catalog, RequestBody::Catalog),
            self.request(ReqKind::Cart, RequestBody::GetCart),
            self.request(ReqKind::Orders, RequestBody::Orders),
        ]
    }

    /// The session ended (log out, expiry, deletion): back to the login screen.
    pub(crate) fn end_session(&mut self, message: &str) -> Vec<Cmd> {
        self.gen += 1;
        self.applied.clear();
        self.session = None;
        self.overlay = None;
        self.catalog = CatalogState::default();
        self.cart = CartState::default();
        self.checkout = CheckoutState::default();
        self.orders = OrdersState::default();
        self.account = AccountState::default();
        self.screen = Screen::Login;
        self.login = LoginState::new(LoginMode::LogIn);
        self.flash(FlashKind::Info, message);
        vec![Cmd::Session(None)]
    }

    // ---- time ----

    fn on_tick(&mut self) {
        let now = self.now_ms;
        if self.flash.as_ref().is_some_and(|f| f.until_ms <= now) {
            self.flash = None;
        }
        self.catalog.on_tick(now);
        self.orders.changed.retain(|_, until| *until > now);
    }

    // ---- mouse ----

    fn on_mouse(&mut self, mouse: MouseEvent) -> Vec<Cmd> {
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        match mouse.kind {
            MouseEventKind::ScrollDown if self.overlay.is_none() => self.on_key(key(KeyCode::Down)),
            MouseEventKind::ScrollUp if self.overlay.is_none() => self.on_key(key(KeyCode::Up)),
            MouseEventKind::Down(MouseButton::Left)
                if mouse.row == TAB_ROW && self.tabs_open() && self.overlay.is_none() =>
            {
                match tab_at_in(&self.tabs(), mouse.column) {
                    Some(target) if target != self.screen => self.go(target),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    // ---- keys ----

    fn on_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        if keys::is_ctrl_c(&key) {
            self.quit = true;
            return vec![Cmd::Quit];
        }
        if let Some(overlay) = self.overlay.take() {
            return self.overlay_key(overlay, key);
        }
        if !self.typing() {
            if keys::is_char(&key, 'q') {
                self.quit = true;
                return vec![Cmd::Quit];
            }
            if keys::is_char(&key, '?') {
                self.overlay = Some(Overlay::Help);
                return Vec::new();
            }
            if self.tabs_open() {
                if let Some(target) = self.tab_target(&key) {
                    if target != self.screen {
                        return self.go(target);
                    }
                    return Vec::new();
                }
            }
        }
        match self.screen {
            Screen::Login => self.login_key(key),
            Screen::Catalog => self.catalog_key(key),
            Screen::Cart => self.cart_key(key),
            Screen::Checkout => self.checkout_key(key),
            Screen::Orders => self.orders_key(key),
            Screen::Account => self.account_key(key),
            Screen::Operator => self.operator_key(key),
        }
    }

    fn tab_target(&self, key: &KeyEvent) -> Option<Screen> {
        // The checkout belongs to the cart tab.
        let current = match self.screen {
            Screen::Checkout => Screen::Cart,
            s => s,
        };
        let tabs = self.tabs();
        let i = tabs.iter().position(|s| *s == current).unwrap_or(0);
        match key.code {
            KeyCode::Tab => Some(tabs[(i + 1) % tabs.len()]),
            KeyCode::BackTab => Some(tabs[(i + tabs.len() - 1) % tabs.len()]),
            KeyCode::Char(c @ '1'..='9') if key.modifiers.is_empty() => {
                tabs.get((c as u8 - b'1') as usize).copied()
            }
            _ => None,
        }
    }

    fn overlay_key(&mut self, overlay: Overlay, key: KeyEvent) -> Vec<Cmd> {
        match overlay {
            Overlay::Help => {
                // Any of these closes help; other keys keep it open.
                let close = matches!(key.code, KeyCode::Esc | KeyCode::Enter)
                    || keys::is_char(&key, '?')
                    || keys::is_char(&key, 'q');
                if !close {
                    self.overlay = Some(Overlay::Help);
                }
                Vec::new()
            }
            Overlay::ConfirmDelete(form) => self.delete_dialog_key(form, key),
            Overlay::RememberKey => self.remember_key_dialog(key),
            Overlay::Operator(dialog) => self.operator_dialog_key(dialog, key),
        }
    }

    // ---- network ----

    fn on_net(&mut self, event: NetEvent) -> Vec<Cmd> {
        match event {
            NetEvent::Connecting { attempt } => {
                if self.conn != ConnState::Online {
                    self.conn = ConnState::Connecting { attempt };
                }
                Vec::new()
            }
            NetEvent::Connected { welcome, session } => {
                self.conn = ConnState::Online;
                self.ever_online = true;
                if welcome.month.is_some() {
                    self.month = welcome.month;
                }
                match session {
                    Some(Ok(info)) => {
                        if let Some(s) = &mut self.session {
                            s.account = info.account;
                            s.token = info.token;
                        }
                        let mut cmds = self.refresh_all();
                        cmds.extend(self.resend_checkout());
                        cmds
                    }
                    Some(Err(e)) if self.session.is_some() => {
                        let cmds = self.end_session(strings::SESSION_EXPIRED);
                        self.login.form.error = Some(e.message);
                        cmds
                    }
                    _ => self.try_key_login(),
                }
            }
            NetEvent::Disconnected {
                reason,
                retry_in_ms,
            } => {
                self.conn = ConnState::Offline {
                    reason,
                    retry_at_ms: self.now_ms + retry_in_ms,
                };
                Vec::new()
            }
            NetEvent::Reply { tag, result } => {
                self.in_flight.remove(&tag.seq);
                if tag.gen != self.gen {
                    return Vec::new();
                }
                if let Some(res) = tag.kind.resource() {
                    let newest = self.applied.entry(res).or_insert(0);
                    if tag.seq < *newest {
                        return Vec::new();
                    }
                    *newest = tag.seq;
                }
                self.on_reply(tag, result)
            }
            NetEvent::Push(event) => self.on_push(event),
        }
    }

    fn on_reply(&mut self, tag: Tag, result: Result<Reply, RequestError>) -> Vec<Cmd> {
        match tag.kind {
            ReqKind::LogIn | ReqKind::SignUp => {
                let cmds = self.login_reply(result);
                self.offer_remember_key();
                cmds
            }
            ReqKind::KeyLogIn | ReqKind::RememberKey | ReqKind::ForgetKey => {
                self.ssh_key_reply(tag.kind, result)
            }
            ReqKind::LogOut => Vec::new(),
            ReqKind::Catalog => match result {
                Ok(Reply::Catalog(snapshot)) => self.catalog_first_page(snapshot),
                _ => Vec::new(),
            },
            ReqKind::CatalogPage => self.catalog_page_reply(tag.seq, result),
            ReqKind::OrdersPage => self.orders_page_reply(tag.seq, result),
            ReqKind::Cart | ReqKind::AddToCart => self.cart_reply(tag.kind, result),
            ReqKind::Checkout => self.checkout_reply(tag, result),
            ReqKind::Orders => {
                if let Ok(Reply::Orders(list)) = result {
                    self.orders.replace(list);
                }
                self.orders_prefetch()
            }
            ReqKind::Account
            | ReqKind::UpdateAccount
            | ReqKind::ChangePassword
            | ReqKind::SetCard
            | ReqKind::RemoveCard
            | ReqKind::DeleteAccount => self.account_reply(tag.kind, result),
            // Operator replies come back on the operator connection (`Msg::Operator`).
            ReqKind::Operator(_) => Vec::new(),
        }
    }

    fn on_push(&mut self, event: Event) -> Vec<Cmd> {
        match event {
            Event::Stock(delta) => {
                self.cart.apply_levels(&delta.levels);
                self.catalog.apply_delta(delta, self.now_ms);
                Vec::new()
            }
            Event::Catalog(snapshot) => self.catalog_first_page(snapshot),
            Event::OrderStatus {
                order,
                listings,
                status,
            } => {
                // An unknown order older than the newest loaded is on a page not loaded yet: it
                // arrives with its page.
                let on_older_page = self.orders.list.first().is_some_and(|o| order < o.id);
                if self
                    .orders
                    .set_status(order, &listings, status, self.now_ms)
                    || !self.logged_in()
                    || on_older_page
                {
                    Vec::new()
                } else {
                    // An order we have not seen (placed from another terminal): fetch the list.
                    vec![self.request(ReqKind::Orders, RequestBody::Orders)]
                }
            }
            Event::MonthOpened(month) => {
                let text = match self.month_closed.take() {
                    Some((closed, reason)) => strings::month_turned_over(closed, reason, month.id),
                    None => strings::month_opened(month.id),
                };
                self.flash(FlashKind::Info, text);
                self.month = Some(month);
                Vec::new()
            }
            Event::MonthClosed { month, reason } => {
                if let Some(m) = self.month.as_mut().filter(|m| m.id == month) {
                    m.state = MonthState::Closed;
                }
                self.month_closed = Some((month, reason));
                self.flash(FlashKind::Info, strings::month_closed(month, reason));
                Vec::new()
            }
            Event::OfferRequested { .. } | Event::Notice(_) | Event::Operator(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
