//! The end-to-end suite, as one test binary: one link instead of twenty, so the suite builds in a
//! fraction of the disk and time. Each module is one area, named after what it covers. Two areas stay
//! binaries of their own, because they measure this very process and must not share it with sibling
//! tests: the sign-up flood (`tests/flood.rs`, latency) and hostile input (`tests/hostile.rs`, memory).
//!
//! A test that needs a real process re-runs this executable for one `#[ignore]`d entry point, named
//! with its module path (`crash::child_distributor_process`); see `tests::child`.

mod checkout;
mod cluster;
mod crash;
mod database_file;
mod distributor;
mod edges;
mod faults;
mod first_use;
mod gateway;
mod identity;
mod jetstream;
mod loadgen;
mod logins;
mod manufacturers;
mod model;
mod months;
mod operator;
mod paging;
mod security;
mod shop_tmux;
mod ssh;
mod validation;
