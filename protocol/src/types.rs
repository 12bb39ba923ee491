//! Ids, money and quantities. Every id is a newtype so that an order id can never be passed where an
//! account id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_newtype!(
    /// Correlates a request with its response. Chosen by the client, unique per connection.
    RequestId(u64),
    "req-"
);
id_newtype!(
    /// A customer account.
    AccountId(u64),
    "acct-"
);
id_newtype!(
    /// A manufacturer, as registered by the distributor under its stable name.
    ManufacturerId(u32),
    "mfr-"
);
id_newtype!(
    /// One product from one manufacturer. Stable across months, so a cart line survives a month change.
    /// The same product from two manufacturers is two listings.
    ListingId(u32),
    "lst-"
);
id_newtype!(
    /// An order, created by one successful checkout.
    OrderId(u64),
    "ord-"
);
id_newtype!(
    /// A selling month. Month 1 is the first month the distributor ever opened.
    MonthId(u32),
    "month-"
);
id_newtype!(
    /// The position of a notice in one manufacturer's outbox. Starts at 1 and has no gaps.
    NoticeSeq(u64),
    "seq-"
);

/// A 128-bit id the client chooses for a checkout. Retrying a checkout with the same id returns the
/// original result and never creates a second order.
///
/// Ids should be time-ordered (milliseconds in the high bits, like UUIDv7): random ids scatter inserts
/// across the unique index and halve the distributor's throughput.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct CheckoutId(pub u128);

impl CheckoutId {
    /// A fresh time-ordered id: 48 bits of Unix milliseconds, then 80 random bits.
    pub fn generate() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self::from_parts(millis, rand::random::<u128>())
    }

    /// Builds an id from a millisecond timestamp (high 48 bits) and entropy (low 80 bits), so that a
    /// seeded generator can make reproducible ids.
    pub fn from_parts(millis: u64, entropy: u128) -> Self {
        let high = (millis as u128 & 0xFFFF_FFFF_FFFF) << 80;
        let low = entropy & ((1u128 << 80) - 1);
        CheckoutId(high | low)
    }

    /// The id as 32 lowercase hex digits, the form used in logs and in `--acked` files.
    pub fn to_hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parses the 32-hex-digit form written by [`CheckoutId::to_hex`].
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(CheckoutId)
    }
}

impl fmt::Display for CheckoutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Money in integer cents. There are no floats anywhere near money.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Cents(pub u64);

impl Cents {
    /// `self × quantity`, or `None` on overflow.
    pub fn times(self, quantity: u32) -> Option<Cents> {
        self.0.checked_mul(u64::from(quantity)).map(Cents)
    }

    /// `self + other`, or `None` on overflow.
    pub fn plus(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

impl fmt::Display for Cents {
    /// Formats as dollars and cents, for example `12.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A session token: 32 random bytes as 64 hex digits. The server stores only its hash.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionToken(pub String);

impl fmt::Debug for SessionToken {
    /// Never prints the secret, so a token cannot leak through a `{:?}` in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_ids_sort_by_time_and_round_trip_through_hex() {
        let early = CheckoutId::from_parts(1_000, u128::MAX);
        let late = CheckoutId::from_parts(1_001, 0);
        assert!(early < late);
        assert_eq!(CheckoutId::from_hex(&early.to_hex()), Some(early));
        assert_eq!(CheckoutId::from_hex("xyz"), None);
    }

    #[test]
    fn cents_display_as_dollars_and_never_overflow_silently() {
        assert_eq!(Cents(1205).to_string(), "12.05");
        assert_eq!(Cents(7).to_string(), "0.07");
        assert_eq!(Cents(u64::MAX).times(2), None);
        assert_eq!(Cents(250).times(3), Some(Cents(750)));
    }

    #[test]
    fn request_debug_never_prints_a_password() {
        use crate::message::*;
        let requests = [
            RequestBody::LogIn {
                email: "a@b.io".into(),
                password: "hunter2hunter2".into(),
            },
            RequestBody::DeleteAccount {
                password: "hunter2hunter2".into(),
            },
            RequestBody::SignUp(SignUp {
                first_name: "A".into(),
                last_name: "B".into(),
                email: "a@b.io".into(),
                password: "hunter2hunter2".into(),
            }),
            RequestBody::UpdateAccount(AccountUpdate {
                password: Some(("hunter2hunter2".into(), "hunter3hunter3".into())),
                ..AccountUpdate::default()
            }),
        ];
        for r in requests {
            let shown = format!("{r:?}");
            assert!(!shown.contains("hunter"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    #[test]
    fn session_token_debug_hides_the_secret() {
        let token = SessionToken("deadbeef".into());
        assert!(!format!("{token:?}").contains("deadbeef"));
    }
}
