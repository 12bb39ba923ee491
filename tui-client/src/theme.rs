//! Colours and emphasis, decided in one place.
//!
//! The default theme uses only the 16 basic ANSI colours, so it looks the same over ssh in any
//! terminal. Under `NO_COLOR` the theme sets no colour at all and uses modifiers only (bold,
//! reverse, underline, dim): with crossterm 0.29 a colour change while `NO_COLOR` is set becomes an
//! empty SGR sequence, which the terminal reads as "reset all" and so wipes bold and reverse.
//! Keeping every cell's colour at `Reset` means crossterm never emits a colour change.

use protocol::LineStatus;
use ratatui::style::{Color, Modifier, Style};

/// The look of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// False under `NO_COLOR`: then only modifiers are used.
    color: bool,
}

impl Theme {
    /// The theme the environment asks for: plain when `NO_COLOR` is set to anything non-empty.
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    /// The 16-colour theme.
    pub const fn colored() -> Self {
        Theme { color: true }
    }

    /// Modifiers only, no colour.
    pub const fn plain() -> Self {
        Theme { color: false }
    }

    /// Whether colours are used at all.
    pub fn has_color(&self) -> bool {
        self.color
    }

    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// Ordinary text.
    pub fn text(&self) -> Style {
        Style::new()
    }

    /// The app name and screen titles.
    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Secondary text: labels, hints, units.
    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    /// Key names in the footer and the help overlay.
    pub fn key(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// The selected row or the focused field. Reverse video stays visible without colour.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// The active tab.
    pub fn tab_active(&self) -> Style {
        self.fg(Color::Cyan)
            .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    /// Money amounts.
    pub fn money(&self) -> Style {
        self.fg(Color::Green)
    }

    /// An error message or a failed check.
    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// A passed check or a success message.
    pub fn ok(&self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }

    /// A warning: stock ran short, low stock.
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// A quantity that just went down (someone bought).
    pub fn flash_down(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    /// A quantity that just went up, or a status that just moved forward.
    pub fn flash_up(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Black).bg(Color::Green)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    /// The banner shown while the server is unreachable.
    pub fn banner_offline(&self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    /// Borders of panels.
    pub fn border(&self) -> Style {
        self.fg(Color::DarkGray)
    }

    /// Borders of the focused panel or an overlay.
    pub fn border_focus(&self) -> Style {
        self.fg(Color::Cyan)
    }

    /// The filled part of the month gauge.
    pub fn gauge(&self) -> Style {
        self.fg(Color::Cyan)
    }

    /// Sparklines of stock.
    pub fn spark(&self) -> Style {
        self.fg(Color::Blue)
    }

    /// An order line's status.
    pub fn status(&self, status: LineStatus) -> Style {
        match status {
            LineStatus::Placed => self.fg(Color::Yellow),
            LineStatus::Confirmed => self.fg(Color::Cyan),
            LineStatus::Dispatched => self.fg(Color::Green).add_modifier(Modifier::BOLD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_theme_never_sets_a_colour_so_crossterm_never_wipes_modifiers() {
        let t = Theme::plain();
        let all = [
            t.text(),
            t.title(),
            t.dim(),
            t.key(),
            t.selected(),
            t.tab_active(),
            t.money(),
            t.error(),
            t.ok(),
            t.warn(),
            t.flash_down(),
            t.flash_up(),
            t.banner_offline(),
            t.border(),
            t.border_focus(),
            t.gauge(),
            t.spark(),
            t.status(LineStatus::Placed),
            t.status(LineStatus::Dispatched),
        ];
        for style in all {
            assert_eq!(style.fg, None, "{style:?}");
            assert_eq!(style.bg, None, "{style:?}");
        }
        assert!(t.selected().add_modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn colored_theme_uses_only_the_16_basic_colours() {
        let t = Theme::colored();
        for style in [
            t.title(),
            t.error(),
            t.flash_down(),
            t.banner_offline(),
            t.dim(),
        ] {
            for c in [style.fg, style.bg].into_iter().flatten() {
                assert!(
                    !matches!(c, Color::Rgb(..) | Color::Indexed(_)),
                    "{c:?} is not a basic colour"
                );
            }
        }
    }
}
