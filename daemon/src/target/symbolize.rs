//! Names for runtime addresses of one loaded executable: stack frames of
//! return addresses, source lines of code, global variables and types.

use std::sync::{Arc, OnceLock};

use super::{demangle, lines::SourceLines, Executable};
use crate::{
    goruntime::{self, TYPE_SYMBOL_PREFIXES},
    model::{Frame, MapOp, ModuleOffset, SourceLine},
};

/// Resolves runtime addresses of an executable loaded with a given bias.
/// The line tables are read on first use (they are large for big binaries
/// and not needed to attach).
#[derive(Debug)]
pub struct Symbolizer {
    exe: Arc<Executable>,
    load_bias: u64,
    lines: OnceLock<SourceLines>,
    /// The executable's file name, as frames name their module.
    module: OnceLock<Arc<str>>,
}

impl Symbolizer {
    /// A symbolizer for `exe` loaded at link-time address + `load_bias`.
    pub fn new(exe: Arc<Executable>, load_bias: u64) -> Self {
        Self {
            exe,
            load_bias,
            lines: OnceLock::new(),
            module: OnceLock::new(),
        }
    }

    /// The executable.
    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    /// Runtime address minus link-time address.
    pub fn load_bias(&self) -> u64 {
        self.load_bias
    }

    /// Reads the line tables now, if they were not read yet (so that no
    /// later lookup pays for it).
    pub fn warm(&self) {
        self.lines();
    }

    fn lines(&self) -> &SourceLines {
        self.lines
            .get_or_init(|| SourceLines::new(self.exe.dwarf_image()))
    }

    /// Where link-time address `ip` is in the executable's file, when a
    /// segment of it holds the address.
    fn module_offset(&self, ip: u64) -> Option<ModuleOffset> {
        let offset = self.exe.elf.vaddr_to_file_offset(ip)?;
        let module = self.module.get_or_init(|| self.exe.file_name().into());
        Some(ModuleOffset {
            module: module.clone(),
            offset,
        })
    }

    /// The logical frames at a return address, innermost first: the
    /// functions inlined at the call (from Go's inline tree), then the real
    /// function with the return address's offset in it. The positions are
    /// those of the call, the instruction before the return address.
    pub fn return_frames(&self, runtime_ip: u64) -> Vec<Frame> {
        let ip = runtime_ip.wrapping_sub(self.load_bias);
        // A return address: the call is the instruction before it.
        let call = ip.saturating_sub(1);
        let function = self.exe.symbols.function_at(ip);
        let real = |source: Option<SourceLine>| match function {
            Some(f) => Frame {
                function: Some(demangle(&f.name)),
                offset: Some(ip - f.start),
                source,
                inlined: false,
                address: runtime_ip,
                module: None,
            },
            None => Frame {
                source,
                module: self.module_offset(ip),
                ..Frame::unknown(runtime_ip)
            },
        };
        let logical = self.lines().inline_frames(call);
        if logical.len() > 1 {
            let last = logical.len() - 1;
            return logical
                .into_iter()
                .enumerate()
                .map(|(i, f)| {
                    let source = Some(SourceLine {
                        file: f.file,
                        line: f.line,
                    });
                    if i == last {
                        real(source)
                    } else {
                        Frame {
                            function: Some(f.function),
                            offset: None,
                            source,
                            inlined: true,
                            address: runtime_ip,
                            module: None,
                        }
                    }
                })
                .collect();
        }
        vec![real(self.lines().line(call))]
    }

    /// The source line of the instruction at link-time `address` in the
    /// caller's own code: the outermost logical frame's, so an inlined
    /// `atomic.CompareAndSwap` is placed at its call in your function; else
    /// the innermost line.
    pub fn user_line(&self, address: u64) -> Option<SourceLine> {
        let frames = self.lines().inline_frames(address);
        if frames.len() > 1 {
            let last = frames.last()?;
            return Some(SourceLine {
                file: last.file.clone(),
                line: last.line,
            });
        }
        self.lines().line(address)
    }

    /// The user-level `sync.Map` operation of the call returning to runtime
    /// address `return_address`: the outermost `sync.Map` method inlined at
    /// the call. `None` when none is (a direct call from user code).
    pub fn sync_map_operation(&self, return_address: u64) -> Option<MapOp> {
        let call = return_address.wrapping_sub(self.load_bias).wrapping_sub(1);
        self.lines()
            .inline_frames(call)
            .iter()
            .rev()
            .find_map(|frame| goruntime::sync_map_operation(&frame.function))
    }

    /// Names a runtime data address: the global variable it falls in
    /// (`main.hotMu`, or `main.locks+16` inside one).
    pub fn global_name(&self, runtime_address: u64) -> Option<String> {
        self.exe
            .global_name(runtime_address.wrapping_sub(self.load_bias))
    }

    /// The name of the Go type whose descriptor is at runtime address
    /// `type_address` (`main.point`), when the symbols name it.
    pub fn type_name(&self, type_address: u64) -> Option<String> {
        let name = self.global_name(type_address)?;
        let name = TYPE_SYMBOL_PREFIXES
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .map(str::to_string)
            .unwrap_or(name);
        Some(name)
    }
}
