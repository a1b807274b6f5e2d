//! The daemon's exec watcher: the `sched:sched_process_exec` tracepoint,
//! loaded from the probe object with its per-target tables cut to one
//! entry (it uses none of them), writing one header per exec on the host
//! into a ring of its own. The daemon reads the ring with an
//! [`Intake`](crate::intake::Intake) and checks each new program against
//! its selectors at once, instead of at its next scan of `/proc`.

use aya::{
    maps::{Map, MapData},
    programs::TracePoint,
};

use super::{ensure_tracefs, load_without_tables, program_load_error, LoadError, PROBE_OBJECT};

/// The program and its tracepoint.
const PROGRAM: &str = "process_exec";
const CATEGORY: &str = "sched";
const EVENT: &str = "sched_process_exec";

/// The attached exec watcher; dropping it detaches it.
pub struct ExecWatch {
    _ebpf: aya::Ebpf,
}

impl ExecWatch {
    /// Loads and attaches the watcher; returns it and the perf event array
    /// its ring is to be registered in.
    pub fn start() -> Result<(Self, MapData), LoadError> {
        if PROBE_OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let mut ebpf = load_without_tables()?;
        ensure_tracefs()?;
        let program: &mut TracePoint = ebpf
            .program_mut(PROGRAM)
            .ok_or(LoadError::Missing("the exec tracepoint program"))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: PROGRAM,
                what: "finding it".into(),
                source: Box::new(source),
            })?;
        program.load().map_err(|e| program_load_error(PROGRAM, e))?;
        program
            .attach(CATEGORY, EVENT)
            .map_err(|source| LoadError::Program {
                name: PROGRAM,
                what: format!("attaching to {CATEGORY}/{EVENT}"),
                source: Box::new(source),
            })?;
        let events = match ebpf.take_map("EXECS") {
            Some(Map::PerfEventArray(data)) => data,
            _ => return Err(LoadError::Missing("EXECS perf event array")),
        };
        Ok((Self { _ebpf: ebpf }, events))
    }
}
