//! Unit tests of the pure market: no sockets, no disk.

use super::*;

const NOW: u64 = 1_000_000;

/// A market with one connected manufacturer whose offer of `lines` (sku, quantity, cents) is on sale.
fn market(lines: &[(&str, u32, u64)]) -> (Market, ManufacturerId, Vec<ListingId>) {
    let mut m = Market::restore(Snapshot::default());
    let (id, _) = m.register_manufacturer("orchard");
    m.set_connected(id, true);
    let month = m.open_next_month(NOW, 60_000);
    assert_eq!(m.due_offer_requests(), vec![(id, month.id)]);
    let offer: Vec<OfferLine> = lines
        .iter()
        .map(|(sku, q, c)| OfferLine {
            sku: sku.to_string(),
            product: sku.to_string(),
            category: "fruit".into(),
            quantity: *q,
            unit_price: Cents(*c),
        })
        .collect();
    let plan = m.submit_offer(id, month.id, &offer).unwrap();
    let listings = plan.reply.iter().map(|(_, l)| *l).collect();
    (m, id, listings)
}

fn buyer(m: &mut Market, n: u64) -> AccountId {
    let account = AccountId(n);
    m.set_card(account, Some((2099, 12)));
    account
}

/// A checkout that confirms the total the market quotes right now, as a client that just reviewed it.
fn buy(
    m: &mut Market,
    account: AccountId,
    id: CheckoutId,
    lines: Option<Vec<CartItem>>,
    now: u64,
) -> Result<CheckoutPlan, CheckoutError> {
    let total = m.quote(account, lines.as_deref()).total;
    m.checkout(account, id, lines, total, now)
}

#[test]
fn same_product_lines_are_merged_before_they_are_checked() {
    let (mut m, _, l) = market(&[("apple", 1, 100)]);
    let a = buyer(&mut m, 1);
    let two_of_one = vec![
        CartItem {
            listing: l[0],
            quantity: 1
        };
        2
    ];
    let Err(CheckoutError::OutOfStock { error, .. }) =
        buy(&mut m, a, CheckoutId(1), Some(two_of_one), NOW)
    else {
        panic!("two lines of 1 took the last unit twice");
    };
    assert_eq!(error.shortages[0].requested, 2);
    assert_eq!(m.available(l[0]), 1);
}

#[test]
fn a_checkout_freezes_prices_takes_stock_and_writes_one_notice_per_manufacturer() {
    let (mut m, id, l) = market(&[("apple", 10, 125), ("pear", 10, 300)]);
    let a = buyer(&mut m, 1);
    m.add_to_cart(a, l[0], 2).unwrap();
    m.add_to_cart(a, l[1], 1).unwrap();
    let plan = buy(&mut m, a, CheckoutId(7), None, NOW).unwrap();
    assert_eq!(plan.order.total, Cents(550));
    assert_eq!(plan.notices.len(), 1);
    assert_eq!(plan.notices[0].0, id);
    assert_eq!(plan.notices[0].1.seq, NoticeSeq(1));
    assert!(plan.clears_cart);
    assert_eq!((m.available(l[0]), m.available(l[1])), (8, 9));
    assert!(m.cart_view(a, vec![]).lines.is_empty());
    // A retry with the same id is a duplicate, not a second order.
    assert!(matches!(
        buy(&mut m, a, CheckoutId(7), None, NOW),
        Err(CheckoutError::Duplicate {
            committed: false,
            ..
        })
    ));
    m.committed(&[CheckoutId(7)]);
    assert!(matches!(
        buy(&mut m, a, CheckoutId(7), None, NOW),
        Err(CheckoutError::Duplicate {
            committed: true,
            ..
        })
    ));
    // The same id from another account is refused.
    let b = buyer(&mut m, 2);
    assert!(matches!(
        buy(&mut m, b, CheckoutId(7), None, NOW),
        Err(CheckoutError::Rejected(_))
    ));
    m.check_invariants().unwrap();
}

#[test]
fn viewing_a_cart_cuts_lines_that_can_no_longer_be_filled_and_reports_them() {
    let (mut m, _, l) = market(&[("apple", 5, 100)]);
    let a = buyer(&mut m, 1);
    let b = buyer(&mut m, 2);
    m.add_to_cart(a, l[0], 4).unwrap();
    buy(
        &mut m,
        b,
        CheckoutId(1),
        Some(vec![CartItem {
            listing: l[0],
            quantity: 3,
        }]),
        NOW,
    )
    .unwrap();
    let outcome = m.view_cart(a);
    assert_eq!(outcome.view.adjustments.len(), 1);
    assert_eq!(
        (
            outcome.view.adjustments[0].from,
            outcome.view.adjustments[0].to
        ),
        (4, 2)
    );
    assert_eq!(
        outcome.writes,
        vec![CartItem {
            listing: l[0],
            quantity: 2
        }]
    );
}

#[test]
fn adding_more_than_is_available_is_refused_on_the_quantity_field() {
    let (mut m, _, l) = market(&[("apple", 3, 100)]);
    let a = buyer(&mut m, 1);
    m.add_to_cart(a, l[0], 2).unwrap();
    let e = m.add_to_cart(a, l[0], 2).unwrap_err();
    assert_eq!(e.field, Some(Field::Quantity));
    assert_eq!(
        m.add_to_cart(a, l[0], 0).unwrap_err().field,
        Some(Field::Quantity)
    );
    assert_eq!(
        m.add_to_cart(a, ListingId(999), 1).unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[test]
fn the_month_closes_when_sold_out_and_settles_sold_and_unsold() {
    let (mut m, id, l) = market(&[("apple", 2, 100), ("pear", 1, 100)]);
    let a = buyer(&mut m, 1);
    assert_eq!(m.close_reason(NOW), None);
    buy(
        &mut m,
        a,
        CheckoutId(1),
        Some(vec![CartItem {
            listing: l[0],
            quantity: 2,
        }]),
        NOW,
    )
    .unwrap();
    assert_eq!(m.close_reason(NOW), None);
    buy(
        &mut m,
        a,
        CheckoutId(2),
        Some(vec![CartItem {
            listing: l[1],
            quantity: 1,
        }]),
        NOW,
    )
    .unwrap();
    assert_eq!(m.close_reason(NOW), Some(CloseReason::SoldOut));
    let settlements = m.close_month(CloseReason::SoldOut, NOW);
    assert_eq!(settlements.len(), 1);
    assert_eq!(settlements[0].manufacturer, id);
    let NoticeBody::Settlement(s) = &settlements[0].notice.body else {
        panic!()
    };
    assert_eq!(
        settlements[0].notice.seq,
        NoticeSeq(3),
        "after two sale notices"
    );
    assert!(s.lines.iter().all(|l| l.sold == l.offered && l.unsold == 0));
    assert!(m.open_month().is_none());
    assert!(m.catalog().items.is_empty());
}

#[test]
fn the_month_closes_when_every_active_customer_checked_out_with_an_empty_cart() {
    let (mut m, _, l) = market(&[("apple", 10, 100)]);
    let a = buyer(&mut m, 1);
    let b = buyer(&mut m, 2);
    m.add_to_cart(a, l[0], 1).unwrap();
    m.add_to_cart(b, l[0], 1).unwrap();
    buy(&mut m, a, CheckoutId(1), None, NOW).unwrap();
    assert_eq!(m.close_reason(NOW), None, "b still has a cart");
    buy(&mut m, b, CheckoutId(2), None, NOW).unwrap();
    assert_eq!(m.close_reason(NOW), Some(CloseReason::AllCustomersDone));
}

#[test]
fn the_month_closes_when_its_time_is_up() {
    let (m, _, _) = market(&[("apple", 10, 100)]);
    assert_eq!(m.close_reason(NOW + 59_999), None);
    assert_eq!(m.close_reason(NOW + 60_000), Some(CloseReason::TimeUp));
}

#[test]
fn offers_are_refused_for_the_wrong_month_twice_or_from_a_late_joiner() {
    let (mut m, id, _) = market(&[("apple", 10, 100)]);
    let month = m.open_month().unwrap().id;
    let line = vec![OfferLine {
        sku: "x".into(),
        product: "x".into(),
        category: "c".into(),
        quantity: 1,
        unit_price: Cents(1),
    }];
    assert_eq!(
        m.submit_offer(id, month, &line).unwrap_err().code,
        ErrorCode::Conflict
    );
    assert_eq!(
        m.submit_offer(id, MonthId(99), &line).unwrap_err().code,
        ErrorCode::Conflict
    );
    let (late, _) = m.register_manufacturer("latecomer");
    m.set_connected(late, true);
    assert_eq!(
        m.submit_offer(late, month, &line).unwrap_err().code,
        ErrorCode::Conflict
    );
    assert!(
        m.due_offer_requests().is_empty(),
        "a late joiner is asked at the next month"
    );
    m.close_month(CloseReason::Operator, NOW);
    m.open_next_month(NOW, 60_000);
    let due: Vec<_> = m.due_offer_requests().into_iter().map(|(m, _)| m).collect();
    assert!(due.contains(&late));
    assert!(!due.contains(&id), "orchard has an unacked settlement");
}

#[test]
fn listings_keep_their_ids_across_months_so_carts_survive_a_month_change() {
    let (mut m, id, l) = market(&[("apple", 10, 100)]);
    let a = buyer(&mut m, 1);
    m.add_to_cart(a, l[0], 3).unwrap();
    let settlements = m.close_month(CloseReason::Operator, NOW);
    m.ack(id, settlements[0].notice.seq).unwrap();
    let month = m.open_next_month(NOW, 60_000);
    m.due_offer_requests();
    let line = vec![OfferLine {
        sku: "apple".into(),
        product: "apple".into(),
        category: "fruit".into(),
        quantity: 2,
        unit_price: Cents(90),
    }];
    let plan = m.submit_offer(id, month.id, &line).unwrap();
    assert_eq!(plan.reply[0].1, l[0]);
    let view = m.view_cart(a).view;
    assert_eq!(
        (view.lines[0].quantity, view.lines[0].unit_price),
        (2, Cents(90))
    );
}

#[test]
fn an_ack_beyond_the_last_notice_is_refused() {
    let (mut m, id, _) = market(&[("apple", 10, 100)]);
    assert_eq!(
        m.ack(id, NoticeSeq(1)).unwrap_err().code,
        ErrorCode::InvalidInput
    );
    assert_eq!(m.ack(id, NoticeSeq(0)), Ok(false));
}

#[test]
fn a_checkout_for_another_total_than_the_market_quotes_takes_nothing_and_carries_the_quote() {
    let (mut m, _, l) = market(&[("apple", 10, 125)]);
    let a = buyer(&mut m, 1);
    m.add_to_cart(a, l[0], 2).unwrap();
    let Err(CheckoutError::Rejected(e)) = m.checkout(a, CheckoutId(1), None, Cents(200), NOW)
    else {
        panic!("bought at a total the customer never saw");
    };
    assert_eq!(e.code, ErrorCode::PriceChanged);
    assert_eq!(e.repriced.map(|v| v.total), Some(Cents(250)));
    assert_eq!(m.available(l[0]), 10);
    assert_eq!(m.customers[&a].cart.len(), 1, "the cart is kept");
    // The refused id is not remembered: it can carry the confirmed new total.
    assert!(m.checkout(a, CheckoutId(1), None, Cents(250), NOW).is_ok());
}

#[test]
fn a_card_is_good_through_its_expiry_month_and_refused_on_the_expiry_after_it() {
    let (mut m, _, l) = market(&[("apple", 10, 100)]);
    let a = AccountId(1);
    // NOW is in January 1970; a card that ran to December 1969 has expired.
    m.set_card(a, Some((1969, 12)));
    let one = || {
        Some(vec![CartItem {
            listing: l[0],
            quantity: 1,
        }])
    };
    let Err(CheckoutError::Rejected(e)) = m.checkout(a, CheckoutId(1), one(), Cents(100), NOW)
    else {
        panic!("an expired card paid");
    };
    assert_eq!(
        (e.code, e.field),
        (ErrorCode::CardInvalid, Some(Field::CardExpiry))
    );
    m.set_card(a, Some((1970, 1)));
    assert!(m.checkout(a, CheckoutId(2), one(), Cents(100), NOW).is_ok());
}

#[test]
fn a_cart_holds_as_many_lines_as_one_checkout_can_buy() {
    let skus: Vec<String> = (0..=MAX_CART_LINES).map(|i| format!("sku{i}")).collect();
    let offer: Vec<(&str, u32, u64)> = skus.iter().map(|s| (s.as_str(), 5, 10)).collect();
    let (mut m, _, l) = market(&offer);
    let a = buyer(&mut m, 1);
    for listing in &l[..MAX_CART_LINES] {
        m.add_to_cart(a, *listing, 1).unwrap();
    }
    let e = m.add_to_cart(a, l[MAX_CART_LINES], 1).unwrap_err();
    assert!(e.message.contains("at most 100 lines"), "{}", e.message);
    let e = m.set_cart_quantity(a, l[MAX_CART_LINES], 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    m.add_to_cart(a, l[0], 1).unwrap();
    assert!(buy(&mut m, a, CheckoutId(1), None, NOW).is_ok());
}
