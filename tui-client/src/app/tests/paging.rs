//! Long histories and big catalogs in the shop: orders load page by page as the selection nears the
//! end, one order opens in a detail view, and catalog pages are fetched until a short page, each
//! replacing only the listings it covers.

use super::*;

/// `n` orders with ids from `newest` down, each one line of `listing`.
fn orders_from(newest: u64, n: usize) -> Vec<OrderView> {
    (0..n as u64)
        .map(|i| order(newest - i, LineStatus::Placed))
        .collect()
}

/// On the orders screen with a first page of `ORDERS_PAGE_LEN` orders, newest `newest`.
fn on_orders_with_a_full_first_page(newest: u64) -> App {
    let mut app = shopping(true);
    let cmds = app.update(ch('3'));
    let (tag, _) = one(&cmds, ReqKind::Orders);
    let cmds = reply(
        &mut app,
        tag,
        Reply::Orders(orders_from(newest, ORDERS_PAGE_LEN)),
    );
    assert!(
        sent(&cmds, ReqKind::OrdersPage).is_empty(),
        "no prefetch at the top"
    );
    app
}

#[test]
fn older_orders_load_page_by_page_as_the_selection_reaches_the_end_until_a_short_page() {
    let mut app = on_orders_with_a_full_first_page(250);
    let (tag, body) = one(&app.update(key(KeyCode::End)), ReqKind::OrdersPage);
    assert_eq!(
        body,
        RequestBody::OrdersPage {
            before: OrderId(151)
        }
    );
    // While that page is on its way, moving again asks for nothing more.
    assert!(sent(&app.update(key(KeyCode::Down)), ReqKind::OrdersPage).is_empty());
    reply(
        &mut app,
        tag,
        Reply::Orders(orders_from(150, ORDERS_PAGE_LEN)),
    );
    assert_eq!(app.orders.list.len(), 200);
    let (tag, body) = one(&app.update(key(KeyCode::End)), ReqKind::OrdersPage);
    assert_eq!(
        body,
        RequestBody::OrdersPage {
            before: OrderId(51)
        }
    );
    reply(&mut app, tag, Reply::Orders(orders_from(50, 50)));
    assert_eq!(app.orders.list.len(), 250);
    assert_eq!(app.orders.list.last().map(|o| o.id), Some(OrderId(1)));
    // A short page was the last: nothing more to ask for.
    assert!(sent(&app.update(key(KeyCode::End)), ReqKind::OrdersPage).is_empty());
    assert_eq!(app.orders.selected, 249);
}

#[test]
fn a_fresh_newest_page_keeps_the_older_pages_already_loaded_and_the_selection() {
    let mut app = on_orders_with_a_full_first_page(250);
    let (tag, _) = one(&app.update(key(KeyCode::End)), ReqKind::OrdersPage);
    reply(
        &mut app,
        tag,
        Reply::Orders(orders_from(150, ORDERS_PAGE_LEN)),
    );
    app.update(key(KeyCode::End));
    let selected = app.orders.list[app.orders.selected].id;
    // `r` refreshes the newest page; one new order arrived meanwhile.
    let (tag, _) = one(&app.update(ch('r')), ReqKind::Orders);
    reply(
        &mut app,
        tag,
        Reply::Orders(orders_from(251, ORDERS_PAGE_LEN)),
    );
    assert_eq!(app.orders.list.len(), 201);
    assert_eq!(app.orders.list[0].id, OrderId(251));
    assert_eq!(app.orders.list[app.orders.selected].id, selected);
}

#[test]
fn a_lost_older_page_is_asked_for_again_on_the_next_move() {
    let mut app = on_orders_with_a_full_first_page(250);
    let (tag, _) = one(&app.update(key(KeyCode::End)), ReqKind::OrdersPage);
    app.update(Msg::Net(NetEvent::Reply {
        tag,
        result: Err(RequestError::Lost),
    }));
    let (_, body) = one(&app.update(key(KeyCode::Down)), ReqKind::OrdersPage);
    assert_eq!(
        body,
        RequestBody::OrdersPage {
            before: OrderId(151)
        }
    );
}

#[test]
fn enter_opens_the_order_detail_with_live_statuses_and_esc_goes_back_to_the_list() {
    let mut app = shopping(true);
    app.update(ch('3'));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.orders.detail, Some((OrderId(8), 0)));
    assert_eq!(app.key_context(), crate::keys::Context::OrderDetail);
    app.update(Msg::Net(NetEvent::Push(Event::OrderStatus {
        order: OrderId(8),
        listings: vec![ListingId(31)],
        status: LineStatus::Confirmed,
    })));
    let line = &app.orders.detail_order().map(|o| o.lines[1].clone());
    assert_eq!(
        line.as_ref().map(|l| (l.status, l.status_at_ms)),
        Some((LineStatus::Confirmed, NOW))
    );
    app.update(key(KeyCode::Esc));
    assert_eq!(app.orders.detail, None);
    assert_eq!(app.screen, Screen::Orders);
}

#[test]
fn snapshot_orders_with_older_pages_to_load() {
    let mut app = on_orders_with_a_full_first_page(250);
    app.update(key(KeyCode::End));
    insta::assert_snapshot!("orders_paged", snap(&app));
}

#[test]
fn snapshot_order_detail() {
    let mut app = shopping(true);
    let (tag, _) = one(&app.update(ch('3')), ReqKind::Orders);
    let list = vec![
        order(9, LineStatus::Confirmed),
        order(8, LineStatus::Dispatched),
    ];
    reply(&mut app, tag, Reply::Orders(list));
    app.update(key(KeyCode::Enter));
    app.update(Msg::Tick {
        now_ms: NOW + 30_000,
    });
    insta::assert_snapshot!("order_detail", snap(&app));
}

// ---------------------------------------------------------------- catalog pages

/// A page of `n` listings with ids from `first` up.
fn catalog_page(first: u32, n: usize, left: u32, version: u64) -> CatalogSnapshot {
    CatalogSnapshot {
        month: Some(month()),
        items: (first..first + n as u32)
            .map(|l| item(l, "bulk", &format!("Good {l}"), "bulk", 100, left))
            .collect(),
        version,
    }
}

#[test]
fn catalog_pages_are_fetched_until_a_short_page_and_stock_events_apply_in_between() {
    let mut app = shopping(true);
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::Catalog(catalog_page(
        1,
        CATALOG_PAGE_LEN,
        5,
        20,
    )))));
    let (tag, body) = one(&cmds, ReqKind::CatalogPage);
    let last = ListingId(CATALOG_PAGE_LEN as u32);
    assert_eq!(body, RequestBody::CatalogPage { after: last });
    // A sale on the first page arrives before the second page.
    app.update(Msg::Net(NetEvent::Push(Event::Stock(StockDelta {
        version: 21,
        levels: vec![(ListingId(1), 4)],
    }))));
    let cmds = reply(
        &mut app,
        tag,
        Reply::Catalog(catalog_page(last.0 + 1, 500, 7, 22)),
    );
    assert!(
        sent(&cmds, ReqKind::CatalogPage).is_empty(),
        "a short page is the last"
    );
    assert_eq!(app.catalog.items.len(), CATALOG_PAGE_LEN + 500);
    let left = |app: &App, l: u32| {
        app.catalog
            .items
            .iter()
            .find(|i| i.listing == ListingId(l))
            .map(|i| i.remaining)
    };
    assert_eq!(left(&app, 1), Some(4));
    assert_eq!(left(&app, last.0 + 1), Some(7));
    // The old month's listings (11..31) were in the first page's range and are gone.
    assert_eq!(left(&app, 11), Some(5));
    assert_eq!(left(&app, 1_200), Some(7));
    // A delta that follows the later page still applies.
    app.update(Msg::Net(NetEvent::Push(Event::Stock(StockDelta {
        version: 23,
        levels: vec![(ListingId(1_200), 6)],
    }))));
    assert_eq!(left(&app, 1_200), Some(6));
}

#[test]
fn a_page_of_a_chain_started_before_a_newer_first_page_is_dropped() {
    let mut app = shopping(true);
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::Catalog(catalog_page(
        1,
        CATALOG_PAGE_LEN,
        5,
        20,
    )))));
    let (old, _) = one(&cmds, ReqKind::CatalogPage);
    // The catalog changed again (a new month) before the second page came.
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::Catalog(catalog_page(
        1, 3, 9, 30,
    )))));
    assert!(sent(&cmds, ReqKind::CatalogPage).is_empty());
    reply(
        &mut app,
        old,
        Reply::Catalog(catalog_page(1_001, 500, 7, 25)),
    );
    assert_eq!(app.catalog.items.len(), 3);
}

#[test]
fn a_status_push_for_an_order_on_a_page_not_loaded_yet_does_not_refetch_the_newest_page() {
    let mut app = on_orders_with_a_full_first_page(250);
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::OrderStatus {
        order: OrderId(20),
        listings: vec![ListingId(11)],
        status: LineStatus::Dispatched,
    })));
    assert!(sent(&cmds, ReqKind::Orders).is_empty());
    // One newer than everything loaded was placed elsewhere: fetch the newest page.
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::OrderStatus {
        order: OrderId(251),
        listings: vec![ListingId(11)],
        status: LineStatus::Confirmed,
    })));
    one(&cmds, ReqKind::Orders);
}
