//! The traced executable, parsed with no I/O beyond reading its bytes:
//! ELF structure, Go build information, functions and globals, DWARF global
//! locks, source lines and inline trees — and, given where it is loaded,
//! the names of runtime addresses ([`Symbolizer`]).
//!
//! Everything here works on bytes and link-time addresses; nothing needs
//! root or a running process, so the planner and its tests can use an
//! [`Executable`] opened from a path or built from bytes.

pub mod buildinfo;
pub mod dwarf;
pub mod elf;
pub mod lines;
pub mod pclntab;
mod symbolize;
pub mod symbols;

use std::path::Path;

use thiserror::Error;

use crate::goruntime::GoVersion;
use buildinfo::{BuildInfoError, GoBuildInfo};
use elf::{ElfError, ElfImage};
use symbols::{FunctionSource, SymbolError, SymbolTable};

pub use symbolize::Symbolizer;

/// Errors reading an executable.
#[derive(Debug, Error)]
pub enum ExecutableError {
    /// The file is not an ELF image mapwatch can read.
    #[error("cannot read the executable {name}")]
    Elf {
        /// The executable, as it was named.
        name: String,
        /// What went wrong.
        #[source]
        source: ElfError,
    },
    /// A debug file that is not the executable's (another build).
    #[error(
        "{debug} is not the debug file of {name}: build ID {found}, the executable's {wanted}"
    )]
    DebugMismatch {
        /// The executable.
        name: String,
        /// The debug file.
        debug: String,
        /// The debug file's build ID (hex, or `none`).
        found: String,
        /// The executable's build ID (hex).
        wanted: String,
    },
    /// Its symbols could not be read.
    #[error("cannot read the symbols of {name}")]
    Symbols {
        /// The executable.
        name: String,
        /// What went wrong.
        #[source]
        source: SymbolError,
    },
}

/// An executable resolved down to what mapwatch needs: its ELF image, Go
/// build information, functions and globals, and its global locks.
#[derive(Debug)]
pub struct Executable {
    /// How the executable is named in messages and reports (the path the
    /// process sees, or the path it was opened from).
    pub name: String,
    /// Its ELF image.
    pub elf: ElfImage,
    /// Go build information, when it is a Go binary.
    pub go: Option<GoBuildInfo>,
    /// Functions and global variables.
    pub symbols: SymbolTable,
    /// Global variables of a lock type, from DWARF (empty without DWARF).
    pub global_locks: Vec<dwarf::GlobalLock>,
    /// The separate debug file whose symbols and DWARF stand in for what
    /// the executable was stripped of, when one was found.
    pub debug_file: Option<ElfImage>,
}

impl Executable {
    /// Reads the executable at `path`, named `name` in messages.
    pub fn open(path: &Path, name: &str) -> Result<Self, ExecutableError> {
        let elf = ElfImage::open(path).map_err(|source| ExecutableError::Elf {
            name: name.to_string(),
            source,
        })?;
        Self::from_elf(elf, name)
    }

    /// Parses an executable from its bytes.
    pub fn parse(bytes: Vec<u8>, name: &str) -> Result<Self, ExecutableError> {
        let elf = ElfImage::parse(bytes).map_err(|source| ExecutableError::Elf {
            name: name.to_string(),
            source,
        })?;
        Self::from_elf(elf, name)
    }

    /// Resolves an ELF image.
    pub fn from_elf(elf: ElfImage, name: &str) -> Result<Self, ExecutableError> {
        let go = match GoBuildInfo::from_elf(&elf) {
            Ok(info) => Some(info),
            Err(BuildInfoError::NotFound) => None,
            Err(e) => {
                log::warn!("{name}: unreadable Go build info: {e}");
                None
            }
        };
        let symbols = match SymbolTable::from_elf(&elf) {
            Ok(symbols) => symbols,
            // A stripped native binary: nothing to name, which the planner
            // reports as "nothing to probe" with what it looked for.
            Err(SymbolError::NoSymbols) => {
                log::info!("{name} has no symbols");
                SymbolTable::new(Vec::new(), Vec::new(), FunctionSource::Symtab)
            }
            Err(source) => {
                return Err(ExecutableError::Symbols {
                    name: name.to_string(),
                    source,
                })
            }
        };
        let global_locks = dwarf::global_locks(&elf).unwrap_or_else(|e| {
            log::warn!(
                "{name}: cannot read DWARF, global locks are named only when contended: {e}"
            );
            Vec::new()
        });
        Ok(Self {
            name: name.to_string(),
            elf,
            go,
            symbols,
            global_locks,
            debug_file: None,
        })
    }

    /// The executable with its separate debug file (`objcopy
    /// --only-keep-debug`, a distribution's `-dbgsym` package): functions,
    /// globals, lock globals and source lines come from it wherever the
    /// executable has none. A file of another build is refused: when the
    /// executable has a build ID, the debug file must have the same.
    pub fn with_debug_file(mut self, debug: ElfImage) -> Result<Self, ExecutableError> {
        let debug_name = debug
            .path()
            .map_or_else(|| "the debug file".into(), |p| p.display().to_string());
        if let Some(wanted) = self.elf.build_id() {
            if debug.build_id() != Some(wanted) {
                return Err(ExecutableError::DebugMismatch {
                    name: self.name.clone(),
                    debug: debug_name,
                    found: debug.build_id_hex().unwrap_or_else(|| "none".into()),
                    wanted: elf::hex(wanted),
                });
            }
        }
        if self.symbols.function_count() == 0 || self.symbols.global_count() == 0 {
            match SymbolTable::from_elf(&debug) {
                Ok(symbols) if symbols.function_count() >= self.symbols.function_count() => {
                    self.symbols = symbols;
                }
                Ok(_) => {}
                Err(e) => log::warn!("{}: {debug_name}: no usable symbols: {e}", self.name),
            }
        }
        if self.global_locks.is_empty() {
            self.global_locks = dwarf::global_locks(&debug).unwrap_or_else(|e| {
                log::warn!("{}: {debug_name}: cannot read DWARF: {e}", self.name);
                Vec::new()
            });
        }
        self.debug_file = Some(debug);
        Ok(self)
    }

    /// The image whose DWARF describes the code: the debug file when there
    /// is one, else the executable.
    pub fn dwarf_image(&self) -> &ElfImage {
        self.debug_file.as_ref().unwrap_or(&self.elf)
    }

    /// The Go version as (major, minor), when it is a Go binary whose
    /// version parses.
    pub fn go_version(&self) -> Option<GoVersion> {
        self.go.as_ref().and_then(GoBuildInfo::version_number)
    }

    /// Whether it is a Go binary.
    pub fn is_go(&self) -> bool {
        self.go.is_some()
    }

    /// Names a link-time data address: the global variable it falls in
    /// (`main.hotMu`, or `main.locks+16` inside one), when symbols allow.
    pub fn global_name(&self, address: u64) -> Option<String> {
        let Some((global, offset)) = self.symbols.global_at(address) else {
            return self.section_place(address);
        };
        let name = demangle(&global.name);
        Some(if offset == 0 {
            name
        } else {
            format!("{name}+{offset}")
        })
    }
}

impl Executable {
    /// The file name of the executable (`memcached`), as reports name its
    /// module.
    pub fn file_name(&self) -> String {
        std::path::Path::new(&self.name)
            .file_name()
            .map_or_else(|| self.name.clone(), |n| n.to_string_lossy().into_owned())
    }

    /// `module .bss+0xOFF`: where a native executable's data no symbol
    /// names is (a stripped binary's globals), by its section. `None` for
    /// Go programs (their stripped builds keep data addresses: reports say
    /// those) and addresses outside the file's data sections (the heap).
    fn section_place(&self, address: u64) -> Option<String> {
        if self.go.is_some() {
            return None;
        }
        let section = self.elf.sections().iter().find(|s| {
            s.contains(address)
                && matches!(
                    s.name.as_str(),
                    ".data" | ".bss" | ".tdata" | ".tbss" | ".data.rel.ro" | ".rodata"
                )
        })?;
        Some(format!(
            "{} {}+{:#x}",
            self.file_name(),
            section.name,
            address - section.address
        ))
    }
}

/// Readable form of an Itanium-style name (as Rust's legacy mangling and
/// C++ use): a nested name `_ZN…E` such as `_ZN8lockloop8HOT_LOCK17h…E`
/// becomes `lockloop::HOT_LOCK` (Rust's trailing hash dropped), a C++
/// function's parameter types are left out (`_ZL14queue_consumerv` is
/// `queue_consumer`, `_ZNK3Foo3getEv` is `Foo::get`); Rust's v0 names
/// (`_R…`) are demangled too, without their crate hashes. Templates and
/// abbreviations (`I…E`, `S…`) are not decoded: such names, and anything
/// else, are returned as they are.
pub fn demangle(symbol: &str) -> String {
    // Rust's legacy names escape what a path may not hold (`$LT$`, `$u20$`):
    // its own demangler reads them.
    if symbol.starts_with("_R") || (symbol.starts_with("_ZN") && symbol.contains('$')) {
        // Rust's v0 mangling (what rustc gives std's own symbols).
        if let Ok(name) = rustc_demangle::try_demangle(symbol) {
            return format!("{name:#}");
        }
    }
    let Some(mangled) = symbol.strip_prefix("_Z") else {
        return symbol.to_string();
    };
    // An internal-linkage name (`static` in C++) is marked `L`.
    let mangled = mangled.strip_prefix('L').unwrap_or(mangled);
    let Some(nested) = mangled.strip_prefix('N') else {
        // One plain name, then the parameter types (left out):
        // `_ZL14queue_consumerv` is `queue_consumer`.
        let digits = mangled.len()
            - mangled
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        return match mangled[..digits].parse::<usize>() {
            Ok(len) => mangled
                .get(digits..digits + len)
                .map_or_else(|| symbol.to_string(), str::to_string),
            Err(_) => symbol.to_string(),
        };
    };
    // A const or volatile method's qualifiers come first.
    let mut rest = nested.trim_start_matches(['K', 'V', 'r']);
    let mut parts: Vec<&str> = Vec::new();
    // `St` abbreviates the `std` namespace.
    if let Some(after) = rest.strip_prefix("St") {
        parts.push("std");
        rest = after;
    }
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
    use super::*;

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
        assert_eq!(
            demangle("_ZN4core4iter5range101_$LT$impl$u20$core..iter..traits..iterator..Iterator$u20$for$u20$core..ops..range..Range$LT$A$GT$$GT$4next17h0123456789abcdefE"),
            "core::iter::range::<impl core::iter::traits::iterator::Iterator for core::ops::range::Range<A>>::next"
        );
        // C++ functions, parameters left out.
        assert_eq!(demangle("_ZL14queue_consumerv"), "queue_consumer");
        assert_eq!(demangle("_Z3addii"), "add");
        assert_eq!(demangle("_ZNK3Foo3getEv"), "Foo::get");
        assert_eq!(
            demangle("_ZNSt6vectorIiSaIiEE9push_backEOi"),
            "_ZNSt6vectorIiSaIiEE9push_backEOi"
        );
        assert_eq!(
            demangle("_ZNSt22__shared_mutex_pthread4lockEv"),
            "std::__shared_mutex_pthread::lock"
        );
        // Malformed: left as it is.
        assert_eq!(demangle("_ZN99fooE"), "_ZN99fooE");
        assert_eq!(demangle("_ZNxE"), "_ZNxE");
    }

    #[test]
    fn reads_its_own_test_binary_without_a_process() {
        let path = std::env::current_exe().unwrap();
        let exe = Executable::open(&path, "self").unwrap();
        assert!(!exe.is_go());
        assert!(exe.symbols.function_count() > 100);
        let bytes = std::fs::read(&path).unwrap();
        let again = Executable::parse(bytes, "self").unwrap();
        assert_eq!(again.symbols.function_count(), exe.symbols.function_count());
        assert!(matches!(
            Executable::parse(vec![0; 64], "zeros"),
            Err(ExecutableError::Elf { .. })
        ));
    }
}
