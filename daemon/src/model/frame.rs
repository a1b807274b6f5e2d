//! Code positions: a stack frame, a source line, a place in a function.

use std::{fmt, sync::Arc};

use serde::{Serialize, Serializer};

/// A source position, `file:line`. Unknown parts are `?` and 0, as in Go's
/// tracebacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceLine {
    /// The source file's path.
    pub file: String,
    /// The line, 0 if unknown.
    pub line: u32,
}

impl fmt::Display for SourceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl Serialize for SourceLine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One logical frame of a call stack.
///
/// A return address in Go code unwinds into several logical frames: the
/// functions inlined at the call (innermost first), then the real function
/// holding the code. Only the real one has an [`offset`](Self::offset).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The function (demangled), `None` when no symbol covers the address.
    pub function: Option<String>,
    /// The address's offset from the function's entry; `None` for inlined
    /// frames.
    pub offset: Option<u64>,
    /// The source position in this frame (for an inlined function, where it
    /// was; for the others, the call site), when known.
    pub source: Option<SourceLine>,
    /// Whether the function was inlined at this position.
    pub inlined: bool,
    /// The runtime address the frame was resolved from.
    pub address: u64,
    /// Where the code is in its module's file, for a frame no symbol
    /// names (what `addr2line -e FILE` takes, with the debug file).
    pub module: Option<ModuleOffset>,
}

/// A place in a module's file: its file name and the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleOffset {
    /// The module's file name (`memcached`, `libc.so.6`).
    pub module: Arc<str>,
    /// The offset in the file.
    pub offset: u64,
}

impl fmt::Display for ModuleOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.module, self.offset)
    }
}

/// The functions of Go's runtime-internal lock that its callers inline
/// (`lock(&c.lock)` → `lockWithRank` → `lock2`).
pub const RUNTIME_LOCK_FRAMES: [&str; 3] =
    ["runtime.lock", "runtime.lockWithRank", "runtime.lock2"];

/// Prefixes of native lock machinery's functions, inlined into a caller's
/// code from C++'s and glibc's headers or Rust's std (`std::…` covers
/// both standard libraries' namespaces).
pub const NATIVE_LOCK_PREFIXES: [&str; 5] =
    ["std::", "__gthread_", "__glibcxx_", "pthread_", "__lll_"];

/// Where the standard libraries' inlined code comes from: libstdc++'s
/// headers and Rust's std sources (whose template and generic instances
/// DWARF names without their namespace: `lock_guard`, `unique_lock`).
pub const NATIVE_LIBRARY_PATHS: [&str; 2] = ["/c++/", "/rustc/"];

/// The first of `frames` (innermost first) outside the lock
/// implementations (`sync.`, `internal/`, the runtime's
/// [`RUNTIME_LOCK_FRAMES`]; for native code, inlined standard-library
/// frames: [`NATIVE_LOCK_PREFIXES`], [`NATIVE_LIBRARY_PATHS`]), else the
/// first.
pub fn own_frame(frames: &[Frame]) -> Option<&Frame> {
    own_frame_index(frames).map(|i| &frames[i])
}

/// The index of [`own_frame`] in `frames`.
pub fn own_frame_index(frames: &[Frame]) -> Option<usize> {
    frames
        .iter()
        .position(|f| {
            let name = f.function_name().trim_start_matches('<');
            let library_source = f.inlined
                && f.source
                    .as_ref()
                    .is_some_and(|s| NATIVE_LIBRARY_PATHS.iter().any(|p| s.file.contains(p)));
            !name.starts_with("sync.")
                && !name.starts_with("internal/")
                && !RUNTIME_LOCK_FRAMES.contains(&name)
                && !NATIVE_LOCK_PREFIXES.iter().any(|p| name.starts_with(p))
                && !library_source
        })
        .or((!frames.is_empty()).then_some(0))
}

impl Frame {
    /// A frame that no symbol names.
    pub fn unknown(address: u64) -> Self {
        Self {
            function: None,
            offset: None,
            source: None,
            inlined: false,
            address,
            module: None,
        }
    }

    /// The function's name, or `?`.
    pub fn function_name(&self) -> &str {
        self.function.as_deref().unwrap_or("?")
    }
}

impl fmt::Display for Frame {
    /// `function (file:line)` for inlined frames, `function+0xOFF (file:line)`
    /// for real ones, `module+0xFILEOFFSET` when no symbol names the code
    /// but its module is known, else `0xADDRESS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.function, self.offset) {
            (Some(name), Some(offset)) if !self.inlined => write!(f, "{name}+{offset:#x}")?,
            (Some(name), _) => f.write_str(name)?,
            (None, _) if self.inlined => f.write_str("?")?,
            (None, _) => match &self.module {
                Some(module) => write!(f, "{module}")?,
                None => write!(f, "{:#x}", self.address)?,
            },
        }
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A place in a function: `function+0xOFFSET`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeLocation {
    /// The function.
    pub function: String,
    /// Bytes from its entry.
    pub offset: u64,
}

impl fmt::Display for CodeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:#x}", self.function, self.offset)
    }
}

impl Serialize for CodeLocation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(file: &str, line: u32) -> Option<SourceLine> {
        Some(SourceLine {
            file: file.into(),
            line,
        })
    }

    #[test]
    fn a_native_call_site_is_the_first_frame_past_inlined_library_code() {
        let inlined = |name: &str, file: &str| Frame {
            function: Some(name.into()),
            offset: None,
            source: line(file, 9),
            inlined: true,
            address: 0x401a,
            module: None,
        };
        let own = Frame {
            function: Some("table_writer".into()),
            offset: Some(0x48),
            source: line("/src/rwcond.cpp", 71),
            inlined: false,
            address: 0x401a,
            module: None,
        };
        let frames = [
            inlined(
                "__glibcxx_rwlock_wrlock",
                "/usr/include/c++/12/shared_mutex",
            ),
            inlined(
                "std::shared_mutex::lock",
                "/usr/include/c++/12/shared_mutex",
            ),
            // A template instance DWARF names without its namespace.
            inlined("unique_lock", "/usr/include/c++/12/bits/unique_lock.h"),
            own.clone(),
        ];
        assert_eq!(own_frame_index(&frames), Some(3));
        let rust = [
            inlined(
                "<std::sync::poison::mutex::Mutex<u64>>::lock",
                "/rustc/abc/library/std/src/sync/poison/mutex.rs",
            ),
            inlined("lockloop::helper", "/src/lockloop.rs"),
            own,
        ];
        assert_eq!(own_frame_index(&rust), Some(1));
    }

    #[test]
    fn frames_print_as_reports_show_them() {
        let real = Frame {
            function: Some("main.f".into()),
            offset: Some(0x1a),
            source: line("/src/main.go", 12),
            inlined: false,
            address: 0x401a,
            module: None,
        };
        assert_eq!(real.to_string(), "main.f+0x1a (/src/main.go:12)");
        let inlined = Frame {
            function: Some("sync.(*Mutex).Lock".into()),
            offset: None,
            source: line("/go/src/sync/mutex.go", 46),
            inlined: true,
            address: 0x401a,
            module: None,
        };
        assert_eq!(
            inlined.to_string(),
            "sync.(*Mutex).Lock (/go/src/sync/mutex.go:46)"
        );
        assert_eq!(Frame::unknown(0x4000).to_string(), "0x4000");
        let stripped = Frame {
            module: Some(ModuleOffset {
                module: "memcached".into(),
                offset: 0x1548b,
            }),
            ..Frame::unknown(0x55cc_d7fe_d48b)
        };
        assert_eq!(stripped.to_string(), "memcached+0x1548b");
        let bare = Frame {
            source: None,
            ..real
        };
        assert_eq!(bare.to_string(), "main.f+0x1a");
        assert_eq!(
            CodeLocation {
                function: "main.g".into(),
                offset: 0x2c
            }
            .to_string(),
            "main.g+0x2c"
        );
    }
}
