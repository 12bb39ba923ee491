//! A form: labelled fields, one focused, errors shown next to the field they belong to.

use crate::theme::Theme;
use crate::widgets::card::{self, NumberCheck};
use crate::widgets::text_input::{InputKind, TextInput};
use crossterm::event::{KeyCode, KeyEvent};
use protocol::{Field, WireError};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// One labelled field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    /// Shown left of the value.
    pub label: &'static str,
    /// The value.
    pub input: TextInput,
    /// The wire field whose errors belong here.
    pub field: Option<Field>,
}

impl FormField {
    /// A field.
    pub fn new(label: &'static str, kind: InputKind, field: Option<Field>) -> Self {
        FormField {
            label,
            input: TextInput::new(kind),
            field,
        }
    }

    /// A field with a starting value.
    pub fn filled(label: &'static str, kind: InputKind, field: Option<Field>, value: &str) -> Self {
        FormField {
            label,
            input: TextInput::with_value(kind, value),
            field,
        }
    }
}

/// What a key did to a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKey {
    /// Enter on the last field (or anywhere, see [`Form::handle_key`]): send it.
    Submit,
    /// Esc.
    Cancel,
    /// The key edited a field or moved the focus.
    Handled,
    /// Not a form key.
    Ignored,
}

/// Fields and focus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// The fields, top to bottom.
    pub fields: Vec<FormField>,
    /// Index of the focused field.
    pub focus: usize,
    /// An error that belongs to no single field.
    pub error: Option<String>,
}

impl Form {
    /// A form with the focus on its first field.
    pub fn new(fields: Vec<FormField>) -> Self {
        Form {
            fields,
            focus: 0,
            error: None,
        }
    }

    /// The value of field `i` (empty if there is none).
    pub fn value(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", |f| f.input.value())
    }

    /// Tab, Shift-Tab, arrows move the focus; Enter submits from the last field and otherwise moves
    /// on, so a form can be filled top to bottom with Enter alone; Esc cancels.
    pub fn handle_key(&mut self, key: KeyEvent) -> FormKey {
        let n = self.fields.len().max(1);
        match key.code {
            KeyCode::Tab | KeyCode::Down => {
                self.focus = (self.focus + 1) % n;
                FormKey::Handled
            }
            KeyCode::BackTab | KeyCode::Up => {
                self.focus = (self.focus + n - 1) % n;
                FormKey::Handled
            }
            KeyCode::Enter => {
                if self.focus + 1 >= n {
                    FormKey::Submit
                } else {
                    self.focus += 1;
                    FormKey::Handled
                }
            }
            KeyCode::Esc => FormKey::Cancel,
            _ => {
                let used = self
                    .fields
                    .get_mut(self.focus)
                    .is_some_and(|f| f.input.handle_key(key));
                if used {
                    self.error = None;
                    FormKey::Handled
                } else {
                    FormKey::Ignored
                }
            }
        }
    }

    /// Puts a server error next to its field (and focuses it), or under the form.
    pub fn show_error(&mut self, error: &WireError) {
        let at = error
            .field
            .and_then(|wf| self.fields.iter().position(|f| f.field == Some(wf)));
        match at {
            Some(i) => {
                self.fields[i].input.error = Some(error.message.clone());
                self.focus = i;
            }
            None => self.error = Some(error.message.clone()),
        }
    }

    /// Puts a client-side validation message next to field `i`.
    pub fn field_error(&mut self, i: usize, message: impl Into<String>) {
        if let Some(f) = self.fields.get_mut(i) {
            f.input.error = Some(message.into());
            self.focus = i;
        }
    }

    /// Whether any field or the form has an error.
    pub fn has_errors(&self) -> bool {
        self.error.is_some() || self.fields.iter().any(|f| f.input.error.is_some())
    }

    /// Lines needed to draw the form.
    pub fn height(&self) -> u16 {
        (self.fields.len() * 2 + 1) as u16
    }
}

const LABEL_WIDTH: u16 = 16;

/// Draws the form. Each field takes two lines: the value, then its error (or a hint). When `active`,
/// the focused field is marked and the terminal cursor is put at its end.
pub fn render(frame: &mut Frame, area: Rect, form: &Form, theme: &Theme, active: bool) {
    let value_width = area.width.saturating_sub(LABEL_WIDTH + 2).min(36) as usize;
    let mut lines: Vec<Line> = Vec::new();
    let mut cursor = None;
    for (i, f) in form.fields.iter().enumerate() {
        let focused = active && i == form.focus;
        let marker = if focused { "> " } else { "  " };
        let label = format!("{marker}{:<w$}", f.label, w = (LABEL_WIDTH - 2) as usize);
        let shown = f.input.display();
        let pad = value_width.saturating_sub(shown.chars().count());
        let value_style = if focused {
            theme.selected()
        } else {
            theme
                .text()
                .add_modifier(ratatui::style::Modifier::UNDERLINED)
        };
        let mut spans = vec![
            Span::styled(label, if focused { theme.title() } else { theme.text() }),
            Span::styled(format!("{shown}{}", " ".repeat(pad)), value_style),
        ];
        if f.input.kind == InputKind::CardNumber && !f.input.is_empty() {
            let digits = f.input.value();
            if let Some(b) = card::brand(digits) {
                spans.push(Span::styled(
                    format!(" {}", card::brand_name(b)),
                    theme.dim(),
                ));
            }
            spans.push(match card::check(digits) {
                NumberCheck::Incomplete => Span::styled(" ...", theme.dim()),
                NumberCheck::Valid => Span::styled(" ok", theme.ok()),
                NumberCheck::Invalid => Span::styled(" check digits", theme.error()),
            });
        }
        if focused {
            let x = area.x + LABEL_WIDTH + f.input.cursor_col() as u16;
            let y = area.y + lines.len() as u16;
            if x < area.right() && y < area.bottom() {
                cursor = Some((x, y));
            }
        }
        lines.push(Line::from(spans));
        match &f.input.error {
            // Long messages wrap under the field rather than run off a narrow panel.
            Some(e) => {
                let width = area.width.saturating_sub(LABEL_WIDTH + 2).max(10) as usize;
                for (i, part) in wrap(e, width).into_iter().enumerate() {
                    let mark = if i == 0 { "^ " } else { "  " };
                    lines.push(Line::from(vec![
                        Span::raw(" ".repeat(LABEL_WIDTH as usize)),
                        Span::styled(format!("{mark}{part}"), theme.error()),
                    ]));
                }
            }
            None => lines.push(Line::raw("")),
        }
    }
    if let Some(e) = &form.error {
        lines.push(Line::styled(format!("  {e}"), theme.error()));
    }
    frame.render_widget(Paragraph::new(lines), area);
    if let Some(pos) = cursor {
        frame.set_cursor_position(pos);
    }
}

/// Splits text into lines of at most `width` characters, at spaces where possible.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ErrorCode;

    fn form() -> Form {
        Form::new(vec![
            FormField::new("Email", InputKind::Text, Some(Field::Email)),
            FormField::new("Password", InputKind::Password, Some(Field::Password)),
        ])
    }

    #[test]
    fn a_server_error_lands_on_the_field_it_names_and_focuses_it() {
        let mut f = form();
        f.show_error(&WireError::field(
            ErrorCode::EmailTaken,
            Field::Email,
            "taken",
        ));
        assert_eq!(f.fields[0].input.error.as_deref(), Some("taken"));
        assert_eq!(f.focus, 0);
        assert_eq!(f.error, None);
    }

    #[test]
    fn an_error_without_a_field_goes_under_the_form() {
        let mut f = form();
        f.show_error(&WireError::new(ErrorCode::BadCredentials, "nope"));
        assert_eq!(f.error.as_deref(), Some("nope"));
    }

    #[test]
    fn long_errors_wrap_at_spaces_within_the_width() {
        assert_eq!(
            wrap("another account already uses this email", 16),
            vec!["another account", "already uses", "this email"]
        );
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }

    #[test]
    fn enter_moves_on_and_submits_from_the_last_field() {
        let mut f = form();
        assert_eq!(
            f.handle_key(KeyEvent::from(KeyCode::Enter)),
            FormKey::Handled
        );
        assert_eq!(f.focus, 1);
        assert_eq!(
            f.handle_key(KeyEvent::from(KeyCode::Enter)),
            FormKey::Submit
        );
    }
}
