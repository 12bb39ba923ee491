//! What is always on screen: the header (who, cart, connection), the tabs with the month gauge,
//! the banner line (connection trouble or a message), and the footer with the keys.

use crate::app::{tab_name, App, ConnState, FlashKind, Screen};
use crate::keys;
use crate::strings;
use protocol::MonthState;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};
use ratatui::Frame;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The spinner frame for the current time.
pub fn spinner(now_ms: u64) -> &'static str {
    SPINNER[((now_ms / 100) % SPINNER.len() as u64) as usize]
}

pub fn header(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let mut left = vec![Span::styled(format!(" {} ", strings::APP_NAME), t.title())];
    if let Some(label) = &app.label {
        left.push(Span::styled(format!("[{label}] "), t.warn()));
    }
    match &app.session {
        Some(s) => left.push(Span::styled(
            format!("{} {}", s.account.first_name, s.account.last_name),
            t.text().add_modifier(ratatui::style::Modifier::BOLD),
        )),
        None if app.console_only => {}
        None => left.push(Span::styled(strings::NOT_LOGGED_IN, t.dim())),
    }

    let mut right: Vec<Span> = Vec::new();
    if !app.in_flight.is_empty() {
        right.push(Span::styled(
            format!("{} {}  ", spinner(app.now_ms), strings::WORKING),
            t.dim(),
        ));
    }
    if app.session.is_some() {
        let units = app.cart_units();
        right.push(Span::styled("cart ", t.dim()));
        right.push(Span::raw(format!(
            "{units} item{} ",
            if units == 1 { "" } else { "s" }
        )));
        right.push(Span::styled(strings::money(app.cart.view.total), t.money()));
        right.push(Span::styled(" | ", t.dim()));
    }
    let (dot, label, style) = match &app.conn {
        ConnState::Online => ("●", strings::ONLINE, t.ok()),
        ConnState::Connecting { .. } => ("○", strings::CONNECTING, t.warn()),
        ConnState::Offline { .. } => ("○", strings::OFFLINE, t.error()),
    };
    right.push(Span::styled(format!("{dot} {label} "), style));
    let right = Line::from(right);
    let rw = right.width() as u16;
    let [l, r] = Layout::horizontal([Constraint::Min(0), Constraint::Length(rw)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(left)), l);
    frame.render_widget(Paragraph::new(right), r);
}

pub fn tabs(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    if app.session.is_some() || app.console_only {
        let active = match app.screen {
            Screen::Checkout => Screen::Cart,
            s => s,
        };
        // The same layout as `app::tab_at_in`, which maps mouse clicks back to tabs.
        for (i, s) in app.tabs().iter().enumerate() {
            let name = tab_name(*s);
            spans.push(Span::styled(format!("{}", i + 1), t.key()));
            let style = if *s == active {
                t.tab_active()
            } else {
                t.text()
            };
            spans.push(Span::styled(format!(" {name}"), style));
            spans.push(Span::raw("  "));
        }
    }

    let month_label;
    let left_label;
    match &app.month {
        Some(m) if m.state == MonthState::Open => {
            month_label = format!("Month {} ", m.id.0);
            left_label = format!(" {}", strings::time_left(app.month_left_ms().unwrap_or(0)));
        }
        Some(m) => {
            month_label = format!("Month {} closed ", m.id.0);
            left_label = String::new();
        }
        None => {
            month_label = format!("{} ", strings::NO_MONTH);
            left_label = String::new();
        }
    }
    // On a narrow terminal the gauge gives way first, so the tabs and the countdown both fit.
    let tabs_w = Line::from(spans.clone()).width() as u16;
    let labels_w = (month_label.chars().count() + left_label.chars().count() + 1) as u16;
    let gauge_w: u16 = if left_label.is_empty() || tabs_w + labels_w + 14 > area.width {
        0
    } else {
        14
    };
    let [l, ml, g, tl] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(month_label.chars().count() as u16),
        Constraint::Length(gauge_w),
        Constraint::Length(left_label.chars().count() as u16 + 1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)), l);
    frame.render_widget(Paragraph::new(Span::styled(month_label, t.dim())), ml);
    if let Some(ratio) = app.month_progress() {
        let gauge = LineGauge::default()
            .ratio(ratio)
            .label("")
            // Thick against thin, so progress shows without colour too.
            .filled_symbol("━")
            .unfilled_symbol("─")
            .filled_style(t.gauge())
            .unfilled_style(t.dim());
        frame.render_widget(gauge, g);
    }
    frame.render_widget(Paragraph::new(Span::styled(left_label, t.text())), tl);
}

pub fn banner(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let line = match &app.conn {
        ConnState::Offline {
            reason,
            retry_at_ms,
        } => {
            let secs = retry_at_ms.saturating_sub(app.now_ms).div_ceil(1000);
            Line::styled(
                format!(" Offline: {reason}. Reconnecting in {secs}s..."),
                t.banner_offline(),
            )
        }
        ConnState::Connecting { attempt } if *attempt > 1 || app.ever_online => Line::styled(
            format!(
                " {} Reconnecting (attempt {attempt})...",
                spinner(app.now_ms)
            ),
            t.banner_offline(),
        ),
        _ => match &app.flash {
            Some(f) => {
                let style = match f.kind {
                    FlashKind::Info => t.text(),
                    FlashKind::Success => t.ok(),
                    FlashKind::Error => t.error(),
                };
                Line::styled(format!(" {}", f.text), style)
            }
            None => Line::raw(""),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

pub fn footer(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    for (key, action) in keys::footer(app.key_context()) {
        if !key.is_empty() {
            spans.push(Span::styled(*key, t.key()));
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(*action, t.dim()));
        spans.push(Span::raw("  "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
