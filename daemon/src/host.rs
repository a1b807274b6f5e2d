//! Checks of the host before anything is loaded: privileges and kernel
//! support, each failing with one line that says what is missing.

use std::path::Path;

use thiserror::Error;

/// Capability numbers from `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the host lacks.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostError {
    /// Neither root nor the needed capabilities.
    #[error(
        "mapwatch needs root, or CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run it with sudo"
    )]
    NotPrivileged,
    /// The kernel has no uprobe PMU.
    #[error("this kernel has no uprobes ({0} is missing): mapwatch needs CONFIG_UPROBE_EVENTS")]
    NoUprobes(String),
    /// The kernel exposes no BTF.
    #[error("this kernel has no BTF ({0} is missing): mapwatch needs CONFIG_DEBUG_INFO_BTF")]
    NoBtf(String),
}

/// Paths the checks read; tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct HostPaths<'a> {
    /// `/proc/self/status`.
    pub status: &'a Path,
    /// The uprobe PMU's type file.
    pub uprobe_pmu: &'a Path,
    /// The kernel's BTF.
    pub btf: &'a Path,
}

impl Default for HostPaths<'static> {
    fn default() -> Self {
        Self {
            status: Path::new("/proc/self/status"),
            uprobe_pmu: Path::new("/sys/bus/event_source/devices/uprobe/type"),
            btf: Path::new("/sys/kernel/btf/vmlinux"),
        }
    }
}

/// Checks privileges, then kernel support.
pub fn check(paths: &HostPaths<'_>) -> Result<(), HostError> {
    let status = std::fs::read_to_string(paths.status).unwrap_or_default();
    let caps = effective_caps(&status).unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(HostError::NotPrivileged);
    }
    if !paths.uprobe_pmu.exists() {
        return Err(HostError::NoUprobes(paths.uprobe_pmu.display().to_string()));
    }
    if !paths.btf.exists() {
        return Err(HostError::NoBtf(paths.btf.display().to_string()));
    }
    Ok(())
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Raises the locked-memory limit for kernels before 5.11, which charge BPF
/// maps to it. Failing is normal without CAP_SYS_RESOURCE and harmless on
/// newer kernels, so it is only logged.
pub fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); kernels since 5.11 do not need it",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_with(status: &str, uprobe: bool, btf: bool) -> Result<(), HostError> {
        let dir = std::env::temp_dir().join(format!("mapwatch-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let status_path = dir.join(format!("status-{}", status.len()));
        std::fs::write(&status_path, status).expect("write status");
        let present = dir.join("present");
        std::fs::write(&present, "").expect("write");
        let absent = dir.join("absent");
        check(&HostPaths {
            status: &status_path,
            uprobe_pmu: if uprobe { &present } else { &absent },
            btf: if btf { &present } else { &absent },
        })
    }

    #[test]
    fn root_passes_and_missing_pieces_are_named() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(check_with(root, true, true), Ok(()));
        assert!(matches!(
            check_with(root, false, true),
            Err(HostError::NoUprobes(_))
        ));
        assert!(matches!(
            check_with(root, true, false),
            Err(HostError::NoBtf(_))
        ));
    }

    #[test]
    fn capabilities_decide_privilege() {
        let bpf_perfmon = format!("CapEff:\t{:016x}\n", (1u64 << 38) | (1u64 << 39));
        assert_eq!(check_with(&bpf_perfmon, true, true), Ok(()));
        let only_bpf = format!("CapEff:\t{:016x}\n", 1u64 << 39);
        assert_eq!(
            check_with(&only_bpf, true, true),
            Err(HostError::NotPrivileged)
        );
        assert_eq!(
            check_with("CapEff:\t0000000000000000\n", true, true),
            Err(HostError::NotPrivileged)
        );
    }
}
