//! The channel's bytes as terminal events: the same `crossterm::event::Event`s that the local app
//! gets from crossterm, parsed by `terminput` (a copy of crossterm's private parser).
//!
//! Bytes arrive in packets that may split an escape sequence or a UTF-8 character anywhere. The
//! parser keeps what it has not understood yet, with crossterm's own look-ahead rule:
//! - a lone ESC at the end of a packet is the Esc key; followed by more bytes it starts a sequence;
//! - "incomplete" keeps the buffer for the next packet;
//! - an error clears it;
//! - the buffer is capped, so a client cannot grow it without end.

use crossterm::event::Event;

/// The longest unfinished sequence kept. Real ones are a few dozen bytes; more is garbage.
const MAX_PENDING: usize = 1024;

/// Turns packets of bytes into events.
#[derive(Debug, Default)]
pub struct InputParser {
    pending: Vec<u8>,
}

impl InputParser {
    /// Parses one packet and returns the events it completes, in order.
    pub fn feed(&mut self, packet: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for (i, byte) in packet.iter().enumerate() {
            let more = i + 1 < packet.len();
            self.pending.push(*byte);
            if self.pending == [0x1b] && more {
                continue; // ESC with more in this packet: the start of a sequence.
            }
            match terminput::Event::parse_from(&self.pending) {
                Ok(Some(event)) => {
                    self.pending.clear();
                    if let Ok(event) = terminput_crossterm::to_crossterm(event) {
                        events.push(event);
                    }
                }
                Ok(None) if self.pending.len() < MAX_PENDING => {}
                Ok(None) | Err(_) => self.pending.clear(),
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn codes(events: &[Event]) -> Vec<KeyCode> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Key(KeyEvent { code, .. }) => Some(*code),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_arrow_key_split_across_packets_is_one_arrow() {
        let mut p = InputParser::default();
        assert!(p.feed(b"\x1b[").is_empty());
        assert_eq!(codes(&p.feed(b"A")), vec![KeyCode::Up]);
        // Split after the ESC itself: a lone ESC at a packet's end is Esc (as crossterm does
        // locally), so the split that matters in practice is inside the sequence.
        assert!(p.feed(b"\x1b[1;").is_empty());
        let ev = p.feed(b"5C");
        assert_eq!(codes(&ev), vec![KeyCode::Right]);
        assert!(matches!(ev[0], Event::Key(k) if k.modifiers == KeyModifiers::CONTROL));
    }

    #[test]
    fn a_lone_esc_at_the_end_of_a_packet_is_the_esc_key() {
        let mut p = InputParser::default();
        assert_eq!(codes(&p.feed(b"\x1b")), vec![KeyCode::Esc]);
        assert_eq!(
            codes(&p.feed(b"x\x1b")),
            vec![KeyCode::Char('x'), KeyCode::Esc]
        );
    }

    #[test]
    fn utf8_split_across_packets_is_one_character() {
        let mut p = InputParser::default();
        let euro = "€".as_bytes(); // three bytes
        assert!(p.feed(&euro[..1]).is_empty());
        assert!(p.feed(&euro[1..2]).is_empty());
        assert_eq!(codes(&p.feed(&euro[2..])), vec![KeyCode::Char('€')]);
        let ae = "ä".as_bytes();
        let mut packet = b"a".to_vec();
        packet.push(ae[0]);
        assert_eq!(codes(&p.feed(&packet)), vec![KeyCode::Char('a')]);
        assert_eq!(codes(&p.feed(&ae[1..])), vec![KeyCode::Char('ä')]);
    }

    #[test]
    fn pasted_text_in_one_packet_is_every_character_in_order() {
        let mut p = InputParser::default();
        let text = "Jane Doe <jane@example.com> 4242 4242 4242 4242\r";
        let got = codes(&p.feed(text.as_bytes()));
        let mut want: Vec<KeyCode> = text.trim_end().chars().map(KeyCode::Char).collect();
        want.push(KeyCode::Enter);
        assert_eq!(got, want);
    }

    #[test]
    fn garbage_is_dropped_and_the_next_key_still_parses() {
        let mut p = InputParser::default();
        let _ = p.feed(b"\x1bO\xff");
        assert_eq!(codes(&p.feed(b"q")), vec![KeyCode::Char('q')]);
        // An endless unfinished sequence is capped, not kept.
        let mut long = b"\x1b[".to_vec();
        long.extend(std::iter::repeat_n(b'1', 4 * MAX_PENDING));
        let _ = p.feed(&long);
        assert!(p.pending.len() < MAX_PENDING);
        assert_eq!(codes(&p.feed(b"\x1b[B")), vec![KeyCode::Down]);
    }
}
