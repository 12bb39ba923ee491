//! End-to-end tests, the random-traffic generator and the benchmark tools.
//!
//! # Layout
//! - [`harness`]: start an in-process distributor on port 0 with a real SQLite file, and connect
//!   customers, manufacturers and operators to it.
//! - [`traffic`]: the simulated customers behind `loadgen`.
//! - `src/bin/loadgen.rs`: the `loadgen` command line.
//! - `tests/*.rs`: the end-to-end tests, one file per promise.

pub mod harness;
pub mod traffic;
