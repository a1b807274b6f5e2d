//! Go's pc-line table (`.gopclntab`), Go 1.18 and later: the function names
//! and entry addresses the Go runtime itself uses for tracebacks. It survives
//! `-ldflags='-s -w'`, so it names functions of stripped Go binaries.
//!
//! Layout (see `runtime/symtab.go`, `cmd/link/internal/ld/pcln.go`), all
//! little-endian here:
//!
//! ```text
//! header (runtime.pcHeader):
//!   magic u32            0xfffffff0 (Go 1.18, 1.19) or 0xfffffff1 (Go 1.20+)
//!   pad1, pad2 u8        0, 0
//!   minLC u8             minimum instruction size (1 on x86)
//!   ptrSize u8           4 or 8
//!   nfunc, nfiles        pointer-sized
//!   textStart            pointer-sized: runtime.text (relocated at load)
//!   funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
//!                        pointer-sized, relative to the header
//! function table at pclnOffset (runtime.functab):
//!   nfunc × { entryOff u32 (relative to textStart), funcOff u32 (relative
//!   to the function table) }, then one u32: the end pc offset of the last
//!   function
//! _func at funcOff (runtime._func):
//!   entryOff u32 (same as in the table), nameOff i32 (into the name table,
//!   NUL-terminated), args i32, deferreturn u32, pcsp u32, pcfile u32,
//!   pcln u32, npcdata u32, cuOffset u32, startLine i32 (Go 1.20+; padding
//!   before), funcID u8, flag u8, pad u8, nfuncdata u8, then the pcdata and
//!   funcdata offsets
//! pc-value tables (pcsp, pcfile, pcln, pcdata) at pctabOffset + offset:
//!   pairs { value delta: zigzag uvarint, pc delta: uvarint × minLC },
//!   starting from value -1 at the function's entry; a value delta byte of
//!   0 (other than the first) ends the table. Each pair gives the value for
//!   the pcs from the previous pc up to (not including) the new pc.
//! file names: pcfile gives an index into the function's compilation unit;
//!   the u32 at cuOffset + 4 × (_func.cuOffset + index) is an offset into
//!   the file table (NUL-terminated names), or 0xffffffff if absent.
//! pcdata and funcdata (after the fixed _func fields, 44 bytes in Go 1.20+,
//!   40 before startLine existed): npcdata u32 offsets into the pc table (0:
//!   none), then nfuncdata u32 offsets from moduledata.gofunc (the
//!   `go:func.*` symbol; `go.func.*` before Go 1.20), 0xffffffff for none.
//! inline tree (funcdata 3, outside the pclntab): an array of
//!   runtime.inlinedCall, indexed by the value of pcdata 2 (-1: not
//!   inlined). Go 1.20+: { funcID u8, pad [3]u8, nameOff i32, parentPc i32,
//!   startLine i32 } (16 bytes); Go 1.18/1.19: { parent i16, funcID u8,
//!   pad u8, file i32, line i32, func i32 (name offset), parentPc i32 }
//!   (20 bytes). parentPc is an offset from the entry of a pc whose position
//!   is the call site of the inlined function.
//! ```

use thiserror::Error;

/// Magic of the Go 1.18 and 1.19 pclntab.
pub const MAGIC_GO118: u32 = 0xffff_fff0;
/// Magic of the Go 1.20+ pclntab.
pub const MAGIC_GO120: u32 = 0xffff_fff1;
/// Magic of the Go 1.16 and 1.17 pclntab (not supported).
const MAGIC_GO116: u32 = 0xffff_fffa;
/// Magic of the Go 1.2 to 1.15 pclntab (not supported).
const MAGIC_GO12: u32 = 0xffff_fffb;

/// Offset of the header's textStart word (64-bit targets).
pub const TEXT_START_OFFSET: u64 = 8 + 2 * 8;

/// Number of pointer-sized words after the 8-byte header prefix.
const HEADER_WORDS: usize = 8;

/// Offsets of `_func` fields used for line lookups.
const FUNC_PCFILE: usize = 20;
const FUNC_PCLN: usize = 24;
const FUNC_CU_OFFSET: usize = 32;

/// Offset of `_func.npcdata`.
const FUNC_NPCDATA: usize = 28;
/// Size of the fixed `_func` fields (up to and including nfuncdata, its last
/// byte) in Go 1.20+ and in Go 1.18/1.19 (no startLine).
const FUNC_FIXED_GO120: usize = 44;
const FUNC_FIXED_GO118: usize = 40;

/// `abi.PCDATA_InlTreeIndex`: the pcdata table giving the inline tree index.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `abi.FUNCDATA_InlTree`: the funcdata slot of the inline tree.
const FUNCDATA_INL_TREE: u32 = 3;
/// A funcdata offset meaning "no data".
const NO_FUNCDATA: u32 = u32::MAX;

/// Stop walking an inline tree after this many frames (a corrupt tree could
/// loop).
const MAX_INLINE_DEPTH: usize = 128;

/// A compilation unit's file table entry for a file that has none.
const NO_FILE: u32 = u32::MAX;

/// Placeholder for an unknown function or file name, as Go's runtime prints.
const UNKNOWN: &str = "?";

/// Errors parsing a pclntab.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PclntabError {
    /// The data ends before a structure it must contain.
    #[error("pclntab truncated: {what} needs {need} bytes, {have} available")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Bytes needed (from the pclntab start).
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// Not a pclntab magic.
    #[error("not a Go pclntab (magic {0:#010x})")]
    BadMagic(u32),
    /// A pclntab of a Go version before 1.18.
    #[error("unsupported pclntab of Go before 1.18 (magic {0:#010x})")]
    UnsupportedVersion(u32),
    /// A header field has an impossible value.
    #[error("invalid pclntab header: {0}")]
    BadHeader(&'static str),
}

/// Which pclntab format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PclntabVersion {
    /// Go 1.18 and 1.19 (magic `0xfffffff0`).
    Go118,
    /// Go 1.20 and later (magic `0xfffffff1`).
    Go120,
}

/// A function named by the pclntab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoFunction<'a> {
    /// The function's Go symbol name, e.g. `sync.(*Mutex).lockSlow`.
    pub name: &'a str,
    /// Link-time address of the first instruction.
    pub entry: u64,
    /// Link-time address just past the function: the next function's entry,
    /// or the table's end pc for the last one.
    pub end: u64,
}

/// One logical frame at a pc: an inlined call or the function holding the
/// code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFrame {
    /// Go symbol name of the (possibly inlined) function, `?` if unreadable.
    pub function: String,
    /// Source file of the position in this frame, `?` if unknown.
    pub file: String,
    /// Line of the position in this frame (the pc for the innermost frame,
    /// the call site for the others), 0 if unknown.
    pub line: u32,
}

/// A parsed pclntab, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    version: PclntabVersion,
    ptr_size: u8,
    nfunc: usize,
    header_text_start: u64,
    text_start: u64,
    min_lc: u8,
    funcname_offset: usize,
    cu_offset: usize,
    filetab_offset: usize,
    pctab_offset: usize,
    functab_offset: usize,
}

impl<'a> Pclntab<'a> {
    /// Parses the pclntab that starts at `data[0]` (the `.gopclntab` section,
    /// or data from an offset found by [`locate_in`]). Checks the header and
    /// that the function table lies inside `data`.
    pub fn parse(data: &'a [u8]) -> Result<Pclntab<'a>, PclntabError> {
        let magic = read_u32(data, 0).ok_or(PclntabError::Truncated {
            what: "magic",
            need: 4,
            have: data.len() as u64,
        })?;
        let version = match magic {
            MAGIC_GO118 => PclntabVersion::Go118,
            MAGIC_GO120 => PclntabVersion::Go120,
            MAGIC_GO116 | MAGIC_GO12 => return Err(PclntabError::UnsupportedVersion(magic)),
            other => return Err(PclntabError::BadMagic(other)),
        };
        let prefix = data.get(4..8).ok_or(PclntabError::Truncated {
            what: "header",
            need: 8,
            have: data.len() as u64,
        })?;
        let &[pad1, pad2, min_lc, ptr_size] = prefix else {
            return Err(PclntabError::BadHeader("short header"));
        };
        if pad1 != 0 || pad2 != 0 {
            return Err(PclntabError::BadHeader("nonzero padding"));
        }
        if !matches!(min_lc, 1 | 2 | 4) {
            return Err(PclntabError::BadHeader(
                "minimum instruction size not 1, 2 or 4",
            ));
        }
        if ptr_size != 8 {
            // Only 64-bit targets are supported.
            return Err(PclntabError::BadHeader("pointer size is not 8"));
        }
        let word = usize::from(ptr_size);
        let header_len = 8 + HEADER_WORDS * word;
        if data.len() < header_len {
            return Err(PclntabError::Truncated {
                what: "header",
                need: header_len as u64,
                have: data.len() as u64,
            });
        }
        let field = |i: usize| read_u64(data, 8 + i * word).unwrap_or(0);
        let nfunc = field(0);
        let text_start = field(2);
        let funcname_offset = field(3);
        let cu_offset = field(4);
        let filetab_offset = field(5);
        let pctab_offset = field(6);
        let functab_offset = field(7);

        // The linker lays the tables out in this order after the header.
        let ordered = [
            header_len as u64,
            funcname_offset,
            cu_offset,
            filetab_offset,
            pctab_offset,
            functab_offset,
        ];
        if !ordered.is_sorted() {
            return Err(PclntabError::BadHeader("table offsets out of order"));
        }
        // nfunc pairs of u32 plus the final end pc offset.
        let functab_len = nfunc
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .ok_or(PclntabError::BadHeader("function count overflows"))?;
        let functab_end = functab_offset
            .checked_add(functab_len)
            .ok_or(PclntabError::BadHeader("function table overflows"))?;
        if functab_end > data.len() as u64 {
            return Err(PclntabError::Truncated {
                what: "function table",
                need: functab_end,
                have: data.len() as u64,
            });
        }
        // Both fit in usize now that they are below data.len().
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| PclntabError::BadHeader("offset"));
        Ok(Pclntab {
            data,
            version,
            ptr_size,
            nfunc: to_usize(nfunc)?,
            header_text_start: text_start,
            text_start,
            min_lc,
            funcname_offset: to_usize(funcname_offset)?,
            cu_offset: to_usize(cu_offset)?,
            filetab_offset: to_usize(filetab_offset)?,
            pctab_offset: to_usize(pctab_offset)?,
            functab_offset: to_usize(functab_offset)?,
        })
    }

    /// Replaces the base that function offsets are relative to. The header's
    /// textStart is runtime.text (which in cgo binaries is not the start of
    /// `.text`), but it is a relocated pointer and can be 0 on disk; then the
    /// caller supplies the address of `runtime.text` or, failing that, of
    /// `.text`.
    pub fn with_text_start(mut self, text_start: u64) -> Pclntab<'a> {
        self.text_start = text_start;
        self
    }

    /// The base address of function offsets: the header's textStart unless
    /// replaced with [`Pclntab::with_text_start`].
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// The textStart stored in the header (0 if left for the loader to
    /// relocate).
    pub fn header_text_start(&self) -> u64 {
        self.header_text_start
    }

    /// The format version.
    pub fn version(&self) -> PclntabVersion {
        self.version
    }

    /// Pointer size of the target, in bytes.
    pub fn ptr_size(&self) -> u8 {
        self.ptr_size
    }

    /// Number of functions in the table.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    /// Whether the table has no functions.
    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// Link-time address just past the last function.
    pub fn end_pc(&self) -> Option<u64> {
        self.entry_offset(self.nfunc)
            .and_then(|off| self.text_start.checked_add(u64::from(off)))
    }

    /// The function at index `index` of the table (sorted by address).
    /// `None` past the end or if its entry is corrupt.
    pub fn function(&self, index: usize) -> Option<GoFunction<'a>> {
        if index >= self.nfunc {
            return None;
        }
        let entry_off = self.entry_offset(index)?;
        let end_off = self.entry_offset(index + 1)?;
        let func = self.func_record(index)?;
        // The _func repeats the entry offset: a cheap consistency check.
        if read_u32(self.data, func)? != entry_off {
            return None;
        }
        let name_off = usize::try_from(read_i32(self.data, func.checked_add(4)?)?).ok()?;
        let name = self.name_at(name_off)?;
        Some(GoFunction {
            name,
            entry: self.text_start.checked_add(u64::from(entry_off))?,
            end: self.text_start.checked_add(u64::from(end_off))?,
        })
    }

    /// All functions, in address order; corrupt entries are skipped.
    pub fn functions(&self) -> impl Iterator<Item = GoFunction<'a>> + '_ {
        (0..self.nfunc).filter_map(move |i| {
            let f = self.function(i);
            if f.is_none() {
                log::debug!("pclntab: skipping unreadable function entry {i}");
            }
            f
        })
    }

    /// The function called `name` (linear search).
    pub fn find_function(&self, name: &str) -> Option<GoFunction<'a>> {
        self.functions().find(|f| f.name == name)
    }

    /// The function whose code contains link-time address `pc`.
    pub fn function_at(&self, pc: u64) -> Option<GoFunction<'a>> {
        self.function_index_at(pc).map(|(_, f)| f)
    }

    /// The source file and line of the instruction at link-time address
    /// `pc`, from the pc-file and pc-line tables of the function containing
    /// it. `None` outside the table's functions or when the tables are
    /// missing or corrupt.
    pub fn source_line(&self, pc: u64) -> Option<(String, u32)> {
        let (index, function) = self.function_index_at(pc)?;
        let func = self.func_record(index)?;
        let (file, line) = self.position(func, function.entry, pc)?;
        Some((file.to_string(), line))
    }

    /// The logical frames at link-time address `pc`, innermost first: one
    /// per inlined call (the inlined function, at the position of `pc` for
    /// the innermost and of the call into the next inner one for the
    /// others), then the function holding the code. Follows the runtime's
    /// `inlineUnwinder` (`runtime/symtabinl.go`).
    ///
    /// The inline tree lies outside the pclntab, at `gofunc` (the address of
    /// the `go:func.*` symbol, moduledata.gofunc) plus the function's
    /// funcdata offset; `read(address, len)` returns the `len` bytes at a
    /// link-time address, or `None` if unavailable.
    ///
    /// Empty when `pc` is in no function. Unreadable names and positions
    /// are `?` and 0, as in Go's tracebacks. A corrupt inline tree (an
    /// unreadable entry, which gives a `?` frame, a call site outside the
    /// function, or more than 128 levels) ends the walk
    /// with the holding function at an unknown (`?`, 0) position.
    pub fn inline_frames<'r>(
        &self,
        pc: u64,
        gofunc: u64,
        read: impl Fn(u64, usize) -> Option<&'r [u8]>,
    ) -> Vec<InlineFrame> {
        let Some((index, function)) = self.function_index_at(pc) else {
            return Vec::new();
        };
        let Some(func) = self.func_record(index) else {
            return Vec::new();
        };
        let entry = function.entry;
        let index_table = self.pcdata(func, PCDATA_INL_TREE_INDEX);
        let tree = self
            .funcdata(func, FUNCDATA_INL_TREE)
            .and_then(|off| gofunc.checked_add(u64::from(off)));
        // Like pcdatavalue1 (non-strict): any failure means "not inlined".
        let tree_index = |pc: u64| {
            index_table
                .and_then(|table| self.pc_value(table, entry, pc))
                .unwrap_or(-1)
        };
        let frame = |name: &str, pc: u64| {
            let (file, line) = self.position(func, entry, pc).unwrap_or((UNKNOWN, 0));
            InlineFrame {
                function: name.to_string(),
                file: file.to_string(),
                line,
            }
        };

        let mut frames = Vec::new();
        let mut pc = pc;
        let mut ix = if tree.is_some() { tree_index(pc) } else { -1 };
        while ix >= 0 {
            let Some(call) = tree.and_then(|t| self.inlined_call(t, ix, &read)) else {
                frames.push(frame(UNKNOWN, pc));
                break;
            };
            let name = usize::try_from(call.name_off)
                .ok()
                .and_then(|off| self.name_at(off))
                .unwrap_or(UNKNOWN);
            frames.push(frame(name, pc));
            // The call site must be code of this function; anything else is
            // corrupt.
            let parent = entry
                .checked_add_signed(i64::from(call.parent_pc))
                .filter(|&p| p >= entry && p < function.end);
            match parent {
                Some(parent) if frames.len() < MAX_INLINE_DEPTH => {
                    pc = parent;
                    ix = tree_index(pc);
                }
                _ => break,
            }
        }
        if ix >= 0 {
            // The walk ended early: where the function's code calls the
            // outermost inlined function it found is unknown.
            frames.push(InlineFrame {
                function: function.name.to_string(),
                file: UNKNOWN.to_string(),
                line: 0,
            });
        } else {
            frames.push(frame(function.name, pc));
        }
        frames
    }

    /// How many of the first `limit` functions with an inline tree have a
    /// plausible first entry when `gofunc` is the funcdata base: a name in
    /// the name table and a call site inside the function. A wrong base
    /// scores (almost) nothing; used to find the base in stripped binaries.
    pub fn inline_tree_score<'r>(
        &self,
        gofunc: u64,
        limit: usize,
        read: impl Fn(u64, usize) -> Option<&'r [u8]>,
    ) -> usize {
        let mut score = 0;
        let mut seen = 0;
        for index in 0..self.nfunc {
            if seen >= limit {
                break;
            }
            let (Some(func), Some(function)) = (self.func_record(index), self.function(index))
            else {
                continue;
            };
            let Some(offset) = self.funcdata(func, FUNCDATA_INL_TREE) else {
                continue;
            };
            seen += 1;
            let Some(call) = gofunc
                .checked_add(u64::from(offset))
                .and_then(|tree| self.inlined_call(tree, 0, &read))
            else {
                continue;
            };
            let named = usize::try_from(call.name_off)
                .ok()
                .and_then(|off| self.name_at(off))
                .is_some_and(|name| name.contains('.'));
            let size = function.end.saturating_sub(function.entry);
            let inside = u64::try_from(call.parent_pc).is_ok_and(|pc| pc < size);
            if named && inside {
                score += 1;
            }
        }
        score
    }

    /// File and line at `pc` from the pc-file and pc-line tables of the
    /// `_func` at `func`, entered at `entry`.
    fn position(&self, func: usize, entry: u64, pc: u64) -> Option<(&'a str, u32)> {
        let pcfile = read_u32(self.data, func.checked_add(FUNC_PCFILE)?)?;
        let pcln = read_u32(self.data, func.checked_add(FUNC_PCLN)?)?;
        let cu = read_u32(self.data, func.checked_add(FUNC_CU_OFFSET)?)?;
        let line = self.pc_value(pcln, entry, pc)?;
        let file_index = self.pc_value(pcfile, entry, pc)?;
        let line = u32::try_from(line).ok()?;
        let file = self.cu_file(cu, u32::try_from(file_index).ok()?)?;
        Some((file, line))
    }

    /// Size of the fixed `_func` fields, after which the pcdata offsets
    /// follow.
    fn func_fixed_len(&self) -> usize {
        match self.version {
            PclntabVersion::Go118 => FUNC_FIXED_GO118,
            PclntabVersion::Go120 => FUNC_FIXED_GO120,
        }
    }

    /// The pc table offset of pcdata table `table` of the `_func` at
    /// `func`; `None` if the function has no such table.
    fn pcdata(&self, func: usize, table: u32) -> Option<u32> {
        let npcdata = read_u32(self.data, func.checked_add(FUNC_NPCDATA)?)?;
        if table >= npcdata {
            return None;
        }
        let at = func
            .checked_add(self.func_fixed_len())?
            .checked_add(usize::try_from(table).ok()?.checked_mul(4)?)?;
        read_u32(self.data, at).filter(|&off| off != 0)
    }

    /// The offset from moduledata.gofunc of funcdata `slot` of the `_func`
    /// at `func`; `None` if the function has none.
    fn funcdata(&self, func: usize, slot: u32) -> Option<u32> {
        let fixed = self.func_fixed_len();
        let nfuncdata = *self.data.get(func.checked_add(fixed - 1)?)?;
        if slot >= u32::from(nfuncdata) {
            return None;
        }
        let npcdata = read_u32(self.data, func.checked_add(FUNC_NPCDATA)?)?;
        let index = usize::try_from(npcdata.checked_add(slot)?).ok()?;
        let at = func
            .checked_add(fixed)?
            .checked_add(index.checked_mul(4)?)?;
        read_u32(self.data, at).filter(|&off| off != NO_FUNCDATA)
    }

    /// Entry `index` of the inline tree at link-time address `tree`.
    fn inlined_call<'r>(
        &self,
        tree: u64,
        index: i32,
        read: &impl Fn(u64, usize) -> Option<&'r [u8]>,
    ) -> Option<InlinedCall> {
        // (entry size, nameOff offset, parentPc offset)
        let (size, name_at, parent_at) = match self.version {
            PclntabVersion::Go118 => (20, 12, 16),
            PclntabVersion::Go120 => (16, 4, 8),
        };
        let at = u64::try_from(index)
            .ok()?
            .checked_mul(size as u64)
            .and_then(|off| tree.checked_add(off))?;
        let bytes = read(at, size)?;
        Some(InlinedCall {
            name_off: read_i32(bytes, name_at)?,
            parent_pc: read_i32(bytes, parent_at)?,
        })
    }

    /// The value the pc-value table at `table` (an offset into the pc
    /// table) gives for `pc`, in the function entered at `entry`. `None`
    /// for the absent table (offset 0), a pc the table does not cover, or a
    /// corrupt table.
    pub fn pc_value(&self, table: u32, entry: u64, pc: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let start = self
            .pctab_offset
            .checked_add(usize::try_from(table).ok()?)?;
        let bytes = self.data.get(start..)?;
        PcValues::new(bytes, entry, self.min_lc)
            .find(|r| r.as_ref().map_or(true, |r| pc < r.end))?
            .ok()
            .filter(|r| r.start <= pc)
            .map(|r| r.value)
    }

    /// The name of file `index` of the compilation unit at `cu` in the
    /// compilation unit table.
    fn cu_file(&self, cu: u32, index: u32) -> Option<&'a str> {
        let slot = usize::try_from(cu.checked_add(index)?).ok()?;
        let at = self.cu_offset.checked_add(slot.checked_mul(4)?)?;
        // The cu table ends where the file table starts.
        if at.checked_add(4)? > self.filetab_offset {
            return None;
        }
        let offset = read_u32(self.data, at)?;
        if offset == NO_FILE {
            return None;
        }
        let start = self
            .filetab_offset
            .checked_add(usize::try_from(offset).ok()?)?;
        let bytes = self.data.get(start..self.pctab_offset)?;
        let len = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(bytes.get(..len)?).ok()
    }

    /// The table index and function containing `pc`.
    fn function_index_at(&self, pc: u64) -> Option<(usize, GoFunction<'a>)> {
        let off = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        if self.is_empty() || off < self.entry_offset(0)? || off >= self.entry_offset(self.nfunc)? {
            return None;
        }
        // Binary search for the last entry <= off.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry_offset(mid)? <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let function = self.function(lo).filter(|f| pc < f.end)?;
        Some((lo, function))
    }

    /// Offset in the data of the `_func` record of table slot `index`.
    fn func_record(&self, index: usize) -> Option<usize> {
        let slot = self
            .functab_offset
            .checked_add(index.checked_mul(8)?.checked_add(4)?)?;
        let func_off = read_u32(self.data, slot)?;
        self.functab_offset
            .checked_add(usize::try_from(func_off).ok()?)
    }

    /// Entry offset (relative to textStart) of table slot `index`; slot
    /// `nfunc` holds the end offset.
    fn entry_offset(&self, index: usize) -> Option<u32> {
        read_u32(
            self.data,
            self.functab_offset.checked_add(index.checked_mul(8)?)?,
        )
    }

    /// The NUL-terminated name at `offset` into the name table.
    fn name_at(&self, offset: usize) -> Option<&'a str> {
        let start = self.funcname_offset.checked_add(offset)?;
        let bytes = self.data.get(start..)?;
        let len = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(bytes.get(..len)?).ok()
    }
}

/// The fields of a runtime.inlinedCall used to walk the inline tree.
#[derive(Debug, Clone, Copy)]
struct InlinedCall {
    /// Offset of the inlined function's name in the name table.
    name_off: i32,
    /// Offset from the function's entry of a pc at the call site.
    parent_pc: i32,
}

/// One row of a decoded pc-value table: `value` holds for the link-time
/// addresses `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcValue {
    /// First address of the range.
    pub start: u64,
    /// Address just past the range.
    pub end: u64,
    /// The table's value there (a line, a file index, an sp delta...).
    pub value: i32,
}

/// Why a pc-value table could not be decoded further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcValueError {
    /// The data ends inside a pair, before the end marker.
    Truncated,
    /// A varint longer than 32 bits.
    BadVarint,
    /// The pc or the value leaves its range.
    Overflow,
}

/// Decoder of a pc-value table: yields its rows in order, then `None` at the
/// end marker, or one error and then `None` if the data is corrupt.
#[derive(Debug, Clone)]
pub struct PcValues<'a> {
    data: &'a [u8],
    pc: u64,
    value: i32,
    quantum: u8,
    first: bool,
    done: bool,
}

impl<'a> PcValues<'a> {
    /// Decodes the table starting at `data[0]` for the function entered at
    /// `entry`; `quantum` is the header's minLC (pc deltas are multiples of
    /// it).
    pub fn new(data: &'a [u8], entry: u64, quantum: u8) -> PcValues<'a> {
        PcValues {
            data,
            pc: entry,
            value: -1,
            quantum,
            first: true,
            done: false,
        }
    }

    fn step(&mut self) -> Result<Option<PcValue>, PcValueError> {
        match self.data.first() {
            None => return Err(PcValueError::Truncated),
            Some(0) if !self.first => return Ok(None),
            Some(_) => {}
        }
        self.first = false;
        let (n, value_delta) = read_uvarint(self.data)?;
        self.data = self.data.get(n..).ok_or(PcValueError::Truncated)?;
        let (n, pc_delta) = read_uvarint(self.data)?;
        self.data = self.data.get(n..).ok_or(PcValueError::Truncated)?;
        // Zigzag: the low bit is the sign.
        let delta = ((value_delta >> 1) as i32) ^ -((value_delta & 1) as i32);
        self.value = self
            .value
            .checked_add(delta)
            .ok_or(PcValueError::Overflow)?;
        let start = self.pc;
        self.pc = u64::from(pc_delta)
            .checked_mul(u64::from(self.quantum))
            .and_then(|d| self.pc.checked_add(d))
            .ok_or(PcValueError::Overflow)?;
        Ok(Some(PcValue {
            start,
            end: self.pc,
            value: self.value,
        }))
    }
}

impl Iterator for PcValues<'_> {
    type Item = Result<PcValue, PcValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let row = self.step().transpose();
        if !matches!(row, Some(Ok(_))) {
            self.done = true;
        }
        row
    }
}

/// Reads an unsigned LEB128 varint of at most 32 bits: (bytes read, value).
fn read_uvarint(data: &[u8]) -> Result<(usize, u32), PcValueError> {
    let mut value = 0u32;
    for (i, &byte) in data.iter().enumerate().take(5) {
        let bits = u32::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 28 && bits > 0xf {
            return Err(PcValueError::BadVarint);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok((i + 1, value));
        }
    }
    if data.len() < 5 {
        Err(PcValueError::Truncated)
    } else {
        Err(PcValueError::BadVarint)
    }
}

/// Finds a Go 1.18+ pclntab header inside `data` (e.g. a `.data.rel.ro` or
/// `.rodata` section of a binary without a `.gopclntab` section header) and
/// returns its offset: the magic followed by pad bytes 0, 0, minLC 1 and
/// pointer size 8, whose header then parses with consistent offsets and at
/// least one function.
pub fn locate_in(data: &[u8]) -> Option<usize> {
    const PATTERNS: [[u8; 8]; 2] = [
        [0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8],
        [0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8],
    ];
    // The linker aligns runtime.pcheader, so only 4-byte aligned candidates
    // relative to the data start are tried.
    (0..data.len()).step_by(4).find(|&i| {
        let Some(window) = data.get(i..i + 8) else {
            return false;
        };
        PATTERNS.iter().any(|p| p == window)
            && data
                .get(i..)
                .and_then(|d| Pclntab::parse(d).ok())
                .is_some_and(|t| !t.is_empty() && t.function(0).is_some())
    })
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_i32(data: &[u8], at: usize) -> Option<i32> {
    read_u32(data, at).map(|v| v as i32)
}

fn read_u64(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a Go 1.20-style pclntab with the given functions, as
    /// (name, offset from textStart, size), sorted by offset.
    pub(crate) fn synth_pclntab(text_start: u64, funcs: &[(&str, u32, u32)]) -> Vec<u8> {
        synth_with_magic(MAGIC_GO120, text_start, funcs)
    }

    fn synth_with_magic(magic: u32, text_start: u64, funcs: &[(&str, u32, u32)]) -> Vec<u8> {
        let header_len = 8 + 8 * 8;
        // Name table.
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (name, _, _) in funcs {
            name_offs.push(names.len() as i32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let funcname_offset = header_len;
        let cu_offset = funcname_offset + names.len();
        let filetab_offset = cu_offset;
        let pctab_offset = filetab_offset;
        let functab_offset = pctab_offset;

        // Function table, then the _func records (44 bytes each, like Go's).
        let table_len = funcs.len() * 8 + 4;
        let func_size = 44;
        let mut table = Vec::new();
        let mut records = Vec::new();
        for (i, (_, off, _)) in funcs.iter().enumerate() {
            let func_off = (table_len + i * func_size) as u32;
            table.extend(off.to_le_bytes());
            table.extend(func_off.to_le_bytes());
            let mut rec = Vec::new();
            rec.extend(off.to_le_bytes());
            rec.extend(name_offs[i].to_le_bytes());
            rec.resize(func_size, 0);
            records.extend(rec);
        }
        let (_, last_off, last_size) = funcs.last().copied().unwrap_or(("", 0, 0));
        table.extend((last_off + last_size).to_le_bytes());

        let mut out = Vec::new();
        out.extend(magic.to_le_bytes());
        out.extend([0, 0, 1, 8]);
        for v in [
            funcs.len() as u64,
            1,
            text_start,
            funcname_offset as u64,
            cu_offset as u64,
            filetab_offset as u64,
            pctab_offset as u64,
            functab_offset as u64,
        ] {
            out.extend(v.to_le_bytes());
        }
        assert_eq!(out.len(), header_len);
        out.extend(names);
        out.extend(table);
        out.extend(records);
        out
    }

    const FUNCS: &[(&str, u32, u32)] = &[
        ("internal/abi.(*Type).Kind", 0x0, 0x20),
        ("sync.(*Mutex).lockSlow", 0x20, 0x1a0),
        ("main.main", 0x1c0, 0x40),
    ];

    #[test]
    fn parses_synthesized_table() {
        let data = synth_pclntab(0x401000, FUNCS);
        let tab = Pclntab::parse(&data).unwrap();
        assert_eq!(tab.version(), PclntabVersion::Go120);
        assert_eq!(tab.len(), 3);
        assert_eq!(tab.text_start(), 0x401000);
        assert_eq!(tab.end_pc(), Some(0x401200));
        let all: Vec<_> = tab.functions().collect();
        assert_eq!(
            all,
            vec![
                GoFunction {
                    name: "internal/abi.(*Type).Kind",
                    entry: 0x401000,
                    end: 0x401020
                },
                GoFunction {
                    name: "sync.(*Mutex).lockSlow",
                    entry: 0x401020,
                    end: 0x4011c0
                },
                GoFunction {
                    name: "main.main",
                    entry: 0x4011c0,
                    end: 0x401200
                },
            ]
        );
        assert_eq!(tab.find_function("main.main").unwrap().entry, 0x4011c0);
        assert!(tab.find_function("main.nope").is_none());
    }

    #[test]
    fn function_at_uses_half_open_ranges() {
        let data = synth_pclntab(0x401000, FUNCS);
        let tab = Pclntab::parse(&data).unwrap();
        let name_at = |pc| tab.function_at(pc).map(|f| f.name);
        assert_eq!(name_at(0x400fff), None);
        assert_eq!(name_at(0x401000), Some("internal/abi.(*Type).Kind"));
        assert_eq!(name_at(0x40101f), Some("internal/abi.(*Type).Kind"));
        assert_eq!(name_at(0x401020), Some("sync.(*Mutex).lockSlow"));
        assert_eq!(name_at(0x4011bf), Some("sync.(*Mutex).lockSlow"));
        assert_eq!(name_at(0x4011c0), Some("main.main"));
        assert_eq!(name_at(0x4011ff), Some("main.main"));
        assert_eq!(name_at(0x401200), None);
        assert_eq!(name_at(u64::MAX), None);
        assert_eq!(name_at(0), None);
    }

    #[test]
    fn text_start_override_and_go118_magic() {
        let data = synth_with_magic(MAGIC_GO118, 0, FUNCS);
        let tab = Pclntab::parse(&data).unwrap();
        assert_eq!(tab.version(), PclntabVersion::Go118);
        assert_eq!(tab.header_text_start(), 0);
        let tab = tab.with_text_start(0x10_0000);
        assert_eq!(tab.text_start(), 0x10_0000);
        assert_eq!(tab.header_text_start(), 0);
        assert_eq!(tab.find_function("main.main").unwrap().entry, 0x10_01c0);
        assert_eq!(
            tab.function_at(0x10_0021).unwrap().name,
            "sync.(*Mutex).lockSlow"
        );
    }

    #[test]
    fn rejects_bad_magic_and_old_versions() {
        let mut data = synth_pclntab(0x401000, FUNCS);
        data[0] = 0xfb;
        assert_eq!(
            Pclntab::parse(&data).unwrap_err(),
            PclntabError::UnsupportedVersion(MAGIC_GO12)
        );
        data[0] = 0x12;
        assert!(matches!(
            Pclntab::parse(&data),
            Err(PclntabError::BadMagic(_))
        ));
        assert!(matches!(
            Pclntab::parse(&[]),
            Err(PclntabError::Truncated { .. })
        ));

        let mut bad_ptr = synth_pclntab(0x401000, FUNCS);
        bad_ptr[7] = 4;
        assert!(matches!(
            Pclntab::parse(&bad_ptr),
            Err(PclntabError::BadHeader(_))
        ));
        let mut bad_pad = synth_pclntab(0x401000, FUNCS);
        bad_pad[4] = 1;
        assert!(matches!(
            Pclntab::parse(&bad_pad),
            Err(PclntabError::BadHeader(_))
        ));
    }

    #[test]
    fn truncation_is_an_error_at_every_length() {
        let data = synth_pclntab(0x401000, FUNCS);
        let header_and_table = 72 + FUNCS.iter().map(|f| f.0.len() + 1).sum::<usize>() + 28;
        for len in 0..header_and_table {
            assert!(
                matches!(
                    Pclntab::parse(&data[..len]),
                    Err(PclntabError::Truncated { .. })
                ),
                "len {len}"
            );
        }
        // With the table present but the _func records cut, parsing works
        // and the unreadable functions are skipped, without panicking.
        for len in header_and_table..data.len() {
            let tab = Pclntab::parse(&data[..len]).unwrap();
            // Only the first 8 bytes of the last _func are read.
            let last_readable = len >= data.len() - 44 + 8;
            assert_eq!(tab.functions().count() == 3, last_readable, "len {len}");
            let _ = tab.function_at(0x401100);
        }
    }

    #[test]
    fn hostile_offsets_do_not_panic() {
        let mut data = synth_pclntab(0x401000, FUNCS);
        // nfunc = huge
        data[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Pclntab::parse(&data).is_err());
        let mut data = synth_pclntab(0x401000, FUNCS);
        // functab offset beyond the end
        data[64..72].copy_from_slice(&(u64::MAX - 2).to_le_bytes());
        assert!(Pclntab::parse(&data).is_err());
        // A name offset pointing outside the data.
        let mut data = synth_pclntab(0x401000, FUNCS);
        let first_func = data.len() - 3 * 44;
        data[first_func + 4..first_func + 8].copy_from_slice(&i32::MAX.to_le_bytes());
        let tab = Pclntab::parse(&data).unwrap();
        assert_eq!(tab.functions().count(), 2);
    }

    /// Encodes a pc-value table from (value, pc delta) pairs.
    fn encode_pcvalues(pairs: &[(i32, u32)]) -> Vec<u8> {
        fn uvarint(out: &mut Vec<u8>, mut v: u32) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        let mut out = Vec::new();
        let mut prev = -1i32;
        for &(value, pc_delta) in pairs {
            let delta = value - prev;
            uvarint(&mut out, ((delta << 1) ^ (delta >> 31)) as u32);
            uvarint(&mut out, pc_delta);
            prev = value;
        }
        out.push(0);
        out
    }

    #[test]
    fn decodes_pc_value_tables() {
        // Values -1 -> 10 (+11), 9 (-1), 200 (+191, a two-byte varint),
        // with a two-byte pc delta.
        let table = encode_pcvalues(&[(10, 4), (9, 0x90), (200, 2)]);
        let rows: Vec<_> = PcValues::new(&table, 0x1000, 1).collect();
        assert_eq!(
            rows,
            vec![
                Ok(PcValue {
                    start: 0x1000,
                    end: 0x1004,
                    value: 10
                }),
                Ok(PcValue {
                    start: 0x1004,
                    end: 0x1094,
                    value: 9
                }),
                Ok(PcValue {
                    start: 0x1094,
                    end: 0x1096,
                    value: 200
                }),
            ]
        );
        // Quantum scales the pc deltas.
        let rows: Vec<_> = PcValues::new(&table, 0, 4)
            .map(|r| r.unwrap().end)
            .collect();
        assert_eq!(rows, vec![16, 16 + 0x240, 16 + 0x240 + 8]);
        // A first pair with value delta 0 (value stays -1) is not the end.
        let table = [0u8, 3, 2, 5, 0];
        let rows: Vec<_> = PcValues::new(&table, 0, 1).map(Result::unwrap).collect();
        assert_eq!(
            rows,
            vec![
                PcValue {
                    start: 0,
                    end: 3,
                    value: -1
                },
                PcValue {
                    start: 3,
                    end: 8,
                    value: 0
                },
            ]
        );
        // Negative deltas (zigzag 3 = -2) and a multi-byte zero delta
        // (0x80 0x00), which is not the end marker.
        let table = [3u8, 1, 0x80, 0x00, 1, 0];
        let rows: Vec<_> = PcValues::new(&table, 0, 1)
            .map(|r| r.unwrap().value)
            .collect();
        assert_eq!(rows, vec![-3, -3]);
    }

    #[test]
    fn corrupt_pc_value_tables_end_with_an_error() {
        let table = encode_pcvalues(&[(10, 4), (300, 0x1234)]);
        // Every truncation before the end marker is an error, never a panic.
        for len in 0..table.len() - 1 {
            let rows: Vec<_> = PcValues::new(&table[..len], 0, 1).collect();
            assert_eq!(
                rows.last(),
                Some(&Err(PcValueError::Truncated)),
                "len {len}"
            );
            assert!(rows[..rows.len() - 1].iter().all(Result::is_ok));
        }
        // Over-long varints.
        let rows: Vec<_> = PcValues::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 0, 1).collect();
        assert_eq!(rows, vec![Err(PcValueError::BadVarint)]);
        let rows: Vec<_> = PcValues::new(&[0xff, 0xff, 0xff, 0xff, 0x7f], 0, 1).collect();
        assert_eq!(rows, vec![Err(PcValueError::BadVarint)]);
        // pc overflow.
        let rows: Vec<_> =
            PcValues::new(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f], u64::MAX - 5, 4).collect();
        assert_eq!(rows, vec![Err(PcValueError::Overflow)]);
        // value overflow: +i32::MAX from -1 is fine, then +1 overflows.
        let mut table = vec![0xfe, 0xff, 0xff, 0xff, 0x0f, 1];
        table.extend([0xfe, 0xff, 0xff, 0xff, 0x0f, 1]);
        let rows: Vec<_> = PcValues::new(&table, 0, 1).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].unwrap().value, i32::MAX - 1);
        assert_eq!(rows[1], Err(PcValueError::Overflow));
    }

    /// A pclntab with line tables: functions as (name, offset, size, cu
    /// offset, pcfile pairs, pcln pairs); `cutab` and `files` as stored.
    #[derive(Default)]
    struct LineFunc<'a> {
        name: &'a str,
        off: u32,
        size: u32,
        cu: u32,
        pcfile: Vec<(i32, u32)>,
        pcln: Vec<(i32, u32)>,
        /// The pcdata InlTreeIndex table (none if empty).
        inl_index: Vec<(i32, u32)>,
        /// The funcdata InlTree offset (none if `None`).
        inl_tree: Option<u32>,
    }

    fn synth_with_lines(
        text_start: u64,
        funcs: &[LineFunc<'_>],
        cutab: &[u32],
        files: &[u8],
    ) -> Vec<u8> {
        synth_lines_full(MAGIC_GO120, text_start, funcs, &[], cutab, files).0
    }

    /// Like [`synth_with_lines`], for either format, with pcdata and
    /// funcdata, and `extra_names` appended to the name table (for inlined
    /// functions); returns the table and the name offsets of `extra_names`.
    fn synth_lines_full(
        magic: u32,
        text_start: u64,
        funcs: &[LineFunc<'_>],
        extra_names: &[&str],
        cutab: &[u32],
        files: &[u8],
    ) -> (Vec<u8>, Vec<i32>) {
        let header_len = 8 + 8 * 8;
        let mut names = Vec::new();
        let mut pctab = vec![0u8]; // offset 0 means "no table"
        let mut tables = Vec::new();
        for f in funcs {
            let name_off = names.len() as i32;
            names.extend_from_slice(f.name.as_bytes());
            names.push(0);
            let pcfile = pctab.len() as u32;
            pctab.extend(encode_pcvalues(&f.pcfile));
            let pcln = pctab.len() as u32;
            pctab.extend(encode_pcvalues(&f.pcln));
            let inl = if f.inl_index.is_empty() {
                0
            } else {
                let at = pctab.len() as u32;
                pctab.extend(encode_pcvalues(&f.inl_index));
                at
            };
            tables.push((name_off, pcfile, pcln, inl));
        }
        let mut extra_offs = Vec::new();
        for name in extra_names {
            extra_offs.push(names.len() as i32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let cu_bytes: Vec<u8> = cutab.iter().flat_map(|v| v.to_le_bytes()).collect();
        let funcname_offset = header_len;
        let cu_offset = funcname_offset + names.len();
        let filetab_offset = cu_offset + cu_bytes.len();
        let pctab_offset = filetab_offset + files.len();
        let functab_offset = pctab_offset + pctab.len();
        let table_len = funcs.len() * 8 + 4;
        let fixed = if magic == MAGIC_GO118 { 40 } else { 44 };
        let mut table = Vec::new();
        let mut records = Vec::new();
        for (i, f) in funcs.iter().enumerate() {
            table.extend(f.off.to_le_bytes());
            table.extend(((table_len + records.len()) as u32).to_le_bytes());
            let (name_off, pcfile, pcln, inl) = tables[i];
            let npcdata: u32 = if inl == 0 { 0 } else { 3 };
            let nfuncdata: u8 = if f.inl_tree.is_some() { 4 } else { 0 };
            let mut rec = Vec::new();
            rec.extend(f.off.to_le_bytes());
            rec.extend(name_off.to_le_bytes());
            rec.extend([0u8; 12]); // args, deferreturn, pcsp
            rec.extend(pcfile.to_le_bytes());
            rec.extend(pcln.to_le_bytes());
            rec.extend(npcdata.to_le_bytes());
            rec.extend(f.cu.to_le_bytes());
            rec.resize(fixed - 1, 0); // startLine (1.20+), funcID, flag, pad
            rec.push(nfuncdata);
            if npcdata > 0 {
                // UnsafePoint and StackMapIndex tables absent.
                rec.extend([0u8; 8]);
                rec.extend(inl.to_le_bytes());
            }
            if let Some(tree) = f.inl_tree {
                rec.extend([0xffu8; 12]);
                rec.extend(tree.to_le_bytes());
            }
            records.extend(rec);
        }
        let last = funcs.last().map_or(0, |f| f.off + f.size);
        table.extend(last.to_le_bytes());
        let mut out = Vec::new();
        out.extend(magic.to_le_bytes());
        out.extend([0, 0, 1, 8]);
        for v in [
            funcs.len(),
            cutab.len(),
            text_start as usize,
            funcname_offset,
            cu_offset,
            filetab_offset,
            pctab_offset,
            functab_offset,
        ] {
            out.extend((v as u64).to_le_bytes());
        }
        out.extend(names);
        out.extend(cu_bytes);
        out.extend(files);
        out.extend(pctab);
        out.extend(table);
        out.extend(records);
        (out, extra_offs)
    }

    fn line_funcs() -> Vec<LineFunc<'static>> {
        vec![
            LineFunc {
                name: "main.f",
                off: 0,
                size: 0x20,
                cu: 0,
                pcfile: vec![(0, 0x20)],
                pcln: vec![(7, 4), (8, 0xc), (7, 0x10)],
                ..Default::default()
            },
            LineFunc {
                name: "sync.(*Mutex).Lock",
                off: 0x20,
                size: 0x30,
                cu: 2,
                // An inlined call from file 1 in the middle.
                pcfile: vec![(0, 0x10), (1, 0x10), (0, 0x10)],
                pcln: vec![(40, 0x10), (99, 0x10), (45, 0x10)],
                ..Default::default()
            },
            LineFunc {
                name: "main.nofile",
                off: 0x50,
                size: 0x10,
                cu: 0,
                // File index 1 of cu 0 is absent (0xffffffff).
                pcfile: vec![(1, 0x10)],
                pcln: vec![(3, 0x10)],
                ..Default::default()
            },
        ]
    }

    const FILES: &[u8] = b"/src/main.go\0/go/src/sync/mutex.go\0/go/src/sync/atomic.go\0";

    #[test]
    fn source_lines_from_synthesized_tables() {
        let cutab = [0, u32::MAX, 13, 35];
        let data = synth_with_lines(0x401000, &line_funcs(), &cutab, FILES);
        let tab = Pclntab::parse(&data).unwrap();
        let at = |pc| tab.source_line(pc);
        let main = |l| Some(("/src/main.go".to_string(), l));
        let mutex = |l| Some(("/go/src/sync/mutex.go".to_string(), l));
        assert_eq!(at(0x400fff), None);
        assert_eq!(at(0x401000), main(7));
        assert_eq!(at(0x401003), main(7));
        assert_eq!(at(0x401004), main(8));
        assert_eq!(at(0x40100f), main(8));
        assert_eq!(at(0x401010), main(7));
        assert_eq!(at(0x40101f), main(7));
        assert_eq!(at(0x401020), mutex(40));
        assert_eq!(
            at(0x401030),
            Some(("/go/src/sync/atomic.go".to_string(), 99))
        );
        assert_eq!(at(0x401040), mutex(45));
        assert_eq!(at(0x40104f), mutex(45));
        assert_eq!(at(0x401050), None, "absent file");
        assert_eq!(at(0x401060), None);
        assert_eq!(
            tab.function_at(0x401030).unwrap().name,
            "sync.(*Mutex).Lock"
        );
    }

    #[test]
    fn hostile_line_tables_do_not_panic() {
        let cutab = [0, u32::MAX, 13, 35];
        let data = synth_with_lines(0x401000, &line_funcs(), &cutab, FILES);
        // Every truncation, and every single-byte corruption, of the whole
        // table: lookups return something or None, never panic.
        let pcs: Vec<u64> = (0x400ff0..0x401070).collect();
        for len in 0..data.len() {
            if let Ok(tab) = Pclntab::parse(&data[..len]) {
                for &pc in &pcs {
                    let _ = tab.source_line(pc);
                }
            }
        }
        for i in 72..data.len() {
            for byte in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = data.clone();
                bad[i] = byte;
                if let Ok(tab) = Pclntab::parse(&bad) {
                    for &pc in pcs.iter().step_by(3) {
                        let _ = tab.source_line(pc);
                    }
                }
            }
        }
        // A file index past the cu table, and a cu table entry past the file
        // table.
        let mut funcs = line_funcs();
        funcs[0].pcfile = vec![(1000, 0x20)];
        funcs[1].cu = 3;
        let cutab = [0, u32::MAX, 13, 5000];
        let data = synth_with_lines(0x401000, &funcs, &cutab, FILES);
        let tab = Pclntab::parse(&data).unwrap();
        assert_eq!(tab.source_line(0x401000), None);
        assert_eq!(tab.source_line(0x401020), None);
    }

    const INL_FILES: &[u8] = b"/src/main.go\0/src/mid.go\0/src/inner.go\0";
    const INL_CUTAB: &[u32] = &[0, 13, 25];
    const GOFUNC: u64 = 0x60_0000;
    const TREE_OFF: u32 = 0x20;

    /// main.outer (0x401000..0x401040) with main.mid inlined at 0x08..0x28,
    /// and main.inner inlined into main.mid at 0x18..0x20; then main.plain
    /// without inline data. Returns the pclntab and the bytes at GOFUNC.
    fn synth_inlined(magic: u32) -> (Vec<u8>, Vec<u8>) {
        let funcs = [
            LineFunc {
                name: "main.outer",
                off: 0,
                size: 0x40,
                cu: 0,
                pcfile: vec![(0, 0x10), (1, 0x8), (2, 0x8), (1, 0x8), (0, 0x18)],
                pcln: vec![
                    (10, 0x8),
                    (11, 0x8),
                    (20, 0x8),
                    (30, 0x8),
                    (21, 0x8),
                    (12, 0x18),
                ],
                inl_index: vec![(-1, 0x10), (0, 0x8), (1, 0x8), (0, 0x8), (-1, 0x18)],
                inl_tree: Some(TREE_OFF),
            },
            LineFunc {
                name: "main.plain",
                off: 0x40,
                size: 0x10,
                cu: 0,
                pcfile: vec![(0, 0x10)],
                pcln: vec![(5, 0x10)],
                ..Default::default()
            },
        ];
        let (table, names) = synth_lines_full(
            magic,
            0x401000,
            &funcs,
            &["main.mid", "main.inner"],
            INL_CUTAB,
            INL_FILES,
        );
        // (name offset, parentPc): main.mid called from outer's pc 0x08,
        // main.inner from mid's code at 0x10.
        let calls = [(names[0], 0x08i32), (names[1], 0x10i32)];
        (table, inline_tree(magic, &calls))
    }

    /// The bytes at GOFUNC: padding up to TREE_OFF, then the inline tree.
    fn inline_tree(magic: u32, calls: &[(i32, i32)]) -> Vec<u8> {
        let mut tree = vec![0xeeu8; TREE_OFF as usize];
        for (i, &(name, parent_pc)) in calls.iter().enumerate() {
            if magic == MAGIC_GO118 {
                let parent = i as i16 - 1;
                tree.extend(parent.to_le_bytes());
                tree.extend([0u8, 0]); // funcID, pad
                tree.extend(0i32.to_le_bytes()); // file
                tree.extend(0i32.to_le_bytes()); // line
                tree.extend(name.to_le_bytes());
                tree.extend(parent_pc.to_le_bytes());
            } else {
                tree.extend([0u8; 4]); // funcID, pad
                tree.extend(name.to_le_bytes());
                tree.extend(parent_pc.to_le_bytes());
                tree.extend(7i32.to_le_bytes()); // startLine
            }
        }
        tree
    }

    fn reader<'a>(bytes: &'a [u8]) -> impl Fn(u64, usize) -> Option<&'a [u8]> {
        move |addr, len| {
            let start = usize::try_from(addr.checked_sub(GOFUNC)?).ok()?;
            bytes.get(start..start.checked_add(len)?)
        }
    }

    fn frame(function: &str, file: &str, line: u32) -> InlineFrame {
        InlineFrame {
            function: function.into(),
            file: file.into(),
            line,
        }
    }

    #[test]
    fn inline_frames_walk_two_levels() {
        for magic in [MAGIC_GO120, MAGIC_GO118] {
            let (data, tree) = synth_inlined(magic);
            let tab = Pclntab::parse(&data).unwrap();
            let at = |pc| tab.inline_frames(pc, GOFUNC, reader(&tree));
            let outer = |line| frame("main.outer", "/src/main.go", line);
            assert_eq!(at(0x401000), vec![outer(10)], "{magic:#x}");
            assert_eq!(at(0x40100f), vec![outer(11)]);
            assert_eq!(
                at(0x401010),
                vec![frame("main.mid", "/src/mid.go", 20), outer(11)]
            );
            assert_eq!(
                at(0x40101a),
                vec![
                    frame("main.inner", "/src/inner.go", 30),
                    frame("main.mid", "/src/mid.go", 20),
                    outer(11),
                ],
                "{magic:#x}"
            );
            assert_eq!(
                at(0x401027),
                vec![frame("main.mid", "/src/mid.go", 21), outer(11)]
            );
            assert_eq!(at(0x401028), vec![outer(12)]);
            assert_eq!(at(0x40103f), vec![outer(12)]);
            assert_eq!(at(0x401040), vec![frame("main.plain", "/src/main.go", 5)]);
            assert_eq!(at(0x400fff), vec![]);
            assert_eq!(at(0x401050), vec![]);
            // The innermost frame agrees with source_line.
            let (file, line) = tab.source_line(0x40101a).unwrap();
            assert_eq!((file.as_str(), line), ("/src/inner.go", 30));
        }
    }

    #[test]
    fn unreadable_inline_tree_is_marked_unknown() {
        let (data, _) = synth_inlined(MAGIC_GO120);
        let tab = Pclntab::parse(&data).unwrap();
        let frames = tab.inline_frames(0x40101a, GOFUNC, |_, _| None);
        assert_eq!(
            frames,
            vec![frame("?", "/src/inner.go", 30), frame("main.outer", "?", 0)]
        );
        // Code that is not inlined does not need the tree.
        let frames = tab.inline_frames(0x401030, GOFUNC, |_, _| None);
        assert_eq!(frames, vec![frame("main.outer", "/src/main.go", 12)]);
    }

    #[test]
    fn hostile_inline_trees_do_not_panic() {
        let pcs: Vec<u64> = (0x400ff8..0x401058).collect();
        for magic in [MAGIC_GO120, MAGIC_GO118] {
            let (data, tree) = synth_inlined(magic);
            let tab = Pclntab::parse(&data).unwrap();
            // Every truncation and single-byte corruption of the tree.
            for len in 0..tree.len() {
                for &pc in &pcs {
                    let frames = tab.inline_frames(pc, GOFUNC, reader(&tree[..len]));
                    assert!(frames.len() <= 3, "{frames:?}");
                }
            }
            for i in TREE_OFF as usize..tree.len() {
                for byte in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = tree.clone();
                    bad[i] = byte;
                    for &pc in pcs.iter().step_by(2) {
                        let frames = tab.inline_frames(pc, GOFUNC, reader(&bad));
                        assert!(frames.len() <= MAX_INLINE_DEPTH + 1);
                    }
                }
            }
            // A gofunc at the end of the address space.
            let _ = tab.inline_frames(0x40101a, u64::MAX - 4, reader(&tree));
            // Every truncation and corruption of the pclntab.
            for len in 0..data.len() {
                if let Ok(tab) = Pclntab::parse(&data[..len]) {
                    for &pc in pcs.iter().step_by(3) {
                        let _ = tab.inline_frames(pc, GOFUNC, reader(&tree));
                    }
                }
            }
            for i in 72..data.len() {
                for byte in [0x00, 0x7f, 0x80, 0xff] {
                    let mut bad = data.clone();
                    bad[i] = byte;
                    if let Ok(tab) = Pclntab::parse(&bad) {
                        for &pc in pcs.iter().step_by(5) {
                            let _ = tab.inline_frames(pc, GOFUNC, reader(&tree));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn looping_or_stray_parent_pcs_end_the_walk() {
        let (data, tree) = synth_inlined(MAGIC_GO120);
        let tab = Pclntab::parse(&data).unwrap();
        let name_off = |tree: &[u8], i: usize| {
            let at = TREE_OFF as usize + 16 * i + 4;
            i32::from_le_bytes(tree[at..at + 4].try_into().unwrap())
        };
        let (mid, inner) = (name_off(&tree, 0), name_off(&tree, 1));
        // main.inner's call site is its own code: a cycle.
        let looping = inline_tree(MAGIC_GO120, &[(mid, 0x08), (inner, 0x18)]);
        let frames = tab.inline_frames(0x40101a, GOFUNC, reader(&looping));
        assert_eq!(frames.len(), MAX_INLINE_DEPTH + 1);
        assert_eq!(frames.last(), Some(&frame("main.outer", "?", 0)));
        // Call sites outside the function, and a bad name offset.
        for parent_pc in [-1, 0x40, i32::MAX, i32::MIN] {
            let stray = inline_tree(MAGIC_GO120, &[(mid, 0x08), (i32::MAX, parent_pc)]);
            let frames = tab.inline_frames(0x40101a, GOFUNC, reader(&stray));
            assert_eq!(
                frames,
                vec![frame("?", "/src/inner.go", 30), frame("main.outer", "?", 0)]
            );
        }
    }

    #[test]
    fn locates_table_inside_other_data() {
        let table = synth_pclntab(0x401000, FUNCS);
        let mut data = vec![0u8; 0x40];
        // A decoy: magic with a bogus header.
        data.extend([0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
        data.extend([0xff; 24]);
        let at = data.len();
        data.extend(&table);
        data.extend([0u8; 16]);
        assert_eq!(locate_in(&data), Some(at));
        let tab = Pclntab::parse(&data[at..]).unwrap();
        assert_eq!(tab.len(), 3);
        assert_eq!(locate_in(&data[..at]), None);
        assert_eq!(locate_in(&[]), None);
    }
}
