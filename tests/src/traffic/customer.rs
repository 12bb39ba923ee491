//! One simulated customer: its own connection, a fresh account with the test card, and the shopping
//! loops (`mixed` and `checkout`).
//!
//! A customer keeps a [`StockView`] fresh from the live pushes its `Catalog` request subscribed it to,
//! so it rarely asks for what is gone. When the connection breaks it reconnects, resumes its session
//! and retries an unanswered checkout under the same checkout id, which the server deduplicates: a
//! checkout either ends confirmed, rejected, or (after the retries run out) counted as uncertain.

use super::acked::AckedLine;
use super::ledger::{Check, Confirmed, Ledger};
use super::stats::{is_business_rejection, rejection};
use super::stock::StockView;
use super::Shared;
use protocol::paging::next_catalog_page;
use protocol::{
    CardInput, CartItem, CartView, Cents, CheckoutId, ClientError, DirectClient, ErrorCode, Event,
    Hello, ListingId, MonthState, Reply, RequestBody, Role, SessionToken, SignUp, PROTOCOL_VERSION,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The card every simulated customer attaches (a well-known test number that passes Luhn).
pub const TEST_CARD: &str = "4242 4242 4242 4242";
/// The password of every simulated account.
pub const PASSWORD: &str = "loadgen-password";
/// Most lines in one checkout.
pub const MAX_LINES: usize = 3;
/// Most units of one listing in one line.
pub const MAX_QUANTITY: u32 = 2;

/// Reconnect attempts after a broken connection; the backoff doubles from 100 ms (about 3 s in all).
const RECONNECT_ATTEMPTS: u32 = 5;
/// Times an unanswered checkout is re-sent under the same id after reconnecting.
const CHECKOUT_RETRIES: u32 = 3;
/// How long a customer with nothing to buy waits for a push before asking again.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// The handshake every customer connection sends.
pub fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role: Role::Customer,
        client: format!("loadgen/{}", env!("CARGO_PKG_VERSION")),
        name: None,
        key: None,
    }
}

/// A unique email: the seed and index make it reproducible, the run nonce keeps reruns against the
/// same database from colliding.
pub fn email(seed: u64, nonce: &str, index: u32) -> String {
    format!("lg{seed}.{nonce}.{index}@loadgen.test")
}

/// The rng of customer `index` in a run with `seed`: every choice the customer makes comes from it.
pub fn customer_rng(seed: u64, index: u32) -> StdRng {
    // Mix the seed so that (seed 1, index 2) and (seed 2, index 1) do not share a stream.
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(index))
}

/// Who a customer is within a run.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The run's seed.
    pub seed: u64,
    /// The run's nonce.
    pub nonce: String,
    /// Position within the run, from 0.
    pub index: u32,
}

/// What a customer buys in `checkout` mode.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Put one unit of this listing in every checkout (the hot-product benchmark).
    pub hot: Option<ListingId>,
    /// Never buy these (the fan-out probe's own listing).
    pub exclude: Vec<ListingId>,
}

/// Chooses the lines of one "buy now" checkout: 1 to [`MAX_LINES`] distinct in-stock lines, the first
/// one being the hot listing when the plan has one. Empty when nothing suitable is in stock.
pub fn choose_lines<R: Rng>(view: &StockView, rng: &mut R, plan: &Plan) -> Vec<CartItem> {
    let Some(hot) = plan.hot else {
        return view.pick_lines(rng, MAX_LINES, MAX_QUANTITY, &plan.exclude);
    };
    if view.remaining(hot) == 0 {
        return Vec::new();
    }
    let mut lines = vec![CartItem {
        listing: hot,
        quantity: 1,
    }];
    let extra = rng.random_range(0..MAX_LINES);
    let mut exclude = plan.exclude.clone();
    exclude.push(hot);
    for _ in 0..extra {
        let Some((listing, remaining)) = view.pick_listing(rng, &exclude) else {
            break;
        };
        exclude.push(listing);
        let quantity = rng.random_range(1..=MAX_QUANTITY.min(remaining));
        lines.push(CartItem { listing, quantity });
    }
    lines
}

/// One step of the `mixed` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fetch the catalog.
    Browse,
    /// Add a random in-stock listing.
    Add,
    /// Change a cart line's quantity.
    ChangeQuantity,
    /// Remove a cart line.
    Remove,
    /// Buy the cart.
    Checkout,
}

/// Picks the next `mixed` step. With an empty cart only browsing and adding make sense.
pub fn pick_action<R: Rng>(rng: &mut R, cart_lines: usize) -> Action {
    let roll = rng.random_range(0..100u32);
    if cart_lines == 0 {
        return if roll < 20 {
            Action::Browse
        } else {
            Action::Add
        };
    }
    match roll {
        0..10 => Action::Browse,
        10..40 => Action::Add,
        40..55 => Action::ChangeQuantity,
        55..65 => Action::Remove,
        _ => Action::Checkout,
    }
}

/// How a checkout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server confirmed it.
    Bought(Confirmed),
    /// A business rejection.
    Rejected(ErrorCode),
    /// No usable answer (transport or protocol failure).
    Failed,
}

/// What can stop a customer from being set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The server failed or refused a request.
    #[error("{request}: {source}")]
    Request {
        /// Which request.
        request: &'static str,
        /// Why.
        source: ClientError,
    },
    /// The server answered with the wrong kind of reply.
    #[error("{0}: unexpected reply")]
    UnexpectedReply(&'static str),
}

/// A connected, signed-up customer.
pub struct Customer {
    /// Position within the run.
    pub index: u32,
    /// The local address it connects from, every time (see [`super::source`]).
    source: Option<std::net::SocketAddr>,
    /// Owned by this customer alone: pushes are read while it waits for its answers, or drained.
    client: DirectClient,
    token: SessionToken,
    rng: StdRng,
    stock: StockView,
    /// The cart as the server last reported it.
    cart: BTreeMap<ListingId, u32>,
    /// The cart's total as the server last reported it: what a checkout of the cart confirms.
    cart_total: Cents,
    month_closed: bool,
    ledger: Ledger,
    /// Reconnecting failed; the customer stops.
    broken: bool,
    /// Errors logged so far (only the first few are, so a failing server does not flood stderr).
    logged_errors: u32,
    /// The request for the next catalog page, while the view is missing some.
    more_catalog: Option<RequestBody>,
}

async fn expect(
    client: &mut DirectClient,
    request: &'static str,
    body: RequestBody,
) -> Result<Reply, SetupError> {
    client
        .call(body)
        .await
        .map_err(|source| SetupError::Request { request, source })
}

/// Signs up, waiting and retrying (up to 20 times) while the distributor's hashing queue answers
/// `Busy`, as a person would after "try again in a moment".
async fn sign_up_retrying_when_busy(
    client: &mut DirectClient,
    body: RequestBody,
) -> Result<Reply, SetupError> {
    let mut tries = 0u64;
    loop {
        match client.call_ref(&body).await {
            Err(e) if tries < 20 && e.server_error().is_some_and(|e| e.code == ErrorCode::Busy) => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            result => {
                return result.map_err(|source| SetupError::Request {
                    request: "sign up",
                    source,
                })
            }
        }
    }
}

impl Customer {
    /// Connects, signs up a fresh account, attaches the test card (if `with_card`) and fetches the
    /// catalog, which also subscribes the connection to live stock.
    pub async fn sign_up(
        addr: &str,
        tls_ca: Option<&std::path::Path>,
        identity: &Identity,
        with_card: bool,
    ) -> Result<Customer, SetupError> {
        let from = super::source::source_for_server(addr, identity.index).await;
        let mut client = DirectClient::connect_from(addr, from, tls_ca, hello())
            .await
            .map_err(|source| SetupError::Request {
                request: "connect",
                source,
            })?;
        let sign_up = RequestBody::SignUp(SignUp {
            first_name: "Load".into(),
            last_name: format!("Customer {}", identity.index),
            email: email(identity.seed, &identity.nonce, identity.index),
            password: PASSWORD.into(),
        });
        let token = match sign_up_retrying_when_busy(&mut client, sign_up).await? {
            Reply::Session(session) => session.token,
            _ => return Err(SetupError::UnexpectedReply("sign up")),
        };
        if with_card {
            let card = RequestBody::SetCard(CardInput {
                number: TEST_CARD.into(),
                exp_month: 12,
                exp_year: 2035,
                cvc: "123".into(),
            });
            match expect(&mut client, "set card", card).await? {
                Reply::Account(_) => {}
                _ => return Err(SetupError::UnexpectedReply("set card")),
            }
        }
        let mut customer = Customer {
            index: identity.index,
            source: from,
            client,
            token,
            rng: customer_rng(identity.seed, identity.index),
            stock: StockView::default(),
            cart: BTreeMap::new(),
            cart_total: Cents(0),
            month_closed: false,
            ledger: Ledger::default(),
            broken: false,
            logged_errors: 0,
            more_catalog: None,
        };
        match expect(&mut customer.client, "catalog", RequestBody::Catalog).await? {
            Reply::Catalog(snapshot) => customer.take_snapshot(&snapshot),
            _ => return Err(SetupError::UnexpectedReply("catalog")),
        }
        while let Some(request) = customer.more_catalog.take() {
            match expect(&mut customer.client, "catalog page", request).await? {
                Reply::Catalog(page) => customer.take_page(&page),
                _ => return Err(SetupError::UnexpectedReply("catalog page")),
            }
        }
        Ok(customer)
    }

    /// What this customer knows of the stock.
    pub fn stock(&self) -> &StockView {
        &self.stock
    }

    /// What this customer was told it bought.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether the customer gave up after failing to reconnect.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The next push of this connection, waiting for one (watchers read them directly). `None`
    /// once the connection has ended. Safe to drop under a timeout.
    pub(super) async fn next_event(&mut self) -> Option<Event> {
        self.client.next_event().await
    }

    /// Applies every push that has arrived, without waiting.
    pub fn drain_events(&mut self) {
        while let Some(event) = self.client.try_event() {
            self.apply_event(&event);
        }
    }

    /// Applies one push to the stock view and month state.
    pub fn apply_event(&mut self, event: &Event) {
        match event {
            Event::Stock(delta) => self.stock.apply_delta(delta),
            Event::Catalog(snapshot) => self.take_snapshot(snapshot),
            Event::MonthOpened(_) => self.month_closed = false,
            Event::MonthClosed { .. } => self.month_closed = true,
            _ => {}
        }
    }

    /// Takes a first catalog page (a reply to `Catalog`, or an `Event::Catalog`): the view starts
    /// again from it, and the rest is fetched by [`Customer::fetch_more_catalog`].
    fn take_snapshot(&mut self, snapshot: &protocol::CatalogSnapshot) {
        self.stock.replace(snapshot);
        self.month_closed = !matches!(&snapshot.month, Some(m) if m.state == MonthState::Open);
        self.more_catalog = next_catalog_page(snapshot);
    }

    /// Takes a later catalog page.
    fn take_page(&mut self, page: &protocol::CatalogSnapshot) {
        self.stock.merge_page(page);
        self.more_catalog = next_catalog_page(page);
    }

    /// Fetches the catalog pages still missing after a first page. Returns false on failure.
    pub async fn fetch_more_catalog(&mut self, shared: &Shared) -> bool {
        while let Some(request) = self.more_catalog.take() {
            match self.call(shared, request).await {
                Ok(Reply::Catalog(page)) => self.take_page(&page),
                Ok(_) => {
                    shared.stats.error();
                    return false;
                }
                Err(e) => {
                    if let Some(code) = rejection(&e) {
                        shared.stats.rejected(code);
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Fetches the catalog again. Returns false on failure (already counted).
    pub async fn browse(&mut self, shared: &Shared) -> bool {
        match self.call(shared, RequestBody::Catalog).await {
            Ok(Reply::Catalog(snapshot)) => {
                self.take_snapshot(&snapshot);
                self.fetch_more_catalog(shared).await
            }
            Ok(_) => {
                shared.stats.error();
                false
            }
            Err(e) => {
                if let Some(code) = rejection(&e) {
                    shared.stats.rejected(code);
                }
                false
            }
        }
    }

    /// Waits up to [`IDLE_WAIT`] (never past `deadline`) for a push, and applies it.
    pub async fn wait_for_push(&mut self, shared: &Shared, deadline: Instant) {
        let until = deadline.min(Instant::now() + IDLE_WAIT);
        match tokio::time::timeout_at(until.into(), self.client.next_event()).await {
            Ok(Some(event)) => self.apply_event(&event),
            // The event stream ends when the connection does.
            Ok(None) => {
                shared.stats.error();
                self.recover(shared).await;
            }
            Err(_) => {}
        }
    }

    /// `checkout` mode: "buy now" checkouts of 1–3 in-stock lines, one round trip each, as fast as
    /// answers come, until `deadline`.
    pub async fn shop_checkout(&mut self, shared: &Shared, deadline: Instant, plan: &Plan) {
        while Instant::now() < deadline && !self.broken {
            self.drain_events();
            self.fetch_more_catalog(shared).await;
            if self.month_closed {
                self.wait_for_push(shared, deadline).await;
                continue;
            }
            let lines = choose_lines(&self.stock, &mut self.rng, plan);
            if lines.is_empty() {
                // Nothing to buy as far as this customer knows: wait for a push, then look again.
                self.wait_for_push(shared, deadline).await;
                if choose_lines(&self.stock, &mut self.rng, plan).is_empty() {
                    self.browse(shared).await;
                }
                continue;
            }
            self.checkout(shared, Some(lines)).await;
        }
    }

    /// `mixed` mode: browse, add, change quantities, remove and buy the cart at random until
    /// `deadline`.
    pub async fn shop_mixed(&mut self, shared: &Shared, deadline: Instant) {
        while Instant::now() < deadline && !self.broken {
            self.drain_events();
            self.fetch_more_catalog(shared).await;
            if self.month_closed {
                self.wait_for_push(shared, deadline).await;
                continue;
            }
            match pick_action(&mut self.rng, self.cart.len()) {
                Action::Browse => {
                    self.browse(shared).await;
                }
                Action::Add => match self.stock.pick_listing(&mut self.rng, &[]) {
                    Some((listing, remaining)) => {
                        let quantity = self.rng.random_range(1..=MAX_QUANTITY.min(remaining));
                        self.cart_request(shared, RequestBody::AddToCart { listing, quantity })
                            .await;
                    }
                    None => {
                        self.wait_for_push(shared, deadline).await;
                        self.browse(shared).await;
                    }
                },
                Action::ChangeQuantity => {
                    if let Some(listing) = self.random_cart_line() {
                        let quantity = self.rng.random_range(1..=MAX_QUANTITY + 1);
                        let body = RequestBody::SetCartQuantity { listing, quantity };
                        self.cart_request(shared, body).await;
                    }
                }
                Action::Remove => {
                    if let Some(listing) = self.random_cart_line() {
                        self.cart_request(shared, RequestBody::RemoveFromCart { listing })
                            .await;
                    }
                }
                Action::Checkout => {
                    self.checkout(shared, None).await;
                }
            }
        }
    }

    fn random_cart_line(&mut self) -> Option<ListingId> {
        if self.cart.is_empty() {
            return None;
        }
        let n = self.rng.random_range(0..self.cart.len());
        self.cart.keys().nth(n).copied()
    }

    async fn cart_request(&mut self, shared: &Shared, body: RequestBody) {
        match self.call(shared, body).await {
            Ok(Reply::Cart(view)) => self.take_cart(&view),
            Ok(_) => shared.stats.error(),
            Err(e) => {
                if let Some(code) = rejection(&e) {
                    shared.stats.rejected(code);
                }
            }
        }
    }

    fn take_cart(&mut self, view: &CartView) {
        self.cart = view
            .lines
            .iter()
            .map(|line| (line.listing, line.quantity))
            .collect();
        self.cart_total = view.total;
    }

    /// One checkout: `None` buys the cart, `Some(lines)` buys exactly those lines. Counts the outcome,
    /// and writes confirmed ones to the ledger and the acked log.
    pub async fn checkout(&mut self, shared: &Shared, lines: Option<Vec<CartItem>>) -> Outcome {
        let checkout_id = CheckoutId::from_parts(unix_millis(), self.rng.random::<u128>());
        let buys_cart = lines.is_none();
        // The total this customer was shown: the cart's, or the catalog's prices for its own lines.
        let confirmed_total = match &lines {
            Some(lines) => self.stock.total_of(lines),
            None => self.cart_total,
        };
        // Built once: a retry re-sends the same body, borrowed.
        let body = RequestBody::Checkout {
            checkout_id,
            lines,
            confirmed_total,
        };
        let sent = Instant::now();
        for attempt in 0..=CHECKOUT_RETRIES {
            match self.client.call_ref(&body).await {
                Ok(Reply::Order(order)) => {
                    shared.stats.request();
                    let confirmed = Confirmed {
                        order: order.id,
                        checkout_id,
                        units: order.units(),
                    };
                    // Only first-try answers measure the checkout itself, not a reconnect.
                    let latency = (attempt == 0).then(|| sent.elapsed());
                    shared.stats.checkout_ok(confirmed.units, latency);
                    self.ledger.confirm(confirmed);
                    if let Some(log) = &shared.acked {
                        let line = AckedLine {
                            checkout_id,
                            order: order.id,
                            units: confirmed.units,
                        };
                        if log.record(&line).is_err() {
                            shared.stats.error();
                        }
                    }
                    if buys_cart {
                        self.cart.clear();
                        self.cart_total = Cents(0);
                    }
                    return Outcome::Bought(confirmed);
                }
                Ok(_) => {
                    shared.stats.error();
                    return Outcome::Failed;
                }
                Err(ClientError::Server(e)) => {
                    shared.stats.request();
                    if !is_business_rejection(e.code) {
                        // The server says nothing changed (for example `Internal`).
                        shared.stats.error();
                        self.log_error("checkout", &ClientError::Server(e));
                        return Outcome::Failed;
                    }
                    let code = e.code;
                    shared.stats.checkout_rejected(code);
                    match code {
                        ErrorCode::OutOfStock => {
                            self.stock.apply_shortages(&e.shortages);
                            if buys_cart {
                                // The server cut the cart to what is available.
                                for s in &e.shortages {
                                    match s.available {
                                        0 => self.cart.remove(&s.listing),
                                        n => self.cart.insert(s.listing, n),
                                    };
                                }
                            }
                        }
                        ErrorCode::MonthClosed => self.month_closed = true,
                        ErrorCode::EmptyCart => self.cart.clear(),
                        _ => {}
                    }
                    // A price change, or a cart cut for stock, says what the lines cost now.
                    if let Some(view) = &e.repriced {
                        self.stock.apply_prices(&view.lines);
                        if buys_cart {
                            self.take_cart(view);
                        }
                    }
                    return Outcome::Rejected(code);
                }
                Err(e) => {
                    // No answer: the checkout may or may not have happened. Reconnect and ask again
                    // under the same id; the server answers with the original outcome.
                    shared.stats.error();
                    self.log_error("checkout", &e);
                    if !self.recover(shared).await {
                        break;
                    }
                }
            }
        }
        self.ledger.uncertain();
        Outcome::Failed
    }

    /// Sends one request and counts it: answered, or an error (business rejections are left to the
    /// caller to count). A transport failure triggers a reconnect.
    async fn call(&mut self, shared: &Shared, body: RequestBody) -> Result<Reply, ClientError> {
        let result = self.client.call(body).await;
        match &result {
            Ok(_) => shared.stats.request(),
            Err(e @ ClientError::Server(_)) => {
                shared.stats.request();
                if rejection(e).is_none() {
                    shared.stats.error();
                    self.log_error("request", e);
                }
            }
            Err(e) => {
                shared.stats.error();
                self.log_error("request", e);
                self.recover(shared).await;
            }
        }
        result
    }

    fn log_error(&mut self, what: &str, error: &ClientError) {
        const LOGGED_PER_CUSTOMER: u32 = 3;
        if self.logged_errors < LOGGED_PER_CUSTOMER {
            self.logged_errors += 1;
            tracing::warn!(customer = self.index, "{what} failed: {error}");
        }
    }

    /// Reconnects and resumes the session, then re-subscribes to stock. Bounded: a few attempts with
    /// a doubling backoff. On failure the customer is marked broken and its loops end.
    async fn recover(&mut self, shared: &Shared) -> bool {
        if !self.client.is_closed() {
            return true;
        }
        for attempt in 0..RECONNECT_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            let Ok(mut client) = DirectClient::connect_from(
                &shared.addr,
                self.source,
                shared.tls_ca.as_deref(),
                hello(),
            )
            .await
            else {
                continue;
            };
            let resume = RequestBody::Resume {
                token: self.token.clone(),
            };
            if let Ok(Reply::Session(_)) = client.call(resume).await {
                self.client = client;
                if let Ok(Reply::Catalog(snapshot)) = self.client.call(RequestBody::Catalog).await {
                    self.take_snapshot(&snapshot);
                }
                // Fetched by the shopping loop, through `call`, which counts and recovers.
                return true;
            }
        }
        self.broken = true;
        false
    }

    /// Fetches this customer's orders and checks them against its ledger.
    pub async fn verify(&mut self, shared: &Shared) -> Check {
        let who = format!("customer {}", self.index);
        for _ in 0..2 {
            match self.client.call(RequestBody::Orders).await {
                Ok(Reply::Orders(orders)) => return self.ledger.check(&who, &orders),
                Ok(_) => return Check::unverifiable(&who, "unexpected reply to Orders"),
                Err(ClientError::Server(e)) => return Check::unverifiable(&who, &e.to_string()),
                Err(_) => {
                    if !self.recover(shared).await {
                        break;
                    }
                }
            }
        }
        Check::unverifiable(&who, "connection lost")
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(levels: &[(u32, u32)]) -> StockView {
        StockView::from_snapshot(&crate::traffic::stock::tests::snapshot(levels, 1))
    }

    #[test]
    fn every_customer_of_a_seed_replays_the_same_choices_and_customers_differ() {
        let stock = view(&[(1, 50), (2, 50), (3, 50), (4, 50), (5, 50)]);
        let run = |seed, index| {
            let mut rng = customer_rng(seed, index);
            let actions: Vec<Action> = (0..40).map(|i| pick_action(&mut rng, i % 3)).collect();
            let lines: Vec<Vec<CartItem>> = (0..40)
                .map(|_| choose_lines(&stock, &mut rng, &Plan::default()))
                .collect();
            (actions, lines)
        };
        assert_eq!(run(7, 3), run(7, 3));
        assert_ne!(run(7, 3), run(7, 4));
        assert_ne!(run(7, 3), run(8, 3));
        assert_ne!(run(1, 2), run(2, 1));
    }

    #[test]
    fn a_hot_plan_puts_one_unit_of_the_hot_listing_first_in_every_checkout() {
        let stock = view(&[(1, 50), (2, 50), (3, 50), (4, 50)]);
        let plan = Plan {
            hot: Some(ListingId(1)),
            exclude: vec![],
        };
        let mut rng = customer_rng(1, 0);
        let mut sizes = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let lines = choose_lines(&stock, &mut rng, &plan);
            assert_eq!(
                lines[0],
                CartItem {
                    listing: ListingId(1),
                    quantity: 1
                }
            );
            assert!(lines[1..].iter().all(|l| l.listing != ListingId(1)));
            sizes.insert(lines.len());
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn a_hot_plan_buys_nothing_once_the_hot_listing_is_sold_out() {
        let stock = view(&[(1, 0), (2, 50)]);
        let plan = Plan {
            hot: Some(ListingId(1)),
            exclude: vec![],
        };
        assert!(choose_lines(&stock, &mut customer_rng(1, 0), &plan).is_empty());
    }

    #[test]
    fn an_empty_cart_only_browses_or_adds() {
        let mut rng = customer_rng(3, 3);
        for _ in 0..500 {
            assert!(matches!(
                pick_action(&mut rng, 0),
                Action::Browse | Action::Add
            ));
        }
    }

    #[test]
    fn emails_are_unique_per_index_seed_and_nonce() {
        let a = email(1, "n1", 0);
        assert_ne!(a, email(1, "n1", 1));
        assert_ne!(a, email(2, "n1", 0));
        assert_ne!(a, email(1, "n2", 0));
        assert!(a.ends_with("@loadgen.test"));
    }
}
