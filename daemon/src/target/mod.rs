//! The traced process and its executable: where it lives, whether it is Go
//! (and which version), its functions and global variables, and how its
//! link-time addresses relate to the addresses it runs at.

pub mod buildinfo;
pub mod dwarf;
pub mod elf;
pub mod lines;
pub mod memory;
pub mod pclntab;
pub mod process;
pub mod symbols;

use thiserror::Error;

use buildinfo::GoBuildInfo;
use elf::ElfImage;
use process::{Process, ProcessError};
use symbols::{FunctionSource, SymbolError, SymbolTable};

/// Errors resolving a target.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The process could not be found or read.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The executable could not be read or parsed.
    #[error("PID {pid}: cannot read its executable {exe}: {reason}")]
    Executable {
        /// The process.
        pid: u32,
        /// The executable's path as the process sees it.
        exe: String,
        /// What went wrong.
        reason: String,
    },
}

/// A process resolved down to its executable's symbols.
#[derive(Debug)]
pub struct Target {
    /// The process.
    pub process: Process,
    /// Its executable.
    pub elf: ElfImage,
    /// Go build information, when the executable is a Go binary.
    pub go: Option<GoBuildInfo>,
    /// Functions and global variables.
    pub symbols: SymbolTable,
    /// Runtime address minus link-time address (0 unless position-independent).
    pub load_bias: u64,
    /// Global variables of a lock type, from DWARF (empty without DWARF).
    pub global_locks: Vec<dwarf::GlobalLock>,
}

impl Target {
    /// Resolves the process with the given PID.
    pub fn open(pid: u32) -> Result<Self, TargetError> {
        let process = Process::open(pid)?;
        let exe_error = |reason: String| TargetError::Executable {
            pid,
            exe: process.exe_display.clone(),
            reason,
        };
        let elf = ElfImage::open(&process.exe_path).map_err(|e| exe_error(e.to_string()))?;
        let go = match elf.section(".go.buildinfo") {
            Some(section) => {
                let data = elf
                    .section_data(&section)
                    .map_err(|e| exe_error(e.to_string()))?;
                match buildinfo::parse(&data) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        log::warn!("PID {pid}: unreadable Go build info: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let symbols = match SymbolTable::from_elf(&elf) {
            Ok(symbols) => symbols,
            // A stripped native binary: nothing to name, which the planner
            // reports as "nothing to probe" with what it looked for.
            Err(SymbolError::NoSymbols) => {
                log::info!("PID {pid}: {} has no symbols", process.exe_display);
                SymbolTable::new(Vec::new(), Vec::new(), FunctionSource::Symtab)
            }
            Err(e) => return Err(exe_error(e.to_string())),
        };
        let load_bias = if elf.is_pie() {
            let base = process.exe_mapping_base()?.ok_or_else(|| {
                exe_error("position-independent, but not found in /proc/PID/maps".into())
            })?;
            base.wrapping_sub(elf.first_load_vaddr().unwrap_or(0))
        } else {
            0
        };
        let global_locks = dwarf::global_locks(&elf).unwrap_or_else(|e| {
            log::warn!(
                "PID {pid}: cannot read DWARF, global locks are named only when contended: {e}"
            );
            Vec::new()
        });
        Ok(Self {
            process,
            elf,
            go,
            symbols,
            load_bias,
            global_locks,
        })
    }

    /// The Go version as (major, minor), when known.
    pub fn go_version_number(&self) -> Option<(u32, u32)> {
        self.go
            .as_ref()
            .and_then(|go| buildinfo::parse_go_version(&go.version))
    }

    /// Names a runtime data address: the global variable it falls in
    /// (`main.hotMu`, or `main.locks+16` inside one), when symbols allow.
    pub fn global_name(&self, runtime_address: u64) -> Option<String> {
        let address = runtime_address.wrapping_sub(self.load_bias);
        let (global, offset) = self.symbols.global_at(address)?;
        let name = demangle(&global.name);
        Some(if offset == 0 {
            name
        } else {
            format!("{name}+{offset}")
        })
    }
}

/// Readable form of an Itanium-style nested name (`_ZN...E`, as Rust's
/// legacy mangling and C++ use for plain paths): `_ZN8lockloop8HOT_LOCK17h…E`
/// becomes `lockloop::HOT_LOCK` (Rust's trailing hash dropped); Rust's v0
/// names (`_R…`) are demangled too, without their crate hashes. Anything
/// else is returned as it is.
pub fn demangle(symbol: &str) -> String {
    if symbol.starts_with("_R") {
        // Rust's v0 mangling (what rustc gives std's own symbols).
        if let Ok(name) = rustc_demangle::try_demangle(symbol) {
            return format!("{name:#}");
        }
    }
    let Some(mut rest) = symbol.strip_prefix("_ZN") else {
        return symbol.to_string();
    };
    let mut parts: Vec<&str> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return symbol.to_string();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return symbol.to_string();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    // Rust's legacy mangling ends with a hash segment `h` + 16 hex digits.
    if let Some(last) = parts.last() {
        if last.len() == 17
            && last.starts_with('h')
            && last[1..].chars().all(|c| c.is_ascii_hexdigit())
        {
            parts.pop();
        }
    }
    parts.join("::")
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn demangles_nested_names() {
        assert_eq!(
            demangle("_ZN8lockloop8HOT_LOCK17hb806066b21a008c0E"),
            "lockloop::HOT_LOCK"
        );
        assert_eq!(demangle("_ZN3foo3barE"), "foo::bar");
        assert_eq!(demangle("main.hotMu"), "main.hotMu");
        assert_eq!(demangle("hot_lock"), "hot_lock");
        assert_eq!(demangle("_ZN3fooE"), "foo");
        // Malformed: left as it is.
        assert_eq!(demangle("_ZN99fooE"), "_ZN99fooE");
        assert_eq!(demangle("_ZNxE"), "_ZNxE");
    }
}
