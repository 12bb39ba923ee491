//! Unit tests of the pure market.
