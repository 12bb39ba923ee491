//! What a checkout must match before it buys anything, end to end over real TCP: the total the
//! customer confirmed (a new month's price, a line cut for stock), a card that is still good, and the
//! limits of one cart and one checkout.

use protocol::*;
use std::time::Duration;
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// A server whose open month holds `lines` from the manufacturer "orchard" (a manufacturer that
/// connects mid-month offers into that month at once).
async fn offered_server(lines: Vec<OfferLine>) -> (TestServer, TestManufacturer) {
    let server = TestServer::start().await;
    let m =
        TestManufacturer::connect(&server.addr, "orchard", script(lines), Default::default()).await;
    (server, m)
}

async fn close_month(addr: &str) {
    connect_operator(addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .expect("close the month");
}

async fn cart(client: &Client) -> CartView {
    match client.call(RequestBody::GetCart).await.expect("get cart") {
        Reply::Cart(cart) => cart,
        other => panic!("unexpected cart reply {other:?}"),
    }
}

async fn add(client: &Client, listing: ListingId, quantity: u32) -> Result<CartView, ClientError> {
    match client
        .call(RequestBody::AddToCart { listing, quantity })
        .await?
    {
        Reply::Cart(cart) => Ok(cart),
        other => panic!("unexpected add reply {other:?}"),
    }
}

async fn order_count(client: &Client) -> usize {
    match client.call(RequestBody::Orders).await.expect("orders") {
        Reply::Orders(orders) => orders.len(),
        other => panic!("unexpected orders reply {other:?}"),
    }
}

async fn remaining(client: &Client, listing: ListingId) -> u32 {
    catalog(client)
        .await
        .items
        .iter()
        .find(|i| i.listing == listing)
        .map_or(0, |i| i.remaining)
}

/// Checks out the cart under `id`, confirming `total`.
async fn pay(client: &Client, id: CheckoutId, total: Cents) -> Result<OrderView, WireError> {
    let body = RequestBody::Checkout {
        checkout_id: id,
        lines: None,
        confirmed_total: total,
    };
    match client.call(body).await {
        Ok(Reply::Order(order)) => Ok(order),
        Ok(other) => panic!("unexpected checkout reply {other:?}"),
        Err(ClientError::Server(e)) => Err(e),
        Err(e) => panic!("checkout failed on the wire: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_carried_into_a_new_month_at_a_new_price_is_refused_with_the_new_total_and_nothing_is_bought(
) {
    let (server, m) = offered_server(vec![offer_line("apple", 10, 100)]).await;
    let c = customer(&server.addr).await;
    let apple = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let reviewed = add(&c.client, apple, 3).await.unwrap();
    assert_eq!(reviewed.total, Cents(300), "the review says pay $3.00");

    // The maker comes back (with its books, so with its credential) with a new price, and the cart
    // is carried into the next month.
    let books = m.books.clone();
    drop(m);
    let _m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 10, 125)]),
        books,
    )
    .await;
    close_month(&server.addr).await;
    eventually("the new month's price", WAIT, async || {
        catalog(&c.client)
            .await
            .items
            .iter()
            .any(|i| i.listing == apple && i.unit_price == Cents(125))
    })
    .await;

    // Paying what the review said is refused, with the new lines and total; nothing is bought.
    let refused = pay(&c.client, CheckoutId::generate(), reviewed.total)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::PriceChanged, "{refused:?}");
    assert!(
        refused.message.contains("$3.75") && refused.message.contains("$3.00"),
        "{}",
        refused.message
    );
    let now = refused.repriced.expect("the new lines and total");
    assert_eq!(now.total, Cents(375));
    assert_eq!(
        (
            now.lines[0].listing,
            now.lines[0].unit_price,
            now.lines[0].quantity
        ),
        (apple, Cents(125), 3)
    );
    assert_eq!(order_count(&c.client).await, 0);
    assert_eq!(remaining(&c.client, apple).await, 10);
    assert_eq!(cart(&c.client).await.lines.len(), 1, "the cart is kept");

    // Confirming the new total buys, at that total; a retry of the same id returns the same order.
    let id = CheckoutId::generate();
    let order = pay(&c.client, id, now.total).await.unwrap();
    assert_eq!(order.total, Cents(375));
    let retried = pay(&c.client, id, reviewed.total).await.unwrap();
    assert_eq!(retried.id, order.id, "a retry returns the original order");
    // (The month may close now that its only shopper is done, so the stock is not checked here.)
    assert_eq!(order_count(&c.client).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_cut_for_stock_after_the_review_is_refused_with_the_cut_total_and_nothing_is_bought()
{
    let (server, _m) = offered_server(vec![offer_line("apple", 5, 100)]).await;
    let a = customer(&server.addr).await;
    let b = customer(&server.addr).await;
    let apple = wait_for_catalog(&a.client, 1, WAIT).await.items[0].listing;
    let reviewed = add(&a.client, apple, 4).await.unwrap();
    assert_eq!(reviewed.total, Cents(400));

    // b buys 3 of the 5; a's other terminal opens the cart, which cuts it to the 2 left.
    b.client
        .call(tests::harness::buy_now(apple, 3, Cents(300)))
        .await
        .unwrap();
    let second = resume(&server.addr, &a.session.token).await;
    let cut = cart(&second).await;
    assert_eq!((cut.lines[0].quantity, cut.adjustments.len()), (2, 1));

    // The first terminal still shows $4.00: paying that is refused, and says what the cart is now.
    let refused = pay(&a.client, CheckoutId::generate(), reviewed.total)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::PriceChanged, "{refused:?}");
    let now = refused.repriced.expect("the cut lines and total");
    assert_eq!((now.lines[0].quantity, now.total), (2, Cents(200)));
    assert_eq!(order_count(&a.client).await, 0, "nothing was bought");
    assert_eq!(remaining(&a.client, apple).await, 2);

    let order = pay(&a.client, CheckoutId::generate(), now.total)
        .await
        .unwrap();
    assert_eq!((order.units(), order.total), (2, Cents(200)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_now_at_a_stale_price_is_refused_and_names_the_price_it_would_cost() {
    let (server, _m) = offered_server(vec![offer_line("apple", 5, 100)]).await;
    let c = customer(&server.addr).await;
    let apple = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let buy = |total| tests::harness::buy_now(apple, 2, Cents(total));
    let Err(ClientError::Server(e)) = c.client.call(buy(150)).await else {
        panic!("a checkout for the wrong total was accepted");
    };
    assert_eq!(e.code, ErrorCode::PriceChanged);
    let now = e.repriced.expect("the lines at today's price");
    assert_eq!(
        (now.lines[0].unit_price, now.lines[0].quantity, now.total),
        (Cents(100), 2, Cents(200))
    );
    assert_eq!(remaining(&c.client, apple).await, 5);
    assert!(matches!(c.client.call(buy(200)).await, Ok(Reply::Order(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_that_expired_while_on_file_is_refused_at_checkout_and_a_new_card_pays() {
    let (server, m) = offered_server(vec![offer_line("apple", 5, 100)]).await;
    let c = customer(&server.addr).await;
    let apple = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    add(&c.client, apple, 1).await.unwrap();
    let token = c.session.token.clone();
    drop(c);

    // Time passes while the card is on file: stand in for it by moving the stored expiry into the
    // past while the server is down (a card cannot be attached already expired).
    let (db, dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    let changed = store_execute(
        &db,
        "UPDATE accounts SET card_exp_month = 1, card_exp_year = 2024 WHERE card_last4 IS NOT NULL",
    );
    assert_eq!(changed, 1);
    let mut server = TestServer::start_on(db, |_| {}).await;
    server.dir = dir;
    let _m = TestManufacturer::connect(
        &server.addr,
        "orchard",
        script(vec![offer_line("apple", 5, 100)]),
        m.books.clone(),
    )
    .await;
    let (client, _) = connect_customer(&server.addr).await;
    client.call(RequestBody::Resume { token }).await.unwrap();
    wait_for_catalog(&client, 1, WAIT).await;

    let refused = pay(&client, CheckoutId::generate(), Cents(100))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::CardInvalid, "{refused:?}");
    assert_eq!(refused.field, Some(Field::CardExpiry));
    assert!(
        refused.message.contains("expired") && refused.message.contains("01/2024"),
        "{}",
        refused.message
    );
    assert_eq!(order_count(&client).await, 0);

    client
        .call(RequestBody::SetCard(CardInput {
            number: TEST_CARD.into(),
            exp_month: 12,
            exp_year: 2035,
            cvc: "123".into(),
        }))
        .await
        .unwrap();
    let order = pay(&client, CheckoutId::generate(), Cents(100))
        .await
        .unwrap();
    assert_eq!(order.units(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_refuses_a_new_line_beyond_what_one_checkout_can_buy_and_says_the_limit() {
    let skus: Vec<String> = (0..=MAX_CART_LINES)
        .map(|i| format!("sku-{i:03}"))
        .collect();
    let (server, _m) = offered_server(skus.iter().map(|s| offer_line(s, 5, 10)).collect()).await;
    let c = customer(&server.addr).await;
    let items = wait_for_catalog(&c.client, MAX_CART_LINES + 1, WAIT)
        .await
        .items;
    for item in &items[..MAX_CART_LINES] {
        add(&c.client, item.listing, 1).await.unwrap();
    }
    let full = add(&c.client, items[MAX_CART_LINES].listing, 1)
        .await
        .unwrap_err();
    let e = full.server_error().unwrap();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    assert!(
        e.message
            .contains(&format!("at most {MAX_CART_LINES} lines")),
        "{}",
        e.message
    );
    // More of a line already in the cart still fits, and the full cart checks out in one go.
    let view = add(&c.client, items[0].listing, 1).await.unwrap();
    assert_eq!(view.lines.len(), MAX_CART_LINES);
    let order = pay(&c.client, CheckoutId::generate(), view.total)
        .await
        .unwrap();
    assert_eq!(order.lines.len(), MAX_CART_LINES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_above_the_most_units_per_line_is_refused_and_says_the_limit() {
    let (server, _m) = offered_server(vec![offer_line("grain", MAX_LINE_QUANTITY + 10, 1)]).await;
    let c = customer(&server.addr).await;
    let grain = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    let e = add(&c.client, grain, MAX_LINE_QUANTITY + 1)
        .await
        .unwrap_err();
    let e = e.server_error().unwrap();
    assert_eq!(
        (e.code, e.field),
        (ErrorCode::InvalidInput, Some(Field::Quantity))
    );
    assert!(
        e.message.contains(&MAX_LINE_QUANTITY.to_string()),
        "{}",
        e.message
    );
    add(&c.client, grain, MAX_LINE_QUANTITY).await.unwrap();
}
