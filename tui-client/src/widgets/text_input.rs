//! A one-line text field. The cursor stays at the end: forms here are short, and append plus
//! backspace is what people use in them.

use crate::widgets::card;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a field accepts and how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Free text.
    Text,
    /// Shown as `*`.
    Password,
    /// Digits only, grouped 4-4-4-4, all but the last four masked.
    CardNumber,
    /// `MM/YY`, digits only; the slash is added for you.
    Expiry,
    /// 3–4 digits, masked.
    Cvc,
}

impl InputKind {
    fn max_len(self) -> usize {
        match self {
            InputKind::Text | InputKind::Password => 100,
            InputKind::CardNumber => 19,
            InputKind::Expiry => 4,
            InputKind::Cvc => 4,
        }
    }

    fn accepts(self, c: char) -> bool {
        match self {
            InputKind::Text | InputKind::Password => !c.is_control(),
            InputKind::CardNumber | InputKind::Expiry | InputKind::Cvc => c.is_ascii_digit(),
        }
    }
}

/// A field's value and its error, if any.
#[derive(Clone, PartialEq, Eq)]
pub struct TextInput {
    /// What was typed. For digit kinds, only the digits.
    value: String,
    /// Where the cursor is, in characters. Text and password fields can be edited in the middle;
    /// digit fields (grouped or masked as they are shown) keep it at the end.
    cursor: usize,
    /// How it behaves.
    pub kind: InputKind,
    /// An error to show next to the field; cleared when the field is edited.
    pub error: Option<String>,
}

impl std::fmt::Debug for TextInput {
    /// Secrets (passwords, card numbers, CVCs) never reach a `{:?}`: only the masked form does.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match self.kind {
            InputKind::Text | InputKind::Expiry => self.value.clone(),
            _ => self.display(),
        };
        f.debug_struct("TextInput")
            .field("value", &value)
            .field("kind", &self.kind)
            .field("error", &self.error)
            .finish()
    }
}

impl Default for TextInput {
    fn default() -> Self {
        TextInput::new(InputKind::Text)
    }
}

impl TextInput {
    /// An empty field.
    pub fn new(kind: InputKind) -> Self {
        TextInput {
            value: String::new(),
            cursor: 0,
            kind,
            error: None,
        }
    }

    /// A field with a starting value (used to pre-fill account details).
    pub fn with_value(kind: InputKind, value: &str) -> Self {
        let mut input = TextInput::new(kind);
        for c in value.chars() {
            input.push(c);
        }
        input
    }

    /// The raw value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether nothing was typed.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    fn len(&self) -> usize {
        self.value.chars().count()
    }

    fn byte_at(&self, char_index: usize) -> usize {
        self.value
            .char_indices()
            .nth(char_index)
            .map_or(self.value.len(), |(i, _)| i)
    }

    fn editable_inside(&self) -> bool {
        matches!(self.kind, InputKind::Text | InputKind::Password)
    }

    /// Adds one character at the cursor if the kind accepts it and there is room.
    pub fn push(&mut self, c: char) {
        if self.kind.accepts(c) && self.len() < self.kind.max_len() {
            let at = self.byte_at(self.cursor);
            self.value.insert(at, c);
            self.cursor += 1;
            self.error = None;
        }
    }

    /// The cursor's column within [`TextInput::display`].
    pub fn cursor_col(&self) -> usize {
        if self.editable_inside() {
            self.cursor
        } else {
            self.display().chars().count()
        }
    }

    /// Applies an editing key. Returns true if the key was used.
    pub fn handle_key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.value.clear();
                self.cursor = 0;
                self.error = None;
                true
            }
            KeyCode::Char('w') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                // Deletes the word before the cursor.
                let end = self.byte_at(self.cursor);
                let trimmed = self.value[..end].trim_end().len();
                let start = self.value[..trimmed].rfind(' ').map_or(0, |i| i + 1);
                self.value.replace_range(start..end, "");
                self.cursor = self.value[..start].chars().count();
                self.error = None;
                true
            }
            KeyCode::Left if self.editable_inside() => {
                self.cursor = self.cursor.saturating_sub(1);
                true
            }
            KeyCode::Right if self.editable_inside() => {
                self.cursor = (self.cursor + 1).min(self.len());
                true
            }
            KeyCode::Home if self.editable_inside() => {
                self.cursor = 0;
                true
            }
            KeyCode::End if self.editable_inside() => {
                self.cursor = self.len();
                true
            }
            KeyCode::Delete if self.cursor < self.len() => {
                let at = self.byte_at(self.cursor);
                self.value.remove(at);
                self.error = None;
                true
            }
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                self.push(c);
                true
            }
            KeyCode::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    let at = self.byte_at(self.cursor);
                    self.value.remove(at);
                }
                self.error = None;
                true
            }
            _ => false,
        }
    }

    /// The value as it is shown: masked or grouped according to the kind. Never the full card
    /// number and never the CVC.
    pub fn display(&self) -> String {
        match self.kind {
            InputKind::Text => self.value.clone(),
            InputKind::Password | InputKind::Cvc => "*".repeat(self.value.chars().count()),
            InputKind::CardNumber => card::mask_grouped(&self.value),
            InputKind::Expiry => {
                if self.value.len() > 2 {
                    format!("{}/{}", &self.value[..2], &self.value[2..])
                } else {
                    self.value.clone()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn digit_fields_refuse_letters_and_stop_at_their_length() {
        let mut cvc = TextInput::new(InputKind::Cvc);
        for c in "12a345".chars() {
            cvc.handle_key(key(c));
        }
        assert_eq!(cvc.value(), "1234");
        assert_eq!(cvc.display(), "****");
    }

    #[test]
    fn expiry_shows_a_slash_after_the_month() {
        let exp = TextInput::with_value(InputKind::Expiry, "1231");
        assert_eq!(exp.display(), "12/31");
    }

    #[test]
    fn editing_clears_the_error_next_to_the_field() {
        let mut t = TextInput::new(InputKind::Text);
        t.error = Some("bad".into());
        t.handle_key(key('x'));
        assert_eq!(t.error, None);
    }

    #[test]
    fn debug_output_never_shows_a_card_number_or_password() {
        let card = TextInput::with_value(InputKind::CardNumber, "4111111111111111");
        let pw = TextInput::with_value(InputKind::Password, "hunter22");
        let text = format!("{card:?} {pw:?}");
        assert!(!text.contains("41111111"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
    }

    #[test]
    fn text_can_be_corrected_in_the_middle() {
        let mut t = TextInput::with_value(InputKind::Text, "ada@exmple.com");
        for _ in 0..8 {
            t.handle_key(KeyEvent::from(KeyCode::Left));
        }
        t.handle_key(key('a'));
        assert_eq!(t.value(), "ada@example.com");
        assert_eq!(t.cursor_col(), 7);
        t.handle_key(KeyEvent::from(KeyCode::Home));
        t.handle_key(KeyEvent::from(KeyCode::Delete));
        t.handle_key(KeyEvent::from(KeyCode::End));
        t.handle_key(KeyEvent::from(KeyCode::Backspace));
        assert_eq!(t.value(), "da@example.co");
    }

    #[test]
    fn a_card_number_keeps_its_cursor_at_the_end_of_the_grouped_display() {
        let mut n = TextInput::with_value(InputKind::CardNumber, "42424242");
        assert!(!n.handle_key(KeyEvent::from(KeyCode::Left)));
        assert_eq!(n.cursor_col(), "**** 4242".len());
    }

    #[test]
    fn ctrl_u_clears_the_field() {
        let mut t = TextInput::with_value(InputKind::Text, "hello");
        t.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert!(t.is_empty());
    }
}
