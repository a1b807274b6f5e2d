//! Finding a stripped executable's separate debug file, where gdb and
//! distributions put it: by build ID under each debug directory
//! (`DIR/.build-id/ab/cdef….debug`), then by the `.gnu_debuglink` name
//! beside the executable, in its `.debug/` directory, and under each debug
//! directory followed by the executable's own directory. The default
//! directory, `/usr/lib/debug`, is looked up in the process's root
//! (`/proc/PID/root`, so a container's debug files are found) and then on
//! the host; directories given with `--debug-dir` are host paths.

use std::path::{Path, PathBuf};

use crate::target::elf::{debuglink_crc, hex, ElfImage};

/// Where distributions install debug files.
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// How a candidate debug file must prove it belongs to the executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugCheck {
    /// Its build ID equals the executable's.
    BuildId,
    /// Its bytes' CRC-32 equals the one `.gnu_debuglink` recorded.
    Crc(u32),
}

/// The places a debug file of `exe` may be, in the order they are tried,
/// each with what the file found there must prove. `seen_path` is the
/// executable's path as the process sees it, `root` the process's root as
/// this process sees it, `dirs` the user's debug directories.
pub fn candidates(
    exe: &ElfImage,
    seen_path: &Path,
    root: &Path,
    dirs: &[PathBuf],
) -> Vec<(PathBuf, DebugCheck)> {
    let in_root = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
    let default = Path::new(DEFAULT_DEBUG_DIR);
    let mut search: Vec<PathBuf> = dirs.to_vec();
    search.push(in_root(default));
    search.push(default.to_path_buf());
    search.dedup();
    let mut out = Vec::new();
    if let Some(id) = exe.build_id().filter(|id| id.len() >= 2) {
        let (first, rest) = id.split_at(1);
        for dir in &search {
            out.push((
                dir.join(".build-id")
                    .join(hex(first))
                    .join(format!("{}.debug", hex(rest))),
                DebugCheck::BuildId,
            ));
        }
    }
    if let Some(link) = exe.debuglink() {
        // A name with a directory in it is not a debuglink gdb follows.
        if !link.file_name.is_empty() && !link.file_name.contains('/') {
            let check = DebugCheck::Crc(link.crc);
            let exe_dir = seen_path.parent().unwrap_or(Path::new("/"));
            let beside = in_root(exe_dir);
            out.push((beside.join(&link.file_name), check));
            out.push((beside.join(".debug").join(&link.file_name), check));
            for dir in &search {
                let under = dir.join(exe_dir.strip_prefix("/").unwrap_or(exe_dir));
                out.push((under.join(&link.file_name), check));
            }
        }
    }
    out
}

/// The first candidate (see [`candidates`]) that exists, parses and passes
/// its check; `None` when there is none. Files that fail are logged and
/// passed over: a wrong debug file would misname every frame.
pub fn find(exe: &ElfImage, seen_path: &Path, root: &Path, dirs: &[PathBuf]) -> Option<ElfImage> {
    for (path, check) in candidates(exe, seen_path, root, dirs) {
        if !path.is_file() {
            continue;
        }
        let image = match ElfImage::open(&path) {
            Ok(image) => image,
            Err(e) => {
                log::warn!("{}: not a debug file: {e}", path.display());
                continue;
            }
        };
        let fits = match check {
            DebugCheck::BuildId => image.build_id().is_some() && image.build_id() == exe.build_id(),
            DebugCheck::Crc(crc) => debuglink_crc(image.bytes()) == crc,
        };
        if fits {
            return Some(image);
        }
        log::warn!(
            "{}: a debug file of another build of {} (its {} differs)",
            path.display(),
            seen_path.display(),
            match check {
                DebugCheck::BuildId => "build ID",
                DebugCheck::Crc(_) => "CRC",
            }
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_is_looked_for_by_build_id_first() {
        let exe = ElfImage::open(&std::env::current_exe().unwrap()).unwrap();
        let Some(id) = exe.build_id_hex() else {
            return; // linked without a build ID: nothing to look up by
        };
        let root = Path::new("/proc/1/root");
        let dirs = [PathBuf::from("/srv/debug")];
        let found = candidates(&exe, Path::new("/opt/app/server"), root, &dirs);
        let want = |dir: &str| {
            (
                PathBuf::from(format!("{dir}/.build-id/{}/{}.debug", &id[..2], &id[2..])),
                DebugCheck::BuildId,
            )
        };
        assert_eq!(found[0], want("/srv/debug"));
        assert_eq!(found[1], want("/proc/1/root/usr/lib/debug"));
        assert_eq!(found[2], want("/usr/lib/debug"));
        // Nothing is found for it (the test binary has no debug file), and
        // the lookup says so rather than failing.
        assert!(find(&exe, Path::new("/opt/app/server"), root, &dirs).is_none());
    }
}
