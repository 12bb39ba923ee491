//! Cutting what can grow into pieces that fit a frame: stock updates into events of bounded size, and
//! a manufacturer's offer, sent in parts, back into one offer.
//!
//! The page and part sizes are [`protocol::limits`]; the tests here encode worst-case pages (every
//! string at its longest, every number at its widest) and check them against the frame limits.

use protocol::*;

/// The levels that changed, as one or more [`Event::Stock`]s of at most [`MAX_STOCK_DELTA_LEVELS`]
/// levels each, all with the same version.
pub fn stock_events(version: u64, changed: Vec<(ListingId, u32)>) -> Vec<Event> {
    changed
        .chunks(MAX_STOCK_DELTA_LEVELS)
        .map(|levels| {
            Event::Stock(StockDelta {
                version,
                levels: levels.to_vec(),
            })
        })
        .collect()
}

/// The parts of a multi-part offer received so far on one connection.
#[derive(Debug, Default)]
pub struct OfferParts {
    /// The month the parts are for, once the first part came.
    month: Option<MonthId>,
    lines: Vec<OfferLine>,
}

impl OfferParts {
    /// Takes one part. Returns the whole offer when `last` is set, `None` while parts are missing.
    /// Any refusal discards the parts held so far, so a bad offer can simply be sent again whole.
    pub fn add(
        &mut self,
        month: MonthId,
        lines: Vec<OfferLine>,
        last: bool,
    ) -> Result<Option<Vec<OfferLine>>, WireError> {
        if self.month.is_some_and(|m| m != month) {
            *self = OfferParts::default();
            return Err(WireError::new(
                ErrorCode::Conflict,
                format!("offer parts for two months ({month} after another); send the offer again from its first part"),
            ));
        }
        if lines.len() > MAX_OFFER_PART_LINES || self.lines.len() + lines.len() > MAX_OFFER_LINES {
            *self = OfferParts::default();
            return Err(WireError::new(
                ErrorCode::InvalidInput,
                format!("an offer may have at most {MAX_OFFER_LINES} lines, at most {MAX_OFFER_PART_LINES} per part"),
            ));
        }
        self.month = Some(month);
        self.lines.extend(lines);
        if !last {
            return Ok(None);
        }
        Ok(Some(std::mem::take(self).lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::codec::{encode_payload, MAX_CLIENT_FRAME, MAX_SERVER_FRAME};

    fn longest(bytes: usize) -> String {
        "é".repeat(bytes / 2)
    }

    fn widest_item() -> CatalogItem {
        CatalogItem {
            listing: ListingId(u32::MAX),
            manufacturer: ManufacturerId(u32::MAX),
            manufacturer_name: longest(MAX_MANUFACTURER_NAME_BYTES),
            sku: longest(MAX_SKU_BYTES),
            product: longest(MAX_PRODUCT_BYTES),
            category: longest(MAX_CATEGORY_BYTES),
            unit_price: Cents(u64::MAX),
            offered: u32::MAX,
            remaining: u32::MAX,
        }
    }

    fn widest_order() -> OrderView {
        let line = OrderLine {
            listing: ListingId(u32::MAX),
            product: longest(MAX_PRODUCT_BYTES),
            manufacturer_name: longest(MAX_MANUFACTURER_NAME_BYTES),
            unit_price: Cents(u64::MAX),
            quantity: u32::MAX,
            line_total: Cents(u64::MAX),
            status: LineStatus::Dispatched,
            status_at_ms: u64::MAX,
        };
        OrderView {
            id: OrderId(u64::MAX),
            checkout_id: CheckoutId(u128::MAX),
            month: MonthId(u32::MAX),
            placed_at_ms: u64::MAX,
            lines: vec![line; MAX_CHECKOUT_LINES],
            total: Cents(u64::MAX),
        }
    }

    fn widest_offer_line() -> OfferLine {
        OfferLine {
            sku: longest(MAX_SKU_BYTES),
            product: longest(MAX_PRODUCT_BYTES),
            category: longest(MAX_CATEGORY_BYTES),
            quantity: u32::MAX,
            unit_price: Cents(u64::MAX),
        }
    }

    fn month() -> MonthView {
        MonthView {
            id: MonthId(u32::MAX),
            state: MonthState::Open,
            opened_at_ms: u64::MAX,
            ends_at_ms: u64::MAX,
        }
    }

    fn response(reply: Reply) -> ServerMessage {
        ServerMessage::Response(Response {
            id: RequestId(u64::MAX),
            result: Ok(reply),
        })
    }

    fn server_frame_len(message: &ServerMessage) -> usize {
        encode_payload(message, usize::MAX).map_or(usize::MAX, |p| p.len())
    }

    #[test]
    fn a_catalog_page_of_the_widest_listings_fits_a_server_frame() {
        let page = CatalogSnapshot {
            month: Some(month()),
            items: vec![widest_item(); CATALOG_PAGE_LEN],
            version: u64::MAX,
        };
        let reply = server_frame_len(&response(Reply::Catalog(page.clone())));
        let push = server_frame_len(&ServerMessage::Event(Event::Catalog(page)));
        assert!(reply <= MAX_SERVER_FRAME, "{reply} bytes");
        assert!(push <= MAX_SERVER_FRAME, "{push} bytes");
    }

    #[test]
    fn an_orders_page_of_the_widest_orders_fits_a_server_frame() {
        let page = vec![widest_order(); ORDERS_PAGE_LEN];
        let len = server_frame_len(&response(Reply::Orders(page)));
        assert!(len <= MAX_SERVER_FRAME, "{len} bytes");
    }

    #[test]
    fn the_widest_stock_event_fits_a_server_frame() {
        let levels = vec![(ListingId(u32::MAX), u32::MAX); MAX_STOCK_DELTA_LEVELS];
        let event = Event::Stock(StockDelta {
            version: u64::MAX,
            levels,
        });
        let len = server_frame_len(&ServerMessage::Event(event));
        assert!(len <= MAX_SERVER_FRAME, "{len} bytes");
    }

    #[test]
    fn accepting_the_biggest_offer_fits_a_server_frame() {
        let listings = vec![(longest(MAX_SKU_BYTES), ListingId(u32::MAX)); MAX_OFFER_LINES];
        let len = server_frame_len(&response(Reply::OfferAccepted {
            month: MonthId(u32::MAX),
            listings,
        }));
        assert!(len <= MAX_SERVER_FRAME, "{len} bytes");
    }

    #[test]
    fn an_offer_part_of_the_widest_lines_fits_a_client_frame_and_decodes() {
        let message = ClientMessage::Request(Request {
            id: RequestId(u64::MAX),
            body: RequestBody::SubmitOfferPart {
                month: MonthId(u32::MAX),
                lines: vec![widest_offer_line(); MAX_OFFER_PART_LINES],
                last: true,
            },
        });
        let payload = encode_payload(&message, MAX_CLIENT_FRAME);
        assert!(payload.is_ok(), "{payload:?}");
        let decoded: Result<ClientMessage, _> =
            protocol::codec::decode_client_payload(&payload.unwrap_or_default());
        assert_eq!(decoded.ok(), Some(message));
    }

    #[test]
    fn a_big_stock_change_is_cut_into_events_of_bounded_size_with_one_version() {
        let changed: Vec<_> = (0..25_000).map(|i| (ListingId(i), 1)).collect();
        let events = stock_events(7, changed);
        let sizes: Vec<usize> = events
            .iter()
            .map(|e| match e {
                Event::Stock(d) if d.version == 7 => d.levels.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
    }

    fn line(sku: &str) -> OfferLine {
        OfferLine {
            sku: sku.into(),
            product: sku.into(),
            category: "c".into(),
            quantity: 1,
            unit_price: Cents(1),
        }
    }

    #[test]
    fn offer_parts_become_one_offer_when_the_last_part_arrives() {
        let mut parts = OfferParts::default();
        assert_eq!(parts.add(MonthId(1), vec![line("a")], false), Ok(None));
        assert_eq!(parts.add(MonthId(1), vec![line("b")], false), Ok(None));
        let whole = parts.add(MonthId(1), vec![line("c")], true);
        assert_eq!(whole, Ok(Some(vec![line("a"), line("b"), line("c")])));
        // Nothing is left over for the next offer.
        assert_eq!(
            parts.add(MonthId(2), vec![line("d")], true),
            Ok(Some(vec![line("d")]))
        );
    }

    #[test]
    fn offer_parts_for_another_month_are_refused_and_the_held_parts_dropped() {
        let mut parts = OfferParts::default();
        assert_eq!(parts.add(MonthId(1), vec![line("a")], false), Ok(None));
        let refused = parts.add(MonthId(2), vec![line("b")], true);
        assert_eq!(refused.map_err(|e| e.code), Err(ErrorCode::Conflict));
        assert_eq!(
            parts.add(MonthId(2), vec![line("b")], true),
            Ok(Some(vec![line("b")]))
        );
    }

    #[test]
    fn an_offer_over_the_line_limit_is_refused_part_by_part() {
        let mut parts = OfferParts::default();
        let part: Vec<_> = (0..MAX_OFFER_PART_LINES)
            .map(|i| line(&i.to_string()))
            .collect();
        let mut outcome = Ok(None);
        for _ in 0..=(MAX_OFFER_LINES / MAX_OFFER_PART_LINES) {
            outcome = parts.add(MonthId(1), part.clone(), false);
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome.map_err(|e| e.code), Err(ErrorCode::InvalidInput));
    }
}
