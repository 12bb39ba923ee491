//! What a manufacturer makes: the catalog file format and the built-in presets.
//!
//! A catalog is JSON (see the crate README for the format). It is validated when it is loaded, so a
//! bad file stops the simulator with a message that names the product and the field.

use protocol::Cents;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// Everything one manufacturer makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The products, each with its own production rate.
    pub products: Vec<Product>,
}

/// One product and how it is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stock-keeping unit, unique within the catalog. It is how sale notices name the product.
    pub sku: String,
    /// What customers see.
    pub name: String,
    /// For grouping in the shop.
    pub category: String,
    /// The base unit price in cents. Each month's price drifts within ±10% of it.
    pub unit_price_cents: u64,
    /// Units made per second (before `--rate-scale`).
    pub rate_per_sec: f64,
    /// Units in stock the first time this manufacturer's books are created.
    pub starting_stock: u64,
    /// Production stops while this many units are in stock.
    pub capacity: u64,
}

impl Product {
    /// The base price as money.
    pub fn base_price(&self) -> Cents {
        Cents(self.unit_price_cents)
    }
}

/// Why a catalog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid catalog JSON.
    #[error("catalog {path} is not valid: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause, with line and column.
        source: serde_json::Error,
    },
    /// The JSON is well formed but a value makes no sense.
    #[error("catalog {path}: {message}")]
    Invalid {
        /// The file, or the preset name.
        path: String,
        /// What is wrong, naming the product and field.
        message: String,
    },
}

/// The names of the built-in presets, for `--help` and error messages.
pub const PRESETS: &[&str] = &["orchard", "dairy", "bakery", "bulk"];

impl Catalog {
    /// Reads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: shown.clone(),
            source,
        })?;
        Catalog::parse(&text, &shown)
    }

    /// Parses and validates catalog JSON. `origin` names the source in error messages.
    pub fn parse(json: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            serde_json::from_str(json).map_err(|source| CatalogError::Parse {
                path: origin.to_string(),
                source,
            })?;
        catalog.validate(origin)?;
        Ok(catalog)
    }

    /// Checks the rules a parsed catalog must follow.
    pub fn validate(&self, origin: &str) -> Result<(), CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            path: origin.to_string(),
            message,
        };
        if self.products.is_empty() {
            return Err(invalid("it lists no products".into()));
        }
        // Bigger offers are sent in parts, but the distributor takes at most this many lines.
        if self.products.len() > protocol::MAX_OFFER_LINES {
            return Err(invalid(format!(
                "it lists {} products; the distributor takes at most {} in one offer",
                self.products.len(),
                protocol::MAX_OFFER_LINES
            )));
        }
        let mut seen = HashSet::new();
        for (i, p) in self.products.iter().enumerate() {
            let at = format!("product #{} ({:?})", i + 1, p.sku);
            if p.sku.trim().is_empty() {
                return Err(invalid(format!("product #{}: sku is empty", i + 1)));
            }
            if !seen.insert(p.sku.as_str()) {
                return Err(invalid(format!("{at}: sku appears twice")));
            }
            if p.name.trim().is_empty() {
                return Err(invalid(format!("{at}: name is empty")));
            }
            if p.category.trim().is_empty() {
                return Err(invalid(format!("{at}: category is empty")));
            }
            // The distributor's limits, checked here so a bad catalog fails at start-up, not at offer time.
            if p.sku.len() > protocol::MAX_SKU_BYTES
                || p.name.len() > protocol::MAX_PRODUCT_BYTES
                || p.category.len() > protocol::MAX_CATEGORY_BYTES
            {
                return Err(invalid(format!(
                    "{at}: sku and category may be at most {} bytes, name at most {}",
                    protocol::MAX_SKU_BYTES,
                    protocol::MAX_PRODUCT_BYTES
                )));
            }
            if p.unit_price_cents > 1 << 40 {
                return Err(invalid(format!(
                    "{at}: unit_price_cents is implausibly large"
                )));
            }
            if p.unit_price_cents == 0 {
                return Err(invalid(format!(
                    "{at}: unit_price_cents must be at least 1"
                )));
            }
            if !p.rate_per_sec.is_finite() || p.rate_per_sec < 0.0 {
                return Err(invalid(format!(
                    "{at}: rate_per_sec must be a number ≥ 0, got {}",
                    p.rate_per_sec
                )));
            }
            if p.capacity == 0 {
                return Err(invalid(format!("{at}: capacity must be at least 1")));
            }
            if p.starting_stock > p.capacity {
                return Err(invalid(format!(
                    "{at}: starting_stock {} is above capacity {}",
                    p.starting_stock, p.capacity
                )));
            }
            // Offers carry u32 quantities; a larger stock could not be offered in one month.
            if p.capacity > u64::from(u32::MAX) {
                return Err(invalid(format!(
                    "{at}: capacity must be at most {}",
                    u32::MAX
                )));
            }
        }
        Ok(())
    }
}

/// A built-in catalog by name (`orchard`, `dairy`, `bakery`, `bulk`).
pub fn preset(name: &str) -> Option<Catalog> {
    let products = match name {
        // The original project's fruit.
        "orchard" => vec![
            product("APL", "Apples", "fruit", 120, 4.0, 400, 2_000),
            product("PER", "Pears", "fruit", 150, 3.0, 300, 1_500),
            product("BAN", "Bananas", "fruit", 90, 5.0, 500, 2_500),
            product("ORA", "Oranges", "fruit", 110, 4.0, 400, 2_000),
        ],
        "dairy" => vec![
            product("MLK", "Milk 1l", "dairy", 99, 6.0, 600, 3_000),
            product("BTR", "Butter 250g", "dairy", 249, 2.0, 200, 1_000),
            product("CHS", "Cheddar 200g", "dairy", 349, 1.5, 150, 800),
            product("YOG", "Yoghurt 500g", "dairy", 179, 3.0, 300, 1_500),
        ],
        "bakery" => vec![
            product("BRD", "Sourdough loaf", "bakery", 420, 2.0, 120, 600),
            product("BAG", "Baguette", "bakery", 180, 4.0, 240, 1_200),
            product("CRO", "Croissant", "bakery", 130, 6.0, 360, 1_800),
            product("MUF", "Blueberry muffin", "bakery", 210, 3.0, 180, 900),
        ],
        // A benchmark supply: 10 products × 5M units outlasts 256 buyers at full speed for minutes.
        "bulk" => (1..=10)
            .map(|i| {
                product(
                    &format!("BLK{i:02}"),
                    &format!("Bulk item {i}"),
                    "bulk",
                    100 + 25 * i,
                    1_000.0,
                    5_000_000,
                    20_000_000,
                )
            })
            .collect(),
        _ => return None,
    };
    Some(Catalog { products })
}

fn product(
    sku: &str,
    name: &str,
    category: &str,
    cents: u64,
    rate: f64,
    start: u64,
    capacity: u64,
) -> Product {
    Product {
        sku: sku.into(),
        name: name.into(),
        category: category.into(),
        unit_price_cents: cents,
        rate_per_sec: rate,
        starting_stock: start,
        capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_a_valid_catalog() {
        for name in PRESETS {
            let catalog = preset(name).unwrap();
            catalog.validate(name).unwrap();
            // A preset must survive a round trip through the file format it documents.
            let json = serde_json::to_string(&catalog).unwrap();
            assert_eq!(Catalog::parse(&json, name).unwrap(), catalog);
        }
        assert!(preset("nope").is_none());
    }

    #[test]
    fn bulk_preset_outlasts_256_buyers_for_ten_seconds() {
        let stock: u64 = preset("bulk")
            .unwrap()
            .products
            .iter()
            .map(|p| p.starting_stock)
            .sum();
        // ~20k checkouts/s × 3 lines × 5 units × 10 s, with room to spare.
        assert!(stock >= 20_000 * 3 * 5 * 10);
    }

    #[test]
    fn a_syntax_error_names_the_file_and_the_line() {
        let err = Catalog::parse("{\"products\": [\n  {\"sku\": }", "my.json").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("my.json"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn an_unknown_field_is_named_in_the_error() {
        let json = r#"{"products":[{"sku":"A","name":"A","category":"c","unit_price_cents":1,
            "rate_per_sec":1,"starting_stock":0,"capacity":1,"colour":"red"}]}"#;
        let text = Catalog::parse(json, "x.json").unwrap_err().to_string();
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn invalid_values_are_rejected_with_the_product_and_field() {
        let base = preset("orchard").unwrap();
        let mut dup = base.clone();
        dup.products[1].sku = "APL".into();
        assert!(dup.validate("f").unwrap_err().to_string().contains("twice"));
        let mut free = base.clone();
        free.products[0].unit_price_cents = 0;
        let text = free.validate("f").unwrap_err().to_string();
        assert!(
            text.contains("APL") && text.contains("unit_price_cents"),
            "{text}"
        );
        let mut over = base.clone();
        over.products[2].starting_stock = over.products[2].capacity + 1;
        assert!(over
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("starting_stock"));
        let mut negative = base;
        negative.products[3].rate_per_sec = -1.0;
        assert!(negative
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("rate_per_sec"));
        assert!(Catalog::parse(r#"{"products":[]}"#, "e")
            .unwrap_err()
            .to_string()
            .contains("no products"));
    }

    #[test]
    fn a_missing_catalog_file_is_a_read_error_naming_the_path() {
        let err = Catalog::load(Path::new("/nonexistent/cat.json")).unwrap_err();
        assert!(matches!(err, CatalogError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/cat.json"));
    }
}
