//! Validation that a real shop does (issue 10, section 4): names, emails under full case folding
//! (also for rows written before it), cards, manufacturer and product names, and money that would
//! overflow. Every refusal names the field the shop shows it next to.

use protocol::*;
use std::time::Duration;
use tests::harness::*;

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";

fn form(first: &str, last: &str, email: &str) -> RequestBody {
    RequestBody::SignUp(SignUp {
        first_name: first.into(),
        last_name: last.into(),
        email: email.into(),
        password: PASSWORD.into(),
    })
}

fn refusal(result: Result<Reply, ClientError>) -> WireError {
    match result {
        Err(e) => e
            .server_error()
            .cloned()
            .unwrap_or_else(|| panic!("transport error: {e}")),
        Ok(reply) => panic!("expected a refusal, got {reply:?}"),
    }
}

fn account(result: Result<Reply, ClientError>) -> AccountView {
    match result {
        Ok(Reply::Session(s)) => s.account,
        Ok(Reply::Account(a)) => a,
        other => panic!("expected an account, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_only_invisible_or_combining_characters_are_refused_next_to_their_field() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    for (i, bad) in ["\u{200B}", "\u{0301}\u{0301}", "\u{3164}", " \u{00A0} "]
        .iter()
        .enumerate()
    {
        let err = refusal(
            client
                .call(form(bad, "Hopper", &format!("n{i}@example.com")))
                .await,
        );
        assert_eq!(
            (err.code, err.field),
            (ErrorCode::InvalidInput, Some(Field::FirstName)),
            "{bad:?}"
        );
        let err = refusal(
            client
                .call(form("Grace", bad, &format!("m{i}@example.com")))
                .await,
        );
        assert_eq!(err.field, Some(Field::LastName), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_bidi_override_characters_are_stripped_from_names() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    let view = account(
        client
            .call(form(
                "Gr\u{202E}ace\u{7}",
                "\u{2066}Hopper\u{2069}",
                "strip@example.com",
            ))
            .await,
    );
    assert_eq!(
        (view.first_name.as_str(), view.last_name.as_str()),
        ("Grace", "Hopper")
    );
    let view = account(
        client
            .call(RequestBody::UpdateAccount(AccountUpdate {
                last_name: Some("Ho\u{202D}pper\u{1b}".into()),
                ..AccountUpdate::default()
            }))
            .await,
    );
    assert_eq!(view.last_name, "Hopper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_with_consecutive_dots_zero_width_characters_or_bad_labels_are_refused() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    for bad in [
        "grace..hopper@example.com",
        "grace@example..com",
        "gra\u{200B}ce@example.com",
        "grace@exa\u{200D}mple.com",
        "grace@-example.com",
        "grace@exam_ple.com",
        "grace@localhost",
    ] {
        let err = refusal(client.call(form("Grace", "Hopper", bad)).await);
        assert_eq!(
            (err.code, err.field),
            (ErrorCode::InvalidInput, Some(Field::Email)),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_changed_to_upper_case_umlauts_still_logs_in_and_cannot_be_registered_twice() {
    let server = TestServer::start().await;
    let (owner, _) = connect_customer(&server.addr).await;
    account(owner.call(form("Mesut", "Özil", "Özil@example.com")).await);
    let view = account(
        owner
            .call(RequestBody::UpdateAccount(AccountUpdate {
                email: Some("ÖZIL@example.com".into()),
                ..AccountUpdate::default()
            }))
            .await,
    );
    assert_eq!(view.email, "ÖZIL@example.com");
    let (again, _) = connect_customer(&server.addr).await;
    for spelling in [
        "özil@example.com",
        "ÖZIL@EXAMPLE.COM",
        "o\u{308}zil@example.com",
    ] {
        again
            .call(RequestBody::LogIn {
                email: spelling.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{spelling}: {e}"));
    }
    let (twin, _) = connect_customer(&server.addr).await;
    let err = refusal(twin.call(form("Other", "Person", "özil@example.com")).await);
    assert_eq!(
        (err.code, err.field),
        (ErrorCode::EmailTaken, Some(Field::Email))
    );
}

/// A database written before full case folding: keys were `lower()`-ed, which folds only ASCII.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_stored_before_case_folding_are_rekeyed_and_their_owners_log_in() {
    let server = TestServer::start().await;
    let (client, _) = connect_customer(&server.addr).await;
    account(client.call(form("Mesut", "Özil", "ÖZIL@example.com")).await);
    let (other, _) = connect_customer(&server.addr).await;
    account(
        other
            .call(form("Sam", "Strauss", "strauß@example.com"))
            .await,
    );
    let (db, dir) = (server.db.clone(), server.dir.clone());
    server.stop().await.unwrap();
    // The same accounts (real password hashes) in a file as schema 4 left it, before the email key
    // was fully case-folded (migration 5): the old key folded only ASCII.
    let accounts: Vec<(String, String, String, String)> = {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut rows = conn
            .prepare("SELECT first_name, last_name, email, password_hash FROM accounts ORDER BY id")
            .unwrap();
        rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let db = dir
        .as_ref()
        .expect("a temporary directory")
        .path()
        .join("schema4.db");
    {
        let conn = server::store::schema::create_at_version(&db, 4).unwrap();
        for (first, last, email, hash) in &accounts {
            conn.execute(
                "INSERT INTO accounts (first_name, last_name, email, email_key, password_hash, created_at_ms)
                 VALUES (?1, ?2, ?3, lower(?3), ?4, 0)",
                rusqlite::params![first, last, email, hash],
            )
            .unwrap();
        }
        let old: String = conn
            .query_row("SELECT email_key FROM accounts WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(old, "Özil@example.com", "the old key folded only ASCII");
    }
    let server = TestServer::start_on(db, |_| {}).await;
    for (email, name) in [
        ("özil@example.com", "Mesut"),
        ("STRAUSS@example.com", "Sam"),
    ] {
        let (c, _) = connect_customer(&server.addr).await;
        let view = account(
            c.call(RequestBody::LogIn {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await,
        );
        assert_eq!(view.first_name, name);
    }
    drop(dir);
}

async fn set_card(client: &Client, number: &str, cvc: &str) -> Result<Reply, ClientError> {
    client
        .call(RequestBody::SetCard(CardInput {
            number: number.into(),
            exp_month: 12,
            exp_year: 2035,
            cvc: cvc.into(),
        }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_zero_card_and_numbers_no_issuer_uses_are_refused_on_the_number_field() {
    let server = TestServer::start().await;
    let c = customer(&server.addr).await;
    for unused in [
        "0000 0000 0000 0000",
        "7000 0000 0000 0005",
        "9999 9999 9999 9995",
    ] {
        let err = refusal(set_card(&c.client, unused, "123").await);
        assert_eq!(
            (err.code, err.field),
            (ErrorCode::CardInvalid, Some(Field::CardNumber)),
            "{unused}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_code_has_four_digits_for_amex_and_three_for_other_brands() {
    let server = TestServer::start().await;
    let c = customer(&server.addr).await;
    let err = refusal(set_card(&c.client, "3782 822463 10005", "123").await);
    assert_eq!(err.field, Some(Field::CardCvc));
    let err = refusal(set_card(&c.client, "4242 4242 4242 4242", "1234").await);
    assert_eq!(err.field, Some(Field::CardCvc));
    set_card(&c.client, "3782 822463 10005", "1234")
        .await
        .unwrap();
    set_card(&c.client, "4242 4242 4242 4242", "123")
        .await
        .unwrap();
}

/// Connects as manufacturer `name`, presenting the credential in `books` and keeping the one the
/// distributor issues, as a manufacturer's books do.
async fn connect_manufacturer(
    addr: &str,
    name: &str,
    books: &mut Option<String>,
) -> Result<(Client, Events), ClientError> {
    let hello = Hello {
        key: books.clone(),
        ..hello(Role::Manufacturer, Some(name))
    };
    let (client, events) = Client::connect(addr, hello).await?;
    if let Some(issued) = client.welcome().credential.clone() {
        *books = Some(issued);
    }
    Ok((client, events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manufacturer_name_that_only_looks_like_a_registered_one_is_refused() {
    let server = TestServer::start().await;
    let mut books = None;
    let (orchard, _) = connect_manufacturer(&server.addr, "orchard", &mut books)
        .await
        .unwrap();
    let id = orchard.welcome().manufacturer;
    for twin in [
        "Orchard",
        "ORCHARD",
        "or chard",
        "0rchard",
        "\u{043E}rchard",
    ] {
        let refused = connect_manufacturer(&server.addr, twin, &mut None).await;
        let err = refused.err().and_then(|e| e.server_error().cloned());
        assert!(
            err.as_ref().is_some_and(
                |e| e.code == ErrorCode::BadHandshake && e.message.contains("looks like")
            ),
            "{twin}: {err:?}"
        );
    }
    for bad in ["orc\u{1b}[2Jhard", "\u{200B}"] {
        assert!(
            connect_manufacturer(&server.addr, bad, &mut None)
                .await
                .is_err(),
            "{bad:?}"
        );
    }
    drop(orchard);
    // Spaces around a name are trimmed: it is the same manufacturer.
    let (again, _) = connect_manufacturer(&server.addr, "  orchard ", &mut books)
        .await
        .unwrap();
    assert_eq!(again.welcome().manufacturer, id);
}

/// A manufacturer connection that answers the next `OfferRequested` with `lines`, returning the
/// distributor's answer.
async fn offer(
    server: &TestServer,
    name: &str,
    books: &mut Option<String>,
    lines: Vec<OfferLine>,
) -> Result<Reply, ClientError> {
    let (client, mut events) = connect_manufacturer(&server.addr, name, books)
        .await
        .unwrap();
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let month = next_request(&mut events).await;
    match client
        .call(RequestBody::SubmitOffer {
            month,
            lines: lines.clone(),
        })
        .await
    {
        // Asked for the month that was open when it connected, which the close just ended.
        Err(e)
            if e.server_error()
                .is_some_and(|e| e.code == ErrorCode::Conflict) =>
        {
            let month = next_request(&mut events).await;
            client.call(RequestBody::SubmitOffer { month, lines }).await
        }
        other => other,
    }
}

async fn next_request(events: &mut Events) -> MonthId {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Event::OfferRequested { month }) => return month,
                Some(_) => {}
                None => panic!("the manufacturer's connection closed"),
            }
        }
    })
    .await
    .expect("an offer request")
}

fn line(sku: &str, product: &str) -> OfferLine {
    OfferLine {
        product: product.into(),
        ..offer_line(sku, 10, 100)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_names_with_control_characters_or_lookalikes_of_another_are_refused() {
    let server = TestServer::start().await;
    let mut books = None;
    let err = refusal(
        offer(
            &server,
            "orchard",
            &mut books,
            vec![line("a1", "Apples\u{1b}[2J")],
        )
        .await,
    );
    assert_eq!(err.code, ErrorCode::InvalidInput);
    let err = refusal(
        offer(
            &server,
            "orchard",
            &mut books,
            vec![line("a1", "Apples"), line("a2", "APPLES")],
        )
        .await,
    );
    assert!(err.message.contains("looks like"), "{}", err.message);
    offer(
        &server,
        "orchard",
        &mut books,
        vec![line("a1", "  Apples "), line("p1", "Pears")],
    )
    .await
    .unwrap();
    let c = customer(&server.addr).await;
    let names: Vec<String> = catalog(&c.client)
        .await
        .items
        .into_iter()
        .map(|i| i.product)
        .collect();
    assert!(names.contains(&"Apples".to_string()), "{names:?}");
}

/// With the largest unit price an offer may have (2^40 cents), 20 million units would total more
/// than 2^64 cents: the cart used to show a saturated total. It is refused on the quantity field now
/// (the line limit keeps every total inside what an order can hold), and the cart keeps its total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_whose_total_would_overflow_is_refused_with_a_clear_message() {
    let server = TestServer::start().await;
    let price = 1u64 << 40;
    let lines = vec![offer_line("gold", u32::MAX, price)];
    let _m =
        TestManufacturer::connect(&server.addr, "mint", script(lines), Default::default()).await;
    connect_operator(&server.addr)
        .await
        .call(RequestBody::CloseMonth)
        .await
        .unwrap();
    let c = customer(&server.addr).await;
    let listing = wait_for_catalog(&c.client, 1, WAIT).await.items[0].listing;
    c.client
        .call(RequestBody::AddToCart {
            listing,
            quantity: 1000,
        })
        .await
        .unwrap();
    for body in [
        RequestBody::AddToCart {
            listing,
            quantity: 20_000_000,
        },
        RequestBody::SetCartQuantity {
            listing,
            quantity: 20_000_000,
        },
    ] {
        let err = refusal(c.client.call(body).await);
        assert_eq!(
            (err.code, err.field),
            (ErrorCode::InvalidInput, Some(Field::Quantity))
        );
        assert!(err.message.contains("at most"), "{}", err.message);
    }
    match c.client.call(RequestBody::GetCart).await.unwrap() {
        Reply::Cart(cart) => assert_eq!(cart.total, Cents(price * 1000), "the cart is unchanged"),
        other => panic!("{other:?}"),
    }
}
