//! Key bindings in one place: how keys map to movements, and the hints the footer and the help
//! overlay show for each context.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A movement or confirmation, from arrows or vi keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Enter,
    Back,
}

/// Movement keys outside text fields: arrows and hjkl, PgUp/PgDn, g/G, Enter, Esc.
pub fn nav(key: &KeyEvent) -> Option<Nav> {
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return None;
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Nav::Up,
        KeyCode::Down | KeyCode::Char('j') => Nav::Down,
        KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('-') => Nav::Left,
        KeyCode::Right | KeyCode::Char('l') | KeyCode::Char('+') | KeyCode::Char('=') => Nav::Right,
        KeyCode::PageUp => Nav::PageUp,
        KeyCode::PageDown => Nav::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Nav::Top,
        KeyCode::End | KeyCode::Char('G') => Nav::Bottom,
        KeyCode::Enter => Nav::Enter,
        KeyCode::Esc => Nav::Back,
        _ => return None,
    })
}

/// Ctrl-C: always quits.
pub fn is_ctrl_c(key: &KeyEvent) -> bool {
    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)
}

/// A plain character key (no Ctrl/Alt).
pub fn is_char(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c)
        && !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
}

/// A Ctrl+character key.
pub fn is_ctrl(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::CONTROL)
}

/// Where the keyboard focus is, which decides the footer hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    LogIn,
    SignUp,
    Catalog,
    Search,
    Cart,
    Review,
    CardForm,
    Confirm,
    Placing,
    Orders,
    AccountMenu,
    AccountForm,
    Dialog,
    Help,
    /// The detail view of one order.
    OrderDetail,
    Operator,
}

/// `(key, what it does)` pairs for the footer.
pub fn footer(ctx: Context) -> &'static [(&'static str, &'static str)] {
    match ctx {
        Context::LogIn => &[
            ("Enter", "log in"),
            ("Tab", "next field"),
            ("^N", "new account"),
            ("^C", "quit"),
        ],
        Context::SignUp => &[
            ("Enter", "sign up"),
            ("Tab", "next field"),
            ("^N", "have an account"),
            ("^C", "quit"),
        ],
        Context::Catalog => &[
            ("j/k", "move"),
            ("h/l", "qty"),
            ("Enter", "add"),
            ("/", "search"),
            ("m/c", "filter"),
            ("s", "sort"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Context::Search => &[
            ("type", "to filter"),
            ("Up/Down", "move"),
            ("Enter", "keep"),
            ("Esc", "clear"),
        ],
        Context::Cart => &[
            ("j/k", "move"),
            ("h/l", "qty"),
            ("d", "remove"),
            ("Enter", "checkout"),
            ("Tab", "next"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Context::Review => &[
            ("Enter", "continue"),
            ("a", "add card"),
            ("Esc", "back to cart"),
            ("?", "help"),
        ],
        Context::CardForm => &[
            ("Enter", "next/save"),
            ("Tab", "next field"),
            ("Esc", "cancel"),
        ],
        Context::Confirm => &[("Enter", "pay now"), ("Esc", "back")],
        Context::Placing => &[("", "please wait"), ("^C", "quit")],
        Context::Orders => &[
            ("j/k", "move"),
            ("Enter", "details"),
            ("PgDn", "older"),
            ("r", "refresh"),
            ("Tab", "next"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Context::AccountMenu => &[
            ("j/k", "move"),
            ("Enter", "choose"),
            ("Tab", "next"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Context::AccountForm => &[
            ("Enter", "next/save"),
            ("Tab", "next field"),
            ("Esc", "cancel"),
        ],
        Context::Dialog => &[("Enter", "confirm"), ("Esc", "cancel")],
        Context::Help => &[("Esc", "close help")],
        Context::OrderDetail => &[
            ("j/k", "scroll"),
            ("Esc", "back to orders"),
            ("Tab", "next"),
            ("?", "help"),
            ("q", "quit"),
        ],
        Context::Operator => &[
            ("c", "close month"),
            ("l", "month length"),
            ("r", "refresh"),
            ("Tab", "next"),
            ("?", "help"),
            ("q", "quit"),
        ],
    }
}

/// The help overlay: sections of `(key, what it does)`.
pub const HELP: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            ("Tab S-Tab", "next / previous screen"),
            ("1 2 3 4", "jump to a screen"),
            ("?", "this help"),
            ("q", "quit (not while typing)"),
            ("Ctrl-C", "quit, always"),
        ],
    ),
    (
        "Cart",
        &[
            ("h l - +", "change quantity"),
            ("d Delete", "remove line"),
            ("Enter", "checkout"),
        ],
    ),
    (
        "Orders",
        &[
            ("PgDn End", "older orders load"),
            ("Enter", "order details"),
            ("Esc", "back to the list"),
        ],
    ),
    (
        "Catalog",
        &[
            ("j k arrows", "move"),
            ("h l - +", "choose quantity"),
            ("H L", "quantity 1 / all left"),
            ("Enter a", "add to cart"),
            ("/", "search; Esc clears"),
            ("m c", "filter maker, category"),
            ("s x", "sort, clear filters"),
        ],
    ),
    (
        "Forms",
        &[
            ("Tab Enter", "next field / save"),
            ("Ctrl-U", "clear field"),
            ("Esc", "cancel"),
        ],
    ),
];

/// The help overlay's section for the operator's console, shown when the app has one.
pub const OPERATOR_HELP: (&str, &[(&str, &str)]) = (
    "Operator (tab 5 in the demo)",
    &[
        ("c", "close the month now"),
        ("l", "set the month length"),
        ("r", "fetch a fresh status"),
        ("Enter Esc", "confirm / cancel"),
    ],
);
