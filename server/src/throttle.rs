//! Login and sign-up throttling that slows guessing without locking anyone out (NIST SP 800-63B
//! §5.2.2, OWASP's authentication cheat sheet).
//!
//! - **Per (account, address):** the first [`Limits::free_failures`] wrong passwords cost nothing;
//!   after that each attempt from that address for that account waits a delay that doubles with every
//!   further failure, up to [`Limits::max_delay_ms`]. It is a delay, never a lockout: once it has
//!   passed, the right password logs in. Someone guessing from another address does not slow the
//!   owner at all.
//! - **Per account:** a ceiling of [`Limits::account_ceiling`] failures within
//!   [`Limits::window_ms`], far above what a person reaches. Past it, only addresses that have logged
//!   in to the account before may still try, so a botnet spread over many addresses stops while the
//!   owner's usual address keeps working.
//! - **Per address:** token buckets for login attempts and for sign-ups, so one address cannot spray
//!   guesses over many accounts or open accounts in bulk. They refill continuously: a shared address
//!   (every local user of the shop is 127.0.0.1) is slowed, never shut out.
//!
//! A success clears the pair and the account's count. Failure counts and known addresses are kept in
//! SQLite (see `store::throttle`) so a restart forgets nothing; the buckets refill within a minute and
//! are kept in memory only. Time comes in as an argument, so all of this is plain, testable logic.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// The address a client is throttled under: its IPv4 address, or its IPv6 /64 (one household or
/// host usually holds a whole /64, so single IPv6 addresses would cost an attacker nothing).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The numbers the throttle works with. [`Limits::default`] gives the server's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wrong passwords per (account, address) before any delay.
    pub free_failures: u32,
    /// The first delay, once the free failures are used; it doubles with each further failure.
    pub base_delay_ms: u64,
    /// The longest delay between two attempts of one (account, address).
    pub max_delay_ms: u64,
    /// Failures per account within the window before unknown addresses are turned away.
    pub account_ceiling: u32,
    /// How long failures are remembered after the last one.
    pub window_ms: u64,
    /// Login attempts per address per minute (and the burst allowed at once).
    pub logins_per_minute: u32,
    /// Sign-ups per address per minute (and the burst allowed at once).
    pub signups_per_minute: u32,
}

impl Default for Limits {
    /// 5 free failures, delays doubling from 1 s to 60 s, a ceiling of 100 failures a day per
    /// account, 60 login attempts and 10 sign-ups per address per minute.
    fn default() -> Self {
        Limits {
            free_failures: 5,
            base_delay_ms: 1000,
            max_delay_ms: 60_000,
            account_ceiling: 100,
            window_ms: 24 * 3600 * 1000,
            logins_per_minute: 60,
            signups_per_minute: 10,
        }
    }
}

/// Failures of one (account, address) pair or of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    /// Consecutive failures.
    pub count: u32,
    /// When the last one happened.
    pub last_ms: u64,
}

/// Why an attempt must wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many wrong passwords for this account from this address: wait, then try again.
    Pair { retry_after_ms: u64 },
    /// The account passed its ceiling, and this address never logged in to it.
    Account { retry_after_ms: u64 },
    /// This address is making attempts (or sign-ups) too fast.
    Address { retry_after_ms: u64 },
}

impl Refusal {
    /// How long to wait before the next attempt can be accepted.
    pub fn retry_after_ms(self) -> u64 {
        match self {
            Refusal::Pair { retry_after_ms }
            | Refusal::Account { retry_after_ms }
            | Refusal::Address { retry_after_ms } => retry_after_ms,
        }
    }
}

/// A continuously refilling bucket of attempts.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// The most entries each map keeps; past it, the oldest are forgotten (a spray of made-up emails or
/// addresses must not grow memory without bound).
const MAX_ENTRIES: usize = 200_000;

/// The throttle's state.
#[derive(Debug, Default)]
pub struct Throttle {
    limits: Limits,
    pairs: HashMap<(String, String), Failures>,
    accounts: HashMap<String, Failures>,
    known: HashSet<(String, String)>,
    login_buckets: HashMap<String, Bucket>,
    signup_buckets: HashMap<String, Bucket>,
}

/// What a failed login changed, to be written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// The pair's failures now.
    pub pair: Failures,
    /// The account's failures now.
    pub account: Failures,
}

impl Throttle {
    /// An empty throttle with these limits.
    pub fn new(limits: Limits) -> Self {
        Throttle {
            limits,
            ..Throttle::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Restores a pair's failures (`address` empty: the account's) from the store.
    pub fn restore_failures(&mut self, account: &str, address: &str, failures: Failures) {
        if address.is_empty() {
            self.accounts.insert(account.to_string(), failures);
        } else {
            self.pairs
                .insert((account.to_string(), address.to_string()), failures);
        }
    }

    /// Restores an address that once logged in to an account.
    pub fn restore_known(&mut self, account: &str, address: &str) {
        self.known
            .insert((account.to_string(), address.to_string()));
    }

    /// The delay a pair with `count` failures must keep between attempts.
    fn delay_ms(&self, count: u32) -> u64 {
        if count < self.limits.free_failures {
            return 0;
        }
        let doublings = (count - self.limits.free_failures).min(30);
        self.limits
            .base_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.limits.max_delay_ms)
    }

    fn live(&self, failures: Option<&Failures>, now_ms: u64) -> Failures {
        match failures {
            Some(f) if now_ms.saturating_sub(f.last_ms) <= self.limits.window_ms => *f,
            _ => Failures::default(),
        }
    }

    /// Whether `address` may try a password for `account` now. Takes one login token of the address.
    pub fn check_login(
        &mut self,
        account: &str,
        address: &str,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let pair_key = (account.to_string(), address.to_string());
        let pair = self.live(self.pairs.get(&pair_key), now_ms);
        let wait_until = pair.last_ms + self.delay_ms(pair.count);
        if pair.count >= self.limits.free_failures && now_ms < wait_until {
            return Err(Refusal::Pair {
                retry_after_ms: wait_until - now_ms,
            });
        }
        let whole = self.live(self.accounts.get(account), now_ms);
        if whole.count >= self.limits.account_ceiling && !self.known.contains(&pair_key) {
            return Err(Refusal::Account {
                retry_after_ms: (whole.last_ms + self.limits.window_ms).saturating_sub(now_ms),
            });
        }
        let rate = self.limits.logins_per_minute;
        take(&mut self.login_buckets, address, rate, now_ms)
    }

    /// Whether `address` may sign up now. Takes one sign-up token of the address.
    pub fn check_signup(&mut self, address: &str, now_ms: u64) -> Result<(), Refusal> {
        let rate = self.limits.signups_per_minute;
        take(&mut self.signup_buckets, address, rate, now_ms)
    }

    /// Gives back the sign-up token of an attempt the server could not take (the hashing queue was
    /// full), so being told "busy, retry" does not also use up the address's sign-ups.
    pub fn refund_signup(&mut self, address: &str) {
        let capacity = f64::from(self.limits.signups_per_minute.max(1));
        if let Some(bucket) = self.signup_buckets.get_mut(address) {
            bucket.tokens = (bucket.tokens + 1.0).min(capacity);
        }
    }

    /// Records a wrong password; returns what to persist.
    pub fn login_failed(&mut self, account: &str, address: &str, now_ms: u64) -> FailureRecord {
        self.bound(now_ms);
        let pair_key = (account.to_string(), address.to_string());
        let mut pair = self.live(self.pairs.get(&pair_key), now_ms);
        pair.count = pair.count.saturating_add(1);
        pair.last_ms = now_ms;
        self.pairs.insert(pair_key, pair);
        let mut whole = self.live(self.accounts.get(account), now_ms);
        whole.count = whole.count.saturating_add(1);
        whole.last_ms = now_ms;
        self.accounts.insert(account.to_string(), whole);
        FailureRecord {
            pair,
            account: whole,
        }
    }

    /// Records a successful login: the pair and the account start afresh, and the address is known.
    pub fn login_succeeded(&mut self, account: &str, address: &str) {
        let pair_key = (account.to_string(), address.to_string());
        self.pairs.remove(&pair_key);
        self.accounts.remove(account);
        if self.known.len() < MAX_ENTRIES {
            self.known.insert(pair_key);
        }
    }

    /// Forgets every failure past the window: it counts for nothing now. The server calls this now
    /// and then, so that the maps hold only live failures however long it runs.
    pub fn forget_expired(&mut self, now_ms: u64) {
        let window = self.limits.window_ms;
        let fresh = |f: &Failures| now_ms.saturating_sub(f.last_ms) <= window;
        self.pairs.retain(|_, f| fresh(f));
        self.accounts.retain(|_, f| fresh(f));
    }

    /// Forgets expired failures, then the oldest ones, when a map grows past [`MAX_ENTRIES`].
    fn bound(&mut self, now_ms: u64) {
        if self.pairs.len() >= MAX_ENTRIES || self.accounts.len() >= MAX_ENTRIES {
            self.forget_expired(now_ms);
            forget_oldest(&mut self.pairs);
            forget_oldest(&mut self.accounts);
        }
    }
}

fn forget_oldest<K: Clone + std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut times: Vec<u64> = map.values().map(|f| f.last_ms).collect();
    let cut = times.len() / 4;
    let (_, nth, _) = times.select_nth_unstable(cut);
    let cutoff = *nth;
    map.retain(|_, f| f.last_ms > cutoff);
}

/// Takes a token from `address`'s bucket (`per_minute` tokens a minute, as many at once).
fn take(
    buckets: &mut HashMap<String, Bucket>,
    address: &str,
    per_minute: u32,
    now_ms: u64,
) -> Result<(), Refusal> {
    let capacity = f64::from(per_minute.max(1));
    let per_ms = capacity / 60_000.0;
    if buckets.len() >= MAX_ENTRIES {
        // A bucket that has refilled is the same as no bucket.
        buckets
            .retain(|_, b| b.tokens + (now_ms.saturating_sub(b.at_ms) as f64) * per_ms < capacity);
    }
    let bucket = buckets.entry(address.to_string()).or_insert(Bucket {
        tokens: capacity,
        at_ms: now_ms,
    });
    let refilled = bucket.tokens + (now_ms.saturating_sub(bucket.at_ms) as f64) * per_ms;
    bucket.tokens = refilled.min(capacity);
    bucket.at_ms = bucket.at_ms.max(now_ms);
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        return Ok(());
    }
    let retry_after_ms = ((1.0 - bucket.tokens) / per_ms).ceil() as u64;
    Err(Refusal::Address {
        retry_after_ms: retry_after_ms.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "203.0.113.7";
    const ATTACKER: &str = "198.51.100.9";

    fn throttle() -> Throttle {
        Throttle::new(Limits {
            logins_per_minute: 10_000,
            ..Limits::default()
        })
    }

    #[test]
    fn a_guesser_elsewhere_never_slows_the_owner() {
        let mut t = throttle();
        for i in 0..50 {
            let now = i * 61_000;
            if t.check_login("ada@x.io", ATTACKER, now).is_ok() {
                t.login_failed("ada@x.io", ATTACKER, now);
            }
        }
        assert_eq!(t.check_login("ada@x.io", OWNER, 50 * 61_000), Ok(()));
    }

    #[test]
    fn delays_grow_after_the_free_failures_and_end_once_waited_out() {
        let mut t = throttle();
        let mut now = 0;
        for _ in 0..5 {
            assert_eq!(t.check_login("ada@x.io", OWNER, now), Ok(()));
            t.login_failed("ada@x.io", OWNER, now);
        }
        let mut waits = Vec::new();
        for _ in 0..8 {
            let wait = t
                .check_login("ada@x.io", OWNER, now)
                .unwrap_err()
                .retry_after_ms();
            waits.push(wait);
            now += wait;
            assert_eq!(
                t.check_login("ada@x.io", OWNER, now),
                Ok(()),
                "after waiting it is allowed"
            );
            t.login_failed("ada@x.io", OWNER, now);
        }
        assert_eq!(
            waits,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
        );
        t.login_succeeded("ada@x.io", OWNER);
        assert_eq!(t.check_login("ada@x.io", OWNER, now), Ok(()));
    }

    #[test]
    fn past_the_account_ceiling_only_addresses_that_logged_in_before_may_try() {
        let mut t = throttle();
        t.login_succeeded("ada@x.io", OWNER);
        for i in 0..100u64 {
            let address = format!("10.0.{}.{}", i / 200, i % 200);
            t.login_failed("ada@x.io", &address, i);
        }
        assert!(matches!(
            t.check_login("ada@x.io", "10.9.9.9", 200),
            Err(Refusal::Account { .. })
        ));
        assert_eq!(t.check_login("ada@x.io", OWNER, 200), Ok(()));
        assert_eq!(t.check_login("bob@x.io", "10.9.9.9", 200), Ok(()));
        let day = Limits::default().window_ms;
        assert_eq!(t.check_login("ada@x.io", "10.9.9.9", 100 + day), Ok(()));
    }

    #[test]
    fn address_buckets_slow_bursts_and_refill() {
        let mut t = Throttle::new(Limits {
            signups_per_minute: 3,
            ..Limits::default()
        });
        for _ in 0..3 {
            assert_eq!(t.check_signup(OWNER, 0), Ok(()));
        }
        let wait = t.check_signup(OWNER, 0).unwrap_err();
        assert_eq!(
            wait,
            Refusal::Address {
                retry_after_ms: 20_000
            }
        );
        assert_eq!(t.check_signup(ATTACKER, 0), Ok(()));
        assert_eq!(t.check_signup(OWNER, 20_000), Ok(()));
        t.refund_signup(OWNER);
        assert_eq!(
            t.check_signup(OWNER, 20_000),
            Ok(()),
            "a refunded sign-up can be made again"
        );
        assert!(t.check_signup(OWNER, 20_000).is_err());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_bit_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(
            address_key("::ffff:127.0.0.1".parse().unwrap()),
            "127.0.0.1"
        );
    }

    #[test]
    fn a_restored_pair_is_still_delayed() {
        let mut t = throttle();
        t.restore_failures(
            "ada@x.io",
            ATTACKER,
            Failures {
                count: 9,
                last_ms: 1000,
            },
        );
        assert_eq!(
            t.check_login("ada@x.io", ATTACKER, 2000),
            Err(Refusal::Pair {
                retry_after_ms: 15_000
            })
        );
    }

    #[test]
    fn failures_past_the_window_are_forgotten_and_live_ones_still_delay() {
        let mut t = throttle();
        let window = t.limits().window_ms;
        let nine = |last_ms| Failures { count: 9, last_ms };
        t.restore_failures("old@x.io", ATTACKER, nine(1_000));
        t.restore_failures("new@x.io", ATTACKER, nine(window));
        t.forget_expired(window + 2_000);
        assert_eq!(t.pairs.len(), 1);
        assert!(t.check_login("old@x.io", ATTACKER, window + 2_000).is_ok());
        assert!(t.check_login("new@x.io", ATTACKER, window + 2_000).is_err());
    }
}
