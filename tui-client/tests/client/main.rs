//! The shop's integration tests, as one test binary (one link instead of three): the command line,
//! the connection task's resume and TLS, and a checkout retried after a lost reply.

mod checkout_retry;
mod cli;
mod net_resume;
