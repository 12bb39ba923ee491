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
    // So that the one buyer having bought does not close it first.
    m.set_min_month_ms(30_000);
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

fn offer_of(sku: &str, quantity: u32) -> Vec<OfferLine> {
    vec![OfferLine {
        sku: sku.into(),
        product: sku.into(),
        category: "c".into(),
        quantity,
        unit_price: Cents(100),
    }]
}

#[test]
fn offers_are_refused_for_the_wrong_month_twice_or_unasked() {
    let (mut m, id, _) = market(&[("apple", 10, 100)]);
    let month = m.open_month().unwrap().id;
    let line = offer_of("x", 1);
    assert_eq!(
        m.submit_offer(id, month, &line).unwrap_err().code,
        ErrorCode::Conflict
    );
    assert_eq!(
        m.submit_offer(id, MonthId(99), &line).unwrap_err().code,
        ErrorCode::Conflict
    );
    // Registered but never connected, so never asked: its offer is refused.
    let (stranger, _) = m.register_manufacturer("stranger");
    assert_eq!(
        m.submit_offer(stranger, month, &line).unwrap_err().code,
        ErrorCode::Conflict
    );
}

#[test]
fn a_manufacturer_that_connects_while_a_month_is_open_is_asked_at_once_and_its_settlement_covers_its_goods(
) {
    let (mut m, orchard, _) = market(&[("apple", 10, 100)]);
    let month = m.open_month().unwrap().id;
    let (late, _) = m.register_manufacturer("latecomer");
    m.set_connected(late, true);
    assert_eq!(m.due_offer_requests(), vec![(late, month)]);
    assert!(m.open_month().unwrap().expected.contains(&late));
    let plan = m.submit_offer(late, month, &offer_of("cheese", 4)).unwrap();
    let cheese = plan.reply[0].1;
    assert_eq!(m.available(cheese), 4, "its goods joined the open month");
    let a = buyer(&mut m, 1);
    buy(
        &mut m,
        a,
        CheckoutId(1),
        Some(vec![CartItem {
            listing: cheese,
            quantity: 3,
        }]),
        NOW,
    )
    .unwrap();
    let settlements = m.close_month(CloseReason::TimeUp, NOW);
    let of = |who| {
        settlements
            .iter()
            .find(|s| s.manufacturer == who)
            .map(|s| match &s.notice.body {
                NoticeBody::Settlement(s) => s.lines.clone(),
                NoticeBody::Sale(_) => panic!("a sale, not a settlement"),
            })
            .expect("a settlement")
    };
    let late_lines = of(late);
    assert_eq!(late_lines.len(), 1);
    assert_eq!(
        (
            late_lines[0].sku.as_str(),
            late_lines[0].offered,
            late_lines[0].sold,
            late_lines[0].unsold
        ),
        ("cheese", 4, 3, 1)
    );
    assert!(
        of(orchard).iter().all(|l| l.sku == "apple"),
        "each settlement covers only its maker's goods"
    );
}

#[test]
fn a_manufacturer_that_joins_with_unacked_notices_is_asked_only_after_it_acks_them() {
    let (mut m, id, l) = market(&[("apple", 10, 100)]);
    let a = buyer(&mut m, 1);
    buy(
        &mut m,
        a,
        CheckoutId(1),
        Some(vec![CartItem {
            listing: l[0],
            quantity: 1,
        }]),
        NOW,
    )
    .unwrap();
    // Orchard drops and comes back with its sale notice unacked, then the month turns over.
    m.set_connected(id, false);
    let settlements = m.close_month(CloseReason::Operator, NOW);
    let month = m.open_next_month(NOW, 60_000);
    m.set_connected(id, true);
    m.reset_offer_request(id);
    assert!(m.due_offer_requests().is_empty(), "two notices unacked");
    assert_eq!(
        m.submit_offer(id, month.id, &offer_of("apple", 1))
            .unwrap_err()
            .code,
        ErrorCode::Conflict,
        "an unasked offer is refused"
    );
    m.ack(id, NoticeSeq(1)).unwrap();
    assert!(
        m.due_offer_requests().is_empty(),
        "the settlement is unacked"
    );
    m.ack(id, settlements[0].notice.seq).unwrap();
    assert_eq!(m.due_offer_requests(), vec![(id, month.id)]);
}

#[test]
fn a_manufacturer_offers_at_most_once_per_month_even_after_it_reconnects() {
    let (mut m, id, _) = market(&[("apple", 10, 100)]);
    let month = m.open_month().unwrap().id;
    m.set_connected(id, false);
    m.set_connected(id, true);
    m.reset_offer_request(id);
    assert!(m.due_offer_requests().is_empty(), "it already offered");
    assert_eq!(
        m.submit_offer(id, month, &offer_of("apple", 5))
            .unwrap_err()
            .code,
        ErrorCode::Conflict
    );
}

#[test]
fn a_quick_buyer_does_not_close_the_month_while_another_logged_in_customer_has_not_bought() {
    let (mut m, _, l) = market(&[("apple", 10, 100)]);
    let a = buyer(&mut m, 1);
    let watcher = buyer(&mut m, 2);
    m.customer_seen(a);
    m.customer_seen(watcher);
    m.add_to_cart(a, l[0], 1).unwrap();
    buy(&mut m, a, CheckoutId(1), None, NOW).unwrap();
    assert_eq!(m.close_reason(NOW + 1), None, "the watcher has not bought");
    buy(
        &mut m,
        watcher,
        CheckoutId(2),
        Some(vec![CartItem {
            listing: l[0],
            quantity: 1,
        }]),
        NOW,
    )
    .unwrap();
    assert_eq!(m.close_reason(NOW + 1), Some(CloseReason::AllCustomersDone));
}

#[test]
fn a_customer_holding_a_cart_from_an_earlier_month_keeps_the_month_open() {
    let (mut m, id, l) = market(&[("apple", 10, 100)]);
    let holder = buyer(&mut m, 1);
    m.add_to_cart(holder, l[0], 2).unwrap();
    let settlements = m.close_month(CloseReason::Operator, NOW);
    m.ack(id, settlements[0].notice.seq).unwrap();
    let month = m.open_next_month(NOW, 60_000);
    m.due_offer_requests();
    m.submit_offer(id, month.id, &offer_of("apple", 10))
        .unwrap();
    let quick = buyer(&mut m, 2);
    buy(
        &mut m,
        quick,
        CheckoutId(1),
        Some(vec![CartItem {
            listing: l[0],
            quantity: 1,
        }]),
        NOW,
    )
    .unwrap();
    assert_eq!(
        m.close_reason(NOW + 1),
        None,
        "the holder of a non-empty cart is active although it has not logged in this month"
    );
    m.clear_cart(holder);
    assert_eq!(m.close_reason(NOW + 1), Some(CloseReason::AllCustomersDone));
}

#[test]
fn every_customer_bought_closes_the_month_only_after_its_minimum_length() {
    let (mut m, _, l) = market(&[("apple", 10, 100)]);
    m.set_min_month_ms(2_000);
    let a = buyer(&mut m, 1);
    m.customer_seen(a);
    m.add_to_cart(a, l[0], 1).unwrap();
    buy(&mut m, a, CheckoutId(1), None, NOW).unwrap();
    assert_eq!(m.close_reason(NOW + 1_999), None);
    assert_eq!(
        m.close_reason(NOW + 2_000),
        Some(CloseReason::AllCustomersDone)
    );
}

#[test]
fn sold_out_and_time_up_close_a_month_at_once_whatever_its_minimum_length() {
    let (mut m, _, l) = market(&[("apple", 1, 100)]);
    m.set_min_month_ms(30_000);
    assert_eq!(m.close_reason(NOW + 60_000), Some(CloseReason::TimeUp));
    let a = buyer(&mut m, 1);
    buy(
        &mut m,
        a,
        CheckoutId(1),
        Some(vec![CartItem {
            listing: l[0],
            quantity: 1,
        }]),
        NOW,
    )
    .unwrap();
    assert_eq!(m.close_reason(NOW + 1), Some(CloseReason::SoldOut));
}

#[test]
fn the_default_minimum_month_is_a_quarter_of_the_longest_capped_at_30_s() {
    assert_eq!(default_min_month_ms(8_000), 2_000);
    assert_eq!(default_min_month_ms(60_000), 15_000);
    assert_eq!(default_min_month_ms(3_600_000), MIN_MONTH_CAP_MS);
    assert_eq!(MIN_MONTH_CAP_MS, 30_000);
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

#[test]
fn committed_checkout_ids_past_the_retry_window_are_forgotten_and_then_looked_up_on_disk() {
    let (mut m, _, l) = market(&[("apple", 10, 100)]);
    let a = buyer(&mut m, 1);
    let one = || {
        Some(vec![CartItem {
            listing: l[0],
            quantity: 1,
        }])
    };
    let old = CheckoutId::from_parts(NOW, 1);
    let in_flight = CheckoutId::from_parts(NOW, 2);
    let recent = CheckoutId::from_parts(NOW + RETRY_IN_MEMORY_MS, 3);
    for id in [old, in_flight, recent] {
        buy(&mut m, a, id, one(), NOW).unwrap();
    }
    m.committed(&[old, recent]);
    let later = NOW + RETRY_IN_MEMORY_MS + 1;
    m.forget_old_checkouts(later);
    // The committed old one is gone from memory, and a retry of it must look on disk.
    assert!(!m.checkouts.contains_key(&old));
    assert!(m.checkout_is_on_disk_only(old));
    // One still being committed stays (its retry must wait for it), and so does a recent one.
    assert!(m.checkouts.contains_key(&in_flight));
    assert!(!m.checkout_is_on_disk_only(in_flight));
    assert!(!m.checkout_is_on_disk_only(recent));
    // The floor never moves back.
    m.forget_old_checkouts(NOW);
    assert!(m.checkout_is_on_disk_only(old));
}
