//! Global variables from the executable's DWARF debug information, and
//! among them the ones whose type is one of Go's locks.
//!
//! A lock that is never contended never reaches the slow path mapwatch
//! probes, so the probes alone cannot name it. The DWARF lists every global
//! variable with its address and type, which lets mapwatch report such locks
//! with zero contentions and tell a `sync.Mutex` from a `sync.RWMutex`.
//!
//! Only the sections the walk reads are loaded (`.debug_info`,
//! `.debug_abbrev`, the string sections and `.debug_addr`): a global at a
//! fixed address is described by a single-operation location expression,
//! never by a location or range list, so those large sections are not
//! decompressed. Sections may be `SHF_COMPRESSED` (current Go releases,
//! via [`ElfImage::section_data`]) or GNU-compressed `.zdebug_*` sections
//! (the format older Go releases used). Every read of file data is bounds
//! checked: malformed DWARF gives an error or a skipped variable, never a
//! panic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use gimli::constants;
use gimli::{
    Abbreviations, AttributeValue, DebugAbbrevOffset, DebugAddrBase, DebugInfoOffset,
    DebugStrOffsetsBase, DebuggingInformationEntry, DwTag, EndianSlice, LittleEndian, Operation,
    SectionId, UnitHeader, UnitSectionOffset,
};
use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, SectionIndex};
use thiserror::Error;

use super::elf::{ElfError, ElfImage, Section};
use crate::{goruntime, model::LockKind};

/// The reader every DWARF structure here is parsed with.
type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// A DWARF entry borrowed from a unit.
type Entry<'abbrev, 'unit, 'a> = DebuggingInformationEntry<'abbrev, 'unit, Slice<'a>>;

/// How many `DW_TAG_typedef`/qualifier entries are followed from a
/// variable's type before giving up on finding a wanted type name.
const MAX_TYPE_HOPS: usize = 4;

/// A global variable whose own type is a Go lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalLock {
    /// The variable's name as Go's DWARF spells it, such as `main.hotMu` or
    /// `github.com/x/y.mu`.
    pub name: String,
    /// Link-time address of the variable (of the lock itself).
    pub address: u64,
    /// The lock's type.
    pub kind: LockKind,
}

/// Errors reading DWARF debug information.
#[derive(Debug, Error)]
pub enum DwarfError {
    /// A debug section could not be read or decompressed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The DWARF data is malformed or uses an encoding gimli cannot read.
    #[error("malformed DWARF in the unit at .debug_info offset {unit:#x}: {source}")]
    Malformed {
        /// Offset in `.debug_info` of the unit being read.
        unit: usize,
        /// What is wrong.
        #[source]
        source: gimli::Error,
    },
}

/// Global variables whose DWARF type is one of Go's lock types:
/// `sync.Mutex`, `sync.RWMutex`, and the runtime-internal
/// `internal/sync.Mutex` (Go 1.24+) and `internal/sync.RWMutex`. Variables
/// that merely contain a lock (arrays, structs with a lock field) are not
/// included. Sorted by address.
///
/// Empty when the binary has no DWARF (stripped, or linked with
/// `-ldflags=-w`).
pub fn global_locks(elf: &ElfImage) -> Result<Vec<GlobalLock>, DwarfError> {
    let variables = global_variables(elf, |type_name| goruntime::lock_type(type_name).is_some())?;
    Ok(variables
        .into_iter()
        .filter_map(|(name, address, type_name)| {
            let kind = goruntime::lock_type(&type_name)?;
            Some(GlobalLock {
                name,
                address,
                kind,
            })
        })
        .collect())
}

/// Every `DW_TAG_variable` anywhere in the DWARF tree (including inside
/// namespaces and functions) whose `DW_AT_location` is exactly one
/// `DW_OP_addr A` or `DW_OP_addrx` operation with a nonzero address, and
/// whose type name `keep` accepts. Returns `(variable name, link-time
/// address, type name)` sorted by address.
///
/// The variable name is `DW_AT_name`, prefixed with the enclosing named
/// namespaces joined by `::` (`mycrate::module::STATIC`); Go has no
/// namespaces, so Go names (`main.hotMu`) are unchanged. A definition without
/// a name or type of its own takes it from its `DW_AT_specification` or
/// `DW_AT_abstract_origin`.
///
/// The type names offered to `keep` are the `DW_AT_name`s met walking from
/// the variable's `DW_AT_type` through `DW_TAG_typedef`, `const`,
/// `volatile`, `restrict` and `_Atomic` entries (a few levels deep), in that
/// order; the first one `keep` accepts is returned. For Go this is just the
/// type's name (`sync.Mutex`); for C, `static const pthread_mutex_t m`
/// offers `pthread_mutex_t`. Variables with no accepted type name are left
/// out. Type units (`DW_FORM_ref_sig8`) are not followed.
///
/// Empty when the binary has no DWARF.
pub fn global_variables(
    elf: &ElfImage,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, u64, String)>, DwarfError> {
    let Some(sections) = load_sections(elf)? else {
        return Ok(Vec::new());
    };
    let dwarf = sections.borrow(|data| EndianSlice::new(data, LittleEndian));
    let mut units = Units::new(&dwarf)?;
    let candidates = units.candidates()?;

    let mut type_names: HashMap<usize, Vec<String>> = HashMap::new();
    let mut found = Vec::new();
    for candidate in candidates {
        let (mut name, mut type_ref) = (candidate.name, candidate.type_ref);
        if name.is_none() || type_ref.is_none() {
            if let Some(origin) = candidate.origin {
                let (origin_name, origin_type) = units.name_and_type(origin)?;
                name = name.or(origin_name);
                type_ref = type_ref.or(origin_type);
            }
        }
        let (Some(name), Some(type_ref)) = (name, type_ref) else {
            continue;
        };
        let names = match type_names.get(&type_ref.0) {
            Some(names) => names,
            None => {
                let names = units.type_names(type_ref)?;
                type_names.entry(type_ref.0).or_insert(names)
            }
        };
        let Some(type_name) = names.iter().find(|n| keep(n.as_str())) else {
            continue;
        };
        let name = if candidate.scope.is_empty() {
            name
        } else {
            format!("{}::{name}", candidate.scope)
        };
        found.push((name, candidate.address, type_name.clone()));
    }
    found.sort_by(|a, b| (a.1, &a.0, &a.2).cmp(&(b.1, &b.0, &b.2)));
    found.dedup();
    Ok(found)
}

/// The debug sections the walk needs, as present in the file (missing ones
/// empty), or `None` when the file has no `.debug_info`.
fn load_sections(elf: &ElfImage) -> Result<Option<gimli::DwarfSections<Cow<'_, [u8]>>>, ElfError> {
    let info = load_section(elf, SectionId::DebugInfo)?;
    if info.is_empty() {
        return Ok(None);
    }
    let mut info = Some(info);
    let sections = gimli::DwarfSections::load(|id| match id {
        SectionId::DebugInfo => Ok(info.take().unwrap_or(Cow::Borrowed(&[]))),
        SectionId::DebugAbbrev
        | SectionId::DebugStr
        | SectionId::DebugLineStr
        | SectionId::DebugStrOffsets
        | SectionId::DebugAddr => load_section(elf, id),
        // Location and range lists, line programs, type units: never
        // needed to find a variable at a fixed address.
        _ => Ok(Cow::Borrowed(&[][..])),
    })?;
    Ok(Some(sections))
}

/// One debug section's bytes, decompressed; empty when absent. Looks for
/// `.debug_x` first, then the GNU-compressed `.zdebug_x`.
fn load_section(elf: &ElfImage, id: SectionId) -> Result<Cow<'_, [u8]>, ElfError> {
    let name = id.name();
    if let Some(section) = elf.section(name) {
        if section.is_nobits() {
            return Ok(Cow::Borrowed(&[]));
        }
        return elf.section_data(&section);
    }
    let zname = match name.strip_prefix(".debug_") {
        Some(rest) => format!(".zdebug_{rest}"),
        None => return Ok(Cow::Borrowed(&[])),
    };
    match elf.section(&zname) {
        Some(section) if !section.is_nobits() => gnu_decompress(elf, &section),
        _ => Ok(Cow::Borrowed(&[])),
    }
}

/// The contents of a `.zdebug_*` section (`ZLIB`, a big-endian 64-bit
/// size, then a zlib stream), which `object` decompresses by section name.
fn gnu_decompress<'a>(elf: &'a ElfImage, section: &Section) -> Result<Cow<'a, [u8]>, ElfError> {
    let file = ElfFile64::<object::LittleEndian, &[u8]>::parse(elf.bytes())?;
    let sec = file
        .section_by_index(SectionIndex(section.index()))
        .map_err(|_| ElfError::SectionOutOfBounds {
            name: section.name.clone(),
        })?;
    sec.uncompressed_data()
        .map_err(|source| ElfError::Decompress {
            name: section.name.clone(),
            source,
        })
}

/// A global-variable definition found in the tree, before its type is
/// resolved.
struct Candidate {
    /// Enclosing named namespaces, joined by `::`.
    scope: String,
    /// `DW_AT_name`, if the entry has one.
    name: Option<String>,
    /// The link-time address.
    address: u64,
    /// `DW_AT_type`, if the entry has one.
    type_ref: Option<DebugInfoOffset<usize>>,
    /// `DW_AT_specification` or `DW_AT_abstract_origin`.
    origin: Option<DebugInfoOffset<usize>>,
}

/// A unit header with what is needed to read its entries' attributes.
struct UnitCtx<'a> {
    header: UnitHeader<Slice<'a>>,
    offset: usize,
    abbrevs: Arc<Abbreviations>,
    str_offsets_base: DebugStrOffsetsBase<usize>,
    addr_base: DebugAddrBase<usize>,
}

impl<'a> UnitCtx<'a> {
    /// Reads the bases (`DW_AT_str_offsets_base`, `DW_AT_addr_base`) from
    /// the unit's root entry. Unlike `gimli::Unit::new`, this does not parse
    /// the line program, so `.debug_line` need not be loaded.
    fn new(header: UnitHeader<Slice<'a>>, abbrevs: Arc<Abbreviations>) -> gimli::Result<Self> {
        let offset = section_offset(&header);
        let mut str_offsets_base = DebugStrOffsetsBase(0);
        let mut addr_base = DebugAddrBase(0);
        {
            let mut cursor = header.entries(&abbrevs);
            if let Some((_, root)) = cursor.next_dfs()? {
                let mut attrs = root.attrs();
                while let Some(attr) = attrs.next()? {
                    match attr.value() {
                        AttributeValue::DebugStrOffsetsBase(base) => str_offsets_base = base,
                        AttributeValue::DebugAddrBase(base) => addr_base = base,
                        _ => {}
                    }
                }
            }
        }
        Ok(UnitCtx {
            header,
            offset,
            abbrevs,
            str_offsets_base,
            addr_base,
        })
    }

    /// Makes `source` an error about this unit.
    fn error(&self, source: gimli::Error) -> DwarfError {
        DwarfError::Malformed {
            unit: self.offset,
            source,
        }
    }

    /// The string an attribute value holds, in any string form.
    fn string(
        &self,
        dwarf: &gimli::Dwarf<Slice<'a>>,
        value: AttributeValue<Slice<'a>>,
    ) -> Option<String> {
        let raw = match value {
            AttributeValue::String(s) => s,
            AttributeValue::DebugStrRef(offset) => dwarf.debug_str.get_str(offset).ok()?,
            AttributeValue::DebugLineStrRef(offset) => dwarf.debug_line_str.get_str(offset).ok()?,
            AttributeValue::DebugStrOffsetsIndex(index) => {
                let offset = dwarf
                    .debug_str_offsets
                    .get_str_offset(self.header.format(), self.str_offsets_base, index)
                    .ok()?;
                dwarf.debug_str.get_str(offset).ok()?
            }
            _ => return None,
        };
        Some(raw.to_string_lossy().into_owned())
    }

    /// The `.debug_info` offset a reference attribute points at.
    fn reference(&self, value: AttributeValue<Slice<'a>>) -> Option<DebugInfoOffset<usize>> {
        match value {
            AttributeValue::UnitRef(offset) => offset.to_debug_info_offset(&self.header),
            AttributeValue::DebugInfoRef(offset) => Some(offset),
            _ => None,
        }
    }

    /// The address a location expression consisting of exactly one
    /// `DW_OP_addr` or `DW_OP_addrx` names. An expression that does not
    /// parse is not a plain address.
    fn sole_address(
        &self,
        dwarf: &gimli::Dwarf<Slice<'a>>,
        expression: gimli::Expression<Slice<'a>>,
    ) -> Option<u64> {
        let mut ops = expression.operations(self.header.encoding());
        let address = match ops.next().ok()?? {
            Operation::Address { address } => address,
            Operation::AddressIndex { index } => dwarf
                .debug_addr
                .get_address(self.header.address_size(), self.addr_base, index)
                .ok()?,
            _ => return None,
        };
        match ops.next() {
            Ok(None) => Some(address),
            _ => None,
        }
    }

    /// What a `DW_TAG_variable` entry says about itself, if it is a
    /// definition at a fixed nonzero address.
    fn candidate(
        &self,
        dwarf: &gimli::Dwarf<Slice<'a>>,
        entry: &Entry<'_, '_, 'a>,
        scope: &str,
    ) -> gimli::Result<Option<Candidate>> {
        let Some(expression) = entry
            .attr(constants::DW_AT_location)?
            .and_then(|attr| attr.exprloc_value())
        else {
            return Ok(None);
        };
        let Some(address) = self.sole_address(dwarf, expression).filter(|&a| a != 0) else {
            return Ok(None);
        };
        let mut candidate = Candidate {
            scope: scope.to_owned(),
            name: None,
            address,
            type_ref: None,
            origin: None,
        };
        let mut attrs = entry.attrs();
        while let Some(attr) = attrs.next()? {
            match attr.name() {
                constants::DW_AT_name => candidate.name = self.string(dwarf, attr.value()),
                constants::DW_AT_type => candidate.type_ref = self.reference(attr.value()),
                constants::DW_AT_specification | constants::DW_AT_abstract_origin => {
                    candidate.origin = candidate.origin.or(self.reference(attr.value()));
                }
                _ => {}
            }
        }
        Ok(Some(candidate))
    }
}

/// `.debug_info` offset of a unit header.
fn section_offset(header: &UnitHeader<Slice<'_>>) -> usize {
    match header.offset() {
        UnitSectionOffset::DebugInfoOffset(offset) => offset.0,
        UnitSectionOffset::DebugTypesOffset(offset) => offset.0,
    }
}

/// The units of `.debug_info`, parsed on demand and cached so references
/// between units (Go's `DW_FORM_ref_addr` types) can be followed.
struct Units<'d, 'a> {
    dwarf: &'d gimli::Dwarf<Slice<'a>>,
    /// Unit headers in section order, with their start offsets.
    headers: Vec<(usize, UnitHeader<Slice<'a>>)>,
    abbrevs: HashMap<DebugAbbrevOffset<usize>, Arc<Abbreviations>>,
    units: HashMap<usize, UnitCtx<'a>>,
}

impl<'d, 'a> Units<'d, 'a> {
    /// Reads every unit header.
    fn new(dwarf: &'d gimli::Dwarf<Slice<'a>>) -> Result<Self, DwarfError> {
        let mut headers = Vec::new();
        let mut iter = dwarf.units();
        let mut next = 0usize;
        loop {
            let header = iter
                .next()
                .map_err(|source| DwarfError::Malformed { unit: next, source })?;
            let Some(header) = header else { break };
            let start = section_offset(&header);
            next = start.saturating_add(header.length_including_self());
            headers.push((start, header));
        }
        Ok(Units {
            dwarf,
            headers,
            abbrevs: HashMap::new(),
            units: HashMap::new(),
        })
    }

    /// A unit's context, not cached.
    fn context(&mut self, header: UnitHeader<Slice<'a>>) -> Result<UnitCtx<'a>, DwarfError> {
        let offset = section_offset(&header);
        let error = |source| DwarfError::Malformed {
            unit: offset,
            source,
        };
        let abbrevs = match self.abbrevs.get(&header.debug_abbrev_offset()) {
            Some(abbrevs) => abbrevs.clone(),
            None => {
                let abbrevs = Arc::new(
                    header
                        .abbreviations(&self.dwarf.debug_abbrev)
                        .map_err(error)?,
                );
                self.abbrevs
                    .insert(header.debug_abbrev_offset(), abbrevs.clone());
                abbrevs
            }
        };
        UnitCtx::new(header, abbrevs).map_err(error)
    }

    /// Walks every unit for variable definitions at fixed addresses.
    fn candidates(&mut self) -> Result<Vec<Candidate>, DwarfError> {
        let mut candidates = Vec::new();
        let headers: Vec<UnitHeader<Slice<'a>>> =
            self.headers.iter().map(|(_, header)| *header).collect();
        for header in headers {
            let ctx = self.context(header)?;
            walk_unit(self.dwarf, &ctx, &mut candidates).map_err(|e| ctx.error(e))?;
        }
        Ok(candidates)
    }

    /// Runs `f` on the entry at a `.debug_info` offset. `Ok(None)` when the
    /// offset lies in no unit or holds no entry (a dangling reference).
    fn with_entry<T>(
        &mut self,
        offset: DebugInfoOffset<usize>,
        f: impl FnOnce(&UnitCtx<'a>, &Entry<'_, '_, 'a>) -> gimli::Result<T>,
    ) -> Result<Option<T>, DwarfError> {
        let index = self
            .headers
            .partition_point(|(start, _)| *start <= offset.0);
        let Some(&(start, header)) = index.checked_sub(1).and_then(|i| self.headers.get(i)) else {
            return Ok(None);
        };
        if !self.units.contains_key(&start) {
            let ctx = self.context(header)?;
            self.units.insert(start, ctx);
        }
        let Some(ctx) = self.units.get(&start) else {
            return Ok(None);
        };
        let Some(unit_offset) = offset.to_unit_offset(&ctx.header) else {
            return Ok(None);
        };
        let entry = match ctx.header.entry(&ctx.abbrevs, unit_offset) {
            Ok(entry) => entry,
            Err(e) => {
                log::debug!("DWARF reference to .debug_info+{:#x}: {e}", offset.0);
                return Ok(None);
            }
        };
        f(ctx, &entry).map(Some).map_err(|e| ctx.error(e))
    }

    /// The `DW_AT_name` and `DW_AT_type` of the entry at `offset`.
    fn name_and_type(
        &mut self,
        offset: DebugInfoOffset<usize>,
    ) -> Result<(Option<String>, Option<DebugInfoOffset<usize>>), DwarfError> {
        let dwarf = self.dwarf;
        let found = self.with_entry(offset, |ctx, entry| {
            let name = entry
                .attr_value(constants::DW_AT_name)?
                .and_then(|v| ctx.string(dwarf, v));
            let type_ref = entry
                .attr_value(constants::DW_AT_type)?
                .and_then(|v| ctx.reference(v));
            Ok((name, type_ref))
        })?;
        Ok(found.unwrap_or((None, None)))
    }

    /// The names met following a type reference through typedefs and
    /// qualifiers, nearest first.
    fn type_names(&mut self, offset: DebugInfoOffset<usize>) -> Result<Vec<String>, DwarfError> {
        let dwarf = self.dwarf;
        let mut names = Vec::new();
        let mut next = Some(offset);
        for _ in 0..MAX_TYPE_HOPS {
            let Some(offset) = next.take() else { break };
            let step = self.with_entry(offset, |ctx, entry| {
                let name = entry
                    .attr_value(constants::DW_AT_name)?
                    .and_then(|v| ctx.string(dwarf, v));
                let inner = if is_transparent(entry.tag()) {
                    entry
                        .attr_value(constants::DW_AT_type)?
                        .and_then(|v| ctx.reference(v))
                } else {
                    None
                };
                Ok((name, inner))
            })?;
            let Some((name, inner)) = step else { break };
            names.extend(name);
            next = inner;
        }
        Ok(names)
    }
}

/// Whether a type entry is a typedef or qualifier, through which the
/// underlying type is followed.
fn is_transparent(tag: DwTag) -> bool {
    matches!(
        tag,
        constants::DW_TAG_typedef
            | constants::DW_TAG_const_type
            | constants::DW_TAG_volatile_type
            | constants::DW_TAG_restrict_type
            | constants::DW_TAG_atomic_type
    )
}

/// Collects the variable definitions at fixed addresses in one unit,
/// tracking the enclosing named namespaces.
fn walk_unit<'a>(
    dwarf: &gimli::Dwarf<Slice<'a>>,
    ctx: &UnitCtx<'a>,
    out: &mut Vec<Candidate>,
) -> gimli::Result<()> {
    let mut cursor = ctx.header.entries(&ctx.abbrevs);
    let mut depth: isize = 0;
    // (depth of the namespace entry, qualified name).
    let mut scopes: Vec<(isize, String)> = Vec::new();
    while let Some((delta, entry)) = cursor.next_dfs()? {
        depth += delta;
        while scopes.last().is_some_and(|(d, _)| *d >= depth) {
            scopes.pop();
        }
        let scope = scopes.last().map_or("", |(_, s)| s.as_str());
        match entry.tag() {
            constants::DW_TAG_variable => {
                if let Some(candidate) = ctx.candidate(dwarf, entry, scope)? {
                    out.push(candidate);
                }
            }
            constants::DW_TAG_namespace => {
                let name = entry
                    .attr_value(constants::DW_AT_name)?
                    .and_then(|v| ctx.string(dwarf, v));
                if let Some(name) = name {
                    let qualified = if scope.is_empty() {
                        name
                    } else {
                        format!("{scope}::{name}")
                    };
                    scopes.push((depth, qualified));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A static the tests look for in the test executable's own DWARF.
    static MAPWATCH_DWARF_PROBE: AtomicU64 = AtomicU64::new(7);

    fn own_exe() -> ElfImage {
        let path = std::env::current_exe().expect("test executable path");
        ElfImage::open(&path).expect("test executable parses")
    }

    #[test]
    fn lock_kinds_from_go_type_names() {
        let kind = goruntime::lock_type;
        assert_eq!(kind("sync.Mutex"), Some(LockKind::Mutex));
        assert_eq!(kind("sync.RWMutex"), Some(LockKind::RwMutex));
        assert_eq!(kind("internal/sync.Mutex"), Some(LockKind::Mutex));
        assert_eq!(kind("internal/sync.RWMutex"), Some(LockKind::RwMutex));
        assert_eq!(kind("sync.Once"), None);
        assert_eq!(kind("*sync.Mutex"), None);
        assert_eq!(kind("[4]sync.Mutex"), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn finds_own_static_at_its_symbol_address() {
        // Touch the static so it is kept.
        assert!(MAPWATCH_DWARF_PROBE.fetch_add(1, Ordering::Relaxed) >= 7);
        let image = own_exe();
        if image.section(".debug_info").is_none() {
            eprintln!("test executable has no DWARF; skipping");
            return;
        }
        let symbol = image
            .symtab_objects()
            .iter()
            .find(|s| s.name.contains("MAPWATCH_DWARF_PROBE"))
            .expect("symtab has the probe static");

        let mut offered = Vec::new();
        let found = global_variables(&image, |type_name| {
            offered.push(type_name.to_owned());
            type_name == "AtomicU64"
        })
        .unwrap();
        assert!(offered.iter().any(|t| t == "AtomicU64"));
        let probe: Vec<_> = found
            .iter()
            .filter(|(name, _, _)| name.ends_with("::MAPWATCH_DWARF_PROBE"))
            .collect();
        assert_eq!(probe.len(), 1, "{probe:?}");
        let (name, address, type_name) = probe[0];
        assert_eq!(*address, symbol.address);
        assert_eq!(type_name, "AtomicU64");
        assert!(name.contains("dwarf::tests::"), "{name}");

        // Sorted by address, every type kept, no zero addresses.
        assert!(found.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(found.iter().all(|(_, a, t)| *a != 0 && t == "AtomicU64"));
        // A Rust binary has no Go lock types.
        assert!(!offered.iter().any(|t| goruntime::lock_type(t).is_some()));

        // The runtime address differs from the link-time one by the same
        // bias as every other symbol: check against a function's.
        let runtime = &MAPWATCH_DWARF_PROBE as *const AtomicU64 as u64;
        let anchor = own_exe as fn() -> ElfImage as usize as u64;
        let anchor_symbol = image
            .symtab_functions()
            .iter()
            .find(|f| f.name.contains("dwarf5tests7own_exe"));
        if let Some(anchor_symbol) = anchor_symbol {
            assert_eq!(
                runtime.wrapping_sub(*address),
                anchor.wrapping_sub(anchor_symbol.address)
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn no_dwarf_is_empty_not_an_error() {
        // The test executable with its debug sections renamed away.
        let mut bytes = own_exe().bytes().to_vec();
        let image = own_exe();
        let shstr = image
            .sections()
            .iter()
            .find(|s| s.name == ".shstrtab")
            .expect(".shstrtab")
            .clone();
        let start = shstr.file_offset as usize;
        let end = start + shstr.size as usize;
        for pos in start..end {
            if bytes[pos..].starts_with(b".debug_") || bytes[pos..].starts_with(b".zdebug_") {
                bytes[pos + 1] = b'X';
            }
        }
        let stripped = ElfImage::parse(bytes).unwrap();
        assert!(stripped.section(".debug_info").is_none());
        assert_eq!(global_variables(&stripped, |_| true).unwrap(), Vec::new());
        assert_eq!(global_locks(&stripped).unwrap(), Vec::new());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn corrupt_debug_info_is_an_error_not_a_panic() {
        let image = own_exe();
        let Some(info) = image.section(".debug_info").filter(|s| !s.is_compressed()) else {
            return;
        };
        let start = info.file_offset as usize;
        let original = image.bytes().to_vec();

        // A reserved unit length cannot be read: an error naming offset 0.
        let mut bytes = original.clone();
        bytes[start..start + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let corrupt = ElfImage::parse(bytes).unwrap();
        let err = global_variables(&corrupt, |_| true).unwrap_err();
        assert!(
            matches!(err, DwarfError::Malformed { unit: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("offset 0x0"), "{err}");

        // Garbage entries after a valid header: an error or fewer
        // variables, never a panic.
        let mut bytes = original;
        let end = start + (info.size as usize).min(4096);
        for (i, b) in bytes[start + 11..end].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let corrupt = ElfImage::parse(bytes).unwrap();
        let _ = global_variables(&corrupt, |_| true);
    }
}
