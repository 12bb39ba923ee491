//! `update` driven by key events and network messages: no terminal, no network. Each test feeds
//! [`Msg`]s and checks the model and the [`Cmd`]s it asks for. The snapshot tests at the end render
//! the model into a `TestBackend` at 80x24 (and once below the minimum size).

use super::*;
use crate::screens::render_to_string;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use protocol::*;

pub const NOW: u64 = 1_750_000_000_000;

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn type_str(app: &mut App, s: &str) -> Vec<Cmd> {
    s.chars().flat_map(|c| app.update(ch(c))).collect()
}

fn month() -> MonthView {
    MonthView {
        id: MonthId(4),
        state: MonthState::Open,
        opened_at_ms: NOW - 30_000,
        ends_at_ms: NOW + 42_000,
    }
}

fn welcome() -> Welcome {
    Welcome {
        version: PROTOCOL_VERSION,
        server: "distributor/test".into(),
        manufacturer: None,
        month: Some(month()),
        credential: None,
    }
}

fn account(card: bool) -> AccountView {
    AccountView {
        id: AccountId(7),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        card: card.then(|| CardView {
            brand: CardBrand::Visa,
            last4: "4242".into(),
            exp_month: 12,
            exp_year: 2031,
        }),
    }
}

fn session(card: bool) -> SessionInfo {
    SessionInfo {
        token: SessionToken("t0ken".into()),
        expires_at_ms: NOW + 3_600_000,
        account: account(card),
    }
}

fn item(
    listing: u32,
    maker: &str,
    product: &str,
    category: &str,
    price: u64,
    left: u32,
) -> CatalogItem {
    CatalogItem {
        listing: ListingId(listing),
        manufacturer: ManufacturerId(listing / 10),
        manufacturer_name: maker.into(),
        sku: format!("SKU{listing}"),
        product: product.into(),
        category: category.into(),
        unit_price: Cents(price),
        offered: 400,
        remaining: left,
    }
}

fn catalog() -> CatalogSnapshot {
    CatalogSnapshot {
        month: Some(month()),
        items: vec![
            item(11, "orchard", "Apples", "fruit", 116, 394),
            item(12, "orchard", "Pears", "fruit", 147, 3),
            item(21, "dairy", "Milk 1l", "dairy", 107, 596),
            item(22, "dairy", "Cheddar 200g", "dairy", 352, 150),
            item(31, "bakery", "Croissant", "bakery", 129, 357),
        ],
        version: 10,
    }
}

fn cart_line(
    listing: u32,
    product: &str,
    maker: &str,
    price: u64,
    qty: u32,
    available: u32,
) -> CartLine {
    CartLine {
        listing: ListingId(listing),
        product: product.into(),
        manufacturer_name: maker.into(),
        unit_price: Cents(price),
        quantity: qty,
        available,
    }
}

fn cart() -> CartView {
    CartView {
        lines: vec![
            cart_line(11, "Apples", "orchard", 116, 3, 394),
            cart_line(31, "Croissant", "bakery", 129, 2, 357),
        ],
        total: Cents(3 * 116 + 2 * 129),
        adjustments: vec![],
    }
}

fn order(id: u64, status: LineStatus) -> OrderView {
    OrderView {
        id: OrderId(id),
        checkout_id: CheckoutId(u128::from(id)),
        month: MonthId(4),
        placed_at_ms: NOW - 120_000,
        lines: vec![
            OrderLine {
                listing: ListingId(11),
                product: "Apples".into(),
                manufacturer_name: "orchard".into(),
                unit_price: Cents(116),
                quantity: 3,
                line_total: Cents(348),
                status,
                status_at_ms: NOW - 60_000,
            },
            OrderLine {
                listing: ListingId(31),
                product: "Croissant".into(),
                manufacturer_name: "bakery".into(),
                unit_price: Cents(129),
                quantity: 2,
                line_total: Cents(258),
                status: LineStatus::Placed,
                status_at_ms: NOW - 120_000,
            },
        ],
        total: Cents(606),
    }
}

/// Tab from the catalog to the cart, answering the cart fetch it makes.
fn to_cart(app: &mut App) {
    let cmds = app.update(key(KeyCode::Tab));
    let (tag, _) = one(&cmds, ReqKind::Cart);
    reply(app, tag, Reply::Cart(cart()));
    assert_eq!(app.screen, Screen::Cart);
}

/// The tags of the requests in `cmds`, by kind.
fn sent(cmds: &[Cmd], kind: ReqKind) -> Vec<(Tag, RequestBody)> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Send { tag, body } if tag.kind == kind => Some((*tag, body.clone())),
            _ => None,
        })
        .collect()
}

fn one(cmds: &[Cmd], kind: ReqKind) -> (Tag, RequestBody) {
    let found = sent(cmds, kind);
    assert_eq!(found.len(), 1, "expected one {kind:?} in {cmds:?}");
    found[0].clone()
}

fn reply(app: &mut App, tag: Tag, r: Reply) -> Vec<Cmd> {
    app.update(Msg::Net(NetEvent::Reply { tag, result: Ok(r) }))
}

fn fail(app: &mut App, tag: Tag, e: WireError) -> Vec<Cmd> {
    app.update(Msg::Net(NetEvent::Reply {
        tag,
        result: Err(RequestError::Server(e)),
    }))
}

fn connected(app: &mut App) -> Vec<Cmd> {
    app.update(Msg::Net(NetEvent::Connected {
        welcome: Box::new(welcome()),
        session: None,
    }))
}

/// Logged in with catalog, cart and orders answered, on the catalog screen.
fn shopping(card: bool) -> App {
    let mut app = App::new(Theme::plain(), NOW);
    connected(&mut app);
    type_str(&mut app, "ada@example.com");
    app.update(key(KeyCode::Tab));
    type_str(&mut app, "password123");
    let cmds = app.update(key(KeyCode::Enter));
    let (tag, _) = one(&cmds, ReqKind::LogIn);
    let cmds = reply(&mut app, tag, Reply::Session(session(card)));
    let (t, _) = one(&cmds, ReqKind::Catalog);
    reply(&mut app, t, Reply::Catalog(catalog()));
    let (t, _) = one(&cmds, ReqKind::Cart);
    reply(&mut app, t, Reply::Cart(cart()));
    let (t, _) = one(&cmds, ReqKind::Orders);
    reply(
        &mut app,
        t,
        Reply::Orders(vec![
            order(9, LineStatus::Confirmed),
            order(8, LineStatus::Dispatched),
        ]),
    );
    app.update(Msg::Tick { now_ms: NOW });
    app
}

// ---------------------------------------------------------------- keys and quitting

#[test]
fn q_typed_into_the_login_form_is_text_not_quit() {
    let mut app = App::new(Theme::plain(), NOW);
    let cmds = app.update(ch('q'));
    assert!(cmds.is_empty());
    assert!(!app.quit);
    assert_eq!(app.login.form.value(0), "q");
}

#[test]
fn ctrl_c_quits_even_while_typing() {
    let mut app = App::new(Theme::plain(), NOW);
    assert_eq!(app.update(ctrl('c')), vec![Cmd::Quit]);
    assert!(app.quit);
}

#[test]
fn q_quits_from_the_catalog_but_is_typed_while_searching() {
    let mut app = shopping(true);
    app.update(ch('/'));
    assert!(app.update(ch('q')).is_empty());
    assert_eq!(app.catalog.search.value(), "q");
    app.update(key(KeyCode::Esc));
    assert_eq!(app.update(ch('q')), vec![Cmd::Quit]);
}

#[test]
fn tab_cycles_the_screens_and_opening_the_cart_checks_stock_again() {
    let mut app = shopping(true);
    let cmds = app.update(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Cart);
    one(&cmds, ReqKind::Cart);
    app.update(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Orders);
    app.update(key(KeyCode::Tab));
    assert_eq!(app.screen, Screen::Account);
    app.update(key(KeyCode::BackTab));
    assert_eq!(app.screen, Screen::Orders);
    app.update(ch('1'));
    assert_eq!(app.screen, Screen::Catalog);
}

#[test]
fn with_the_mouse_a_click_on_a_tab_opens_it_and_the_wheel_moves_the_selection() {
    let mut app = shopping(true);
    let at = |column, row, kind| {
        Msg::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    // " 1 Catalog  2 Cart  3 Orders  4 Account": "3 Orders" spans columns 20 to 27.
    assert_eq!(tab_at(0), None);
    assert_eq!(tab_at(1), Some(Screen::Catalog));
    assert_eq!(tab_at(24), Some(Screen::Orders));
    assert_eq!(tab_at(11), None, "the gap between tabs");
    let cmds = app.update(at(24, TAB_ROW, MouseEventKind::Down(MouseButton::Left)));
    assert_eq!(app.screen, Screen::Orders);
    one(&cmds, ReqKind::Orders);
    app.update(at(40, 10, MouseEventKind::ScrollDown));
    assert_eq!(app.orders.selected, 1);
}

#[test]
fn question_mark_opens_help_and_esc_closes_it() {
    let mut app = shopping(true);
    app.update(ch('?'));
    assert_eq!(app.overlay, Some(Overlay::Help));
    app.update(ch('j'));
    assert_eq!(
        app.overlay,
        Some(Overlay::Help),
        "other keys keep help open"
    );
    app.update(key(KeyCode::Esc));
    assert_eq!(app.overlay, None);
}

// ---------------------------------------------------------------- login

#[test]
fn sign_up_sends_the_typed_fields_after_a_short_password_is_caught_locally() {
    let mut app = App::new(Theme::plain(), NOW);
    app.update(ctrl('n'));
    assert_eq!(app.login.mode, LoginMode::SignUp);
    for (i, text) in ["Ada", "Lovelace", "ada@example.com", "short"]
        .iter()
        .enumerate()
    {
        type_str(&mut app, text);
        if i < 3 {
            app.update(key(KeyCode::Tab));
        }
    }
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(
        app.login.form.fields[3].input.error.as_deref(),
        Some(strings::PASSWORD_SHORT)
    );
    type_str(&mut app, "-but-longer");
    let cmds = app.update(key(KeyCode::Enter));
    let (_, body) = one(&cmds, ReqKind::SignUp);
    assert_eq!(
        body,
        RequestBody::SignUp(SignUp {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            password: "short-but-longer".into(),
        })
    );
}

#[test]
fn a_server_error_naming_a_field_is_shown_next_to_that_field() {
    let mut app = App::new(Theme::plain(), NOW);
    app.update(ctrl('n'));
    for text in ["Ada", "Lovelace", "ada@example.com"] {
        type_str(&mut app, text);
        app.update(key(KeyCode::Enter));
    }
    type_str(&mut app, "password123");
    let cmds = app.update(key(KeyCode::Enter));
    let (tag, _) = one(&cmds, ReqKind::SignUp);
    fail(
        &mut app,
        tag,
        WireError::field(
            ErrorCode::EmailTaken,
            Field::Email,
            "An account with this email already exists",
        ),
    );
    assert_eq!(
        app.login.form.fields[2].input.error.as_deref(),
        Some("An account with this email already exists")
    );
    assert_eq!(app.login.form.focus, 2);
    assert_eq!(app.screen, Screen::Login);
}

#[test]
fn a_session_fetches_catalog_cart_and_orders_and_hands_the_token_to_the_connection() {
    let mut app = App::new(Theme::plain(), NOW);
    type_str(&mut app, "ada@example.com");
    app.update(key(KeyCode::Tab));
    type_str(&mut app, "password123");
    let cmds = app.update(key(KeyCode::Enter));
    let (tag, _) = one(&cmds, ReqKind::LogIn);
    let cmds = reply(&mut app, tag, Reply::Session(session(false)));
    assert!(cmds.contains(&Cmd::Session(Some(SessionToken("t0ken".into())))));
    one(&cmds, ReqKind::Catalog);
    one(&cmds, ReqKind::Cart);
    one(&cmds, ReqKind::Orders);
    assert_eq!(app.screen, Screen::Catalog);
    assert!(
        app.login.form.value(1).is_empty(),
        "the password is not kept"
    );
}

// ---------------------------------------------------------------- catalog

#[test]
fn stock_changes_in_place_with_a_highlight_and_sold_out_items_disappear() {
    let mut app = shopping(true);
    app.update(Msg::Net(NetEvent::Push(Event::Stock(StockDelta {
        version: 11,
        levels: vec![(ListingId(11), 390), (ListingId(12), 0)],
    }))));
    let apples = app
        .catalog
        .items
        .iter()
        .find(|i| i.listing == ListingId(11))
        .unwrap();
    assert_eq!(apples.remaining, 390);
    assert!(app.catalog.changed.contains_key(&ListingId(11)));
    assert!(app.catalog.items.iter().all(|i| i.listing != ListingId(12)));
    app.update(Msg::Tick {
        now_ms: NOW + HIGHLIGHT_MS + 1,
    });
    assert!(app.catalog.changed.is_empty(), "the highlight is brief");
}

#[test]
fn a_full_catalog_push_updates_what_is_available_for_cart_lines() {
    let mut app = shopping(true);
    let mut snapshot = catalog();
    snapshot.version = 20;
    snapshot.items.retain(|i| i.listing != ListingId(31));
    snapshot.items[0].remaining = 2; // apples
    app.update(Msg::Net(NetEvent::Push(Event::Catalog(snapshot))));
    let available: Vec<u32> = app.cart.view.lines.iter().map(|l| l.available).collect();
    assert_eq!(available, vec![2, 0]);
}

#[test]
fn a_stock_delta_older_than_the_snapshot_is_ignored() {
    let mut app = shopping(true);
    app.update(Msg::Net(NetEvent::Push(Event::Stock(StockDelta {
        version: 9,
        levels: vec![(ListingId(11), 1)],
    }))));
    let apples = app
        .catalog
        .items
        .iter()
        .find(|i| i.listing == ListingId(11))
        .unwrap();
    assert_eq!(apples.remaining, 394);
}

#[test]
fn the_quantity_stays_between_one_and_what_is_left_and_enter_adds_it() {
    let mut app = shopping(true);
    // Sorted by maker: bakery Croissant, dairy Cheddar, dairy Milk, orchard Apples, orchard Pears.
    app.update(key(KeyCode::End));
    assert_eq!(app.catalog.current().unwrap().product, "Pears");
    app.update(key(KeyCode::Left));
    assert_eq!(app.catalog.qty, 1);
    for _ in 0..5 {
        app.update(ch('l'));
    }
    assert_eq!(app.catalog.qty, 3, "only 3 pears left");
    app.update(ch('H'));
    assert_eq!(app.catalog.qty, 1);
    app.update(ch('L'));
    assert_eq!(app.catalog.qty, 3, "L takes all that is left");
    let cmds = app.update(key(KeyCode::Enter));
    let (_, body) = one(&cmds, ReqKind::AddToCart);
    assert_eq!(
        body,
        RequestBody::AddToCart {
            listing: ListingId(12),
            quantity: 3
        }
    );
}

#[test]
fn the_selection_follows_its_product_when_rows_move() {
    let mut app = shopping(true);
    app.update(ch('j')); // dairy Cheddar
    app.update(ch('j')); // dairy Milk
    assert_eq!(app.catalog.current().unwrap().product, "Milk 1l");
    app.update(ch('s')); // by category: bakery, dairy(Cheddar, Milk), fruit(...)
    assert_eq!(app.catalog.current().unwrap().product, "Milk 1l");
    app.update(Msg::Net(NetEvent::Push(Event::Stock(StockDelta {
        version: 11,
        levels: vec![(ListingId(21), 0)],
    }))));
    assert!(
        app.catalog.current().is_some(),
        "a neighbour is selected when the product sells out"
    );
}

#[test]
fn the_selection_survives_a_moment_with_an_empty_catalog() {
    let mut app = shopping(true);
    app.update(ch('j'));
    assert_eq!(app.catalog.current().unwrap().product, "Cheddar 200g");
    let mut empty = catalog();
    empty.items.clear();
    empty.version = 11;
    app.update(Msg::Net(NetEvent::Push(Event::Catalog(empty))));
    assert!(app.catalog.current().is_none());
    let mut next = catalog();
    next.version = 12;
    app.update(Msg::Net(NetEvent::Push(Event::Catalog(next))));
    assert_eq!(app.catalog.current().unwrap().product, "Cheddar 200g");
}

#[test]
fn search_and_filters_narrow_the_rows() {
    let mut app = shopping(true);
    app.update(ch('/'));
    type_str(&mut app, "app");
    app.update(key(KeyCode::Enter));
    let rows: Vec<_> = app
        .catalog
        .visible()
        .iter()
        .map(|i| i.product.clone())
        .collect();
    assert_eq!(rows, vec!["Apples"]);
    app.update(ch('x'));
    app.update(ch('m')); // first maker alphabetically: bakery
    assert_eq!(app.catalog.visible().len(), 1);
    app.update(ch('m'));
    app.update(ch('c')); // dairy maker, category bakery: nothing
    assert_eq!(app.catalog.visible().len(), 0);
}

// ---------------------------------------------------------------- cart

#[test]
fn cut_cart_lines_are_named_in_a_message() {
    let mut app = shopping(true);
    let cmds = app.update(key(KeyCode::Tab));
    let (tag, _) = one(&cmds, ReqKind::Cart);
    let mut view = cart();
    view.lines[0].quantity = 2;
    view.adjustments = vec![CartAdjustment {
        listing: ListingId(11),
        product: "Apples".into(),
        manufacturer_name: "orchard".into(),
        from: 3,
        to: 2,
    }];
    reply(&mut app, tag, Reply::Cart(view));
    let (head, lines) = app.cart.notice.clone().unwrap();
    assert_eq!(head, strings::CART_CUT);
    assert!(lines[0].contains("Apples (orchard): 3 -> 2"), "{lines:?}");
}

#[test]
fn cart_quantity_changes_show_at_once_and_d_removes_a_line() {
    let mut app = shopping(true);
    to_cart(&mut app);
    let cmds = app.update(ch('+'));
    let (_, body) = one(&cmds, ReqKind::Cart);
    assert_eq!(
        body,
        RequestBody::SetCartQuantity {
            listing: ListingId(11),
            quantity: 4
        }
    );
    assert_eq!(app.cart.view.total, Cents(4 * 116 + 2 * 129));
    let cmds = app.update(ch('d'));
    let (_, body) = one(&cmds, ReqKind::Cart);
    assert_eq!(
        body,
        RequestBody::RemoveFromCart {
            listing: ListingId(11)
        }
    );
    assert_eq!(app.cart.view.lines.len(), 1);
}

#[test]
fn an_older_cart_reply_does_not_overwrite_a_newer_one() {
    let mut app = shopping(true);
    to_cart(&mut app);
    let first = one(&app.update(ch('+')), ReqKind::Cart).0;
    let second = one(&app.update(ch('+')), ReqKind::Cart).0;
    let mut newer = cart();
    newer.lines[0].quantity = 5;
    reply(&mut app, second, Reply::Cart(newer));
    let mut older = cart();
    older.lines[0].quantity = 4;
    reply(&mut app, first, Reply::Cart(older));
    assert_eq!(app.cart.view.lines[0].quantity, 5);
}

#[test]
fn replies_from_an_earlier_session_are_dropped() {
    let mut app = shopping(true);
    let (tag, _) = one(&app.update(ch('3')), ReqKind::Orders);
    // Log out from the account screen before the orders arrive.
    app.update(ch('4'));
    for _ in 0..4 {
        app.update(ch('j'));
    }
    let cmds = app.update(key(KeyCode::Enter));
    assert!(cmds.contains(&Cmd::Session(None)));
    one(&cmds, ReqKind::LogOut);
    assert_eq!(app.screen, Screen::Login);
    reply(
        &mut app,
        tag,
        Reply::Orders(vec![order(1, LineStatus::Placed)]),
    );
    assert!(app.orders.list.is_empty());
}

// ---------------------------------------------------------------- checkout

/// From the cart, with no card: card form, Luhn caught locally, card saved, review, confirm.
/// Returns the checkout tag and id.
fn checkout_until_sent(app: &mut App) -> (Tag, CheckoutId) {
    to_cart(app);
    app.update(key(KeyCode::Enter));
    assert_eq!(app.screen, Screen::Checkout);
    assert_eq!(app.checkout.stage, Stage::Card);
    type_str(app, "4242424242424241");
    app.update(key(KeyCode::Tab));
    type_str(app, "1231");
    app.update(key(KeyCode::Tab));
    type_str(app, "123");
    assert!(
        app.update(key(KeyCode::Enter)).is_empty(),
        "a failing Luhn check is not sent"
    );
    assert_eq!(
        app.checkout.card.fields[0].input.error.as_deref(),
        Some(strings::CARD_LUHN)
    );
    app.update(key(KeyCode::Backspace));
    type_str(app, "2");
    app.checkout.card.focus = 2;
    let cmds = app.update(key(KeyCode::Enter));
    let (tag, body) = one(&cmds, ReqKind::SetCard);
    let RequestBody::SetCard(input) = body else {
        panic!()
    };
    assert_eq!(
        (input.number.as_str(), input.exp_month, input.exp_year),
        ("4242424242424242", 12, 2031)
    );
    reply(app, tag, Reply::Account(account(true)));
    assert_eq!(app.checkout.stage, Stage::Review);
    assert!(
        app.checkout.card.value(0).is_empty(),
        "the number is dropped once saved"
    );
    app.update(key(KeyCode::Enter));
    assert_eq!(app.checkout.stage, Stage::Confirm);
    let cmds = app.update(key(KeyCode::Enter));
    let (tag, body) = one(&cmds, ReqKind::Checkout);
    let RequestBody::Checkout {
        checkout_id,
        lines: None,
        confirmed_total,
    } = body
    else {
        panic!("{body:?}")
    };
    assert_eq!(
        confirmed_total, app.cart.view.total,
        "confirms the total it showed"
    );
    assert_eq!(app.checkout.stage, Stage::Placing);
    (tag, checkout_id)
}

#[test]
fn checkout_with_a_new_card_places_the_order_and_shows_it_in_the_history() {
    let mut app = shopping(false);
    let (tag, id) = checkout_until_sent(&mut app);
    let mut placed = order(10, LineStatus::Placed);
    placed.checkout_id = id;
    let cmds = reply(&mut app, tag, Reply::Order(placed));
    one(&cmds, ReqKind::Cart);
    assert_eq!(app.screen, Screen::Orders);
    assert_eq!(app.orders.list[0].id, OrderId(10));
    assert_eq!(app.checkout.attempt, None);
}

#[test]
fn out_of_stock_names_what_ran_out_and_returns_to_a_refetched_cart() {
    let mut app = shopping(false);
    let (tag, _) = checkout_until_sent(&mut app);
    let mut e = WireError::new(ErrorCode::OutOfStock, "Some items ran out");
    e.shortages = vec![Shortage {
        listing: ListingId(11),
        product: "Apples".into(),
        manufacturer: "orchard".into(),
        requested: 3,
        available: 1,
    }];
    let cmds = fail(&mut app, tag, e);
    assert_eq!(app.screen, Screen::Cart);
    one(&cmds, ReqKind::Cart);
    let (head, lines) = app.cart.notice.clone().unwrap();
    assert_eq!(head, strings::SOME_RAN_OUT);
    assert_eq!(
        lines,
        vec!["Apples (orchard): wanted 3, only 1 left".to_string()]
    );
}

#[test]
fn a_checkout_lost_with_the_connection_is_resent_with_the_same_id_after_reconnecting() {
    let mut app = shopping(true);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Enter));
    let (tag, body) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    app.update(Msg::Net(NetEvent::Disconnected {
        reason: "reset".into(),
        retry_in_ms: 250,
    }));
    let cmds = app.update(Msg::Net(NetEvent::Reply {
        tag,
        result: Err(RequestError::Lost),
    }));
    assert!(cmds.is_empty(), "nothing is sent while offline");
    assert_eq!(app.checkout.stage, Stage::Placing);
    let cmds = app.update(Msg::Net(NetEvent::Connected {
        welcome: Box::new(welcome()),
        session: Some(Ok(session(true))),
    }));
    let (new_tag, resent) = one(&cmds, ReqKind::Checkout);
    assert_eq!(
        resent, body,
        "same checkout id, so a double submit has no effect"
    );
    // The late answer to the first attempt is ignored; the re-send's answer is applied.
    reply(&mut app, tag, Reply::Order(order(10, LineStatus::Placed)));
    assert_eq!(app.checkout.stage, Stage::Placing);
    reply(
        &mut app,
        new_tag,
        Reply::Order(order(10, LineStatus::Placed)),
    );
    assert_eq!(app.screen, Screen::Orders);
}

#[test]
fn each_confirmed_attempt_gets_a_fresh_checkout_id() {
    let mut app = shopping(true);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Enter));
    let (tag, first) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    fail(
        &mut app,
        tag,
        WireError::new(ErrorCode::MonthClosed, "No month is open"),
    );
    assert_eq!(app.checkout.error.as_deref(), Some("No month is open"));
    app.update(key(KeyCode::Enter));
    let (_, second) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    assert_ne!(first, second);
}

// ---------------------------------------------------------------- orders and connection

#[test]
fn an_order_status_push_moves_the_line_and_an_unknown_order_is_fetched() {
    let mut app = shopping(true);
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::OrderStatus {
        order: OrderId(9),
        listings: vec![ListingId(31)],
        status: LineStatus::Dispatched,
    })));
    assert!(cmds.is_empty());
    assert_eq!(app.orders.list[0].lines[1].status, LineStatus::Dispatched);
    assert!(app
        .orders
        .changed
        .contains_key(&(OrderId(9), ListingId(31))));
    let cmds = app.update(Msg::Net(NetEvent::Push(Event::OrderStatus {
        order: OrderId(99),
        listings: vec![ListingId(31)],
        status: LineStatus::Confirmed,
    })));
    one(&cmds, ReqKind::Orders);
}

#[test]
fn one_status_push_moves_every_line_it_names_and_no_other_order() {
    let mut app = shopping(true);
    app.update(Msg::Net(NetEvent::Push(Event::OrderStatus {
        order: OrderId(9),
        listings: vec![ListingId(11), ListingId(31)],
        status: LineStatus::Dispatched,
    })));
    let statuses = |app: &App, i: usize| -> Vec<LineStatus> {
        app.orders.list[i].lines.iter().map(|l| l.status).collect()
    };
    assert_eq!(statuses(&app, 0), vec![LineStatus::Dispatched; 2]);
    assert_eq!(
        statuses(&app, 1),
        vec![LineStatus::Dispatched, LineStatus::Placed]
    );
    for listing in [ListingId(11), ListingId(31)] {
        assert!(app.orders.changed.contains_key(&(OrderId(9), listing)));
    }
}

#[test]
fn a_resumed_session_refreshes_everything_without_a_new_login() {
    let mut app = shopping(true);
    app.update(Msg::Net(NetEvent::Disconnected {
        reason: "reset".into(),
        retry_in_ms: 500,
    }));
    assert!(matches!(app.conn, ConnState::Offline { .. }));
    let cmds = app.update(Msg::Net(NetEvent::Connected {
        welcome: Box::new(welcome()),
        session: Some(Ok(session(true))),
    }));
    assert_eq!(app.conn, ConnState::Online);
    assert_eq!(app.screen, Screen::Catalog);
    one(&cmds, ReqKind::Catalog);
    one(&cmds, ReqKind::Cart);
    one(&cmds, ReqKind::Orders);
}

#[test]
fn a_session_that_cannot_be_resumed_goes_back_to_the_login_screen() {
    let mut app = shopping(true);
    let cmds = app.update(Msg::Net(NetEvent::Connected {
        welcome: Box::new(welcome()),
        session: Some(Err(WireError::new(
            ErrorCode::SessionExpired,
            "Session expired",
        ))),
    }));
    assert_eq!(cmds, vec![Cmd::Session(None)]);
    assert_eq!(app.screen, Screen::Login);
    assert!(app.session.is_none());
}

#[test]
fn deleting_the_account_asks_for_the_password_and_shows_a_wrong_one_next_to_it() {
    let mut app = shopping(true);
    app.update(ch('4'));
    app.update(ch('G'));
    assert_eq!(AccountAction::ALL[app.account.menu], AccountAction::Delete);
    app.update(key(KeyCode::Enter));
    assert!(matches!(app.overlay, Some(Overlay::ConfirmDelete(_))));
    type_str(&mut app, "wrong");
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::DeleteAccount);
    fail(
        &mut app,
        tag,
        WireError::field(ErrorCode::BadCredentials, Field::Password, "Wrong password"),
    );
    let Some(Overlay::ConfirmDelete(form)) = &app.overlay else {
        panic!()
    };
    assert_eq!(
        form.fields[0].input.error.as_deref(),
        Some("Wrong password")
    );
}

// ---------------------------------------------------------------- no colour

#[test]
fn without_colour_the_selected_row_is_reversed_and_no_cell_sets_a_colour() {
    use ratatui::style::{Color, Modifier};
    let app = shopping(true);
    let backend = ratatui::backend::TestBackend::new(80, 24);
    let mut terminal = ratatui::Terminal::new(backend).unwrap();
    terminal.draw(|f| crate::screens::draw(f, &app)).unwrap();
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    // The first table row (y = 5) is selected: its product cell is drawn reversed.
    let row: String = (0..80)
        .map(|x| buffer[(x, 5)].symbol().to_string())
        .collect();
    assert!(row.contains("Croissant"), "{row}");
    assert!(buffer[(20, 5)].modifier.contains(Modifier::REVERSED));
    assert!(!buffer[(20, 6)].modifier.contains(Modifier::REVERSED));
}

// ---------------------------------------------------------------- snapshots

fn snap(app: &App) -> String {
    render_to_string(app, 80, 24)
}

#[test]
fn snapshot_login() {
    let mut app = App::new(Theme::plain(), NOW);
    connected(&mut app);
    type_str(&mut app, "ada@example.com");
    app.update(key(KeyCode::Tab));
    type_str(&mut app, "secret");
    insta::assert_snapshot!("login", snap(&app));
}

#[test]
fn snapshot_sign_up_with_a_field_error() {
    let mut app = App::new(Theme::plain(), NOW);
    connected(&mut app);
    app.update(ctrl('n'));
    for text in ["Ada", "Lovelace", "ada@example.com"] {
        type_str(&mut app, text);
        app.update(key(KeyCode::Enter));
    }
    type_str(&mut app, "password123");
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::SignUp);
    fail(
        &mut app,
        tag,
        WireError::field(ErrorCode::EmailTaken, Field::Email, "That email is taken"),
    );
    insta::assert_snapshot!("sign_up_error", snap(&app));
}

#[test]
fn snapshot_catalog_with_live_stock() {
    let mut app = shopping(true);
    for (i, left) in [394u32, 392, 390, 385, 380].iter().enumerate() {
        app.update(Msg::Net(NetEvent::Push(Event::Stock(StockDelta {
            version: 11 + i as u64,
            levels: vec![(ListingId(11), *left)],
        }))));
        app.update(Msg::Tick {
            now_ms: NOW + 1_000 * (i as u64 + 1),
        });
    }
    app.update(key(KeyCode::End));
    app.update(key(KeyCode::Up));
    app.update(ch('l'));
    insta::assert_snapshot!("catalog", snap(&app));
}

#[test]
fn snapshot_catalog_search() {
    let mut app = shopping(true);
    app.update(ch('/'));
    type_str(&mut app, "ch");
    insta::assert_snapshot!("catalog_search", snap(&app));
}

#[test]
fn snapshot_cart_with_a_shortage_message() {
    let mut app = shopping(true);
    let (tag, _) = one(&app.update(key(KeyCode::Tab)), ReqKind::Cart);
    let mut view = cart();
    view.lines[1].available = 1;
    view.adjustments = vec![CartAdjustment {
        listing: ListingId(12),
        product: "Pears".into(),
        manufacturer_name: "orchard".into(),
        from: 4,
        to: 0,
    }];
    reply(&mut app, tag, Reply::Cart(view));
    insta::assert_snapshot!("cart", snap(&app));
}

#[test]
fn snapshot_checkout_card_form_while_typing() {
    let mut app = shopping(false);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    type_str(&mut app, "4242424242424242");
    app.update(key(KeyCode::Tab));
    type_str(&mut app, "13");
    insta::assert_snapshot!("checkout_card", snap(&app));
}

#[test]
fn snapshot_checkout_review_and_confirm() {
    let mut app = shopping(true);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!("checkout_review", snap(&app));
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!("checkout_confirm", snap(&app));
}

#[test]
fn snapshot_checkout_placing_while_offline() {
    let mut app = shopping(true);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Enter));
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    app.update(Msg::Net(NetEvent::Disconnected {
        reason: "connection reset".into(),
        retry_in_ms: 2_000,
    }));
    app.update(Msg::Net(NetEvent::Reply {
        tag,
        result: Err(RequestError::Lost),
    }));
    insta::assert_snapshot!("checkout_placing_offline", snap(&app));
}

#[test]
fn snapshot_orders() {
    let mut app = shopping(true);
    app.update(ch('3'));
    insta::assert_snapshot!("orders", snap(&app));
}

#[test]
fn snapshot_account_and_edit_form() {
    let mut app = shopping(true);
    app.update(ch('4'));
    insta::assert_snapshot!("account", snap(&app));
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!("account_edit", snap(&app));
}

#[test]
fn snapshot_delete_dialog() {
    let mut app = shopping(true);
    app.update(ch('4'));
    app.account.menu = AccountAction::ALL.len() - 1;
    app.update(key(KeyCode::Enter));
    type_str(&mut app, "pw");
    insta::assert_snapshot!("delete_dialog", snap(&app));
}

#[test]
fn snapshot_help_overlay() {
    let mut app = shopping(true);
    app.update(ch('?'));
    insta::assert_snapshot!("help", snap(&app));
}

#[test]
fn snapshot_catalog_at_the_minimum_size() {
    let mut app = shopping(true);
    app.update(ch('/'));
    type_str(&mut app, "e");
    insta::assert_snapshot!("catalog_min_size", render_to_string(&app, 60, 18));
}

#[test]
fn snapshot_terminal_too_small() {
    let app = shopping(true);
    insta::assert_snapshot!("too_small", render_to_string(&app, 50, 14));
}

// ---------------------------------------------------------------- what a checkout must match

#[test]
fn a_price_change_at_checkout_shows_the_new_total_on_the_review_step_and_the_next_pay_confirms_it()
{
    let mut app = shopping(true);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter)); // review
    app.update(key(KeyCode::Enter)); // confirm
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    // A new month: apples now cost 125 instead of 116.
    let mut now = cart();
    now.lines[0].unit_price = Cents(125);
    now.total = Cents(3 * 125 + 2 * 129);
    let mut e = WireError::new(ErrorCode::PriceChanged, "the total is now $6.33");
    e.repriced = Some(Box::new(now.clone()));
    let cmds = fail(&mut app, tag, e);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(app.screen, Screen::Checkout);
    assert_eq!(app.checkout.stage, Stage::Review);
    assert_eq!(app.checkout.attempt, None);
    assert_eq!(app.cart.view.total, Cents(633));
    let screen = snap(&app);
    assert!(
        screen.contains("total changed from $6.06 to $6.33"),
        "{screen}"
    );
    assert!(
        screen.contains("$3.75"),
        "the apples' new line total: {screen}"
    );
    // Confirming again pays the new total.
    app.update(key(KeyCode::Enter));
    assert_eq!(app.checkout.stage, Stage::Confirm);
    let (_, body) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    let RequestBody::Checkout {
        confirmed_total, ..
    } = body
    else {
        panic!("{body:?}")
    };
    assert_eq!(confirmed_total, Cents(633));
}

/// Logged in with a card on file that expired in `exp_month`/`exp_year`, on the checkout review.
fn reviewing_with_a_card_expired(exp_month: u8, exp_year: u16) -> App {
    let mut app = shopping(true);
    if let Some(card) = app.session.as_mut().and_then(|s| s.account.card.as_mut()) {
        (card.exp_month, card.exp_year) = (exp_month, exp_year);
    }
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    assert_eq!(app.checkout.stage, Stage::Review);
    app
}

#[test]
fn a_card_that_expired_while_on_file_is_marked_and_enter_asks_for_a_new_card_instead_of_paying() {
    // NOW is June 2025: a card that ran to May 2025 has expired.
    let mut app = reviewing_with_a_card_expired(5, 2025);
    let screen = snap(&app);
    assert!(screen.contains("(expired)"), "{screen}");
    let cmds = app.update(key(KeyCode::Enter));
    assert!(cmds.is_empty(), "nothing is sent: {cmds:?}");
    assert_eq!(app.checkout.stage, Stage::Card, "not the pay step");
    let screen = snap(&app);
    assert!(
        screen.contains("The card on file expired at the end of 05/25"),
        "{screen}"
    );
    // A card that runs to the end of this month still pays.
    let mut app = reviewing_with_a_card_expired(6, 2025);
    app.update(key(KeyCode::Enter));
    assert_eq!(app.checkout.stage, Stage::Confirm);
}

#[test]
fn the_servers_refusal_of_an_expired_card_opens_the_card_form_with_its_message() {
    let mut app = shopping(true);
    to_cart(&mut app);
    app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Enter));
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    let e = WireError::field(
        ErrorCode::CardInvalid,
        Field::CardExpiry,
        "the card on file expired at the end of 11/2026; add a new card to pay",
    );
    fail(&mut app, tag, e);
    assert_eq!(app.checkout.stage, Stage::Card);
    assert_eq!(
        app.checkout.card.focus, 0,
        "a new card starts at its number"
    );
    let screen = snap(&app);
    assert!(screen.contains("expired at the end of 11/2026"), "{screen}");
}

#[test]
fn adding_a_new_line_to_a_full_cart_says_the_limit_and_sends_nothing() {
    let mut app = shopping(true);
    app.cart.view.lines = (0..MAX_CART_LINES as u32)
        .map(|i| cart_line(1000 + i, "Thing", "maker", 100, 1, 10))
        .collect();
    let cmds = app.update(ch('a')); // the selected listing is not in the cart
    assert!(sent(&cmds, ReqKind::AddToCart).is_empty(), "{cmds:?}");
    let flash = app.flash.clone().unwrap();
    assert_eq!(flash.kind, FlashKind::Error);
    assert!(
        flash
            .text
            .contains(&format!("at most {MAX_CART_LINES} lines")),
        "{}",
        flash.text
    );
    // More of a line already in the cart is still fine.
    app.cart.view.lines[0].listing = app.catalog.current().unwrap().listing;
    one(&app.update(ch('a')), ReqKind::AddToCart);
}

#[test]
fn a_new_months_catalog_reprices_the_cart_so_the_review_shows_what_will_be_charged() {
    let mut app = shopping(true);
    let mut next = catalog();
    next.items[0].unit_price = Cents(125); // apples, 3 in the cart
    next.version += 1;
    app.update(Msg::Net(NetEvent::Push(Event::Catalog(next))));
    assert_eq!(app.cart.view.total, Cents(3 * 125 + 2 * 129));
    // To the cart (its refetch still on the way), review, confirm, pay: the new total is confirmed.
    one(&app.update(key(KeyCode::Tab)), ReqKind::Cart);
    assert_eq!(app.screen, Screen::Cart);
    app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Enter));
    let (_, body) = one(&app.update(key(KeyCode::Enter)), ReqKind::Checkout);
    assert!(
        matches!(
            body,
            RequestBody::Checkout {
                confirmed_total: Cents(633),
                ..
            }
        ),
        "{body:?}"
    );
}

fn turn_over(app: &mut App, closed: u32, reason: CloseReason) {
    app.update(Msg::Net(NetEvent::Push(Event::MonthClosed {
        month: MonthId(closed),
        reason,
    })));
    app.update(Msg::Net(NetEvent::Push(Event::MonthOpened(MonthView {
        id: MonthId(closed + 1),
        state: MonthState::Open,
        opened_at_ms: NOW,
        ends_at_ms: NOW + 60_000,
    }))));
}

#[test]
fn the_status_line_says_why_the_month_closed_and_then_shows_the_new_month() {
    for (reason, why) in [
        (CloseReason::SoldOut, "sold out"),
        (CloseReason::AllCustomersDone, "every customer has bought"),
        (CloseReason::TimeUp, "time is up"),
        (CloseReason::Operator, "closed by the operator"),
    ] {
        let mut app = shopping(true);
        turn_over(&mut app, 4, reason);
        let flash = app.flash.as_ref().map(|f| f.text.clone());
        assert_eq!(
            flash.as_deref(),
            Some(format!("Month 4 closed: {why}. Month 5 is open.").as_str())
        );
        assert_eq!(app.month.as_ref().map(|m| m.id), Some(MonthId(5)));
    }
}

#[test]
fn snapshot_month_closed_sold_out() {
    let mut app = shopping(true);
    turn_over(&mut app, 4, CloseReason::SoldOut);
    insta::assert_snapshot!("month_closed_sold_out", snap(&app));
}

// ---------------------------------------------------------------- over SSH: the key as a login

const FP: &str = "SHA256:uIYTxlYZ9IyOMwUgqIQ7sTwG5IR7xsTNjGb+8VVbeA8";

fn over_ssh() -> App {
    let mut app = App::new(Theme::plain(), NOW);
    app.ssh_key.fingerprint = Some(FP.into());
    app
}

#[test]
fn over_ssh_the_key_is_tried_once_on_connect_and_a_local_shop_never_sends_one() {
    let mut local = App::new(Theme::plain(), NOW);
    assert!(sent(&connected(&mut local), ReqKind::KeyLogIn).is_empty());

    let mut app = over_ssh();
    let cmds = connected(&mut app);
    let (tag, body) = one(&cmds, ReqKind::KeyLogIn);
    assert_eq!(
        body,
        RequestBody::KeyLogIn {
            fingerprint: FP.into()
        }
    );
    let cmds = reply(&mut app, tag, Reply::Session(session(true)));
    assert_eq!(app.screen, Screen::Catalog);
    assert!(app.ssh_key.linked);
    assert!(app.overlay.is_none(), "a linked key is not offered again");
    one(&cmds, ReqKind::Catalog);
    // A reconnect does not try again.
    assert!(sent(&connected(&mut app), ReqKind::KeyLogIn).is_empty());
}

#[test]
fn after_a_login_by_hand_over_ssh_the_shop_offers_to_remember_the_key() {
    let mut app = over_ssh();
    let (tag, _) = one(&connected(&mut app), ReqKind::KeyLogIn);
    fail(
        &mut app,
        tag,
        WireError::new(ErrorCode::BadCredentials, "not linked"),
    );
    assert_eq!(app.screen, Screen::Login);
    type_str(&mut app, "ada@example.com");
    app.update(key(KeyCode::Tab));
    type_str(&mut app, "password123");
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::LogIn);
    reply(&mut app, tag, Reply::Session(session(true)));
    assert_eq!(app.overlay, Some(Overlay::RememberKey));
    insta::assert_snapshot!("remember_key", render_to_string(&app, 80, 24));

    let (tag, body) = one(&app.update(ch('y')), ReqKind::RememberKey);
    assert_eq!(
        body,
        RequestBody::RememberKey {
            fingerprint: FP.into()
        }
    );
    assert!(app.overlay.is_none());
    reply(&mut app, tag, Reply::Done);
    assert!(app.ssh_key.linked);
    assert_eq!(
        app.flash.as_ref().map(|f| f.text.as_str()),
        Some(strings::KEY_REMEMBERED)
    );
}

#[test]
fn declining_to_remember_sends_nothing_and_the_account_menu_can_forget_the_key() {
    let mut app = over_ssh();
    let (tag, _) = one(&connected(&mut app), ReqKind::KeyLogIn);
    fail(
        &mut app,
        tag,
        WireError::new(ErrorCode::BadCredentials, "no"),
    );
    type_str(&mut app, "ada@example.com");
    app.update(key(KeyCode::Tab));
    type_str(&mut app, "password123");
    let (tag, _) = one(&app.update(key(KeyCode::Enter)), ReqKind::LogIn);
    reply(&mut app, tag, Reply::Session(session(true)));
    assert!(app.update(ch('n')).is_empty());
    assert!(app.overlay.is_none());

    assert!(!shopping(true)
        .account_menu()
        .contains(&AccountAction::ForgetKey));
    let menu = app.account_menu();
    let at = menu
        .iter()
        .position(|a| *a == AccountAction::ForgetKey)
        .unwrap();
    app.update(ch('4'));
    for _ in 0..at {
        app.update(key(KeyCode::Down));
    }
    let (tag, body) = one(&app.update(key(KeyCode::Enter)), ReqKind::ForgetKey);
    assert_eq!(
        body,
        RequestBody::ForgetKey {
            fingerprint: FP.into()
        }
    );
    reply(&mut app, tag, Reply::Done);
    assert!(!app.ssh_key.linked);
}

mod paging;
