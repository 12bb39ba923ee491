//! The account: details on the left, actions (or the open form) on the right.

use crate::app::{AccountAction, App};
use crate::strings;
use crate::widgets::card;
use crate::widgets::form::{self, Form};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(session) = &app.session else { return };
    let a = &session.account;
    let [left, right] =
        Layout::horizontal([Constraint::Length(34), Constraint::Min(0)]).areas(area);
    let card_line = match &a.card {
        Some(c) => format!(
            "{} ending {} ({:02}/{:02})",
            card::brand_name(c.brand),
            c.last4,
            c.exp_month,
            c.exp_year % 100
        ),
        None => strings::NO_CARD.into(),
    };
    let details = vec![
        Line::styled(" Name", t.dim()),
        Line::raw(format!(" {} {}", a.first_name, a.last_name)),
        Line::raw(""),
        Line::styled(" Email", t.dim()),
        Line::raw(format!(" {}", a.email)),
        Line::raw(""),
        Line::styled(" Card", t.dim()),
        Line::raw(format!(" {card_line}")),
    ];
    frame.render_widget(
        Paragraph::new(details).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .border_style(t.border())
                .title(Line::styled(" Account ", t.title())),
        ),
        left,
    );
    match &app.account.form {
        Some((action, f)) => {
            let block = Block::bordered()
                .border_style(t.border_focus())
                .title(Line::styled(format!(" {} ", action.label()), t.title()));
            let inner = block.inner(right);
            frame.render_widget(block, right);
            form::render(frame, inner, f, t, app.overlay.is_none());
        }
        None => {
            let items: Vec<ListItem> = app
                .account_menu()
                .iter()
                .map(|act| {
                    let style = if *act == AccountAction::Delete {
                        t.error()
                    } else {
                        t.text()
                    };
                    ListItem::new(Line::from(Span::styled(format!(" {}", act.label()), style)))
                })
                .collect();
            let list = List::new(items)
                .block(
                    Block::bordered()
                        .border_style(t.border())
                        .title(Line::styled(" Actions ", t.title())),
                )
                .highlight_style(t.selected())
                .highlight_symbol("> ");
            let mut state = ListState::default().with_selected(Some(app.account.menu));
            frame.render_stateful_widget(list, right, &mut state);
        }
    }
}

/// The delete confirmation, over the body.
/// Over SSH, after a login by hand: remember this key?
pub fn remember_key_dialog(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let (r, block) = super::popup(frame, area, 60, 7, strings::REMEMBER_KEY_TITLE, app);
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let lines = vec![
        Line::styled(strings::REMEMBER_KEY_TEXT, t.text()),
        Line::raw(""),
        Line::styled(strings::REMEMBER_KEY_KEYS, t.dim()),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}

pub fn delete_dialog(frame: &mut Frame, area: Rect, app: &App, f: &Form) {
    let t = &app.theme;
    let (r, block) = super::popup(frame, area, 60, 8, strings::DELETE_TITLE, app);
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let [text, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    frame.render_widget(
        Paragraph::new(Line::styled(format!(" {}", strings::DELETE_TEXT), t.warn())),
        text,
    );
    form::render(frame, body, f, t, true);
}
