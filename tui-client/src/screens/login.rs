//! Log in / sign up.

use crate::app::{App, LoginMode};
use crate::widgets::form;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let login = &app.login;
    let (title, other) = match login.mode {
        LoginMode::LogIn => (" Log in ", "New here? Ctrl-N creates an account."),
        LoginMode::SignUp => (" Create an account ", "Have an account? Ctrl-N to log in."),
    };
    let h = login.form.height() + 5;
    let r = area.centered(
        Constraint::Length(64.min(area.width)),
        Constraint::Length(h.min(area.height)),
    );
    let block = Block::bordered()
        .border_style(t.border_focus())
        .title(Line::styled(title, t.title()));
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let [intro, _, body, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Line::styled(
            " Live stock from independent makers, updated as others buy.",
            t.dim(),
        )),
        intro,
    );
    form::render(frame, body, &login.form, t, app.overlay.is_none());
    frame.render_widget(
        Paragraph::new(Line::styled(format!(" {other}"), t.dim())),
        hint,
    );
}
