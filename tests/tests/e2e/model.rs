//! Model-based test: random sequences of customer operations run against the real distributor (over
//! TCP, with a real SQLite file) and against a plain model of the rules, side by side. Operations
//! include sign-up, cart edits, checkouts with valid and invalid cards, month close and restart. Any
//! difference in an answer, in stock, in a cart or in order history fails the case, and proptest
//! shrinks it to a minimal sequence (failing seeds are kept in `proptest-regressions/`).

use proptest::prelude::*;
use protocol::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tests::harness::*;

const ITEMS: usize = 3;
const OFFERED: u32 = 5;
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
enum Op {
    SignUp,
    SetCard {
        who: usize,
        valid: bool,
    },
    RemoveCard {
        who: usize,
    },
    Add {
        who: usize,
        item: usize,
        quantity: u32,
    },
    Set {
        who: usize,
        item: usize,
        quantity: u32,
    },
    Remove {
        who: usize,
        item: usize,
    },
    Clear {
        who: usize,
    },
    View {
        who: usize,
    },
    Checkout {
        who: usize,
    },
    BuyNow {
        who: usize,
        item: usize,
        quantity: u32,
    },
    CloseMonth,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..4usize;
    let item = 0..ITEMS;
    prop_oneof![
        1 => Just(Op::SignUp),
        2 => (who.clone(), any::<bool>()).prop_map(|(who, valid)| Op::SetCard { who, valid }),
        1 => who.clone().prop_map(|who| Op::RemoveCard { who }),
        6 => (who.clone(), item.clone(), 1..=4u32).prop_map(|(who, item, quantity)| Op::Add { who, item, quantity }),
        2 => (who.clone(), item.clone(), 0..=6u32).prop_map(|(who, item, quantity)| Op::Set { who, item, quantity }),
        1 => (who.clone(), item.clone()).prop_map(|(who, item)| Op::Remove { who, item }),
        1 => who.clone().prop_map(|who| Op::Clear { who }),
        2 => who.clone().prop_map(|who| Op::View { who }),
        4 => who.clone().prop_map(|who| Op::Checkout { who }),
        3 => (who, item, 1..=3u32).prop_map(|(who, item, quantity)| Op::BuyNow { who, item, quantity }),
        1 => Just(Op::CloseMonth),
        1 => Just(Op::Restart),
    ]
}

/// One customer in the model.
#[derive(Debug, Default, Clone)]
struct Account {
    has_card: bool,
    cart: Vec<(usize, u32)>,
    orders: usize,
    units: u64,
}

/// The rules, written as plainly as possible.
#[derive(Debug, Clone)]
struct Model {
    month: u32,
    remaining: [u32; ITEMS],
    accounts: Vec<Account>,
    /// Customers logged in while this month was open. Every account's client stays logged in (and
    /// resumes after a restart), so that is every account.
    seen: BTreeSet<usize>,
    /// Customers who checked out in this month.
    bought: BTreeSet<usize>,
}

impl Model {
    fn quantity(&self, who: usize, item: usize) -> u32 {
        self.accounts[who]
            .cart
            .iter()
            .find(|(i, _)| *i == item)
            .map_or(0, |(_, q)| *q)
    }

    fn set_line(&mut self, who: usize, item: usize, quantity: u32) {
        let cart = &mut self.accounts[who].cart;
        match cart.iter().position(|(i, _)| *i == item) {
            Some(p) if quantity == 0 => {
                cart.remove(p);
            }
            Some(p) => cart[p].1 = quantity,
            None if quantity > 0 => cart.push((item, quantity)),
            None => {}
        }
    }

    /// Cuts the cart to what is available; returns the cut lines as (item, from, to).
    fn cut(&mut self, who: usize) -> Vec<(usize, u32, u32)> {
        let mut cuts = Vec::new();
        for (item, q) in self.accounts[who].cart.clone() {
            if q > self.remaining[item] {
                cuts.push((item, q, self.remaining[item]));
                self.set_line(who, item, self.remaining[item]);
            }
        }
        cuts
    }

    fn new_month(&mut self) {
        self.month += 1;
        self.remaining = [OFFERED; ITEMS];
        self.bought.clear();
        // Everyone logged in when the month opens is active in it.
        self.seen = (0..self.accounts.len()).collect();
    }

    /// Closes the month if the server's rules say so; returns whether it did.
    fn settle(&mut self) -> bool {
        let sold_out = self.remaining.iter().all(|r| *r == 0);
        // The server runs with --min-month-secs 0, so the minimum length never holds a month open.
        let all_done = !self.seen.is_empty()
            && self.seen.is_subset(&self.bought)
            && self.accounts.iter().all(|a| a.cart.is_empty());
        if sold_out || all_done {
            self.new_month();
        }
        sold_out || all_done
    }
}

/// The real system under test.
struct Real {
    server: Option<TestServer>,
    manufacturer: Option<TestManufacturer>,
    books: Arc<std::sync::Mutex<Books>>,
    observer: Client,
    clients: Vec<(Client, SessionToken)>,
    listings: Vec<ListingId>,
}

fn addr(real: &Real) -> String {
    real.server
        .as_ref()
        .map(|s| s.addr.clone())
        .unwrap_or_default()
}

fn lines() -> Vec<OfferLine> {
    ["a", "b", "c"]
        .iter()
        .map(|sku| offer_line(sku, OFFERED, 100))
        .collect()
}

/// An operator that only browses the catalog: not a customer, so it is never active in a month.
async fn new_observer(addr: &str) -> Client {
    connect_operator(addr).await
}

/// Waits until the catalog shows month `month` with its full offer.
async fn wait_for_offer(client: &Client, month: u32) -> CatalogSnapshot {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = catalog(client).await;
        if c.month.as_ref().map(|m| m.id.0) == Some(month)
            && c.items.iter().map(|i| i.remaining).sum::<u32>() == OFFERED * ITEMS as u32
        {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "month {month} never got its offer: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn code(r: &Result<Reply, ClientError>) -> Result<(), ErrorCode> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .server_error()
            .map(|e| e.code)
            .unwrap_or_else(|| panic!("transport error: {e}"))),
    }
}

/// Long months, and no minimum length, so that "every customer has bought" is modelled exactly.
fn config(c: &mut server::Config) {
    c.month_secs = 3600;
    c.min_month_secs = Some(0);
}

async fn run_case(random: Vec<Op>) {
    // Two customers, one with a card, so that every random step has someone to act on.
    let mut ops = vec![
        Op::SignUp,
        Op::SignUp,
        Op::SetCard {
            who: 0,
            valid: true,
        },
    ];
    ops.extend(random);
    let server = TestServer::start_with(config).await;
    let books = Arc::new(std::sync::Mutex::new(Books::default()));
    // It connects while month 1 is open, so its offer joins month 1.
    let manufacturer =
        TestManufacturer::connect(&server.addr, "m", script(lines()), books.clone()).await;
    let observer = new_observer(&server.addr).await;
    let first = wait_for_offer(&observer, 1).await;
    let mut by_sku: Vec<_> = first
        .items
        .iter()
        .map(|i| (i.sku.clone(), i.listing))
        .collect();
    by_sku.sort();
    let mut real = Real {
        server: Some(server),
        manufacturer: Some(manufacturer),
        books,
        observer,
        clients: Vec::new(),
        listings: by_sku.into_iter().map(|(_, l)| l).collect(),
    };
    let mut model = Model {
        month: 1,
        remaining: [OFFERED; ITEMS],
        accounts: Vec::new(),
        seen: BTreeSet::new(),
        bought: BTreeSet::new(),
    };

    for (step, op) in ops.into_iter().enumerate() {
        let n = model.accounts.len();
        let pick = |who: usize| if n == 0 { None } else { Some(who % n) };
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::SignUp => {
                let c = customer(&addr(&real)).await;
                c.client.call(RequestBody::RemoveCard).await.unwrap();
                real.clients.push((c.client, c.session.token));
                model.seen.insert(model.accounts.len());
                model.accounts.push(Account::default());
            }
            Op::SetCard { who, valid } => {
                let Some(who) = pick(who) else { continue };
                let number = if valid {
                    "4242 4242 4242 4242"
                } else {
                    "4242 4242 4242 4241"
                };
                let r = real.clients[who]
                    .0
                    .call(RequestBody::SetCard(CardInput {
                        number: number.into(),
                        exp_month: 1,
                        exp_year: 2040,
                        cvc: "321".into(),
                    }))
                    .await;
                if valid {
                    assert_eq!(code(&r), Ok(()), "{ctx}");
                    model.accounts[who].has_card = true;
                } else {
                    assert_eq!(code(&r), Err(ErrorCode::CardInvalid), "{ctx}");
                }
            }
            Op::RemoveCard { who } => {
                let Some(who) = pick(who) else { continue };
                real.clients[who]
                    .0
                    .call(RequestBody::RemoveCard)
                    .await
                    .unwrap();
                model.accounts[who].has_card = false;
            }
            Op::Add {
                who,
                item,
                quantity,
            } => {
                let Some(who) = pick(who) else { continue };
                let r = real.clients[who]
                    .0
                    .call(RequestBody::AddToCart {
                        listing: real.listings[item],
                        quantity,
                    })
                    .await;
                let wanted = model.quantity(who, item) + quantity;
                if wanted <= model.remaining[item] {
                    assert_eq!(code(&r), Ok(()), "{ctx}");
                    model.set_line(who, item, wanted);
                } else {
                    assert_eq!(code(&r), Err(ErrorCode::InvalidInput), "{ctx}");
                }
            }
            Op::Set {
                who,
                item,
                quantity,
            } => {
                let Some(who) = pick(who) else { continue };
                let r = real.clients[who]
                    .0
                    .call(RequestBody::SetCartQuantity {
                        listing: real.listings[item],
                        quantity,
                    })
                    .await;
                if quantity <= model.remaining[item] {
                    assert_eq!(code(&r), Ok(()), "{ctx}");
                    model.set_line(who, item, quantity);
                } else {
                    assert_eq!(code(&r), Err(ErrorCode::InvalidInput), "{ctx}");
                }
            }
            Op::Remove { who, item } => {
                let Some(who) = pick(who) else { continue };
                real.clients[who]
                    .0
                    .call(RequestBody::RemoveFromCart {
                        listing: real.listings[item],
                    })
                    .await
                    .unwrap();
                model.set_line(who, item, 0);
            }
            Op::Clear { who } => {
                let Some(who) = pick(who) else { continue };
                real.clients[who]
                    .0
                    .call(RequestBody::ClearCart)
                    .await
                    .unwrap();
                model.accounts[who].cart.clear();
            }
            Op::View { who } => {
                let Some(who) = pick(who) else { continue };
                let Reply::Cart(cart) = real.clients[who]
                    .0
                    .call(RequestBody::GetCart)
                    .await
                    .unwrap()
                else {
                    panic!("{ctx}")
                };
                let cuts = model.cut(who);
                let seen: Vec<(ListingId, u32, u32)> = cart
                    .adjustments
                    .iter()
                    .map(|a| (a.listing, a.from, a.to))
                    .collect();
                let want: Vec<(ListingId, u32, u32)> = cuts
                    .iter()
                    .map(|(i, f, t)| (real.listings[*i], *f, *t))
                    .collect();
                assert_eq!(seen, want, "{ctx}: adjustments");
                let lines: Vec<(ListingId, u32)> =
                    cart.lines.iter().map(|l| (l.listing, l.quantity)).collect();
                let model_lines: Vec<(ListingId, u32)> = model.accounts[who]
                    .cart
                    .iter()
                    .map(|(i, q)| (real.listings[*i], *q))
                    .collect();
                assert_eq!(lines, model_lines, "{ctx}: cart");
                let total: u64 = model.accounts[who]
                    .cart
                    .iter()
                    .map(|(_, q)| u64::from(*q) * 100)
                    .sum();
                assert_eq!(cart.total, Cents(total), "{ctx}: total");
            }
            Op::Checkout { who } => {
                let Some(who) = pick(who) else { continue };
                // Every item costs 100 cents: the customer confirms what its cart shows.
                let shown: u64 = model.accounts[who]
                    .cart
                    .iter()
                    .map(|(_, q)| u64::from(*q) * 100)
                    .sum();
                let r = real.clients[who]
                    .0
                    .call(RequestBody::Checkout {
                        checkout_id: CheckoutId::generate(),
                        lines: None,
                        confirmed_total: Cents(shown),
                    })
                    .await;
                let account = model.accounts[who].clone();
                if account.cart.is_empty() {
                    assert_eq!(code(&r), Err(ErrorCode::EmptyCart), "{ctx}");
                } else if !account.has_card {
                    assert_eq!(code(&r), Err(ErrorCode::CardRequired), "{ctx}");
                } else if account.cart.iter().any(|(i, q)| *q > model.remaining[*i]) {
                    assert_eq!(code(&r), Err(ErrorCode::OutOfStock), "{ctx}");
                    model.cut(who);
                } else {
                    let Ok(Reply::Order(order)) = r else {
                        panic!("{ctx}: {r:?}")
                    };
                    let units: u64 = account.cart.iter().map(|(_, q)| u64::from(*q)).sum();
                    assert_eq!(order.units(), units, "{ctx}");
                    assert_eq!(order.total, Cents(units * 100), "{ctx}");
                    for (i, q) in &account.cart {
                        model.remaining[*i] -= q;
                    }
                    let a = &mut model.accounts[who];
                    a.cart.clear();
                    a.orders += 1;
                    a.units += units;
                    model.bought.insert(who);
                }
            }
            Op::BuyNow {
                who,
                item,
                quantity,
            } => {
                let Some(who) = pick(who) else { continue };
                let r = real.clients[who]
                    .0
                    .call(tests::harness::buy_now(
                        real.listings[item],
                        quantity,
                        Cents(u64::from(quantity) * 100),
                    ))
                    .await;
                if !model.accounts[who].has_card {
                    assert_eq!(code(&r), Err(ErrorCode::CardRequired), "{ctx}");
                } else if quantity > model.remaining[item] {
                    assert_eq!(code(&r), Err(ErrorCode::OutOfStock), "{ctx}");
                } else {
                    assert_eq!(code(&r), Ok(()), "{ctx}");
                    model.remaining[item] -= quantity;
                    model.accounts[who].orders += 1;
                    model.accounts[who].units += u64::from(quantity);
                    model.bought.insert(who);
                }
            }
            Op::CloseMonth => {
                connect_operator(&addr(&real))
                    .await
                    .call(RequestBody::CloseMonth)
                    .await
                    .unwrap();
                model.new_month();
                wait_for_offer(&real.observer, model.month).await;
            }
            Op::Restart => {
                real.manufacturer = None;
                let server = real.server.take().expect("server");
                let server = server.restart(config).await;
                real.manufacturer = Some(
                    TestManufacturer::connect(
                        &server.addr,
                        "m",
                        script(lines()),
                        real.books.clone(),
                    )
                    .await,
                );
                real.observer = new_observer(&server.addr).await;
                for (client, token) in &mut real.clients {
                    let (c, _) = connect_customer(&server.addr).await;
                    c.call(RequestBody::Resume {
                        token: token.clone(),
                    })
                    .await
                    .unwrap();
                    *client = c;
                }
                // Who bought in the open month is loaded from the orders; everyone resumed.
                real.server = Some(server);
            }
        }
        if model.settle() {
            wait_for_offer(&real.observer, model.month).await;
        }
        // Stock and month agree after every step.
        let cat = catalog(&real.observer).await;
        assert_eq!(cat.month.map(|m| m.id.0), Some(model.month), "{ctx}: month");
        for (i, listing) in real.listings.iter().enumerate() {
            let seen = cat
                .items
                .iter()
                .find(|c| c.listing == *listing)
                .map_or(0, |c| c.remaining);
            assert_eq!(seen, model.remaining[i], "{ctx}: stock of item {i}");
        }
    }
    // Order history agrees for every account.
    for (who, (client, _)) in real.clients.iter().enumerate() {
        let Reply::Orders(orders) = client.call(RequestBody::Orders).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            orders.len(),
            model.accounts[who].orders,
            "orders of account {who}"
        );
        assert_eq!(
            orders.iter().map(OrderView::units).sum::<u64>(),
            model.accounts[who].units,
            "units of account {who}"
        );
    }
    let db = real.server.as_ref().map(|s| s.db.clone()).expect("db");
    let report = server::audit(&db, None).unwrap();
    assert!(report.ok, "{:?}", report.violations);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_distributor_never_diverges_from_a_plain_model_of_the_rules(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run_case(ops));
    }
}
