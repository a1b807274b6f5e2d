//! Exports of the live data model for other tools.
pub mod metrics;
pub mod pprof;
