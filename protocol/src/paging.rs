//! Walking pages and sending parts: the cursor rules of [`RequestBody::CatalogPage`],
//! [`RequestBody::OrdersPage`] and [`RequestBody::SubmitOfferPart`] in one place, for every client.

use crate::client::{Client, ClientError};
use crate::limits::{CATALOG_PAGE_LEN, MAX_OFFER_PART_LINES, ORDERS_PAGE_LEN};
use crate::message::*;
use crate::types::MonthId;

/// The request for the catalog page after `page`, or `None` when `page` was the last (a short page).
pub fn next_catalog_page(page: &CatalogSnapshot) -> Option<RequestBody> {
    match page.items.last() {
        Some(last) if page.items.len() >= CATALOG_PAGE_LEN => Some(RequestBody::CatalogPage {
            after: last.listing,
        }),
        _ => None,
    }
}

/// The request for the orders older than `page`, or `None` when `page` was the last (a short page).
pub fn next_orders_page(page: &[OrderView]) -> Option<RequestBody> {
    match page.last() {
        Some(oldest) if page.len() >= ORDERS_PAGE_LEN => {
            Some(RequestBody::OrdersPage { before: oldest.id })
        }
        _ => None,
    }
}

/// The requests that carry an offer: one [`RequestBody::SubmitOffer`] when it fits one part, else
/// [`RequestBody::SubmitOfferPart`]s of at most [`MAX_OFFER_PART_LINES`] lines, the last one marked.
pub fn offer_requests(month: MonthId, lines: Vec<OfferLine>) -> Vec<RequestBody> {
    if lines.len() <= MAX_OFFER_PART_LINES {
        return vec![RequestBody::SubmitOffer { month, lines }];
    }
    let parts = lines.len().div_ceil(MAX_OFFER_PART_LINES);
    let mut lines = lines.into_iter();
    (0..parts)
        .map(|i| RequestBody::SubmitOfferPart {
            month,
            lines: lines.by_ref().take(MAX_OFFER_PART_LINES).collect(),
            last: i + 1 == parts,
        })
        .collect()
}

impl Client {
    /// The whole catalog, page by page. Each page is as fresh as the moment it was read; the stock
    /// events that arrive meanwhile keep earlier pages current.
    pub async fn whole_catalog(&self) -> Result<CatalogSnapshot, ClientError> {
        let mut whole = catalog_page(self.call(RequestBody::Catalog).await?)?;
        let mut next = next_catalog_page(&whole);
        while let Some(request) = next {
            let page = catalog_page(self.call(request).await?)?;
            next = next_catalog_page(&page);
            whole.month = page.month;
            whole.version = whole.version.max(page.version);
            whole.items.extend(page.items);
        }
        Ok(whole)
    }

    /// Every order of the logged-in customer, newest first, page by page.
    pub async fn all_orders(&self) -> Result<Vec<OrderView>, ClientError> {
        let mut all = orders_page(self.call(RequestBody::Orders).await?)?;
        let mut next = next_orders_page(&all);
        while let Some(request) = next {
            let page = orders_page(self.call(request).await?)?;
            next = next_orders_page(&page);
            all.extend(page);
        }
        Ok(all)
    }

    /// Submits an offer, in parts if it is bigger than one part. Returns the reply to the last
    /// request: [`Reply::OfferAccepted`] when the offer is on sale.
    pub async fn submit_offer(
        &self,
        month: MonthId,
        lines: Vec<OfferLine>,
    ) -> Result<Reply, ClientError> {
        let mut reply = Reply::Done;
        for request in offer_requests(month, lines) {
            reply = self.call(request).await?;
        }
        Ok(reply)
    }
}

fn catalog_page(reply: Reply) -> Result<CatalogSnapshot, ClientError> {
    match reply {
        Reply::Catalog(page) => Ok(page),
        other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
    }
}

fn orders_page(reply: Reply) -> Result<Vec<OrderView>, ClientError> {
    match reply {
        Reply::Orders(page) => Ok(page),
        other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Cents;

    fn line(i: usize) -> OfferLine {
        OfferLine {
            sku: format!("sku-{i}"),
            product: "p".into(),
            category: "c".into(),
            quantity: 1,
            unit_price: Cents(1),
        }
    }

    #[test]
    fn an_offer_that_fits_one_part_is_one_plain_submit_offer() {
        let requests = offer_requests(MonthId(3), (0..MAX_OFFER_PART_LINES).map(line).collect());
        assert!(matches!(
            requests.as_slice(),
            [RequestBody::SubmitOffer { lines, .. }] if lines.len() == MAX_OFFER_PART_LINES
        ));
    }

    #[test]
    fn a_bigger_offer_is_cut_into_parts_in_order_with_only_the_last_marked() {
        let lines: Vec<_> = (0..2 * MAX_OFFER_PART_LINES + 1).map(line).collect();
        let requests = offer_requests(MonthId(3), lines.clone());
        let mut rejoined = Vec::new();
        let mut marks = Vec::new();
        for request in requests {
            let RequestBody::SubmitOfferPart { month, lines, last } = request else {
                panic!("expected parts");
            };
            assert_eq!(month, MonthId(3));
            rejoined.extend(lines);
            marks.push(last);
        }
        assert_eq!(rejoined, lines);
        assert_eq!(marks, vec![false, false, true]);
    }
}
