//! Order history: orders on top, the selected order's lines below, statuses live; Enter opens the
//! detail view of one order (every line with its maker, price paid, status and when it changed).

use crate::app::App;
use crate::strings;
use protocol::OrderView;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    if let Some(order) = app.orders.detail_order() {
        return draw_detail(frame, area, app, order);
    }
    let t = &app.theme;
    let o = &app.orders;
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let mut title = vec![Span::styled(" Orders ", t.title())];
    if o.older.is_some() {
        let more = match o.page_seq {
            Some(_) => strings::ORDERS_LOADING_OLDER,
            None => strings::ORDERS_OLDER,
        };
        title.push(Span::styled(
            format!("{} shown, {more} ", o.list.len()),
            t.dim(),
        ));
    }
    let block = Block::bordered()
        .border_style(t.border())
        .title(Line::from(title));
    if o.list.is_empty() {
        let text = if o.loaded {
            strings::ORDERS_EMPTY
        } else {
            strings::LOADING
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {text}"), t.dim())).block(block),
            area,
        );
        return;
    }
    let rows: Vec<Row> = o
        .list
        .iter()
        .map(|order| {
            let status = order.status();
            Row::new(vec![
                Cell::from(format!("#{}", order.id.0)),
                Cell::from(Span::styled(format!("month {}", order.month.0), t.dim())),
                Cell::from(Span::styled(
                    strings::ago(app.now_ms.saturating_sub(order.placed_at_ms)),
                    t.dim(),
                )),
                Cell::from(Line::from(strings::items(order.units())).right_aligned()),
                Cell::from(Line::styled(strings::money(order.total), t.money()).right_aligned()),
                Cell::from(Span::styled(
                    strings::order_status(order),
                    if o.changed.keys().any(|(id, _)| *id == order.id) {
                        t.flash_up()
                    } else {
                        t.status(status)
                    },
                )),
            ])
        })
        .collect();
    let header = Row::new(vec!["Order", "Month", "Placed", "Items", "Total", "Status"])
        .style(t.dim().add_modifier(Modifier::BOLD));
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(11),
            Constraint::Min(10),
        ],
    )
    .header(header)
    .block(block)
    .row_highlight_style(t.selected())
    .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(o.selected));
    frame.render_stateful_widget(table, top, &mut state);

    let Some(order) = o.list.get(o.selected) else {
        return;
    };
    let rows: Vec<Row> = order
        .lines
        .iter()
        .map(|l| Row::new(line_cells(app, order, l)))
        .collect();
    let header = Row::new(LINE_HEADER.map(header_cell)).style(t.dim().add_modifier(Modifier::BOLD));
    let title = Line::from(vec![
        Span::styled(format!(" Order #{} ", order.id.0), t.title()),
        Span::styled(format!("total {} ", strings::money(order.total)), t.money()),
    ]);
    let table = Table::new(
        rows,
        [
            Constraint::Min(14),
            Constraint::Length(13),
            Constraint::Length(10),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(11),
        ],
    )
    .header(header)
    .block(Block::bordered().border_style(t.border()).title(title));
    frame.render_widget(table, bottom);
}

/// One order on the whole screen: a summary line, then every line with when its status changed.
fn draw_detail(frame: &mut Frame, area: Rect, app: &App, order: &OrderView) {
    let t = &app.theme;
    let o = &app.orders;
    let top = o.detail.map_or(0, |(_, top)| top);
    let title = Line::from(vec![
        Span::styled(format!(" Order #{} ", order.id.0), t.title()),
        Span::styled(format!("month {} ", order.month.0), t.dim()),
    ]);
    let block = Block::bordered().border_style(t.border()).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [summary, table_area] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(inner);
    let placed = strings::ago(app.now_ms.saturating_sub(order.placed_at_ms));
    let summary_lines = vec![
        Line::from(vec![
            Span::styled(" Placed ", t.dim()),
            Span::raw(placed),
            Span::styled("   Total ", t.dim()),
            Span::styled(strings::money(order.total), t.money()),
            Span::styled(
                format!(
                    "   {} in {}",
                    strings::items(order.units()),
                    strings::lines(order.lines.len())
                ),
                t.dim(),
            ),
        ]),
        Line::from(vec![
            Span::styled(" Status ", t.dim()),
            Span::styled(strings::order_status(order), t.status(order.status())),
        ]),
    ];
    frame.render_widget(Paragraph::new(summary_lines), summary);
    let rows: Vec<Row> = order
        .lines
        .iter()
        .skip(top)
        .map(|l| {
            let mut cells = line_cells(app, order, l);
            let changed = strings::ago(app.now_ms.saturating_sub(l.status_at_ms));
            cells.push(Cell::from(Span::styled(changed, t.dim())));
            Row::new(cells)
        })
        .collect();
    let header = LINE_HEADER
        .map(header_cell)
        .into_iter()
        .chain([Cell::from("Changed")]);
    let header = Row::new(header).style(t.dim().add_modifier(Modifier::BOLD));
    let table = Table::new(
        rows,
        [
            Constraint::Min(12),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
    )
    .header(header);
    frame.render_widget(table, table_area);
}

/// The columns of an order line, in both views (the detail view adds when it changed); `true` for
/// the right-aligned ones.
const LINE_HEADER: [(&str, bool); 6] = [
    ("Product", false),
    ("Maker", false),
    ("Paid each", true),
    ("Qty", true),
    ("Total", true),
    ("Status", false),
];

fn header_cell((title, right): (&'static str, bool)) -> Cell<'static> {
    match right {
        true => Cell::from(Line::from(title).right_aligned()),
        false => Cell::from(title),
    }
}

/// One order line's cells under [`LINE_HEADER`]; its status flashes while it has just changed.
fn line_cells(app: &App, order: &OrderView, l: &protocol::OrderLine) -> Vec<Cell<'static>> {
    let t = &app.theme;
    let style = if app.orders.changed.contains_key(&(order.id, l.listing)) {
        t.flash_up()
    } else {
        t.status(l.status)
    };
    vec![
        Cell::from(l.product.clone()),
        Cell::from(Span::styled(l.manufacturer_name.clone(), t.dim())),
        Cell::from(Line::from(strings::money(l.unit_price)).right_aligned()),
        Cell::from(Line::from(format!("{}", l.quantity)).right_aligned()),
        Cell::from(Line::styled(strings::money(l.line_total), t.money()).right_aligned()),
        Cell::from(Span::styled(strings::status(l.status), style)),
    ]
}
