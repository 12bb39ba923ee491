//! The help overlay: every key, by section, in two columns.

use crate::app::App;
use crate::keys;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

fn section_lines<'a>(app: &App, sections: &[(&'a str, &'a [(&'a str, &'a str)])]) -> Vec<Line<'a>> {
    let t = &app.theme;
    let mut lines = Vec::new();
    for (section, entries) in sections {
        lines.push(Line::styled(format!(" {section}"), t.title()));
        for (key, what) in entries.iter() {
            lines.push(Line::from(vec![
                Span::styled(format!("  {key:<13}"), t.key()),
                Span::raw(*what),
            ]));
        }
    }
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let mut sections = keys::HELP.to_vec();
    if app.operator.is_some() {
        sections.push(keys::OPERATOR_HELP);
    }
    let half = sections.len().div_ceil(2);
    let left = section_lines(app, &sections[..half]);
    let right = section_lines(app, &sections[half..]);
    let h = left.len().max(right.len()) as u16 + 2;
    let (r, block) = super::popup(frame, area, 78, h, "Keys (Esc closes)", app);
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let [l, rr] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right), rr);
}
