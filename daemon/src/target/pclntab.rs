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
//! _func at funcOff:
//!   entryOff u32 (same as in the table), nameOff i32 (into the name table,
//!   NUL-terminated), ...
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

/// A parsed pclntab, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    version: PclntabVersion,
    ptr_size: u8,
    nfunc: usize,
    header_text_start: u64,
    text_start: u64,
    funcname_offset: usize,
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
            funcname_offset: to_usize(funcname_offset)?,
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
        let func_off = read_u32(self.data, self.functab_offset + index * 8 + 4)?;
        let func = self
            .functab_offset
            .checked_add(usize::try_from(func_off).ok()?)?;
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
        self.function(lo).filter(|f| pc < f.end)
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
