//! Exports of the live data model for other tools.
pub mod html;
pub mod metrics;
pub mod pprof;
