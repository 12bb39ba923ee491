//! The cart: lines, quantities, what is short, and the total.

use crate::app::App;
use crate::strings;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let cart = &app.cart;
    let notice_lines: Vec<Line> = match &cart.notice {
        Some((head, lines)) => std::iter::once(Line::styled(format!(" {head}"), t.warn()))
            .chain(
                lines
                    .iter()
                    .map(|l| Line::styled(format!("   - {l}"), t.warn())),
            )
            .collect(),
        None => Vec::new(),
    };
    let notice_h = if notice_lines.is_empty() {
        0
    } else {
        notice_lines.len() as u16 + 2
    };
    let [list, notice, total] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(notice_h.min(8)),
        Constraint::Length(1),
    ])
    .areas(area);
    let block = Block::bordered()
        .border_style(t.border())
        .title(Line::styled(" Cart ", t.title()));
    if cart.view.lines.is_empty() {
        let text = if cart.loaded {
            strings::CART_EMPTY
        } else {
            strings::LOADING
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {text}"), t.dim())).block(block),
            list,
        );
    } else {
        let rows: Vec<Row> = cart
            .view
            .lines
            .iter()
            .map(|l| {
                let short = l.available < l.quantity;
                let note = if l.available == 0 {
                    Span::styled("sold out", t.error())
                } else if short {
                    Span::styled(format!("only {} left", l.available), t.warn())
                } else {
                    Span::styled(format!("{} left", l.available), t.dim())
                };
                let line_total = l
                    .unit_price
                    .times(l.quantity)
                    .map(strings::money)
                    .unwrap_or_default();
                Row::new(vec![
                    Cell::from(l.product.clone()),
                    Cell::from(Span::styled(l.manufacturer_name.clone(), t.dim())),
                    Cell::from(Line::from(strings::money(l.unit_price)).right_aligned()),
                    Cell::from(Line::from(format!("{}", l.quantity)).right_aligned()),
                    Cell::from(Line::styled(line_total, t.money()).right_aligned()),
                    Cell::from(note),
                ])
            })
            .collect();
        let header = Row::new(vec![
            Cell::from("Product"),
            Cell::from("Maker"),
            Cell::from(Line::from("Price").right_aligned()),
            Cell::from(Line::from("Qty").right_aligned()),
            Cell::from(Line::from("Total").right_aligned()),
            Cell::from("Stock"),
        ])
        .style(t.dim().add_modifier(Modifier::BOLD));
        let table = Table::new(
            rows,
            [
                Constraint::Min(14),
                Constraint::Length(13),
                Constraint::Length(9),
                Constraint::Length(4),
                Constraint::Length(10),
                Constraint::Length(13),
            ],
        )
        .header(header)
        .block(block)
        .row_highlight_style(t.selected())
        .highlight_symbol("> ");
        let mut state = TableState::default().with_selected(Some(cart.selected));
        frame.render_stateful_widget(table, list, &mut state);
    }
    if !notice_lines.is_empty() {
        frame.render_widget(
            Paragraph::new(notice_lines).block(Block::bordered().border_style(t.warn())),
            notice,
        );
    }
    let units = app.cart_units();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {}   Total ", strings::items(units)), t.dim()),
            Span::styled(
                strings::money(cart.view.total),
                t.money().add_modifier(Modifier::BOLD),
            ),
            Span::styled("   Enter to check out", t.dim()),
        ])),
        total,
    );
}
