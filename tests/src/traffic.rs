//! Simulated customers for `loadgen`.
