//! The executable's functions and global variables by name and by address.
//!
//! Functions come from `.symtab` when the binary has one, otherwise from Go's
//! pclntab, which stripped Go binaries keep. Globals come from `.symtab` only
//! (a stripped binary has none). All addresses are link-time addresses.

use std::{borrow::Cow, collections::HashMap};

use thiserror::Error;

use super::elf::{ElfError, ElfImage};
use super::pclntab::{self, Pclntab, PclntabError};

/// Sections that hold the pclntab under a name of their own.
const PCLNTAB_SECTIONS: [&str; 2] = [".gopclntab", ".data.rel.ro.gopclntab"];

/// Sections searched for a pclntab that has no section of its own (e.g. in
/// externally linked PIE binaries, where it is merged into `.data.rel.ro`).
const PCLNTAB_HOSTS: [&str; 3] = [".data.rel.ro", ".rodata", ".noptrdata"];

/// Errors building a symbol table.
#[derive(Debug, Error)]
pub enum SymbolError {
    /// No `.symtab` functions and no Go pclntab: nothing names the code.
    #[error("no symbols: the executable is stripped and has no Go pclntab")]
    NoSymbols,
    /// The pclntab section exists but cannot be parsed.
    #[error("cannot read the Go pclntab: {0}")]
    Pclntab(#[from] PclntabError),
    /// The pclntab section's data cannot be read.
    #[error(transparent)]
    Elf(#[from] ElfError),
}

/// Where a [`SymbolTable`]'s functions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionSource {
    /// The ELF `.symtab` (`STT_FUNC` symbols).
    Symtab,
    /// Go's pclntab (the binary is stripped).
    Pclntab,
}

/// A function: its name and address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The symbol name (Go: `sync.(*Mutex).lockSlow`; others as stored).
    pub name: String,
    /// Link-time address of the first instruction.
    pub start: u64,
    /// Link-time address just past the last instruction (equal to `start`
    /// for symbols without a size).
    pub end: u64,
}

impl Function {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether `addr` is in the function: within `[start, end)`, or exactly
    /// at `start` for a function of unknown size.
    pub fn contains(&self, addr: u64) -> bool {
        addr == self.start || (addr > self.start && addr < self.end)
    }
}

/// A global variable (`STT_OBJECT` symbol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The symbol name, e.g. `main.hotMu`.
    pub name: String,
    /// Link-time address.
    pub address: u64,
    /// Size in bytes; may be 0.
    pub size: u64,
}

impl Global {
    /// The offset of `addr` into the variable: `addr` must lie in
    /// `[address, address + size)`, or equal `address` for size 0.
    pub fn offset_of(&self, addr: u64) -> Option<u64> {
        let offset = addr.checked_sub(self.address)?;
        (offset < self.size || offset == 0).then_some(offset)
    }
}

/// Functions and globals of an executable, sorted by address.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    functions: Vec<Function>,
    globals: Vec<Global>,
    function_source: FunctionSource,
    function_by_name: HashMap<String, usize>,
    global_by_name: HashMap<String, usize>,
}

impl SymbolTable {
    /// Builds the table of an ELF executable: functions from `.symtab`, else
    /// from the Go pclntab (its section, or found by scanning the read-only
    /// data); globals from `.symtab`.
    pub fn from_elf(image: &ElfImage) -> Result<SymbolTable, SymbolError> {
        let globals = image
            .symtab_objects()
            .iter()
            .map(|s| Global {
                name: s.name.clone(),
                address: s.address,
                size: s.size,
            })
            .collect();
        if !image.symtab_functions().is_empty() {
            let functions = image
                .symtab_functions()
                .iter()
                .map(|s| Function {
                    name: s.name.clone(),
                    start: s.address,
                    end: s.address.saturating_add(s.size),
                })
                .collect();
            return Ok(Self::new(functions, globals, FunctionSource::Symtab));
        }
        let functions = pclntab_functions(image)?;
        Ok(Self::new(functions, globals, FunctionSource::Pclntab))
    }

    /// Builds a table from lists in any order. Duplicates (same name and
    /// address) are dropped; for a name given at several addresses, lookups
    /// by name return the lowest address.
    pub fn new(
        mut functions: Vec<Function>,
        mut globals: Vec<Global>,
        function_source: FunctionSource,
    ) -> SymbolTable {
        functions.sort_by(|a, b| (a.start, &a.name, a.end).cmp(&(b.start, &b.name, b.end)));
        functions.dedup_by(|a, b| a.start == b.start && a.name == b.name);
        globals.sort_by(|a, b| (a.address, &a.name, a.size).cmp(&(b.address, &b.name, b.size)));
        globals.dedup_by(|a, b| a.address == b.address && a.name == b.name);

        let mut function_by_name = HashMap::with_capacity(functions.len());
        for (i, f) in functions.iter().enumerate() {
            function_by_name.entry(f.name.clone()).or_insert(i);
        }
        let mut global_by_name = HashMap::with_capacity(globals.len());
        for (i, g) in globals.iter().enumerate() {
            global_by_name.entry(g.name.clone()).or_insert(i);
        }
        SymbolTable {
            functions,
            globals,
            function_source,
            function_by_name,
            global_by_name,
        }
    }

    /// Where the functions come from.
    pub fn function_source(&self) -> FunctionSource {
        self.function_source
    }

    /// All functions, sorted by start address.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// All globals, sorted by address.
    pub fn globals(&self) -> &[Global] {
        &self.globals
    }

    /// Number of functions.
    pub fn function_count(&self) -> usize {
        self.functions.len()
    }

    /// Number of globals.
    pub fn global_count(&self) -> usize {
        self.globals.len()
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.function_by_name
            .get(name)
            .and_then(|&i| self.functions.get(i))
    }

    /// The function containing `addr` (see [`Function::contains`]).
    pub fn function_at(&self, addr: u64) -> Option<&Function> {
        let after = self.functions.partition_point(|f| f.start <= addr);
        // Look back past aliases (several symbols at one address with
        // different sizes) and zero-sized symbols at the same start.
        let candidates = self.functions.get(..after)?;
        let start = candidates.last()?.start;
        candidates
            .iter()
            .rev()
            .take_while(|f| f.start == start)
            .find(|f| f.contains(addr))
            .or_else(|| {
                // A function that starts earlier but is long enough to
                // enclose `addr` (e.g. a zero-sized label inside it).
                candidates
                    .iter()
                    .rev()
                    .skip_while(|f| f.start == start)
                    .take(16)
                    .find(|f| f.contains(addr))
            })
    }

    /// The global called `name`.
    pub fn global(&self, name: &str) -> Option<&Global> {
        self.global_by_name
            .get(name)
            .and_then(|&i| self.globals.get(i))
    }

    /// The global containing `addr`, with the offset of `addr` into it (see
    /// [`Global::offset_of`]).
    pub fn global_at(&self, addr: u64) -> Option<(&Global, u64)> {
        let after = self.globals.partition_point(|g| g.address <= addr);
        let candidates = self.globals.get(..after)?;
        let address = candidates.last()?.address;
        // Prefer the largest symbol at the closest address (a sized variable
        // over a zero-sized marker), then an enclosing earlier one.
        let same: Vec<&Global> = candidates
            .iter()
            .rev()
            .take_while(|g| g.address == address)
            .collect();
        same.iter()
            .copied()
            .filter_map(|g| g.offset_of(addr).map(|o| (g, o)))
            .max_by_key(|(g, _)| g.size)
            .or_else(|| {
                candidates
                    .iter()
                    .rev()
                    .skip(same.len())
                    .take(16)
                    .find_map(|g| g.offset_of(addr).map(|o| (g, o)))
            })
    }
}

/// The functions of the Go pclntab of a binary without `.symtab` functions.
fn pclntab_functions(image: &ElfImage) -> Result<Vec<Function>, SymbolError> {
    let (data, vaddr) = locate_pclntab(image).ok_or(SymbolError::NoSymbols)?;
    let table = Pclntab::parse(&data)?;
    Ok(collect(image, table, vaddr))
}

/// Where a binary's Go pclntab is: its bytes (from the header to the end of
/// the section or segment holding it) and the link-time address of its
/// header. A section of its own first; else a scan of the read-only data;
/// else (no section headers at all) of every non-executable segment.
pub(crate) fn locate_pclntab(image: &ElfImage) -> Option<(Cow<'_, [u8]>, u64)> {
    for name in PCLNTAB_SECTIONS {
        if let Some(section) = image.section(name) {
            let data = image.section_data(&section).ok()?;
            return Some((data, section.address));
        }
    }
    let found = |data: &[u8], vaddr: u64| {
        let at = pclntab::locate_in(data)?;
        Some((data.get(at..)?.to_vec(), vaddr.checked_add(at as u64)?))
    };
    for name in PCLNTAB_HOSTS {
        let Some(section) = image.section(name) else {
            continue;
        };
        if let Some((data, vaddr)) = image
            .section_data(&section)
            .ok()
            .and_then(|data| found(&data, section.address))
        {
            log::debug!("found the Go pclntab inside {name}");
            return Some((Cow::Owned(data), vaddr));
        }
    }
    image
        .load_segments()
        .iter()
        .filter(|s| !s.is_executable())
        .find_map(|segment| {
            let len = usize::try_from(segment.file_size).ok()?;
            let data = image.read_vaddr(segment.vaddr, len)?;
            let at = pclntab::locate_in(data)?;
            Some((
                Cow::Borrowed(data.get(at..)?),
                segment.vaddr.checked_add(at as u64)?,
            ))
        })
}

/// The functions of `table`, whose header is at link-time `vaddr`.
fn collect(image: &ElfImage, table: Pclntab<'_>, vaddr: u64) -> Vec<Function> {
    let table = if table.header_text_start() == 0 {
        let base = text_start_fallback(image, vaddr);
        log::debug!("pclntab textStart is 0; using {base:#x}");
        table.with_text_start(base)
    } else {
        table
    };
    table
        .functions()
        .map(|f| Function {
            name: f.name.to_string(),
            start: f.entry,
            end: f.end,
        })
        .collect()
}

/// The address function offsets are relative to when the pclntab header at
/// link-time `vaddr` holds 0 (a pointer left for the loader to fill in): the
/// addend of the dynamic relocation of its textStart slot, else
/// `runtime.text` if the symbol table has it, else the start of `.text`
/// (which is wrong by the size of any C code placed before runtime.text).
pub(crate) fn text_start_fallback(image: &ElfImage, vaddr: u64) -> u64 {
    let slot = vaddr.checked_add(pclntab::TEXT_START_OFFSET);
    slot.filter(|_| vaddr != 0)
        .and_then(|slot| image.relative_relocation_at(slot))
        .or_else(|| {
            image
                .symtab_functions()
                .iter()
                .chain(image.symtab_objects())
                .find(|s| s.name == "runtime.text")
                .map(|s| s.address)
        })
        .or_else(|| image.text_section().map(|s| s.address))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::pclntab::tests::synth_pclntab;

    #[inline(never)]
    fn mapwatch_marker_one() -> u64 {
        std::hint::black_box(1)
    }

    #[inline(never)]
    fn mapwatch_marker_two(x: u64) -> u64 {
        std::hint::black_box(x.wrapping_mul(3))
    }

    static MAPWATCH_MARKER_GLOBAL: [u64; 4] = [1, 2, 3, 4];

    fn own_table() -> SymbolTable {
        let exe = std::env::current_exe().unwrap();
        let image = ElfImage::open(&exe).unwrap();
        SymbolTable::from_elf(&image).unwrap()
    }

    fn find_containing<'t>(table: &'t SymbolTable, part: &str) -> &'t Function {
        table
            .functions()
            .iter()
            .find(|f| f.name.contains(part))
            .unwrap_or_else(|| panic!("no function named like {part}"))
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn own_functions_are_found_at_their_runtime_addresses() {
        let table = own_table();
        assert_eq!(table.function_source(), FunctionSource::Symtab);
        assert!(table.function_count() > 100);

        let one = find_containing(&table, "mapwatch_marker_one");
        let two = find_containing(&table, "mapwatch_marker_two");
        let one_ptr = mapwatch_marker_one as fn() -> u64 as usize as u64;
        let two_ptr = mapwatch_marker_two as fn(u64) -> u64 as usize as u64;
        // PIE: runtime = link + load bias, the same bias for every symbol,
        // and page aligned.
        let bias = one_ptr.wrapping_sub(one.start);
        assert_eq!(two_ptr.wrapping_sub(two.start), bias);
        assert_eq!(bias % 4096, 0);
        assert!(one.end > one.start);

        // By-name and by-address lookups round-trip.
        for f in [one, two] {
            assert_eq!(table.function(&f.name), Some(f));
            assert_eq!(table.function_at(f.start).map(|g| &g.name), Some(&f.name));
            assert_eq!(table.function_at(f.end - 1).map(|g| &g.name), Some(&f.name));
        }
        assert_eq!(mapwatch_marker_one() + mapwatch_marker_two(1), 4);

        // The global: same bias, found by interior address with its offset.
        let global = table
            .globals()
            .iter()
            .find(|g| g.name.contains("MAPWATCH_MARKER_GLOBAL"))
            .expect("marker global in .symtab");
        let global_ptr = std::ptr::addr_of!(MAPWATCH_MARKER_GLOBAL) as usize as u64;
        assert_eq!(global_ptr.wrapping_sub(global.address), bias);
        assert_eq!(global.size, 32);
        let (found, offset) = table.global_at(global.address + 8).unwrap();
        assert_eq!((found.name.as_str(), offset), (global.name.as_str(), 8));
        assert_eq!(table.global(&global.name), Some(global));
        assert!(std::hint::black_box(&MAPWATCH_MARKER_GLOBAL)[3] == 4);
    }

    #[test]
    fn lookups_on_a_synthetic_table() {
        let functions = vec![
            Function {
                name: "b".into(),
                start: 0x2000,
                end: 0x2100,
            },
            Function {
                name: "a".into(),
                start: 0x1000,
                end: 0x1100,
            },
            Function {
                name: "asm_label".into(),
                start: 0x3000,
                end: 0x3000,
            },
            Function {
                name: "b".into(),
                start: 0x2000,
                end: 0x2100,
            },
        ];
        let globals = vec![
            Global {
                name: "main.hotMu".into(),
                address: 0x9000,
                size: 8,
            },
            Global {
                name: "marker".into(),
                address: 0x9100,
                size: 0,
            },
            Global {
                name: "runtime.bss".into(),
                address: 0x9000,
                size: 0,
            },
        ];
        let t = SymbolTable::new(functions, globals, FunctionSource::Pclntab);
        assert_eq!(t.function_count(), 3);
        assert_eq!(t.function_source(), FunctionSource::Pclntab);
        assert_eq!(t.function_at(0x1000).unwrap().name, "a");
        assert_eq!(t.function_at(0x10ff).unwrap().name, "a");
        assert!(t.function_at(0x1100).is_none());
        assert!(t.function_at(0xfff).is_none());
        assert_eq!(t.function_at(0x2050).unwrap().name, "b");
        assert_eq!(t.function_at(0x3000).unwrap().name, "asm_label");
        assert!(t.function_at(0x3001).is_none());
        assert_eq!(t.function("b").unwrap().start, 0x2000);

        let (g, off) = t.global_at(0x9004).unwrap();
        assert_eq!((g.name.as_str(), off), ("main.hotMu", 4));
        let (g, off) = t.global_at(0x9000).unwrap();
        assert_eq!((g.name.as_str(), off), ("main.hotMu", 0));
        assert!(t.global_at(0x9008).is_none());
        assert_eq!(t.global_at(0x9100).unwrap().0.name, "marker");
        assert!(t.global_at(0x9101).is_none());
        assert!(t.global_at(0x8fff).is_none());
        assert_eq!(t.global("runtime.bss").unwrap().address, 0x9000);
        assert!(t.global("nope").is_none());
    }

    #[test]
    fn pclntab_scan_and_text_start_fallback() {
        // locate_in + with_text_start, as from_elf uses them for a stripped
        // PIE whose pclntab header was left unrelocated.
        let table = synth_pclntab(0, &[("main.f", 0, 0x10), ("main.g", 0x10, 0x30)]);
        let mut host = vec![0u8; 0x100];
        host.extend(&table);
        let at = pclntab::locate_in(&host).unwrap();
        let tab = Pclntab::parse(&host[at..]).unwrap().with_text_start(0x1000);
        let functions: Vec<Function> = tab
            .functions()
            .map(|f| Function {
                name: f.name.into(),
                start: f.entry,
                end: f.end,
            })
            .collect();
        let t = SymbolTable::new(functions, Vec::new(), FunctionSource::Pclntab);
        assert_eq!(t.function("main.g").unwrap().start, 0x1010);
        assert_eq!(t.function("main.g").unwrap().end, 0x1040);
        assert_eq!(t.function_at(0x100f).unwrap().name, "main.f");
    }
}
