//! mapwatch: attach to a live process and see which locks its goroutines wait
//! on, which map keys are hot and where compare-and-swap fails.
//!
//! # Architecture
//!
//! Data flows one way, bottom to top: an executable is parsed, probes are
//! planned from it and attached, the kernel's events are read and folded
//! into one target's state, which is published as immutable snapshots that
//! the views render. The layers, and which modules each may use, are this
//! table; `tests/architecture.rs` reads it and fails on any `use` of a
//! module not listed in the user's row (and on a row that uses a module of
//! its own or a higher layer, so the table itself has no cycles).
//!
//! | layer | module | what it is | may use |
//! |---|---|---|---|
//! | 0 | `model` | the vocabulary every layer shares: frames, keys, kinds, stop reasons, probe counters, heatmap data, the [`model::Snapshot`] | — |
//! | 1 | `duration` | durations given on the command line | — |
//! | 1 | `spikes` | spike detection, pure: a lock timeline in, its spikes out | `model` |
//! | 2 | `record` | the flight recorder, pure: a target's snapshots kept second by second as deltas in bounded memory, and the report of any window of them | `model`, `spikes` |
//! | 1 | `goruntime` | Go runtime facts per Go version, in one table | `model` |
//! | 2 | `target` | the executable, pure: ELF, Go build info, pclntab, symbols, DWARF, source lines, symbolization | `model`, `goruntime` |
//! | 3 | `plan` | which instructions to probe, pure: an executable and a request in, a plan out | `model`, `goruntime`, `target`, `governor` |
//! | 3 | `advisor` | judges a map's structure from its measured mix and its health | `model` |
//! | 2 | `maphealth` | a runtime map's structure, pure: a memory reader and a map in, its figures out | `model`, `goruntime` |
//! | 2 | `governor` | keeps the probes' estimated cost within a budget, pure: observations in, settings out | `model` |
//! | 4 | `host` | privilege and kernel checks | — |
//! | 4 | `process` | `/proc`: the process, its memory, its exit | `model`, `target`, `maphealth` |
//! | 4 | `ring` | one CPU's perf ring buffer | — |
//! | 4 | `loader` | loads the BPF object, attaches a plan, reads counters back | `model`, `goruntime`, `plan` |
//! | 5 | `intake` | reads every CPU's ring | `ring` |
//! | 6 | `aggregate` | one target's state; produces snapshots | `model`, `goruntime`, `target`, `plan`, `advisor`, `maphealth`, `spikes`, `intake` |
//! | 7 | `pipeline` | one target's task: probes, intake, aggregate, governor, map health readings, publisher | `model`, `goruntime`, `target`, `plan`, `governor`, `advisor`, `maphealth`, `process`, `loader`, `intake`, `aggregate` |
//! | 8 | `view` | every view and exporter: text, JSON, HTML, pprof, SVG, metrics and reports over HTTP, JSON lines, live | `model`, `duration` |
//! | 9 | `session` | `mapwatch attach`: wiring only | `model`, `governor`, `host`, `process`, `plan`, `loader`, `pipeline`, `view` |
//! | 9 | `daemon` | `mapwatch daemon`: the targets its selectors select, as they come and go, and their flight recorder | `model`, `governor`, `host`, `process`, `record`, `target`, `plan`, `loader`, `intake`, `pipeline`, `view` |
//! | 10 | `main` | the command line (the binary) | `model`, `duration`, `governor`, `plan`, `process`, `session`, `daemon`, `view` |
//!
//! State is owned by one task per target (the pipeline's) and published as
//! an `Arc<Snapshot>` on a watch channel each second; consumers subscribe
//! and never share a lock with it.
#![warn(missing_docs)]

pub mod advisor;
pub mod aggregate;
pub mod daemon;
pub mod duration;
pub mod goruntime;
pub mod governor;
pub mod host;
pub mod intake;
pub mod loader;
pub mod maphealth;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod process;
pub mod record;
pub mod ring;
pub mod session;
pub mod spikes;
pub mod target;
pub mod view;
