//! The traced process as the operating system shows it: `/proc/PID` (its
//! executable, where that is mapped, whether it is alive), its memory,
//! mapwatch's own resource use, and which processes a daemon's selectors
//! select ([`select`]).

pub mod debug;
mod memory;
mod proc;
pub mod select;

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    model::ModuleMapping,
    target::{Executable, ExecutableError, Symbolizer},
};

pub use memory::{pointer_globals, Memory, MemoryError};
pub use proc::{MappedFile, Process, ProcessError};

/// Errors resolving a target.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The process could not be found or read.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// Its executable could not be read.
    #[error("PID {pid}")]
    Executable {
        /// The process.
        pid: u32,
        /// What went wrong.
        #[source]
        source: ExecutableError,
    },
    /// A position-independent executable that is not mapped.
    #[error("PID {pid}: {exe} is position-independent, but not found in /proc/{pid}/maps")]
    NotMapped {
        /// The process.
        pid: u32,
        /// The executable.
        exe: String,
    },
}

/// A process and its executable, with where the executable is loaded.
#[derive(Debug, Clone)]
pub struct Target {
    /// The process.
    pub process: Process,
    /// Its executable (shared by every process running the same file).
    pub exe: Arc<Executable>,
    /// Runtime address minus link-time address (0 unless
    /// position-independent).
    pub load_bias: u64,
}

impl Target {
    /// Resolves the process with the given PID and reads its executable,
    /// with its debug file from `debug_dirs` or the default places when it
    /// is stripped (see [`open_executable`]).
    pub fn open(pid: u32, debug_dirs: &[PathBuf]) -> Result<Self, TargetError> {
        let process = Process::open(pid)?;
        let exe = open_executable(&process, debug_dirs)
            .map_err(|source| TargetError::Executable { pid, source })?;
        Self::with_executable(process, Arc::new(exe))
    }

    /// The target for a process whose executable was read already.
    pub fn with_executable(process: Process, exe: Arc<Executable>) -> Result<Self, TargetError> {
        let load_bias = if exe.elf.is_pie() {
            let base = process
                .exe_mapping_base()?
                .ok_or_else(|| TargetError::NotMapped {
                    pid: process.pid,
                    exe: process.exe_display.clone(),
                })?;
            base.wrapping_sub(exe.elf.first_load_vaddr().unwrap_or(0))
        } else {
            0
        };
        Ok(Self {
            process,
            exe,
            load_bias,
        })
    }

    /// Where the executable's file lies in the process: from the runtime
    /// address of its file offset 0 to the end of its last segment.
    pub fn exe_mapping(&self) -> ModuleMapping {
        let elf = &self.exe.elf;
        let base = elf.first_load_vaddr().unwrap_or(0);
        let end = elf
            .load_segments()
            .iter()
            .map(|s| s.vaddr.saturating_add(s.mem_size))
            .max()
            .unwrap_or(base);
        ModuleMapping {
            file: self.process.exe_display.clone(),
            build_id: elf.build_id_hex(),
            start: base.wrapping_add(self.load_bias),
            limit: end.wrapping_add(self.load_bias),
            file_offset: 0,
            has_functions: self.exe.symbols.function_count() > 0,
        }
    }

    /// A symbolizer for this process's addresses.
    pub fn symbolizer(&self) -> Symbolizer {
        Symbolizer::new(self.exe.clone(), self.load_bias)
    }

    /// Resolves when the process exits: through a pidfd where the kernel has
    /// them, else by polling `/proc`.
    pub async fn exited(&self) {
        let pid = self.process.pid;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw >= 0 {
            // SAFETY: the syscall returned a fresh fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
            // SAFETY: the OwnedFd stays open and unchanged inside the AsyncFd.
            if let Ok(fd) = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                // A pidfd becomes readable when the process exits.
                if fd.readable().await.is_ok() {
                    return;
                }
            }
        }
        while self.process.is_alive() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads the executable of `process`; when it lacks a symbol table or
/// DWARF lines, its separate debug file joins it if one is found (by build
/// ID or `.gnu_debuglink`, under `debug_dirs`, the process's root and the
/// host's `/usr/lib/debug`: [`debug::find`]).
pub fn open_executable(
    process: &Process,
    debug_dirs: &[PathBuf],
) -> Result<Executable, ExecutableError> {
    let exe = Executable::open(&process.exe_path, &process.exe_display)?;
    if exe.elf.has_symtab() && exe.elf.section(".debug_line").is_some() {
        return Ok(exe);
    }
    let root = PathBuf::from(format!("/proc/{}/root", process.pid));
    match debug::find(&exe.elf, Path::new(&process.exe_display), &root, debug_dirs) {
        Some(file) => {
            log::info!(
                "PID {}: {} reads its symbols and lines from {}",
                process.pid,
                process.exe_display,
                file.path()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
            exe.with_debug_file(file)
        }
        None => Ok(exe),
    }
}

/// This process's peak resident set size (VmHWM), bytes, if `/proc` says.
pub fn own_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `CLOCK_MONOTONIC` now, in ns: the clock of the kernel's `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_a_target() {
        let target = Target::open(std::process::id(), &[]).expect("own process");
        assert!(target.process.is_alive());
        assert!(target.exe.symbols.function_count() > 0);
        assert!(own_peak_rss_bytes().unwrap_or(0) > 0);
        assert!(monotonic_ns() > 0);
    }
}
