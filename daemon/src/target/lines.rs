//! Source positions (`file:line`) of code addresses, for reports.
//!
//! Go code is looked up in Go's pclntab, which stripped Go binaries keep;
//! other code (C, Rust, the C parts of a cgo binary) in the DWARF line
//! tables (`.debug_line`). [`SourceLines`] reads both once per binary and
//! answers any number of lookups. All addresses are link-time addresses.
//!
//! [`SourceLines::inline_frames`] also unwinds inlining. For Go code the
//! pclntab gives the inlined calls at an address through each function's
//! inline tree, which lies in the `go:func.*` data (found through
//! `.symtab`); for native code, DWARF's inlined subroutines
//! (`DW_TAG_inlined_subroutine`: their code ranges, the function each is
//! an instance of, and where it was called).

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{EndianSlice, LittleEndian, SectionId};

use super::elf::ElfImage;
use super::pclntab::{self, InlineFrame, Pclntab};
use super::symbols::{locate_pclntab, text_start_fallback};
use crate::{goruntime::GOFUNC_SYMBOLS, model::SourceLine};

/// Words of `runtime.moduledata` searched for its `gofunc` field.
const MODULEDATA_WORDS: usize = 64;

/// The line information of one executable, read once.
#[derive(Debug, Clone, Default)]
pub struct SourceLines {
    go: Option<GoLines>,
    dwarf: DwarfLines,
    inlines: DwarfInlines,
}

impl SourceLines {
    /// Reads the line information of `elf`: its Go pclntab, if any, and its
    /// DWARF line tables (for a Go binary, only for code outside the Go
    /// functions). Never fails: missing or unreadable information just
    /// leaves addresses without a line.
    pub fn new(elf: &ElfImage) -> SourceLines {
        let go = GoLines::find(elf);
        let go_range = go.as_ref().and_then(GoLines::range);
        let dwarf = DwarfLines::read(elf, go_range).unwrap_or_else(|e| {
            log::debug!("cannot read the DWARF line tables: {e}");
            DwarfLines::default()
        });
        // Go's own inline trees are the pclntab's; a Go binary's DWARF is
        // not read for them (a cgo binary's C code goes without).
        let inlines = if go.is_some() {
            DwarfInlines::default()
        } else {
            DwarfInlines::read(elf).unwrap_or_else(|e| {
                log::debug!("cannot read DWARF's inlined subroutines: {e}");
                DwarfInlines::default()
            })
        };
        SourceLines { go, dwarf, inlines }
    }

    /// Whether there is no line information at all.
    pub fn is_empty(&self) -> bool {
        self.go.is_none() && self.dwarf.rows.is_empty()
    }

    /// The source position of the instruction at link-time `address`.
    pub fn line(&self, address: u64) -> Option<SourceLine> {
        let (file, line) = self
            .go
            .as_ref()
            .and_then(|go| go.line(address))
            .or_else(|| self.dwarf.line(address))?;
        Some(SourceLine { file, line })
    }

    /// The logical frames at link-time `address`, innermost first, from Go's
    /// inline tree (the pclntab and its funcdata: the `go:func.*` symbol, or
    /// the module data in stripped binaries) or DWARF's inlined
    /// subroutines: one per inlined call, then the function holding the
    /// code (the position of the address for the innermost, of the call
    /// site for the others; `?` and 0 for what the tables do not give).
    /// Empty without an inline tree (no funcdata found, no DWARF).
    pub fn inline_frames(&self, address: u64) -> Vec<InlineFrame> {
        if let Some(frames) = self.go.as_ref().and_then(|go| go.frames(address)) {
            return frames;
        }
        self.inlines.frames(address, self.line(address))
    }
}

/// A copy of the pclntab, from its header on, and of the funcdata.
#[derive(Debug, Clone)]
struct GoLines {
    data: Vec<u8>,
    text_start: u64,
    gofunc: Option<GoFuncData>,
}

/// A copy of the bytes from the `go:func.*` symbol (moduledata.gofunc) on,
/// which hold the inline trees.
#[derive(Debug, Clone)]
struct GoFuncData {
    /// Link-time address of the symbol.
    address: u64,
    bytes: Vec<u8>,
}

impl GoFuncData {
    /// The `go:func.*` data of `elf`: from the symbol to its end (its size,
    /// or when that is 0 the next symbol), within its section and segment.
    fn find(elf: &ElfImage) -> Option<GoFuncData> {
        let objects = elf.symtab_objects();
        let symbol = GOFUNC_SYMBOLS
            .iter()
            .find_map(|name| objects.iter().find(|s| s.name == *name))?;
        let address = symbol.address;
        let segment = elf
            .load_segments()
            .iter()
            .find(|s| address >= s.vaddr && address - s.vaddr < s.file_size)?;
        let mut end = segment.vaddr.checked_add(segment.file_size)?;
        if let Some(section) = elf
            .sections()
            .iter()
            .find(|s| !s.is_nobits() && s.contains(address))
        {
            end = end.min(section.address.saturating_add(section.size));
        }
        if symbol.size > 0 {
            end = end.min(address.saturating_add(symbol.size));
        } else if let Some(next) = objects
            .iter()
            .chain(elf.symtab_functions())
            .map(|s| s.address)
            .filter(|&a| a > address)
            .min()
        {
            end = end.min(next);
        }
        let len = usize::try_from(end.checked_sub(address)?).ok()?;
        let bytes = elf.read_vaddr(address, len)?.to_vec();
        Some(GoFuncData { address, bytes })
    }

    /// The funcdata base of a binary without symbols, from the runtime's
    /// module data: the variable in the data sections whose first word
    /// points at the pclntab (`moduledata.pcHeader`). Its `gofunc` field
    /// moved between Go versions (word 40 up to 1.24, 43 in 1.27), so every
    /// word that points into read-only data is tried as the base, and the
    /// one under which the functions' inline trees make sense is taken.
    fn from_moduledata(elf: &ElfImage, pclntab: u64, table: &Pclntab<'_>) -> Option<GoFuncData> {
        // (score, candidate base, end of its section)
        let mut best: Option<(usize, u64, u64)> = None;
        for section in elf.sections().iter().filter(|s| {
            s.flags & u64::from(object::elf::SHF_WRITE) != 0 && !s.is_nobits() && s.size >= 8
        }) {
            let data = elf.read_vaddr(section.address, section.size as usize)?;
            for (i, word) in data.chunks_exact(8).enumerate() {
                if u64::from_le_bytes(word.try_into().ok()?) != pclntab {
                    continue;
                }
                let words: Vec<u64> = data[i * 8..]
                    .chunks_exact(8)
                    .take(MODULEDATA_WORDS)
                    .filter_map(|w| w.try_into().ok().map(u64::from_le_bytes))
                    .collect();
                for &candidate in words.iter().skip(1) {
                    let Some(end) = Self::read_only_end(elf, candidate) else {
                        continue;
                    };
                    let score = table.inline_tree_score(candidate, 200, |a, len| {
                        let last = a.checked_add(len as u64)?;
                        (a >= candidate && last <= end)
                            .then(|| elf.read_vaddr(a, len))
                            .flatten()
                    });
                    if score > best.map_or(0, |(s, _, _)| s) {
                        best = Some((score, candidate, end));
                    }
                }
            }
        }
        let (_, address, end) = best?;
        let bytes = elf
            .read_vaddr(address, usize::try_from(end - address).ok()?)?
            .to_vec();
        Some(GoFuncData { address, bytes })
    }

    /// The end of the read-only data section holding `address`.
    fn read_only_end(elf: &ElfImage, address: u64) -> Option<u64> {
        let section = elf.sections().iter().find(|s| {
            s.contains(address)
                && !s.is_nobits()
                && s.flags & u64::from(object::elf::SHF_WRITE) == 0
                && s.flags & u64::from(object::elf::SHF_EXECINSTR) == 0
                && s.flags & u64::from(object::elf::SHF_ALLOC) != 0
        })?;
        Some(section.address + section.size)
    }

    /// The `len` bytes at link-time address `address`.
    fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(address.checked_sub(self.address)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
}

impl GoLines {
    /// The pclntab of `elf`: its own section, or found in the read-only data
    /// or (no section headers) the non-executable segments.
    fn find(elf: &ElfImage) -> Option<GoLines> {
        let (data, vaddr) = locate_pclntab(elf)?;
        let data = data.into_owned();
        let table = Pclntab::parse(&data).ok()?;
        let text_start = if table.header_text_start() == 0 {
            text_start_fallback(elf, vaddr)
        } else {
            table.header_text_start()
        };
        let gofunc =
            GoFuncData::find(elf).or_else(|| GoFuncData::from_moduledata(elf, vaddr, &table));
        Some(GoLines {
            data,
            text_start,
            gofunc,
        })
    }

    fn table(&self) -> Option<Pclntab<'_>> {
        Pclntab::parse(&self.data)
            .ok()
            .map(|t| t.with_text_start(self.text_start))
    }

    /// The addresses of the Go functions.
    fn range(&self) -> Option<(u64, u64)> {
        let table = self.table()?;
        Some((table.function(0)?.entry, table.end_pc()?))
    }

    fn line(&self, address: u64) -> Option<(String, u32)> {
        self.table()?.source_line(address)
    }

    /// The inlining frames at `address`; `None` without the funcdata.
    fn frames(&self, address: u64) -> Option<Vec<pclntab::InlineFrame>> {
        let gofunc = self.gofunc.as_ref()?;
        let table = self.table()?;
        Some(table.inline_frames(address, gofunc.address, |a, len| gofunc.read(a, len)))
    }
}

/// A row of the merged DWARF line tables: from `address` up to the next
/// row, the code is at `line` of file `file`; `line` 0 marks the end of a
/// sequence (or code without a line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    address: u64,
    file: u32,
    line: u32,
}

/// All DWARF line rows, sorted by address, and the file names they use.
#[derive(Debug, Clone, Default)]
struct DwarfLines {
    rows: Vec<Row>,
    files: Vec<String>,
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

impl DwarfLines {
    /// Reads every line program of `elf`, skipping sequences that start in
    /// `skip` (the Go functions, which the pclntab covers).
    fn read(elf: &ElfImage, skip: Option<(u64, u64)>) -> gimli::Result<DwarfLines> {
        let mut lines = DwarfLines::default();
        if elf.section(".debug_line").is_none() {
            return Ok(lines);
        }
        let sections = gimli::DwarfSections::load(|id| Ok::<_, gimli::Error>(load(elf, id)))?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut units = dwarf.units();
        while let Some(header) = units.next()? {
            let unit = match dwarf.unit(header) {
                Ok(unit) => unit,
                Err(e) => {
                    log::debug!("skipping unreadable DWARF unit: {e}");
                    continue;
                }
            };
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            let mut unit_files: HashMap<u64, Option<u32>> = HashMap::new();
            let mut sequence: Vec<Row> = Vec::new();
            let mut rows = program.rows();
            loop {
                let (header, row) = match rows.next_row() {
                    Ok(Some(next)) => next,
                    Ok(None) => break,
                    Err(e) => {
                        log::debug!("stopping at a corrupt line program: {e}");
                        break;
                    }
                };
                if row.end_sequence() {
                    sequence.push(Row {
                        address: row.address(),
                        file: 0,
                        line: 0,
                    });
                    let starts_in_skip = sequence.first().is_some_and(|r| {
                        skip.is_some_and(|(lo, hi)| r.address >= lo && r.address < hi)
                    });
                    // A sequence at 0 is code the linker discarded.
                    let discarded = sequence.first().is_some_and(|r| r.address == 0);
                    if !starts_in_skip && !discarded {
                        lines.rows.append(&mut sequence);
                    }
                    sequence.clear();
                    continue;
                }
                let file = *unit_files.entry(row.file_index()).or_insert_with(|| {
                    let path = file_path(&dwarf, &unit, header, row.file_index())?;
                    let next = u32::try_from(lines.files.len()).ok()?;
                    Some(*names.entry(path).or_insert_with_key(|path| {
                        lines.files.push(path.clone());
                        next
                    }))
                });
                let line = row
                    .line()
                    .map_or(0, |l| u32::try_from(l.get()).unwrap_or(0));
                match file {
                    Some(file) if line != 0 => sequence.push(Row {
                        address: row.address(),
                        file,
                        line,
                    }),
                    _ => sequence.push(Row {
                        address: row.address(),
                        file: 0,
                        line: 0,
                    }),
                }
            }
        }
        // At equal addresses, a sequence's end sorts before the start of the
        // sequence that follows it, so the lookup finds the start.
        lines.rows.sort_by_key(|r| (r.address, r.line != 0));
        Ok(lines)
    }

    fn line(&self, address: u64) -> Option<(String, u32)> {
        let after = self.rows.partition_point(|r| r.address <= address);
        let row = self.rows.get(after.checked_sub(1)?)?;
        if row.line == 0 {
            return None;
        }
        Some((self.files.get(row.file as usize)?.clone(), row.line))
    }
}

/// One inlined call's code range, from a `DW_TAG_inlined_subroutine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inlined {
    /// `[low, high)`, link-time.
    low: u64,
    high: u64,
    /// Nesting depth in its unit's tree: deeper is inlined into shallower.
    depth: u32,
    /// The function inlined (index into [`DwarfInlines::names`]).
    name: u32,
    /// Where it was called: file (index into [`DwarfInlines::files`], or
    /// `u32::MAX` if unknown) and line (0 if unknown).
    call_file: u32,
    call_line: u32,
}

/// Every inlined call of a native binary's DWARF, by start address.
#[derive(Debug, Clone, Default)]
struct DwarfInlines {
    ranges: Vec<Inlined>,
    names: Vec<String>,
    files: Vec<String>,
    /// The longest range, bounding how far back a lookup looks.
    longest: u64,
}

impl DwarfInlines {
    /// Reads the inlined subroutines of every unit of `elf`.
    fn read(elf: &ElfImage) -> gimli::Result<DwarfInlines> {
        let mut inlines = DwarfInlines::default();
        if elf.section(".debug_info").is_none() {
            return Ok(inlines);
        }
        let sections = gimli::DwarfSections::load(|id| Ok::<_, gimli::Error>(load(elf, id)))?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        let mut names: HashMap<String, u32> = HashMap::new();
        let mut files: HashMap<String, u32> = HashMap::new();
        let mut units = dwarf.units();
        while let Some(header) = units.next()? {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            // A unit that does not read is passed over, not the rest.
            if let Err(e) = inlines.read_unit(&dwarf, &unit, &mut names, &mut files) {
                log::debug!("stopping in a DWARF unit's inlined subroutines: {e}");
            }
        }
        inlines.ranges.sort_by_key(|r| (r.low, r.depth));
        Ok(inlines)
    }

    /// Reads the inlined subroutines of one unit.
    fn read_unit(
        &mut self,
        dwarf: &gimli::Dwarf<Slice<'_>>,
        unit: &gimli::Unit<Slice<'_>>,
        names: &mut HashMap<String, u32>,
        files: &mut HashMap<String, u32>,
    ) -> gimli::Result<()> {
        let mut entries = unit.entries();
        let mut depth: isize = 0;
        while let Some((delta, entry)) = entries.next_dfs()? {
            depth += delta;
            if entry.tag() != gimli::DW_TAG_inlined_subroutine {
                continue;
            }
            let Some(name) = origin_name(dwarf, unit, entry) else {
                continue;
            };
            let next = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            let name = *names.entry(name).or_insert_with_key(|name| {
                self.names.push(name.clone());
                next
            });
            let call_file = match (
                entry.attr_value(gimli::DW_AT_call_file)?,
                &unit.line_program,
            ) {
                (Some(gimli::AttributeValue::FileIndex(index)), Some(program)) => {
                    file_path(dwarf, unit, program.header(), index).map(|path| {
                        let next = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
                        *files.entry(path).or_insert_with_key(|path| {
                            self.files.push(path.clone());
                            next
                        })
                    })
                }
                _ => None,
            }
            .unwrap_or(u32::MAX);
            let call_line = entry
                .attr_value(gimli::DW_AT_call_line)?
                .and_then(|v| v.udata_value())
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(0);
            let mut ranges = dwarf.die_ranges(unit, entry)?;
            while let Some(range) = ranges.next()? {
                if range.begin == 0 || range.end <= range.begin {
                    continue; // discarded by the linker, or empty
                }
                self.longest = self.longest.max(range.end - range.begin);
                self.ranges.push(Inlined {
                    low: range.begin,
                    high: range.end,
                    depth: u32::try_from(depth).unwrap_or(0),
                    name,
                    call_file,
                    call_line,
                });
            }
        }
        Ok(())
    }

    /// The logical frames at `address` (see [`SourceLines::inline_frames`]):
    /// the inlined calls covering it, innermost first, at `line` for the
    /// innermost and at the next one's call site for the others, then the
    /// real function (named `?`: the symbol table names it) at the
    /// outermost call's site. Empty when no inlined call covers it.
    fn frames(&self, address: u64, line: Option<SourceLine>) -> Vec<InlineFrame> {
        let end = self.ranges.partition_point(|r| r.low <= address);
        let mut covering: Vec<&Inlined> = self.ranges[..end]
            .iter()
            .rev()
            .take_while(|r| address - r.low <= self.longest)
            .filter(|r| address < r.high)
            .collect();
        if covering.is_empty() {
            return Vec::new();
        }
        covering.sort_by_key(|r| std::cmp::Reverse(r.depth));
        let file = |index: u32| {
            self.files
                .get(index as usize)
                .cloned()
                .unwrap_or_else(|| "?".into())
        };
        let (mut at_file, mut at_line) =
            line.map_or_else(|| ("?".to_string(), 0), |l| (l.file, l.line));
        let mut frames = Vec::with_capacity(covering.len() + 1);
        for inlined in covering {
            frames.push(InlineFrame {
                function: self
                    .names
                    .get(inlined.name as usize)
                    .cloned()
                    .unwrap_or_else(|| "?".into()),
                file: at_file,
                line: at_line,
            });
            at_file = file(inlined.call_file);
            at_line = inlined.call_line;
        }
        frames.push(InlineFrame {
            function: "?".into(),
            file: at_file,
            line: at_line,
        });
        frames
    }
}

/// The name of the function an inlined subroutine is an instance of: its
/// abstract origin's linkage name when it demangles (a C++ template's does
/// not: see [`super::demangle`]), else its plain name, following origins
/// and specifications a few steps.
fn origin_name(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, Slice<'_>>,
) -> Option<String> {
    let mut offset = match entry.attr_value(gimli::DW_AT_abstract_origin).ok()?? {
        gimli::AttributeValue::UnitRef(offset) => offset,
        _ => return None,
    };
    for _ in 0..4 {
        let origin = unit.entry(offset).ok()?;
        for attr in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name] {
            if let Some(value) = origin.attr_value(attr).ok().flatten() {
                if let Ok(name) = dwarf.attr_string(unit, value) {
                    let name = super::demangle(&name.to_string_lossy());
                    if !name.starts_with("_Z") {
                        return Some(name);
                    }
                }
            }
        }
        let next = [gimli::DW_AT_specification, gimli::DW_AT_abstract_origin]
            .iter()
            .find_map(|&attr| match origin.attr_value(attr).ok().flatten() {
                Some(gimli::AttributeValue::UnitRef(next)) => Some(next),
                _ => None,
            });
        match next {
            Some(next) => offset = next,
            None => {
                let value = origin.attr_value(gimli::DW_AT_name).ok()??;
                let name = dwarf.attr_string(unit, value).ok()?;
                return Some(name.to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// One debug section's bytes (decompressed), empty when absent.
fn load(elf: &ElfImage, id: SectionId) -> Cow<'_, [u8]> {
    let wanted = matches!(
        id,
        SectionId::DebugInfo
            | SectionId::DebugAbbrev
            | SectionId::DebugLine
            | SectionId::DebugStr
            | SectionId::DebugLineStr
            | SectionId::DebugStrOffsets
            | SectionId::DebugAddr
            | SectionId::DebugRngLists
            | SectionId::DebugRanges
    );
    elf.section(id.name())
        .filter(|s| wanted && !s.is_nobits())
        .and_then(|s| elf.section_data(&s).ok())
        .unwrap_or(Cow::Borrowed(&[]))
}

/// The path of file `index` of a line program: the file name, under its
/// directory when relative, under the unit's compilation directory when
/// still relative.
fn file_path(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    header: &gimli::LineProgramHeader<Slice<'_>>,
    index: u64,
) -> Option<String> {
    let file = header.file(index)?;
    let string = |value| {
        dwarf
            .attr_string(unit, value)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    };
    let mut path = string(file.path_name())?;
    if !path.starts_with('/') {
        if let Some(dir) = file.directory(header).and_then(string) {
            path = join(&dir, &path);
        }
    }
    if !path.starts_with('/') {
        if let Some(comp_dir) = &unit.comp_dir {
            path = join(&comp_dir.to_string_lossy(), &path);
        }
    }
    Some(path)
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{file}")
    } else {
        format!("{dir}/{file}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn mapwatch_line_marker(x: u64) -> u64 {
        x ^ 0x5a
    }

    #[test]
    fn own_function_maps_to_this_file() {
        let marker_line = line!() - 6;
        let exe = std::env::current_exe().unwrap();
        let elf = ElfImage::open(&exe).unwrap();
        let lines = SourceLines::new(&elf);
        assert!(!lines.is_empty());
        assert_eq!(mapwatch_line_marker(std::hint::black_box(2)), 0x58);
        // The function's link-time address, from the symbol table.
        let symbol = elf
            .symtab_functions()
            .iter()
            .find(|s| s.name.contains("mapwatch_line_marker"))
            .expect("marker symbol");
        let found = lines.line(symbol.address).expect("a line for the marker");
        assert!(found.file.ends_with("target/lines.rs"), "{found}");
        let line = found.line;
        assert!(
            line >= marker_line && line <= marker_line + 3,
            "{found}, expected near {marker_line}"
        );
        // Addresses outside any code have no line.
        assert_eq!(lines.line(0), None);
        assert_eq!(lines.line(u64::MAX), None);
    }

    #[test]
    fn empty_for_non_debug_images() {
        let lines = SourceLines::default();
        assert!(lines.is_empty());
        assert_eq!(lines.line(0x401000), None);
    }

    #[test]
    fn no_inline_frames_outside_go_code() {
        let lines = SourceLines::default();
        assert!(lines.inline_frames(0x401000).is_empty());
        // This test binary is Rust: DWARF lines, no Go inline tree.
        let exe = std::env::current_exe().unwrap();
        let elf = ElfImage::open(&exe).unwrap();
        let lines = SourceLines::new(&elf);
        let symbol = elf
            .symtab_functions()
            .iter()
            .find(|s| s.name.contains("mapwatch_line_marker"))
            .expect("marker symbol");
        assert!(lines.inline_frames(symbol.address).is_empty());
        assert!(lines.line(symbol.address).is_some());
    }

    /// The `lock cmpxchg` of `counter.CompareAndSwap` in main.casIncrement
    /// of the casloop fixtures: sync/atomic.(*Int64).CompareAndSwap inlined
    /// into main.casIncrement at the line of the call.
    #[test]
    fn inlined_frames_of_go_fixtures() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let source = std::fs::read_to_string(format!("{root}/fixtures/go/casloop/main.go"));
        let mut checked = 0;
        for version in ["go1.27.3", "go1.24.11", "go1.23.9", "go1.21.13"] {
            let path = format!("{root}/target/fixtures/{version}/casloop");
            let path = std::path::Path::new(&path);
            if !path.exists() {
                eprintln!("skipping {version}: {} not built", path.display());
                continue;
            }
            let Ok(source) = &source else {
                eprintln!("skipping: fixtures/go/casloop/main.go missing");
                return;
            };
            let call_line = source
                .lines()
                .position(|l| l.contains("counter.CompareAndSwap("))
                .expect("the CompareAndSwap call")
                + 1;
            let elf = ElfImage::open(path).unwrap();
            let lines = SourceLines::new(&elf);
            let function = elf
                .symtab_functions()
                .iter()
                .find(|s| s.name == "main.casIncrement")
                .expect("main.casIncrement");
            let code = elf
                .read_vaddr(function.address, function.size as usize)
                .unwrap();
            // lock cmpxchg r/m64, r64: F0 REX.W 0F B1.
            let at = code
                .windows(4)
                .position(|w| w[0] == 0xf0 && w[1] & 0xf8 == 0x48 && w[2..] == [0x0f, 0xb1])
                .expect("lock cmpxchg in main.casIncrement");
            let address = function.address + at as u64;
            let frames: Vec<String> = lines
                .inline_frames(address)
                .iter()
                .map(|f| format!("{} ({}:{})", f.function, f.file, f.line))
                .collect();
            assert_eq!(frames.len(), 2, "{version}: {frames:?}");
            let innermost = lines.line(address).unwrap().to_string();
            assert!(
                innermost.contains("/src/sync/atomic/type.go:"),
                "{version}: {innermost}"
            );
            assert_eq!(
                frames[0],
                format!("sync/atomic.(*Int64).CompareAndSwap ({innermost})"),
                "{version}"
            );
            assert!(
                frames[1].starts_with("main.casIncrement (/")
                    && frames[1].ends_with(&format!("/fixtures/go/casloop/main.go:{call_line})")),
                "{version}: {frames:?}"
            );
            eprintln!("{version} {address:#x}: {frames:?}");
            checked += 1;
        }
        if checked == 0 {
            eprintln!("skipping: no casloop fixture built");
        }
    }

    /// The `lock cmpxchg` of `plainMu.Lock()` in main.main.func5 of the
    /// contend fixtures: sync.(*Mutex).Lock inlined into main.main.func5,
    /// and from Go 1.24 internal/sync.(*Mutex).Lock inlined into it (two
    /// levels).
    #[test]
    fn doubly_inlined_frames_of_go_fixtures() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let Ok(source) = std::fs::read_to_string(format!("{root}/fixtures/go/contend/main.go"))
        else {
            eprintln!("skipping: fixtures/go/contend/main.go missing");
            return;
        };
        let call_line = source
            .lines()
            .position(|l| l.trim() == "plainMu.Lock()")
            .expect("the plainMu.Lock call")
            + 1;
        for (version, depth) in [
            ("go1.27.3", 3),
            ("go1.24.11", 3),
            ("go1.23.9", 2),
            ("go1.21.13", 2),
        ] {
            let path = format!("{root}/target/fixtures/{version}/contend");
            let path = std::path::Path::new(&path);
            if !path.exists() {
                eprintln!("skipping {version}: {} not built", path.display());
                continue;
            }
            let elf = ElfImage::open(path).unwrap();
            let lines = SourceLines::new(&elf);
            let function = elf
                .symtab_functions()
                .iter()
                .find(|s| s.name == "main.main.func5")
                .expect("main.main.func5");
            let code = elf
                .read_vaddr(function.address, function.size as usize)
                .unwrap();
            // lock cmpxchg r/m32, r32: F0 0F B1.
            let at = code
                .windows(3)
                .position(|w| w == [0xf0, 0x0f, 0xb1])
                .expect("lock cmpxchg in main.main.func5");
            let address = function.address + at as u64;
            let frames: Vec<String> = lines
                .inline_frames(address)
                .iter()
                .map(|f| format!("{} ({}:{})", f.function, f.file, f.line))
                .collect();
            assert_eq!(frames.len(), depth, "{version}: {frames:?}");
            let innermost = lines.line(address).unwrap().to_string();
            let lock = if depth == 3 {
                "internal/sync.(*Mutex).Lock"
            } else {
                "sync.(*Mutex).Lock"
            };
            assert_eq!(frames[0], format!("{lock} ({innermost})"), "{version}");
            if depth == 3 {
                assert!(
                    frames[1].starts_with("sync.(*Mutex).Lock (/")
                        && frames[1].contains("/src/sync/mutex.go:"),
                    "{version}: {frames:?}"
                );
            }
            assert!(
                frames[depth - 1].starts_with("main.main.func5 (/")
                    && frames[depth - 1]
                        .ends_with(&format!("/fixtures/go/contend/main.go:{call_line})")),
                "{version}: {frames:?}"
            );
        }
    }

    #[test]
    fn row_lookup_respects_sequence_ends() {
        let lines = DwarfLines {
            rows: vec![
                Row {
                    address: 0x100,
                    file: 0,
                    line: 10,
                },
                Row {
                    address: 0x108,
                    file: 0,
                    line: 12,
                },
                Row {
                    address: 0x110,
                    file: 0,
                    line: 0,
                },
                Row {
                    address: 0x200,
                    file: 1,
                    line: 5,
                },
                Row {
                    address: 0x210,
                    file: 0,
                    line: 0,
                },
            ],
            files: vec!["/src/a.c".into(), "/src/b.c".into()],
        };
        let at = |a| lines.line(a);
        assert_eq!(at(0xff), None);
        assert_eq!(at(0x100), Some(("/src/a.c".into(), 10)));
        assert_eq!(at(0x107), Some(("/src/a.c".into(), 10)));
        assert_eq!(at(0x108), Some(("/src/a.c".into(), 12)));
        assert_eq!(at(0x110), None);
        assert_eq!(at(0x1ff), None);
        assert_eq!(at(0x20f), Some(("/src/b.c".into(), 5)));
        assert_eq!(at(0x210), None);
    }

    #[test]
    fn paths_join_relative_parts() {
        assert_eq!(join("/src", "a.c"), "/src/a.c");
        assert_eq!(join("/src/", "a.c"), "/src/a.c");
        assert_eq!(join("", "a.c"), "a.c");
    }
}
