//! The operator's console: the month, the sales, the manufacturers, the last months, and the
//! confirmation dialogs. Reads [`OperatorState`] only; every number comes from the server's status.
//!
//! Layout: month and sales side by side on top, the manufacturers' table in the middle, the top
//! products and the month history at the bottom. The top and bottom rows grow with the terminal.

use crate::app::operator::LATE_MS;
use crate::app::{App, ConnState, NearestRule, OperatorState, OpsDialog};
use crate::strings;
use crate::theme::Theme;
use protocol::{MonthState, SystemStatus};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, Block, Cell, Chart, Dataset, GraphType, LineGauge, Paragraph, Row, Table,
};
use ratatui::Frame;

/// The console below this size shows the "too small" notice.
pub const MIN_WIDTH: u16 = 80;
/// The console below this size shows the "too small" notice.
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(ops) = &app.operator else {
        return;
    };
    let t = &app.theme;
    let Some(status) = &ops.status else {
        let text = match &ops.conn {
            ConnState::Offline { reason, .. } => format!(" Operator connection: {reason}"),
            _ => format!(" {}", strings::OPS_WAITING),
        };
        frame.render_widget(Paragraph::new(Line::styled(text, t.dim())), area);
        return;
    };
    // The manufacturers' table gets the rows it needs; the rest is shared by the top and bottom.
    let table_rows = status.manufacturers.len() as u16 + 3;
    let band = (area.height.saturating_sub(table_rows) / 2).clamp(7, 14);
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(band),
        Constraint::Min(4),
        Constraint::Length(band),
    ])
    .areas(area);
    let [month, sales] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let [products, history] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    draw_month(frame, month, app, ops, status);
    draw_sales(frame, sales, app, ops, status);
    draw_manufacturers(frame, middle, app, ops, status);
    draw_top_products(frame, products, t, status);
    draw_history(frame, history, t, status);
}

fn panel<'a>(title: String, t: &Theme) -> Block<'a> {
    Block::bordered()
        .border_style(t.border())
        .title(Line::styled(format!(" {title} "), t.title()))
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 unit`, `1,200 units`.
fn counted(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{} {what}s", thousands(n)),
    }
}

fn gauge<'a>(label: &'a str, ratio: f64, t: &Theme) -> LineGauge<'a> {
    LineGauge::default()
        .ratio(ratio.clamp(0.0, 1.0))
        .label(Span::styled(label, t.dim()))
        // Thick against thin, so the share reads without colour too.
        .filled_symbol("━")
        .unfilled_symbol("─")
        .filled_style(t.gauge())
        .unfilled_style(t.dim())
}

fn draw_month(frame: &mut Frame, area: Rect, app: &App, ops: &OperatorState, s: &SystemStatus) {
    let t = &app.theme;
    let title = match &s.month {
        Some(m) if m.state == MonthState::Open => format!("Month {}", m.id.0),
        Some(m) => format!("Month {} (closed)", m.id.0),
        None => strings::NO_MONTH.to_string(),
    };
    let length = Line::from(vec![
        Span::styled(" next months last ", t.dim()),
        Span::raw(strings::duration(s.month_ms)),
        Span::raw(" "),
    ]);
    let block = panel(title, t).title_bottom(length);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let row = |i: u16| Rect {
        y: inner.y + i,
        height: 1,
        ..inner
    };
    if inner.height < 5 {
        return;
    }
    if let Some(m) = &s.month {
        let line = Line::from(vec![
            Span::styled("opened ", t.dim()),
            Span::raw(strings::clock_utc(m.opened_at_ms)),
            Span::styled(" · closes ", t.dim()),
            Span::raw(strings::clock_utc(m.ends_at_ms)),
            Span::styled(" UTC", t.dim()),
        ]);
        frame.render_widget(Paragraph::new(line), row(0));
    }
    if let Some((done, left_ms)) = ops.month_time(app.now_ms) {
        gauge_row(
            frame,
            row(1),
            gauge("time  ", done, t),
            strings::time_left(left_ms),
            t.text(),
        );
    }
    match ops.stock_left() {
        Some(left) => gauge_row(
            frame,
            row(2),
            gauge("stock ", left, t),
            format!("{:>3.0}% of {}", left * 100.0, thousands(s.offered_units)),
            t.text(),
        ),
        None => frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("stock ", t.dim()),
                Span::raw("nothing offered yet"),
            ])),
            row(2),
        ),
    }
    let next = match ops.nearest_rule(app.now_ms) {
        Some(NearestRule::TimeUp { left_ms }) => {
            format!("time runs out in {}", strings::duration(left_ms))
        }
        Some(NearestRule::SoldOut { left }) => format!("sold out after {} more", thousands(left)),
        Some(NearestRule::AllCustomersDone { waiting }) => {
            format!("all bought when {waiting} more check out")
        }
        None => "no month open".to_string(),
    };
    let next = Line::from(vec![
        Span::styled("next  ", t.dim()),
        Span::styled(next, t.warn()),
    ]);
    frame.render_widget(Paragraph::new(next), row(3));
    let c = s.customers;
    let customers = Line::from(vec![
        Span::styled("shoppers ", t.dim()),
        Span::raw(format!("{} on", c.connected)),
        Span::styled(" · ", t.dim()),
        Span::raw(format!("{} in", c.logged_in)),
        Span::styled(" · ", t.dim()),
        Span::raw(format!("{}/{} active done", c.done, c.active)),
    ]);
    frame.render_widget(Paragraph::new(customers), row(4));
}

fn gauge_row(frame: &mut Frame, area: Rect, g: LineGauge, text: String, style: Style) {
    let w = text.chars().count() as u16 + 1;
    let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(w)]).areas(area);
    frame.render_widget(g, left);
    frame.render_widget(
        Paragraph::new(Span::styled(format!(" {text}"), style)),
        right,
    );
}

fn draw_sales(frame: &mut Frame, area: Rect, app: &App, ops: &OperatorState, s: &SystemStatus) {
    let t = &app.theme;
    let block = panel("Sales per second, last 5 min".into(), t);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [checkouts_area, units_area, totals] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let (checkouts, units) = ops.rate_series(app.now_ms);
    rate_chart(frame, checkouts_area, "checkouts", &checkouts, t.ok(), t);
    rate_chart(frame, units_area, "units", &units, t.spark(), t);
    let m = s.month_sales;
    let line = Line::from(vec![
        Span::styled(strings::money(m.revenue), t.money()),
        Span::styled(" · ", t.dim()),
        Span::raw(counted(m.checkouts, "checkout")),
        Span::styled(" · ", t.dim()),
        Span::raw(counted(m.units, "unit")),
    ]);
    frame.render_widget(Paragraph::new(line), totals);
}

/// One rate as a line chart. The series' name sits on the baseline and its peak at the top, so the
/// two charts read apart without colour.
fn rate_chart(
    frame: &mut Frame,
    area: Rect,
    name: &str,
    points: &[(f64, f64)],
    style: Style,
    t: &Theme,
) {
    let peak = points.iter().map(|(_, y)| *y).fold(1.0f64, f64::max).ceil();
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(style)
        .data(points);
    let chart = Chart::new(vec![dataset])
        .legend_position(None)
        .x_axis(Axis::default().bounds([-(protocol::SALES_WINDOW_SECS as f64), 0.0]))
        .y_axis(
            Axis::default()
                .bounds([0.0, peak])
                .labels(vec![
                    Span::styled(format!("{name:>9}"), t.dim()),
                    Span::styled(format!("{peak:>9}"), t.dim()),
                ])
                .style(t.dim()),
        );
    frame.render_widget(chart, area);
}

fn draw_manufacturers(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    ops: &OperatorState,
    s: &SystemStatus,
) {
    let t = &app.theme;
    let now = ops.server_now(app.now_ms);
    let header = Row::new(vec![
        "", "name", "link", "offered", "sent", "acked", "pending", "oldest", "sold",
    ])
    .style(t.dim());
    let rows: Vec<Row> = s
        .manufacturers
        .iter()
        .map(|m| {
            let behind = m.is_behind(now, LATE_MS);
            let (symbol, style) = match (behind, m.connected) {
                (true, _) => ("!", t.error()),
                (false, true) => ("✓", t.text()),
                (false, false) => ("·", t.dim()),
            };
            let since = match m.since_ms {
                0 => String::new(),
                at => format!(" {}", strings::duration(now.saturating_sub(at))),
            };
            let link = if m.connected { "up" } else { "DOWN" };
            let oldest = m.oldest_pending_at_ms.map_or("-".to_string(), |at| {
                strings::duration(now.saturating_sub(at))
            });
            Row::new(vec![
                Cell::from(symbol),
                Cell::from(m.name.clone()),
                Cell::from(format!("{link}{since}")),
                Cell::from(m.last_offered.map_or("-".into(), |id| format!("#{}", id.0))),
                Cell::from(m.last_seq.0.to_string()),
                Cell::from(m.acked_seq.0.to_string()),
                Cell::from(m.pending().to_string()),
                Cell::from(oldest),
                Cell::from(thousands(m.units_sold_month)),
            ])
            .style(style)
        })
        .collect();
    let behind = s
        .manufacturers
        .iter()
        .filter(|m| m.is_behind(now, LATE_MS))
        .count();
    let title = match behind {
        0 => format!("Manufacturers ({})", s.manufacturers.len()),
        n => format!(
            "Manufacturers ({}) · {n} {}",
            s.manufacturers.len(),
            strings::OPS_BEHIND
        ),
    };
    let widths = [
        Constraint::Length(1),
        Constraint::Length(16),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(panel(title, t));
    frame.render_widget(table, area);
}

fn draw_top_products(frame: &mut Frame, area: Rect, t: &Theme, s: &SystemStatus) {
    let block = panel("Top products this month".into(), t);
    if s.top_products.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(Paragraph::new(Line::styled("no sales yet", t.dim())), inner);
        return;
    }
    let label_w = (area.width / 3).max(6) as usize;
    let bars: Vec<Bar> = s
        .top_products
        .iter()
        .map(|p| {
            let label: String = p.product.chars().take(label_w).collect();
            Bar::with_label(label, p.units).text_value(thousands(p.units))
        })
        .collect();
    let chart = BarChart::horizontal(bars)
        .block(block)
        .bar_width(1)
        .bar_gap(0)
        .bar_style(t.spark())
        .value_style(t.selected())
        .label_style(t.text());
    frame.render_widget(chart, area);
}

fn draw_history(frame: &mut Frame, area: Rect, t: &Theme, s: &SystemStatus) {
    let header = Row::new(vec!["month", "lasted", "closed by", "units", "revenue"]).style(t.dim());
    let rows: Vec<Row> = s
        .history
        .iter()
        .map(|h| {
            Row::new(vec![
                Cell::from(format!("#{}", h.id.0)),
                Cell::from(strings::duration(h.lasted_ms())),
                Cell::from(strings::close_reason_short(h.reason)),
                Cell::from(thousands(h.units)),
                Cell::from(Span::styled(strings::money(h.revenue), t.money())),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Min(8),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(panel("Last months".into(), t));
    frame.render_widget(table, area);
}

/// The console's confirmation dialogs.
pub fn dialog(frame: &mut Frame, area: Rect, app: &App, dialog: &OpsDialog) {
    let t = &app.theme;
    let month = app
        .operator
        .as_ref()
        .and_then(|o| o.status.as_ref())
        .and_then(|s| s.month.as_ref())
        .map_or(0, |m| m.id.0);
    let (title, lines) = match dialog {
        OpsDialog::CloseMonth => (
            strings::OPS_CLOSE_TITLE,
            vec![
                Line::styled(format!("Close month {month} now?"), t.warn()),
                Line::raw("Every manufacturer gets its settlement and"),
                Line::raw("the next month opens at once."),
            ],
        ),
        OpsDialog::MonthLength(input) => {
            let mut lines = vec![
                Line::raw("Seconds that the next months last:"),
                Line::from(vec![
                    Span::styled("> ", t.key()),
                    Span::styled(format!("{}_", input.display()), t.selected()),
                ]),
            ];
            if let Some(e) = &input.error {
                lines.push(Line::styled(e.clone(), t.error()));
            }
            (strings::OPS_LENGTH_TITLE, lines)
        }
        OpsDialog::ConfirmLength(secs) => (
            strings::OPS_LENGTH_TITLE,
            vec![
                Line::styled(
                    format!(
                        "Months opening from now on last {}?",
                        strings::duration(secs * 1000)
                    ),
                    t.warn(),
                ),
                Line::raw(format!("Month {month} keeps its end.")),
            ],
        ),
    };
    let (r, block) = super::popup(frame, area, 52, 7, title, app);
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let [text, keys] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), text);
    let hint = Line::from(vec![
        Span::styled("Enter", t.key()),
        Span::styled(" confirm  ", t.dim()),
        Span::styled("Esc", t.key()),
        Span::styled(" cancel", t.dim()),
    ]);
    frame.render_widget(Paragraph::new(hint), keys);
}
