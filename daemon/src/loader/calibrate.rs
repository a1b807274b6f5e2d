//! What one probe hit costs on this host, measured: mapwatch probes a
//! function of its own, calls it in a loop, and compares with the loop
//! unprobed — once at an instruction the kernel emulates and once at one it
//! single-steps. The overhead governor prices every hit with these figures
//! (plus each program's own run time, which the kernel measures).

use std::{
    hint::black_box,
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use aya::programs::{
    uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    UProbe,
};

use super::{load_without_tables, program_load_error, LoadError, PROBE_OBJECT};

/// The program the calibration probes run (it returns at once).
const CALIBRATE_PROGRAM: &str = "calibrate";

// The probed function: an emulated instruction at offset 0 (`nop`), a
// single-stepped one at offset 1 (`lea`), then `ret`.
std::arch::global_asm!(
    ".globl mapwatch_calibration_target",
    ".p2align 4",
    "mapwatch_calibration_target:",
    "nop",
    "lea rax, [rdi + 1]",
    "ret",
);

extern "C" {
    fn mapwatch_calibration_target(x: u64) -> u64;
}

/// Offsets of the two probed instructions in the target function.
const EMULATED_AT: u64 = 0;
const SINGLE_STEPPED_AT: u64 = 1;

/// Calls per measurement: enough for a stable mean, little enough to stay
/// well under 0.1 s of CPU.
const EMULATED_CALLS: u32 = 20_000;
const SINGLE_STEPPED_CALLS: u32 = 2_000;

/// The measured cost of one probe hit, by how the kernel runs the probed
/// instruction (a program that does nothing: the trap and its dispatch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrapCosts {
    /// An instruction the kernel emulates (jumps, calls, pushes, nops), ns.
    pub emulated_ns: f64,
    /// An instruction it single-steps out of line, ns.
    pub single_stepped_ns: f64,
}

impl TrapCosts {
    /// What to assume before (or without) a calibration: the costs measured
    /// on the development VM, rounded up.
    pub const ASSUMED: Self = Self {
        emulated_ns: 1_000.0,
        single_stepped_ns: 15_000.0,
    };
}

/// This thread's CPU time, ns: the traps of its probe hits are its system
/// time, and a busy host preempting it does not count.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Mean CPU ns per call of the target function over `calls` calls.
fn time_calls(calls: u32) -> f64 {
    let started = thread_cpu_ns();
    let mut x = 0u64;
    for _ in 0..calls {
        // SAFETY: the assembly function only computes `x + 1`.
        x = unsafe { mapwatch_calibration_target(black_box(x)) };
    }
    black_box(x);
    thread_cpu_ns().saturating_sub(started) as f64 / calls as f64
}

/// Where the target function lies in this executable: its path and the
/// file offset of its first byte.
fn own_location() -> Result<(PathBuf, u64), LoadError> {
    let address = mapwatch_calibration_target as *const () as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(LoadError::Calibration)?;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode), Some(path)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        if (start..end).contains(&address) {
            return Ok((PathBuf::from(path), address - start + offset));
        }
    }
    Err(LoadError::Calibration(std::io::Error::other(
        "the calibration function is in no file mapping of mapwatch",
    )))
}

/// Measures [`TrapCosts`] on this host: probes a function of mapwatch's own
/// (in its own copy of the BPF object, with its maps shrunk), calls it in a
/// loop, and subtracts the unprobed loop. Takes about 0.05 s of CPU on the
/// calling thread, then about 0.2 s for the kernel to detach (call it from
/// a thread of its own).
pub fn calibrate() -> Result<TrapCosts, LoadError> {
    if PROBE_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let (path, function_offset) = own_location()?;
    let mut ebpf = load_without_tables()?;
    let program: &mut UProbe = ebpf
        .program_mut(CALIBRATE_PROGRAM)
        .and_then(|p| p.try_into().ok())
        .ok_or(LoadError::Missing("calibrate program"))?;
    program
        .load()
        .map_err(|e| program_load_error(CALIBRATE_PROGRAM, e))?;
    let pid = NonZeroU32::new(std::process::id()).ok_or(LoadError::Missing("own PID"))?;
    let scope = UProbeScope::OneProcess(pid);
    let mut cost_at = |at: u64, calls: u32| -> Result<f64, LoadError> {
        let base = time_calls(calls);
        let id = attach(program, &path, function_offset + at, scope)?;
        let probed = time_calls(calls);
        let link = program.take_link(id).map_err(|source| LoadError::Detach {
            name: CALIBRATE_PROGRAM.to_string(),
            source: Box::new(source),
        })?;
        drop(link);
        Ok((probed - base).max(0.0))
    };
    let emulated_ns = cost_at(EMULATED_AT, EMULATED_CALLS)?;
    let single_stepped_ns = cost_at(SINGLE_STEPPED_AT, SINGLE_STEPPED_CALLS)?;
    Ok(TrapCosts {
        emulated_ns,
        single_stepped_ns,
    })
}

/// Attaches the calibration program at `file_offset` of `path`.
fn attach(
    program: &mut UProbe,
    path: &Path,
    file_offset: u64,
    scope: UProbeScope,
) -> Result<aya::programs::uprobe::UProbeLinkId, LoadError> {
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(file_offset),
        cookie: None,
    };
    program
        .attach(point, path, scope)
        .map_err(|source| LoadError::Attach {
            function: "mapwatch_calibration_target".to_string(),
            file_offset,
            exe: path.display().to_string(),
            source: Box::new(source),
        })
}
