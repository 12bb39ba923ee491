//! Catalog names in the market: a new manufacturer or product may not pass for an existing one by
//! differing only in case, spacing or look-alike characters ([`crate::names::lookalike_key`]).

use super::Market;
use protocol::*;

impl Market {
    /// A registered manufacturer whose name looks like `name` without being it, if any.
    pub fn lookalike_manufacturer(&self, name: &str) -> Option<String> {
        let key = crate::names::lookalike_key(name);
        self.manufacturers
            .values()
            .find(|m| m.name != name && crate::names::lookalike_key(&m.name) == key)
            .map(|m| m.name.clone())
    }

    /// The offer's product names, trimmed, in line order; refused when one has control characters
    /// or looks like another product of the same manufacturer (in this offer or an earlier one)
    /// under another SKU.
    pub(super) fn offered_product_names(
        &self,
        manufacturer: ManufacturerId,
        lines: &[OfferLine],
    ) -> Result<Vec<String>, WireError> {
        let invalid = |why: String| WireError::new(ErrorCode::InvalidInput, why);
        let mut seen: Vec<(String, &str, String)> = self
            .listings
            .values()
            .filter(|l| l.manufacturer == manufacturer)
            .map(|l| {
                (
                    crate::names::lookalike_key(&l.product),
                    l.sku.as_str(),
                    l.product.clone(),
                )
            })
            .collect();
        let mut names = Vec::with_capacity(lines.len());
        for line in lines {
            let what = format!("{}: the product name", line.sku);
            let name = crate::names::catalog_name(&line.product, &what, MAX_PRODUCT_BYTES)
                .map_err(invalid)?;
            let key = crate::names::lookalike_key(&name);
            if let Some((_, sku, other)) = seen
                .iter()
                .find(|(k, sku, other)| *k == key && *sku != line.sku && *other != name)
            {
                return Err(invalid(format!(
                    "{}: \"{name}\" looks like \"{other}\" ({sku}); use the same name or a clearly different one",
                    line.sku
                )));
            }
            seen.push((key, line.sku.as_str(), name.clone()));
            names.push(name);
        }
        Ok(names)
    }
}
