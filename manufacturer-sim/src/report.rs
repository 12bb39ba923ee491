//! `manufacturer-sim report`: the books' totals, read through a read-only connection so it can run
//! while the simulator is writing, and can never create or change the file.

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use std::path::Path;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// There is no file at the path.
    #[error("no books database at {0}")]
    Missing(String),
    /// The file exists but is not a manufacturer-sim books database (or is damaged).
    #[error("{path} is not a readable manufacturer-sim books database: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What SQLite said, or what is missing.
        reason: String,
    },
}

/// Totals across all months, per manufacturer and product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every manufacturer in the file, by name.
    pub manufacturers: Vec<ManufacturerReport>,
}

/// One manufacturer's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManufacturerReport {
    /// Its name.
    pub name: String,
    /// The last notice applied to its books.
    pub high_water: u64,
    /// Its products.
    pub products: Vec<ProductReport>,
    /// Its offers, one per month.
    pub months: Vec<MonthReport>,
}

/// One product's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductReport {
    /// SKU.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Units in stock when the books were created.
    pub starting: u64,
    /// Units made since.
    pub produced: u64,
    /// Units offered to the distributor, over all months.
    pub offered: u64,
    /// Units sold, from sale notices.
    pub sold: u64,
    /// Unsold units that came back.
    pub returned: u64,
    /// Units in stock now.
    pub in_stock: u64,
    /// Sum of price paid × units sold, in cents.
    pub revenue_cents: u64,
}

/// One month's offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthReport {
    /// The month number.
    pub month: u32,
    /// `recorded`, `accepted`, `settled` or `lapsed`.
    pub state: String,
    /// The high-water mark when the offer was recorded: every notice up to it was in the books.
    pub high_water_at_offer: u64,
    /// Units offered.
    pub offered: u64,
    /// Units sold, from sale notices.
    pub sold: u64,
    /// Units returned.
    pub returned: u64,
}

/// Reads the totals from a books file without writing to it.
pub fn report(db: &Path) -> Result<Report, ReportError> {
    let shown = db.display().to_string();
    if !db.is_file() {
        return Err(ReportError::Missing(shown));
    }
    let unreadable = |e: rusqlite::Error| ReportError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    // Waits out a writer's checkpoint instead of failing while the simulator runs.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(unreadable)?;
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
             AND name IN ('manufacturers', 'products', 'offers', 'offer_lines')",
            [],
            |r| r.get(0),
        )
        .map_err(unreadable)?;
    if tables != 4 {
        return Err(ReportError::Unreadable {
            path: shown,
            reason: "it has no manufacturer-sim tables".into(),
        });
    }
    read(&conn).map_err(unreadable)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn read(conn: &Connection) -> Result<Report, rusqlite::Error> {
    // One read transaction, so the totals are one consistent snapshot even while notices land.
    conn.execute_batch("BEGIN")?;
    let result = read_snapshot(conn);
    conn.execute_batch("COMMIT")?;
    result
}

fn read_snapshot(conn: &Connection) -> Result<Report, rusqlite::Error> {
    let names: Vec<(String, i64)> = {
        let mut stmt = conn.prepare("SELECT name, high_water FROM manufacturers ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut products = conn.prepare(
        "SELECT sku, name, starting, produced, offered, sold, returned, in_stock, revenue
         FROM products WHERE manufacturer = ?1 ORDER BY sku",
    )?;
    let mut months = conn.prepare(
        "SELECT o.month, o.state, o.high_water_at_offer,
                COALESCE(SUM(l.quantity), 0), COALESCE(SUM(l.sold), 0), COALESCE(SUM(l.returned), 0)
         FROM offers o LEFT JOIN offer_lines l ON l.manufacturer = o.manufacturer AND l.month = o.month
         WHERE o.manufacturer = ?1 GROUP BY o.month ORDER BY o.month",
    )?;
    let mut manufacturers = Vec::with_capacity(names.len());
    for (name, high_water) in names {
        let product_rows = products.query_map([&name], |r| {
            Ok(ProductReport {
                sku: r.get(0)?,
                name: r.get(1)?,
                starting: uint(r.get(2)?),
                produced: uint(r.get(3)?),
                offered: uint(r.get(4)?),
                sold: uint(r.get(5)?),
                returned: uint(r.get(6)?),
                in_stock: uint(r.get(7)?),
                revenue_cents: uint(r.get(8)?),
            })
        })?;
        let product_list = product_rows.collect::<Result<_, _>>()?;
        let month_rows = months.query_map([&name], |r| {
            Ok(MonthReport {
                month: r.get(0)?,
                state: r.get(1)?,
                high_water_at_offer: uint(r.get(2)?),
                offered: uint(r.get(3)?),
                sold: uint(r.get(4)?),
                returned: uint(r.get(5)?),
            })
        })?;
        let month_list = month_rows.collect::<Result<_, _>>()?;
        manufacturers.push(ManufacturerReport {
            name,
            high_water: uint(high_water),
            products: product_list,
            months: month_list,
        });
    }
    Ok(Report { manufacturers })
}

impl Report {
    /// Human-readable lines, one per product, for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.manufacturers {
            out.push(format!(
                "{} (notices applied through seq {}, {} month(s) offered)",
                m.name,
                m.high_water,
                m.months.len()
            ));
            for p in &m.products {
                out.push(format!(
                    "  {:<8} {:<20} produced {:>9}  offered {:>9}  sold {:>9}  returned {:>9}  in stock {:>9}",
                    p.sku, p.name, p.produced, p.offered, p.sold, p.returned, p.in_stock
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::books::Books;
    use crate::catalog::preset;

    #[test]
    fn a_missing_file_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        let err = report(&path).unwrap_err();
        assert!(matches!(err, ReportError::Missing(_)));
        assert!(err.to_string().contains("absent.db"));
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_and_stays_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, b"this is not sqlite at all, just some text padding").unwrap();
        let err = report(&path).unwrap_err();
        assert!(matches!(err, ReportError::Unreadable { .. }), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not sqlite at all, just some text padding"
        );
    }

    #[test]
    fn an_empty_sqlite_file_is_not_books() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(report(&path)
            .unwrap_err()
            .to_string()
            .contains("no manufacturer-sim tables"));
    }

    #[test]
    fn report_shows_what_the_books_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.db");
        let mut b = Books::open(&path, "dairy").unwrap();
        b.sync_catalog(&preset("dairy").unwrap()).unwrap();
        b.add_production(&[("MLK".into(), 10)]).unwrap();
        b.offer_for(protocol::MonthId(1), 1.0).unwrap();
        let r = report(&path).unwrap();
        assert_eq!(r.manufacturers.len(), 1);
        let milk = r.manufacturers[0]
            .products
            .iter()
            .find(|p| p.sku == "MLK")
            .unwrap();
        assert_eq!(milk.produced, 10);
        assert_eq!(milk.offered, milk.starting + 10);
        assert_eq!(milk.in_stock, 0);
        assert_eq!(r.manufacturers[0].months.len(), 1);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.starts_with("{\"manufacturers\":[{\"name\":\"dairy\""));
    }
}
