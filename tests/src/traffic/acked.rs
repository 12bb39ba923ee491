//! The acked log: one line per checkout the server confirmed, written the moment the confirmation
//! arrives, so that it survives `loadgen` being killed. `distributor audit --acked FILE` reads it and
//! checks that every acknowledged order is in the database.
//!
//! Line format: `<checkout_id_hex> <order_id> <units>\n`, for example
//! `0193a1b2c3d4e5f60718293a4b5c6d7e 42 3`.

use protocol::{CheckoutId, OrderId};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// One confirmed checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedLine {
    /// The client-chosen checkout id.
    pub checkout_id: CheckoutId,
    /// The order the server created.
    pub order: OrderId,
    /// Total units in the order.
    pub units: u64,
}

impl AckedLine {
    /// The line as written to the file, with its newline.
    pub fn format(&self) -> String {
        format!(
            "{} {} {}\n",
            self.checkout_id.to_hex(),
            self.order.0,
            self.units
        )
    }

    /// Parses one line (with or without its newline). `None` if it is not in the format above.
    pub fn parse(line: &str) -> Option<AckedLine> {
        let mut fields = line.split_ascii_whitespace();
        let checkout_id = CheckoutId::from_hex(fields.next()?)?;
        let order = OrderId(fields.next()?.parse().ok()?);
        let units = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        Some(AckedLine {
            checkout_id,
            order,
            units,
        })
    }
}

/// The open log, shared by every customer.
#[derive(Debug)]
pub struct AckedLog {
    /// Unbuffered on purpose: each line is one `write(2)`, so it is in the kernel (and survives a
    /// kill of this process) before the next checkout is sent. The mutex keeps lines whole.
    file: Mutex<File>,
}

impl AckedLog {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> std::io::Result<AckedLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AckedLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one line.
    pub fn record(&self, line: &AckedLine) -> std::io::Result<()> {
        let text = line.format();
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_hex_id_order_number_and_units_and_parses_back() {
        let line = AckedLine {
            checkout_id: CheckoutId::from_parts(1_700_000_000_000, 0xabc),
            order: OrderId(42),
            units: 3,
        };
        let text = line.format();
        assert_eq!(text, format!("{} 42 3\n", line.checkout_id.to_hex()));
        assert_eq!(text.split(' ').next().map(str::len), Some(32));
        assert_eq!(AckedLine::parse(&text), Some(line));
    }

    #[test]
    fn malformed_lines_do_not_parse() {
        let id = CheckoutId(7).to_hex();
        assert_eq!(AckedLine::parse(""), None);
        assert_eq!(AckedLine::parse(&format!("{id} 1")), None);
        assert_eq!(AckedLine::parse(&format!("{id} x 1")), None);
        assert_eq!(AckedLine::parse(&format!("{id} 1 2 3")), None);
        assert_eq!(AckedLine::parse("abc 1 2"), None);
    }

    #[test]
    fn recorded_lines_are_appended_whole_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.log");
        let lines: Vec<AckedLine> = (1..=3)
            .map(|n| AckedLine {
                checkout_id: CheckoutId::from_parts(n, u128::from(n)),
                order: OrderId(n),
                units: n * 2,
            })
            .collect();
        AckedLog::open(&path).unwrap().record(&lines[0]).unwrap();
        let log = AckedLog::open(&path).unwrap();
        log.record(&lines[1]).unwrap();
        log.record(&lines[2]).unwrap();
        let read: Vec<AckedLine> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| AckedLine::parse(l).unwrap())
            .collect();
        assert_eq!(read, lines);
    }
}
