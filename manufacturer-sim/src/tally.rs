//! Keeps log output readable at any rate: the first few events each second get a line of their own,
//! the rest are summed into one line when the second is over.

use std::time::{Duration, Instant};

/// Lines of their own per window before events are only counted.
const SHOWN_PER_WINDOW: u32 = 4;
const WINDOW: Duration = Duration::from_secs(1);

/// Counts events of one kind within the current window.
pub(crate) struct Tally {
    started: Instant,
    shown: u32,
    hidden: u64,
    hidden_units: u64,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Tally {
            started: Instant::now(),
            shown: 0,
            hidden: 0,
            hidden_units: 0,
        }
    }

    /// Whether this event gets a line of its own; if not, it is counted for the summary.
    pub(crate) fn show(&mut self, units: u64) -> bool {
        if self.started.elapsed() >= WINDOW && self.hidden == 0 {
            self.started = Instant::now();
            self.shown = 0;
        }
        if self.shown < SHOWN_PER_WINDOW {
            self.shown += 1;
            true
        } else {
            self.hidden += 1;
            self.hidden_units += units;
            false
        }
    }

    /// `(events, units)` counted but not shown, once the window is over; resets the window.
    pub(crate) fn summary(&mut self) -> Option<(u64, u64)> {
        if self.started.elapsed() < WINDOW {
            return None;
        }
        self.started = Instant::now();
        self.shown = 0;
        let hidden = (self.hidden, self.hidden_units);
        self.hidden = 0;
        self.hidden_units = 0;
        (hidden.0 > 0).then_some(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_few_events_in_a_window_are_shown() {
        let mut t = Tally::new();
        let shown = (0..10).filter(|_| t.show(2)).count();
        assert_eq!(shown, SHOWN_PER_WINDOW as usize);
        assert_eq!(t.summary(), None, "window not over yet");
        t.started -= WINDOW;
        assert_eq!(t.summary(), Some((6, 12)));
        assert!(t.show(1), "a new window shows events again");
    }
}
