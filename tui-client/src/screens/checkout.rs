//! Checkout: review, card, confirm, placing.

use super::chrome::spinner;
use crate::app::{App, Stage};
use crate::strings;
use crate::widgets::card;
use crate::widgets::form;
use protocol::CardView;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

fn card_text(card: Option<&CardView>) -> String {
    match card {
        Some(c) => format!(
            "{} ending {}, expires {:02}/{:02}",
            card::brand_name(c.brand),
            c.last4,
            c.exp_month,
            c.exp_year % 100
        ),
        None => strings::NO_CARD.into(),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let co = &app.checkout;
    let card = app.session.as_ref().and_then(|s| s.account.card.as_ref());
    let title = match co.stage {
        Stage::Review => " Checkout: review ",
        Stage::Card => " Checkout: add a card ",
        Stage::Confirm => " Checkout: confirm ",
        Stage::Placing => " Checkout: placing order ",
    };
    let block = Block::bordered()
        .border_style(t.border_focus())
        .title(Line::styled(title, t.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let total = Line::from(vec![
        Span::styled(
            format!(" {}, total ", strings::items(app.cart_units())),
            t.dim(),
        ),
        Span::styled(
            strings::money(app.cart.view.total),
            t.money().add_modifier(Modifier::BOLD),
        ),
    ]);
    match co.stage {
        Stage::Review => {
            let max_lines = inner.height.saturating_sub(7) as usize;
            let mut lines: Vec<Line> = Vec::new();
            for l in app.cart.view.lines.iter().take(max_lines) {
                let lt = l
                    .unit_price
                    .times(l.quantity)
                    .map(strings::money)
                    .unwrap_or_default();
                lines.push(Line::from(vec![
                    Span::raw(format!(
                        " {:>3} x {:<28}",
                        l.quantity,
                        truncate(&l.product, 28)
                    )),
                    Span::styled(
                        format!("{:<14}", truncate(&l.manufacturer_name, 13)),
                        t.dim(),
                    ),
                    Span::styled(format!("{lt:>10}"), t.money()),
                ]));
            }
            if app.cart.view.lines.len() > max_lines {
                lines.push(Line::styled(
                    format!(
                        "     and {} more lines",
                        app.cart.view.lines.len() - max_lines
                    ),
                    t.dim(),
                ));
            }
            lines.push(Line::raw(""));
            lines.push(total);
            let expired = app.expired_card().is_some();
            let mut pay_with = vec![
                Span::styled(" Pay with: ", t.dim()),
                Span::raw(card_text(card)),
            ];
            if expired {
                pay_with.push(Span::styled(" (expired)", t.error()));
            }
            lines.push(Line::from(pay_with));
            if let Some(e) = &co.error {
                lines.push(Line::styled(format!(" {e}"), t.error()));
            }
            lines.push(Line::raw(""));
            let next = if expired {
                " Enter: add a new card (the card on file has expired)    Esc: back to cart"
            } else if card.is_some() {
                " Enter: continue to confirm    a: use another card    Esc: back to cart"
            } else {
                " Enter: add a card    Esc: back to cart"
            };
            lines.push(Line::styled(next, t.dim()));
            frame.render_widget(Paragraph::new(lines), inner);
        }
        Stage::Card => {
            let [intro, body] =
                Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(inner);
            frame.render_widget(
                Paragraph::new(vec![
                    total,
                    Line::styled(
                        " Only brand, last 4 digits and expiry are kept. Test: 4242 4242 4242 4242",
                        t.dim(),
                    ),
                ])
                .wrap(Wrap { trim: false }),
                intro,
            );
            form::render(frame, body, &co.card, t, app.overlay.is_none());
        }
        Stage::Confirm => {
            let lines = vec![
                Line::raw(""),
                Line::from(vec![
                    Span::styled(" Pay ", t.text().add_modifier(Modifier::BOLD)),
                    Span::styled(
                        strings::money(app.cart.view.total),
                        t.money().add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(
                        format!(" for {}", strings::items(app.cart_units())),
                        t.text(),
                    ),
                ]),
                Line::from(vec![
                    Span::styled(" with ", t.dim()),
                    Span::raw(card_text(card)),
                ]),
                Line::raw(""),
                Line::from(vec![
                    Span::styled(" [ Enter ] ", t.selected()),
                    Span::raw(" pay now      "),
                    Span::styled(" Esc ", t.key()),
                    Span::raw(" back"),
                ]),
            ];
            frame.render_widget(Paragraph::new(lines), inner);
        }
        Stage::Placing => {
            let mut lines = vec![
                Line::raw(""),
                Line::styled(
                    format!(" {} {}...", spinner(app.now_ms), strings::PLACING),
                    t.title(),
                ),
                total,
            ];
            if let Some(e) = &co.error {
                lines.push(Line::raw(""));
                lines.push(Line::styled(format!(" {e}"), t.warn()));
            }
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(3)).collect();
        out.push_str("...");
        out
    }
}
