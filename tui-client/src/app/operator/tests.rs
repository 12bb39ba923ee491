//! The operator's console driven through [`App::update`] and drawn into a `TestBackend`: a fixed
//! status (three manufacturers, one of them gone with notices pending), snapshots at 80x24 and
//! 120x40 and under NO_COLOR, the confirmations, and live deltas.

use crate::app::*;
use crate::screens::render_to_string;
use crate::theme::Theme;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use protocol::*;

const NOW: u64 = 1_750_000_000_000;

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn maker(id: u32, name: &str, connected: bool, sent: u64, acked: u64) -> ManufacturerStatus {
    ManufacturerStatus {
        id: ManufacturerId(id),
        name: name.into(),
        connected,
        last_seq: NoticeSeq(sent),
        acked_seq: NoticeSeq(acked),
        offered_this_month: connected,
        since_ms: NOW - 95_000,
        last_offered: Some(MonthId(if connected { 7 } else { 6 })),
        oldest_pending_at_ms: (sent > acked).then_some(NOW - if connected { 400 } else { 31_000 }),
        units_sold_month: u64::from(id) * 17,
    }
}

fn product(listing: u32, name: &str, maker: &str, units: u64, cents: u64) -> ProductSales {
    ProductSales {
        listing: ListingId(listing),
        product: name.into(),
        manufacturer_name: maker.into(),
        units,
        revenue: Cents(units * cents),
    }
}

fn record(id: u32, secs: u64, reason: CloseReason, units: u64, cents: u64) -> MonthRecord {
    let closed = NOW - 48_000 - u64::from(7 - id) * 120_000;
    MonthRecord {
        id: MonthId(id),
        opened_at_ms: closed - secs * 1000,
        closed_at_ms: closed,
        reason,
        units,
        revenue: Cents(cents),
    }
}

/// A fixed, busy status: month 7 is 48 s into its 120 s, dairy is gone with 4 notices pending.
pub fn fixed_status() -> SystemStatus {
    let now_s = NOW / 1000;
    let sales_seconds = (0..120u64)
        .filter(|i| i % 3 != 0)
        .map(|i| SalesSecond {
            at_s: now_s - 120 + i,
            checkouts: (1 + (i % 5)) as u32,
            units: (2 + (i % 7) * 2) as u32,
        })
        .collect();
    SystemStatus {
        month: Some(MonthView {
            id: MonthId(7),
            state: MonthState::Open,
            opened_at_ms: NOW - 48_000,
            ends_at_ms: NOW + 72_000,
        }),
        manufacturers: vec![
            maker(1, "orchard", true, 120, 120),
            maker(2, "dairy", false, 84, 80),
            maker(3, "bakery", true, 57, 56),
        ],
        orders: 1_234,
        sold_units: 4_321,
        remaining_units: 310,
        now_ms: NOW,
        month_ms: 120_000,
        offered_units: 800,
        month_sales: MonthSales {
            checkouts: 201,
            units: 490,
            revenue: Cents(123_456),
        },
        customers: CustomerCounts {
            connected: 6,
            logged_in: 5,
            active: 4,
            done: 1,
        },
        top_products: vec![
            product(11, "Apples", "orchard", 120, 150),
            product(21, "Milk", "dairy", 95, 99),
            product(31, "Sourdough", "bakery", 60, 450),
            product(12, "Pears", "orchard", 33, 180),
        ],
        sales_seconds,
        history: vec![
            record(6, 120, CloseReason::TimeUp, 610, 98_700),
            record(5, 75, CloseReason::SoldOut, 800, 130_050),
            record(4, 33, CloseReason::Operator, 12, 1_800),
        ],
        node_clients: 6,
    }
}

/// `shop --operator`, connected, with the fixed status answered.
fn console(theme: Theme) -> App {
    let mut app = App::new(theme, NOW).with_operator(true);
    let cmds = app.update(Msg::Operator(NetEvent::Connected {
        welcome: Box::new(Welcome {
            version: PROTOCOL_VERSION,
            server: "distributor/test".into(),
            manufacturer: None,
            month: None,
            credential: None,
        }),
        session: None,
    }));
    let tag = status_request(&cmds);
    app.update(Msg::Operator(NetEvent::Reply {
        tag,
        result: Ok(Reply::Status(Box::new(fixed_status()))),
    }));
    app
}

fn status_request(cmds: &[Cmd]) -> Tag {
    match cmds {
        [Cmd::SendOperator {
            tag,
            body: RequestBody::Status,
        }] => *tag,
        other => panic!("expected one Status on the operator connection, got {other:?}"),
    }
}

fn operator_sends(cmds: &[Cmd]) -> Vec<RequestBody> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::SendOperator { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn console_at_80x24() {
    let app = console(Theme::plain());
    insta::assert_snapshot!("console_80x24", render_to_string(&app, 80, 24));
}

#[test]
fn console_at_120x40() {
    let app = console(Theme::plain());
    insta::assert_snapshot!("console_120x40", render_to_string(&app, 120, 40));
}

#[test]
fn console_under_no_color_marks_the_lagging_manufacturer_with_a_symbol_and_sets_no_colour() {
    let app = console(Theme::plain());
    let backend = ratatui::backend::TestBackend::new(80, 24);
    let mut terminal = ratatui::Terminal::new(backend).expect("terminal");
    terminal
        .draw(|f| crate::screens::draw(f, &app))
        .expect("draw");
    let buffer = terminal.backend().buffer().clone();
    for cell in buffer.content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, ratatui::style::Color::Reset, "{cell:?}");
    }
    let text = terminal.backend().to_string();
    let dairy = text
        .lines()
        .find(|l| l.contains("dairy"))
        .expect("a dairy row");
    assert!(dairy.contains('!') && dairy.contains("DOWN"), "{dairy}");
    let orchard = text
        .lines()
        .find(|l| l.contains("orchard") && l.contains("up"))
        .expect("an orchard row");
    assert!(!orchard.contains('!'), "{orchard}");
    insta::assert_snapshot!("console_no_color", text);
}

#[test]
fn below_80x24_the_console_shows_the_too_small_notice() {
    let app = console(Theme::plain());
    let text = render_to_string(&app, 79, 24);
    assert!(text.contains("Terminal too small"), "{text}");
    assert!(text.contains("need 80 x 24"), "{text}");
    assert!(!render_to_string(&app, 80, 24).contains("too small"));
}

#[test]
fn a_pushed_delta_updates_the_console_without_a_request() {
    let mut app = console(Theme::plain());
    let mut newer = fixed_status();
    newer.now_ms += 600;
    newer.manufacturers[1].connected = true;
    newer.manufacturers[1].acked_seq = NoticeSeq(84);
    newer.manufacturers[1].oldest_pending_at_ms = None;
    newer.orders += 1;
    let delta = fixed_status().delta_to(&newer).expect("a change");
    let cmds = app.update(Msg::Operator(NetEvent::Push(Event::Operator(Box::new(
        delta,
    )))));
    assert!(cmds.is_empty(), "a push needs no request: {cmds:?}");
    let status = app
        .operator
        .as_ref()
        .and_then(|o| o.status.clone())
        .expect("a status");
    assert_eq!(status, newer);
    let text = render_to_string(&app, 80, 24);
    let dairy = text.lines().find(|l| l.contains("dairy")).expect("dairy");
    assert!(!dairy.contains('!') && !dairy.contains("DOWN"), "{dairy}");
}

#[test]
fn closing_the_month_asks_first_and_escape_sends_nothing() {
    let mut app = console(Theme::plain());
    assert!(app.update(ch('c')).is_empty());
    assert_eq!(app.overlay, Some(Overlay::Operator(OpsDialog::CloseMonth)));
    assert!(render_to_string(&app, 80, 24).contains("Close month 7 now?"));
    assert!(app.update(key(KeyCode::Esc)).is_empty());
    assert_eq!(app.overlay, None);
    app.update(ch('c'));
    let cmds = app.update(key(KeyCode::Enter));
    assert_eq!(operator_sends(&cmds), vec![RequestBody::CloseMonth]);
    assert_eq!(app.overlay, None);
}

#[test]
fn the_month_length_is_typed_checked_and_confirmed_before_it_is_sent() {
    let mut app = console(Theme::plain());
    app.update(ch('l'));
    // The field starts with the current length; clear it and type a bad one.
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    app.update(ch('0'));
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    match &app.overlay {
        Some(Overlay::Operator(OpsDialog::MonthLength(input))) => {
            assert!(input.error.is_some(), "0 s is refused")
        }
        other => panic!("still typing expected, got {other:?}"),
    }
    app.update(key(KeyCode::Backspace));
    app.update(ch('9'));
    app.update(ch('0'));
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(
        app.overlay,
        Some(Overlay::Operator(OpsDialog::ConfirmLength(90)))
    );
    let cmds = app.update(key(KeyCode::Enter));
    assert_eq!(
        operator_sends(&cmds),
        vec![RequestBody::SetMonthLength { secs: 90 }]
    );
}

#[test]
fn the_nearest_close_rule_is_the_one_furthest_along() {
    let app = console(Theme::plain());
    let ops = app.operator.as_ref().expect("console");
    // 40 % of the time is gone, 61 % of the stock is sold, 1 of 4 active customers is done.
    assert_eq!(
        ops.nearest_rule(NOW),
        Some(NearestRule::SoldOut { left: 310 })
    );
    let (checkouts, units) = ops.rate_series(NOW);
    assert_eq!(checkouts.len(), 60, "one point per 5 s over 5 minutes");
    assert_eq!(checkouts.first().map(|p| p.0), Some(-295.0));
    assert_eq!(checkouts.last().map(|p| p.0), Some(0.0));
    assert_eq!(checkouts[0].1, 0.0, "nothing was sold 5 minutes ago");
    // The last 5 s: seconds 116..=119 of the fixture minus 117 (every third second is quiet).
    let expected: u32 = [116u64, 118, 119]
        .iter()
        .map(|i| (1 + (i % 5)) as u32)
        .sum();
    assert_eq!(checkouts[59].1, f64::from(expected) / 5.0);
    assert!(units.iter().all(|(_, u)| *u >= 0.0));
}

#[test]
fn in_the_demo_the_console_is_the_fifth_tab() {
    let mut app = App::new(Theme::plain(), NOW).with_operator(false);
    assert_eq!(app.tabs().len(), 5);
    assert_eq!(app.tabs()[4], Screen::Operator);
    // Logged out, the tabs stay closed.
    assert!(!app.tabs_open());
    app.session = Some(Session {
        token: SessionToken("t".into()),
        account: AccountView {
            id: AccountId(1),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            card: None,
        },
    });
    app.screen = Screen::Catalog;
    app.update(ch('5'));
    assert_eq!(app.screen, Screen::Operator);
    app.update(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Catalog, "Tab wraps around");
}
