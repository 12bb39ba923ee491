//! End-to-end tests, the random-traffic generator and the benchmark tools.
//!
//! # Layout
//! - [`child`]: re-run this test executable as a child process that a test can `kill -9`.
//! - [`cluster`]: what the cluster tests share: HAProxy from `deploy/haproxy.cfg`, the lease holder,
//!   units sold, a node's operator status.
//! - [`logins`]: what the login and sign-up tests share (clients at chosen addresses, requests).
//! - [`failover`]: a probe customer that times a fail-over from the outside.
//! - [`harness`]: start an in-process distributor on port 0 with a real SQLite file, and connect
//!   customers, manufacturers and operators to it.
//! - [`pg`]: a throwaway PostgreSQL on a free 127.0.0.1 port, for the cluster tests.
//! - [`traffic`]: the simulated customers behind `loadgen`.
//! - [`nats`]: a real nats-server with JetStream (from `deploy/nats-server.conf`), restartable.
//! - [`proxy`]: a fault-injecting TCP proxy (cut after N bytes, 1-byte writes, delays, cut all).
//! - [`tmux`]: a private tmux server for terminal tests: sessions, keys in, screens out.
//! - `src/bin/loadgen.rs`: the `loadgen` command line.
//! - `tests/*.rs`: the end-to-end tests, one file per promise.

pub mod child;
pub mod cluster;
pub mod failover;
pub mod harness;
pub mod logins;
pub mod nats;
pub mod pg;
pub mod proxy;
pub mod tmux;
pub mod traffic;
