//! The view: draws the model, never changes it.

mod account;
mod cart;
mod catalog;
mod checkout;
mod chrome;
mod help;
mod login;
mod operator;
mod orders;

use crate::app::{App, Overlay, Screen};
use crate::strings;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

/// Below this size the app shows a notice instead of the screens.
pub const MIN_WIDTH: u16 = 60;
/// Below this size the app shows a notice instead of the screens.
pub const MIN_HEIGHT: u16 = 18;

/// Draws the whole app.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let (min_w, min_h) = min_size(app);
    if area.width < min_w || area.height < min_h {
        too_small(frame, area, app);
        return;
    }
    let [header, tabs, banner, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    chrome::header(frame, header, app);
    chrome::tabs(frame, tabs, app);
    chrome::banner(frame, banner, app);
    match app.screen {
        Screen::Login => login::draw(frame, body, app),
        Screen::Catalog => catalog::draw(frame, body, app),
        Screen::Cart => cart::draw(frame, body, app),
        Screen::Checkout => checkout::draw(frame, body, app),
        Screen::Orders => orders::draw(frame, body, app),
        Screen::Account => account::draw(frame, body, app),
        Screen::Operator => operator::draw(frame, body, app),
    }
    chrome::footer(frame, footer, app);
    match &app.overlay {
        Some(Overlay::Help) => help::draw(frame, body, app),
        Some(Overlay::ConfirmDelete(form)) => account::delete_dialog(frame, body, app, form),
        Some(Overlay::RememberKey) => account::remember_key_dialog(frame, body, app),
        Some(Overlay::Operator(dialog)) => operator::dialog(frame, body, app, dialog),
        None => {}
    }
}

/// The smallest terminal the current screen needs: the console's panels need 80 x 24.
pub fn min_size(app: &App) -> (u16, u16) {
    match app.screen {
        Screen::Operator => (operator::MIN_WIDTH, operator::MIN_HEIGHT),
        _ => (MIN_WIDTH, MIN_HEIGHT),
    }
}

fn too_small(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let (min_w, min_h) = min_size(app);
    let lines = vec![
        Line::styled(strings::TOO_SMALL, t.error()),
        Line::raw(format!("{} x {}", area.width, area.height)),
        Line::styled(format!("need {min_w} x {min_h}"), t.dim()),
        Line::styled("Ctrl-C quits", t.dim()),
    ];
    let box_area = area.centered(Constraint::Length(24), Constraint::Length(4));
    frame.render_widget(Paragraph::new(lines).centered(), box_area);
}

/// A bordered box over the body, cleared first.
pub(crate) fn popup<'a>(
    frame: &mut Frame,
    area: Rect,
    w: u16,
    h: u16,
    title: &'a str,
    app: &App,
) -> (Rect, Block<'a>) {
    let r = area.centered(
        Constraint::Length(w.min(area.width)),
        Constraint::Length(h.min(area.height)),
    );
    frame.render_widget(Clear, r);
    let block = Block::bordered()
        .border_style(app.theme.border_focus())
        .title(Line::styled(format!(" {title} "), app.theme.title()));
    (r, block)
}

/// The app drawn into a `w` x `h` text buffer, one quoted line per row (as the snapshots show it).
pub fn render_text(app: &App, w: u16, h: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(w, h);
    // The test backend cannot fail: its error type is `Infallible`.
    let Ok(mut terminal) = ratatui::Terminal::new(backend);
    let Ok(_) = terminal.draw(|f| draw(f, app));
    terminal.backend().to_string()
}

/// Rendering helpers for tests: the app drawn into a text buffer.
#[cfg(test)]
pub(crate) fn render_to_string(app: &App, w: u16, h: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(w, h);
    let mut terminal = ratatui::Terminal::new(backend).unwrap();
    terminal.draw(|f| draw(f, app)).unwrap();
    terminal.backend().to_string()
}
