//! The traced process as `/proc` shows it: its executable, where that
//! executable is mapped, and whether it is still alive.

use crate::model::MemoryRegion;
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Errors reading a process from `/proc`.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// `/proc/PID` does not exist.
    #[error("no process with PID {0}")]
    NoSuchProcess(u32),
    /// The process exists but `/proc` refused to show it.
    #[error("cannot read /proc/{pid}/{what}: {source}")]
    Unreadable {
        /// The process.
        pid: u32,
        /// The `/proc/PID` entry.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A running process to attach to.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its PID (thread-group id).
    pub pid: u32,
    /// The executable's path as the process sees it (for display; may name a
    /// file in another mount namespace or a deleted one).
    pub exe_display: String,
    /// A path that opens the executable from this process: the
    /// `/proc/PID/exe` magic link, which works for containers and deleted files.
    pub exe_path: PathBuf,
    /// Device and inode of the executable, to find its mappings.
    exe_dev_ino: (u64, u64),
}

/// The command name of process `pid` (`/proc/PID/comm`, without its
/// newline).
pub(super) fn read_comm(pid: u32) -> std::io::Result<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))?;
    Ok(comm.trim_end_matches('\n').to_string())
}

impl Process {
    /// Looks up a process by PID.
    pub fn open(pid: u32) -> Result<Self, ProcessError> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if pid == 0 || !proc_dir.is_dir() {
            return Err(ProcessError::NoSuchProcess(pid));
        }
        let exe_path = proc_dir.join("exe");
        let link =
            fs::read_link(&exe_path).map_err(|source| Self::unreadable(pid, "exe", source))?;
        let meta =
            fs::metadata(&exe_path).map_err(|source| Self::unreadable(pid, "exe", source))?;
        Ok(Self {
            pid,
            exe_display: link.to_string_lossy().into_owned(),
            exe_path,
            exe_dev_ino: (meta.dev(), meta.ino()),
        })
    }

    fn unreadable(pid: u32, what: &'static str, source: std::io::Error) -> ProcessError {
        if source.kind() == std::io::ErrorKind::NotFound {
            ProcessError::NoSuchProcess(pid)
        } else {
            ProcessError::Unreadable { pid, what, source }
        }
    }

    /// The executable's device and inode: processes running one file share
    /// them (and a replaced file gets new ones).
    pub fn exe_identity(&self) -> (u64, u64) {
        self.exe_dev_ino
    }

    /// The process's command name (`/proc/PID/comm`: the executable's name
    /// cut to 15 bytes, or what the program set), read now.
    pub fn comm(&self) -> Result<String, ProcessError> {
        read_comm(self.pid).map_err(|source| Self::unreadable(self.pid, "comm", source))
    }

    /// Whether the process still exists.
    pub fn is_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).is_dir()
    }

    /// CPU time the process has used so far (every thread, user and
    /// system), ns, from `/proc/PID/stat`. Probe hits are the process's
    /// system time: the kernel runs them in its threads.
    pub fn cpu_time_ns(&self) -> Result<u64, ProcessError> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map_err(|source| Self::unreadable(self.pid, "stat", source))?;
        let ticks = cpu_ticks(&stat).ok_or_else(|| ProcessError::Unreadable {
            pid: self.pid,
            what: "stat",
            source: std::io::Error::other("no utime and stime fields"),
        })?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(ticks.saturating_mul(1_000_000_000) / per_second)
    }

    /// The lowest address the executable's file offset 0 is mapped at, from
    /// `/proc/PID/maps`, if it is mapped.
    pub fn exe_mapping_base(&self) -> Result<Option<u64>, ProcessError> {
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .map_err(|source| Self::unreadable(self.pid, "maps", source))?;
        Ok(mapping_base(&maps, self.exe_dev_ino))
    }
}

/// A file the process has mapped with execute permission (its
/// executable, its shared libraries), from `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFile {
    /// The file's path as the process sees it.
    pub path: String,
    /// The lowest address of an executable mapping of it.
    pub start: u64,
}

impl Process {
    /// The files mapped with execute permission, each once, in address
    /// order (deleted files and pseudo-files such as `[vdso]` left out).
    pub fn mapped_code_files(&self) -> Result<Vec<MappedFile>, ProcessError> {
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .map_err(|source| Self::unreadable(self.pid, "maps", source))?;
        Ok(code_files(&maps))
    }
}

impl Process {
    /// The process's writable mappings, by kind, in address order.
    pub fn memory_regions(&self) -> Result<Vec<(u64, u64, MemoryRegion)>, ProcessError> {
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .map_err(|source| Self::unreadable(self.pid, "maps", source))?;
        Ok(memory_regions(&maps))
    }
}

/// The writable mappings of `/proc/PID/maps` text: `[start, end)` and kind.
fn memory_regions(maps: &str) -> Vec<(u64, u64, MemoryRegion)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let path = fields.nth(3).unwrap_or("");
            if !perms.starts_with("rw") {
                return None;
            }
            let kind = match path {
                "[heap]" => MemoryRegion::Heap,
                "[stack]" => MemoryRegion::Stack,
                "" => MemoryRegion::Anonymous,
                p if p.starts_with('/') => MemoryRegion::File,
                _ => return None,
            };
            let start = u64::from_str_radix(start, 16).ok()?;
            Some((start, u64::from_str_radix(end, 16).ok()?, kind))
        })
        .collect()
}

/// The executable file mappings of `/proc/PID/maps` text, one per path.
fn code_files(maps: &str) -> Vec<MappedFile> {
    let mut out: Vec<MappedFile> = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // offset, device, inode, then the path (which may hold spaces).
        let path = fields.skip(3).collect::<Vec<_>>().join(" ");
        let Some(start) = range
            .split_once('-')
            .and_then(|(start, _)| u64::from_str_radix(start, 16).ok())
        else {
            continue;
        };
        if !perms.contains('x') || !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        match out.iter_mut().find(|f| f.path == path) {
            Some(file) => file.start = file.start.min(start),
            None => out.push(MappedFile { path, start }),
        }
    }
    out.sort_by_key(|f| f.start);
    out
}

/// Parses `/proc/PID/maps` text for the start of the mapping of file offset 0
/// of the file with the given device and inode.
fn mapping_base(maps: &str, (dev, ino): (u64, u64)) -> Option<u64> {
    let major = libc::major(dev) as u64;
    let minor = libc::minor(dev) as u64;
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let _perms = fields.next()?;
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let (maj, min) = fields.next()?.split_once(':')?;
            let inode: u64 = fields.next()?.parse().ok()?;
            let start = u64::from_str_radix(range.split_once('-')?.0, 16).ok()?;
            let same_file = inode == ino
                && u64::from_str_radix(maj, 16).ok()? == major
                && u64::from_str_radix(min, 16).ok()? == minor;
            (same_file && offset == 0).then_some(start)
        })
        .min()
}

/// User plus system clock ticks from `/proc/PID/stat` text: fields 14
/// and 15, counted after the command name's closing parenthesis (the name
/// may hold spaces and parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_user_plus_system_after_an_awkward_name() {
        let stat = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1500 250 0 0 20 0 12 0 123 456 789";
        assert_eq!(cpu_ticks(stat), Some(1750));
        assert_eq!(cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn finds_offset_zero_mapping_of_the_right_inode() {
        let dev = libc::makedev(0xfd, 0x01);
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 fd:01 1234 /usr/bin/other
55d0c1000000-55d0c1002000 r--p 00000000 fd:01 999 /usr/bin/target
55d0c1002000-55d0c1008000 r-xp 00002000 fd:01 999 /usr/bin/target
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
";
        assert_eq!(mapping_base(maps, (dev, 999)), Some(0x55d0c1000000));
        assert_eq!(mapping_base(maps, (dev, 1000)), None);
    }

    #[test]
    fn writable_mappings_are_told_apart_by_kind() {
        let maps = "\
55d0c1000000-55d0c1002000 r--p 00000000 fd:01 999 /usr/bin/target
55d0c1010000-55d0c1011000 rw-p 00010000 fd:01 999 /usr/bin/target
55d0c2000000-55d0c2100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0004000000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd10000000-7ffd10002000 r--p 00000000 00:00 0 [vvar]
";
        assert_eq!(
            memory_regions(maps),
            vec![
                (0x55d0c1010000, 0x55d0c1011000, MemoryRegion::File),
                (0x55d0c2000000, 0x55d0c2100000, MemoryRegion::Heap),
                (0x7f0000000000, 0x7f0004000000, MemoryRegion::Anonymous),
                (0x7ffd00000000, 0x7ffd00021000, MemoryRegion::Stack),
            ]
        );
    }

    #[test]
    fn code_files_are_the_executable_mappings_once_each() {
        let maps = "\
55d0c1000000-55d0c1002000 r--p 00000000 fd:01 999 /usr/bin/target
55d0c1002000-55d0c1008000 r-xp 00002000 fd:01 999 /usr/bin/target
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7f1000000000-7f1000020000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f2000000000-7f2000001000 r-xp 00000000 fd:01 78 /tmp/old lib.so (deleted)
7fff00000000-7fff00002000 r-xp 00000000 00:00 0 [vdso]
";
        let files = code_files(maps);
        assert_eq!(
            files,
            vec![
                MappedFile {
                    path: "/usr/bin/target".into(),
                    start: 0x55d0c1002000
                },
                MappedFile {
                    path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                    start: 0x7f1000000000
                },
            ]
        );
    }

    #[test]
    fn own_process_is_alive_and_has_a_mapping() {
        let me = Process::open(std::process::id()).expect("own process");
        assert!(me.is_alive());
        assert!(me.exe_mapping_base().expect("maps").is_some());
    }

    #[test]
    fn missing_pid_is_reported_as_such() {
        // PIDs are below 2^22 on Linux.
        assert!(matches!(
            Process::open(4_194_304 + 7),
            Err(ProcessError::NoSuchProcess(_))
        ));
    }
}
