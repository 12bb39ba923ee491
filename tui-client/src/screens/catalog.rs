//! The catalog: a table of live stock and a panel for the selected product.

use crate::app::App;
use crate::strings;
use crate::widgets::spark;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    // Taller terminals get a taller chart.
    let detail_h = if area.height >= 30 { 10 } else { 6 };
    let [list, detail] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(detail_h)]).areas(area);
    draw_table(frame, list, app);
    draw_detail(frame, detail, app);
}

fn title(app: &App) -> Line<'static> {
    let t = &app.theme;
    let c = &app.catalog;
    let mut spans = vec![Span::styled(" Catalog ", t.title())];
    let maker = c.maker.clone().unwrap_or_else(|| "all makers".into());
    let cat = c
        .category
        .clone()
        .unwrap_or_else(|| "all categories".into());
    spans.push(Span::styled(
        format!(
            "{maker} | {cat} | {} {} ",
            strings::SORTED_BY,
            c.sort.label()
        ),
        t.dim(),
    ));
    if c.searching || !c.search.is_empty() {
        let style = if c.searching { t.selected() } else { t.warn() };
        spans.push(Span::styled(format!("/{}", c.search.value()), style));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let c = &app.catalog;
    let block = Block::bordered().border_style(t.border()).title(title(app));
    let rows_data = c.visible();
    if rows_data.is_empty() {
        let text = if !app.catalog.loaded {
            strings::LOADING
        } else if c.items.is_empty() {
            strings::CATALOG_EMPTY
        } else {
            strings::CATALOG_NO_MATCH
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {text}"), t.dim())).block(block),
            area,
        );
        return;
    }
    let group_by_maker = c.sort == crate::app::Sort::Maker;
    // Wider terminals get a longer trend.
    let trend_w: u16 = if area.width >= 110 { 24 } else { 8 };
    let mut prev_maker: Option<&str> = None;
    let rows: Vec<Row> = rows_data
        .iter()
        .map(|item| {
            // Grouped: the maker is named on the first row of its group only.
            let maker = if group_by_maker && prev_maker == Some(item.manufacturer_name.as_str()) {
                String::new()
            } else {
                item.manufacturer_name.clone()
            };
            prev_maker = Some(&item.manufacturer_name);
            let left_style = match c.changed.get(&item.listing) {
                Some(ch) if ch.up => t.flash_up(),
                Some(_) => t.flash_down(),
                None if item.remaining * 10 <= item.offered => t.warn(),
                None => t.text(),
            };
            let history = c
                .history
                .get(&item.listing)
                .map(|h| h.as_slice())
                .unwrap_or(&[]);
            Row::new(vec![
                Cell::from(Span::styled(maker, t.text().add_modifier(Modifier::BOLD))),
                Cell::from(item.product.clone()),
                Cell::from(Span::styled(item.category.clone(), t.dim())),
                Cell::from(
                    Line::styled(strings::money(item.unit_price), t.money()).right_aligned(),
                ),
                Cell::from(Line::styled(format!("{}", item.remaining), left_style).right_aligned()),
                Cell::from(Span::styled(
                    spark::inline(history, trend_w as usize),
                    t.spark(),
                )),
            ])
        })
        .collect();
    let header = Row::new(vec![
        Cell::from("Maker"),
        Cell::from("Product"),
        Cell::from("Category"),
        Cell::from(Line::from("Price").right_aligned()),
        Cell::from(Line::from("Left").right_aligned()),
        Cell::from("Trend"),
    ])
    .style(t.dim().add_modifier(Modifier::BOLD));
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Fill(3),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(trend_w),
        ],
    )
    .header(header)
    .block(block)
    .row_highlight_style(t.selected())
    .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(c.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_detail(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let c = &app.catalog;
    let block = Block::bordered().border_style(t.border());
    let Some(item) = c.current() else {
        frame.render_widget(block, area);
        return;
    };
    let inner = block.inner(area);
    frame.render_widget(
        block.title(Line::styled(format!(" {} ", item.product), t.title())),
        area,
    );
    let [text, chart] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(26)]).areas(inner);
    let line_total = item
        .unit_price
        .times(c.qty)
        .map(strings::money)
        .unwrap_or_default();
    let lines = vec![
        Line::from(vec![
            Span::styled("by ", t.dim()),
            Span::raw(item.manufacturer_name.clone()),
            Span::styled(format!("  {}  ", item.category), t.dim()),
            Span::styled(item.sku.clone(), t.dim()),
        ]),
        Line::from(vec![
            Span::styled(strings::money(item.unit_price), t.money()),
            Span::styled(" each  ", t.dim()),
            Span::raw(format!("{} of {} left", item.remaining, item.offered)),
        ]),
        Line::from(vec![
            Span::styled("Quantity ", t.dim()),
            Span::styled("< ", t.key()),
            Span::styled(format!("{}", c.qty), t.selected()),
            Span::styled(" >", t.key()),
            Span::styled(format!("  of {}  = ", item.remaining), t.dim()),
            Span::styled(line_total, t.money()),
            Span::styled("  Enter adds", t.dim()),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), text);
    let history = c.history.get(&item.listing).cloned().unwrap_or_default();
    let sold = spark::sales(&history);
    let tail = &sold[sold.len().saturating_sub(chart.width as usize)..];
    let per_min: u64 = sold.iter().rev().take(60).sum();
    let [label, spark_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(chart);
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!("sold last minute: {per_min}"),
            t.dim(),
        )),
        label,
    );
    frame.render_widget(Sparkline::default().data(tail).style(t.spark()), spark_area);
}
