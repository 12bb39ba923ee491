//! The in-process test harness. Filled in with the distributor core.
