//! mapwatch: attach to a live process and see which locks its goroutines wait
//! on, which map keys are hot and where compare-and-swap fails.
//!
//! The pipeline, one module per stage:
//! - [`host`]: privileges and kernel support, checked first.
//! - [`target`]: the process and its executable (ELF, Go build info, symbols).
//! - [`plan`]: which functions to probe and at which instruction.
//! - [`loader`]: loads the embedded BPF object and attaches the plan.
//! - [`intake`]: reads every CPU's perf ring buffer.
//! - [`aggregate`]: turns events into per-lock and per-map statistics (the
//!   data model), with bounded hot-key tables.
//! - [`advisor`]: judges each map's structure from its measured mix.
//! - [`report`]: the report and its views (text, JSON).
//! - [`session`]: ties them together for `mapwatch attach`.

pub mod advisor;
pub mod aggregate;
pub mod duration;
pub mod export;
pub mod host;
pub mod intake;
pub mod live;
pub mod loader;
pub mod plan;
pub mod report;
pub mod ring;
pub mod session;
pub mod target;
