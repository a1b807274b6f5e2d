//! Source positions (`file:line`) of code addresses, for reports.
//!
//! Go code is looked up in Go's pclntab, which stripped Go binaries keep;
//! other code (C, Rust, the C parts of a cgo binary) in the DWARF line
//! tables (`.debug_line`). [`SourceLines`] reads both once per binary and
//! answers any number of lookups. All addresses are link-time addresses.

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{EndianSlice, LittleEndian, SectionId};

use super::elf::ElfImage;
use super::pclntab::{self, Pclntab};

/// Sections that hold the pclntab under a name of their own.
const PCLNTAB_SECTIONS: [&str; 2] = [".gopclntab", ".data.rel.ro.gopclntab"];

/// Sections searched for a pclntab that has no section of its own.
const PCLNTAB_HOSTS: [&str; 3] = [".data.rel.ro", ".rodata", ".noptrdata"];

/// The line information of one executable, read once.
#[derive(Debug, Clone, Default)]
pub struct SourceLines {
    go: Option<GoLines>,
    dwarf: DwarfLines,
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
        SourceLines { go, dwarf }
    }

    /// Whether there is no line information at all.
    pub fn is_empty(&self) -> bool {
        self.go.is_none() && self.dwarf.rows.is_empty()
    }

    /// The source position of the instruction at link-time `address`, as
    /// `file:line`.
    pub fn line(&self, address: u64) -> Option<String> {
        let (file, line) = self
            .go
            .as_ref()
            .and_then(|go| go.line(address))
            .or_else(|| self.dwarf.line(address))?;
        Some(format!("{file}:{line}"))
    }
}

/// `file:line` of link-time `address` in `elf`. Reads all line information
/// on each call: use [`SourceLines`] for several addresses.
pub fn source_line(elf: &ElfImage, address: u64) -> Option<String> {
    SourceLines::new(elf).line(address)
}

/// A copy of the pclntab, from its header on.
#[derive(Debug, Clone)]
struct GoLines {
    data: Vec<u8>,
    text_start: u64,
}

impl GoLines {
    /// The pclntab of `elf`: its own section, or found in the read-only data
    /// or (no section headers) the non-executable segments.
    fn find(elf: &ElfImage) -> Option<GoLines> {
        let (data, vaddr) = locate(elf)?;
        let table = Pclntab::parse(&data).ok()?;
        let text_start = if table.header_text_start() == 0 {
            text_start_fallback(elf, vaddr)
        } else {
            table.header_text_start()
        };
        Some(GoLines { data, text_start })
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
}

/// The pclntab bytes (from the header to the end of the section or
/// segment holding it) and the link-time address of its header.
fn locate(elf: &ElfImage) -> Option<(Vec<u8>, u64)> {
    for name in PCLNTAB_SECTIONS {
        if let Some(section) = elf.section(name) {
            let data = elf.section_data(&section).ok()?;
            return Some((data.into_owned(), section.address));
        }
    }
    let found = |data: &[u8], vaddr: u64| {
        let at = pclntab::locate_in(data)?;
        Some((data.get(at..)?.to_vec(), vaddr.checked_add(at as u64)?))
    };
    for name in PCLNTAB_HOSTS {
        let Some(section) = elf.section(name) else {
            continue;
        };
        if let Some(hit) = elf
            .section_data(&section)
            .ok()
            .and_then(|data| found(&data, section.address))
        {
            return Some(hit);
        }
    }
    elf.load_segments()
        .iter()
        .filter(|s| !s.is_executable())
        .find_map(|segment| {
            let len = usize::try_from(segment.file_size).ok()?;
            found(elf.read_vaddr(segment.vaddr, len)?, segment.vaddr)
        })
}

/// The base of function offsets when the header's textStart is 0 (left for
/// the loader): the addend of its relocation, else `runtime.text`, else the
/// start of `.text`. The same choice the symbol table makes.
fn text_start_fallback(elf: &ElfImage, vaddr: u64) -> u64 {
    vaddr
        .checked_add(pclntab::TEXT_START_OFFSET)
        .filter(|_| vaddr != 0)
        .and_then(|slot| elf.relative_relocation_at(slot))
        .or_else(|| {
            elf.symtab_functions()
                .iter()
                .chain(elf.symtab_objects())
                .find(|s| s.name == "runtime.text")
                .map(|s| s.address)
        })
        .or_else(|| elf.text_section().map(|s| s.address))
        .unwrap_or(0)
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
        std::hint::black_box(x).wrapping_mul(3)
    }

    #[test]
    fn own_function_maps_to_this_file() {
        let marker_line = line!() - 6;
        let exe = std::env::current_exe().unwrap();
        let elf = ElfImage::open(&exe).unwrap();
        let lines = SourceLines::new(&elf);
        assert!(!lines.is_empty());
        assert_eq!(std::hint::black_box(mapwatch_line_marker(2)), 6);
        // The function's link-time address, from the symbol table.
        let symbol = elf
            .symtab_functions()
            .iter()
            .find(|s| s.name.contains("mapwatch_line_marker"))
            .expect("marker symbol");
        let found = lines.line(symbol.address).expect("a line for the marker");
        let (file, line) = found.rsplit_once(':').unwrap();
        assert!(file.ends_with("target/lines.rs"), "{found}");
        let line: u32 = line.parse().unwrap();
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
