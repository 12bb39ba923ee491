//! Every text a person reads, in one place, so wording stays consistent and easy to review.

use protocol::{CartAdjustment, CloseReason, LineStatus, MonthId, Shortage};

pub const APP_NAME: &str = "shop";
pub const TOO_SMALL: &str = "Terminal too small";
pub const LOADING: &str = "Loading...";
pub const WORKING: &str = "working";
pub const ONLINE: &str = "online";
pub const CONNECTING: &str = "connecting";
pub const OFFLINE: &str = "offline";
pub const NOT_LOGGED_IN: &str = "not logged in";
pub const NO_MONTH: &str = "no month open";
pub const CATALOG_EMPTY: &str = "Nothing for sale right now. A new month brings new stock.";
pub const CATALOG_NO_MATCH: &str = "No product matches the filter. Press x to clear it.";
pub const CART_EMPTY: &str = "Your cart is empty. Add something from the catalog (Tab).";
pub const ORDERS_EMPTY: &str = "No orders yet.";
pub const ORDERS_OLDER: &str = "older orders load as you scroll (PgDn, End)";
pub const ORDERS_LOADING_OLDER: &str = "loading older orders...";
pub const REQUIRED: &str = "Required";
pub const PASSWORD_SHORT: &str = "At least 8 characters";
pub const PASSWORDS_DIFFER: &str = "The two passwords differ";
pub const CARD_LUHN: &str = "This number fails the check digit; please check it";
pub const CARD_EXPIRY: &str = "Use MM/YY, for example 12/31";
pub const CARD_CVC: &str = "3 digits, from the back of the card";
pub const CARD_CVC_AMEX: &str = "4 digits, from the front of an Amex card";
pub const NOT_CONNECTED: &str = "Not connected to the server; retrying. Try again in a moment.";
pub const SESSION_EXPIRED: &str = "Your session has ended. Please log in again.";
pub const LOGGED_OUT: &str = "Logged out.";
pub const ACCOUNT_DELETED: &str = "Your account was deleted. Your orders stay in the books.";
pub const SAVED: &str = "Saved.";
pub const CARD_SAVED: &str = "Card saved.";
pub const CARD_REMOVED: &str = "Card removed.";
pub const NO_CARD: &str = "No card on file";
pub const PLACING: &str = "Placing your order";
pub const LOST_DURING_CHECKOUT: &str =
    "Connection lost. When it is back the same order is sent again; it cannot be charged twice.";
pub const SOME_RAN_OUT: &str = "Some items ran out before you checked out:";
pub const CART_CUT: &str = "Stock ran short, your cart was changed:";
pub const EMPTY_CART_CHECKOUT: &str = "Your cart is empty.";
pub const SORTED_BY: &str = "sort";
pub const DELETE_TITLE: &str = "Delete account";
pub const DELETE_TEXT: &str = "This cannot be undone. Enter your password to confirm.";

/// `$12.05`.
pub fn money(c: protocol::Cents) -> String {
    format!("${c}")
}

/// `1 line`, `3 lines`.
pub fn lines(n: usize) -> String {
    if n == 1 {
        "1 line".into()
    } else {
        format!("{n} lines")
    }
}

/// The review step's note after a refused checkout whose total changed.
pub fn price_changed(confirmed: Option<protocol::Cents>, now: protocol::Cents) -> String {
    match confirmed {
        Some(was) => format!(
            "Nothing was bought: the total changed from {} to {}. Check it and confirm again.",
            money(was),
            money(now)
        ),
        None => format!(
            "Nothing was bought: the total is now {}. Check it and confirm again.",
            money(now)
        ),
    }
}

/// Next to the card form's expiry when the card on file has expired.
pub fn card_expired(year: u16, month: u8) -> String {
    format!(
        "The card on file expired at the end of {month:02}/{:02}. Add a new card to pay.",
        year % 100
    )
}

/// Adding a new line to a full cart.
pub fn cart_full() -> String {
    format!(
        "Your cart is full: at most {} lines, as many as one checkout can buy. Check out or remove a line first.",
        protocol::MAX_CART_LINES
    )
}

/// `1 item`, `3 items`.
pub fn items(n: u64) -> String {
    if n == 1 {
        "1 item".into()
    } else {
        format!("{n} items")
    }
}

/// A month's time left as `m:ss`.
pub fn time_left(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02} left", s / 60, s % 60)
}

/// How long ago something happened, coarse.
pub fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// One cut cart line: `Widget (Acme): 5 -> 2` or `... removed`.
pub fn adjustment(a: &CartAdjustment) -> String {
    if a.to == 0 {
        format!("{} ({}): sold out, removed", a.product, a.manufacturer_name)
    } else {
        format!(
            "{} ({}): {} -> {} (only {} left)",
            a.product, a.manufacturer_name, a.from, a.to, a.to
        )
    }
}

/// One line that ran out at checkout.
pub fn shortage(s: &Shortage) -> String {
    if s.available == 0 {
        format!("{} ({}): sold out", s.product, s.manufacturer)
    } else {
        format!(
            "{} ({}): wanted {}, only {} left",
            s.product, s.manufacturer, s.requested, s.available
        )
    }
}

/// An order line's status in words.
pub fn status(s: LineStatus) -> &'static str {
    match s {
        LineStatus::Placed => "placed",
        LineStatus::Confirmed => "confirmed",
        LineStatus::Dispatched => "dispatched",
    }
}

/// An order's status: its least advanced line, and how far the rest got when they differ, for
/// example `placed (1/2 confirmed)`.
pub fn order_status(order: &protocol::OrderView) -> String {
    let least = order.status();
    let most = order.lines.iter().map(|l| l.status).max().unwrap_or(least);
    if least == most {
        return status(least).to_string();
    }
    let ahead = order.lines.iter().filter(|l| l.status == most).count();
    format!(
        "{} ({ahead}/{} {})",
        status(least),
        order.lines.len(),
        status(most)
    )
}

/// Why a month closed.
/// The operator console's texts.
pub const OPS_CLOSED: &str = "Month closed; the next one is open.";
pub const OPS_LENGTH_SET: &str = "Month length set; it applies from the next month.";
pub const OPS_LOST: &str = "The operator connection dropped; check the status before trying again.";
pub const OPS_OFFLINE: &str = "The operator connection is down; wait until it is back.";
pub const OPS_LENGTH_RANGE: &str = "Whole seconds, 1 to 31536000";
pub const OPS_WAITING: &str = "Waiting for the distributor's status...";
pub const OPS_CLOSE_TITLE: &str = "Close the month";
pub const OPS_LENGTH_TITLE: &str = "Month length";
pub const OPS_BEHIND: &str = "behind";

/// A close reason in a table cell.
pub fn close_reason_short(r: CloseReason) -> &'static str {
    match r {
        CloseReason::SoldOut => "sold out",
        CloseReason::AllCustomersDone => "all bought",
        CloseReason::TimeUp => "time",
        CloseReason::Operator => "operator",
    }
}

/// A duration, coarse: `45s`, `2m05s`, `3h10m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A wall-clock time of day in UTC, `14:05:09`.
pub fn clock_utc(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

pub fn close_reason(r: CloseReason) -> &'static str {
    match r {
        CloseReason::SoldOut => "sold out",
        CloseReason::AllCustomersDone => "every customer has bought",
        CloseReason::TimeUp => "time is up",
        CloseReason::Operator => "closed by the operator",
    }
}

// ---- over SSH (`shop serve-ssh`) ----
pub const REMEMBER_KEY_TITLE: &str = "Remember this key?";
pub const REMEMBER_KEY_TEXT: &str =
    "Next time you connect with this SSH key, the shop logs you straight in to this account.";
pub const REMEMBER_KEY_KEYS: &str = "y/Enter remember   n/Esc not now";
pub const KEY_LOGGED_IN: &str = "Logged in with your SSH key.";
pub const KEY_REMEMBERED: &str = "This key now logs you straight in.";
pub const KEY_FORGOTTEN: &str = "This key no longer logs you in.";

/// The status line when a month closes, for example `Month 3 closed: sold out.`
pub fn month_closed(month: MonthId, reason: CloseReason) -> String {
    format!("Month {} closed: {}.", month.0, close_reason(reason))
}

/// The status line when a month opens.
pub fn month_opened(month: MonthId) -> String {
    format!("Month {} is open.", month.0)
}

/// The status line when a month opens right after one closed: why it closed, then the new month.
pub fn month_turned_over(closed: MonthId, reason: CloseReason, opened: MonthId) -> String {
    format!("{} {}", month_closed(closed, reason), month_opened(opened))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_minutes_and_padded_seconds() {
        assert_eq!(time_left(61_999), "1:01 left");
        assert_eq!(time_left(0), "0:00 left");
    }

    #[test]
    fn an_adjustment_to_zero_says_the_line_was_removed() {
        let a = CartAdjustment {
            listing: protocol::ListingId(1),
            product: "Widget".into(),
            manufacturer_name: "Acme".into(),
            from: 3,
            to: 0,
        };
        assert!(adjustment(&a).contains("removed"));
    }
}
