//! The traced executable as an ELF image: sections, loadable segments and the
//! `.symtab` symbols, read once and kept in memory.
//!
//! Only 64-bit little-endian x86-64 files are accepted; anything else is
//! rejected with [`ElfError::Unsupported`]. Every read of file data is bounds
//! checked, so a truncated or hostile file gives an error or `None`, never a
//! panic.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{LittleEndian, Object, ObjectSection, SectionIndex};
use thiserror::Error;

/// Errors reading an ELF file.
#[derive(Debug, Error)]
pub enum ElfError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not an acceptable ELF image.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<ElfError>,
    },
    /// The bytes do not start with the ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// A valid ELF file of a kind mapwatch does not handle.
    #[error("unsupported ELF file: {0}")]
    Unsupported(String),
    /// The ELF structures are inconsistent or truncated.
    #[error("malformed ELF file: {0}")]
    Malformed(#[from] object::Error),
    /// A section's data lies (partly) outside the file.
    #[error("section {name} lies outside the file")]
    SectionOutOfBounds {
        /// The section.
        name: String,
    },
    /// A section that occupies no file space (`SHT_NOBITS`, such as `.bss`).
    #[error("section {name} has no data in the file")]
    NoBits {
        /// The section.
        name: String,
    },
    /// A compressed section could not be decompressed.
    #[error("cannot decompress section {name}: {source}")]
    Decompress {
        /// The section.
        name: String,
        /// Why.
        #[source]
        source: object::Error,
    },
}

/// The ELF file type (`e_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfType {
    /// `ET_EXEC`: a position-dependent executable, loaded at its link addresses.
    Executable,
    /// `ET_DYN`: a position-independent executable or a shared object.
    Dynamic,
    /// Any other type (relocatable, core, ...).
    Other(u16),
}

/// A section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section's name, such as `.text`.
    pub name: String,
    /// Link-time virtual address (`sh_addr`); 0 for non-allocated sections.
    pub address: u64,
    /// Offset of the section's bytes in the file (`sh_offset`).
    pub file_offset: u64,
    /// Size in bytes (`sh_size`); for compressed sections, the compressed size.
    pub size: u64,
    /// Section type (`sh_type`, e.g. `SHT_PROGBITS`).
    pub kind: u32,
    /// Section flags (`sh_flags`).
    pub flags: u64,
    index: usize,
}

impl Section {
    /// Index of the section in the section header table.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the section is compressed (`SHF_COMPRESSED`).
    pub fn is_compressed(&self) -> bool {
        self.flags & u64::from(elf::SHF_COMPRESSED) != 0
    }

    /// Whether the section takes no space in the file (`SHT_NOBITS`).
    pub fn is_nobits(&self) -> bool {
        self.kind == elf::SHT_NOBITS
    }

    /// Whether `vaddr` lies inside the section's address range.
    pub fn contains(&self, vaddr: u64) -> bool {
        self.address != 0 && vaddr >= self.address && vaddr - self.address < self.size
    }
}

/// A `PT_LOAD` program header: a piece of the file mapped into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// Link-time virtual address of the segment's first byte (`p_vaddr`).
    pub vaddr: u64,
    /// Offset of the segment's first byte in the file (`p_offset`).
    pub file_offset: u64,
    /// Bytes backed by the file (`p_filesz`).
    pub file_size: u64,
    /// Bytes in memory (`p_memsz`); the excess over `file_size` is zero-filled.
    pub mem_size: u64,
    /// Permissions (`p_flags`: `PF_X` = 1, `PF_W` = 2, `PF_R` = 4).
    pub flags: u32,
}

impl LoadSegment {
    /// Whether the segment is executable.
    pub fn is_executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }

    /// Whether the segment is writable.
    pub fn is_writable(&self) -> bool {
        self.flags & elf::PF_W != 0
    }

    /// File offset of `vaddr` if it lies in the file-backed part of the segment.
    fn file_offset_of(&self, vaddr: u64) -> Option<u64> {
        let delta = vaddr.checked_sub(self.vaddr)?;
        if delta < self.file_size {
            self.file_offset.checked_add(delta)
        } else {
            None
        }
    }
}

/// A `.symtab` symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSymbol {
    /// The symbol's name, as stored (not demangled).
    pub name: String,
    /// Link-time address (`st_value`).
    pub address: u64,
    /// Size in bytes (`st_size`); may be 0.
    pub size: u64,
}

/// A file mapped read-only into memory (private, never written).
#[derive(Debug)]
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone.
unsafe impl Send for Mapping {}
// SAFETY: as above: nothing writes through it.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps all of `file`. A running executable cannot be written
    /// (`ETXTBSY`), and a replaced one keeps its old inode, so the bytes do
    /// not change under the mapping.
    fn of(file: &std::fs::File) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd as _;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large to map"))?;
        if len == 0 {
            return Ok(Self {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `len` readable bytes at `ptr` for as long as self lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `of`, unmapped once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// An executable's bytes: mapped from its file (a 50 MB binary is neither
/// copied nor faulted in where it is not read), or given in memory.
#[derive(Debug, Clone)]
enum FileBytes {
    Mapped(std::sync::Arc<Mapping>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(mapping) => mapping.bytes(),
            Self::Owned(bytes) => bytes,
        }
    }
}

/// An ELF executable held in memory, with its headers decoded.
#[derive(Debug, Clone)]
pub struct ElfImage {
    path: Option<PathBuf>,
    bytes: FileBytes,
    elf_type: ElfType,
    entry: u64,
    sections: Vec<Section>,
    segments: Vec<LoadSegment>,
    dynamic: Option<LoadSegment>,
    has_symtab: bool,
    functions: Vec<ElfSymbol>,
    objects: Vec<ElfSymbol>,
    dynamic_functions: Vec<ElfSymbol>,
    build_id: Option<Vec<u8>>,
    debuglink: Option<DebugLink>,
}

/// A `.gnu_debuglink` section: the file name of the separate debug file
/// and the CRC-32 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLink {
    /// The debug file's name (no directory), such as `memcached.debug`.
    pub file_name: String,
    /// The CRC-32 (IEEE, as `zlib`'s `crc32`) of the whole debug file.
    pub crc: u32,
}

impl ElfImage {
    /// Reads and parses the ELF file at `path`. Errors carry the path.
    pub fn open(path: &Path) -> Result<ElfImage, ElfError> {
        let io = |source| ElfError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mapping = Mapping::of(&file).map_err(io)?;
        let mut image = Self::parse_bytes(FileBytes::Mapped(std::sync::Arc::new(mapping)))
            .map_err(|e| ElfError::File {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?;
        image.path = Some(path.to_path_buf());
        Ok(image)
    }

    /// Parses an ELF image from its bytes.
    pub fn parse(bytes: Vec<u8>) -> Result<ElfImage, ElfError> {
        Self::parse_bytes(FileBytes::Owned(bytes))
    }

    fn parse_bytes(bytes: FileBytes) -> Result<ElfImage, ElfError> {
        check_ident(&bytes)?;
        let parsed = Parsed::from_bytes(&bytes)?;
        Ok(ElfImage {
            path: None,
            elf_type: parsed.elf_type,
            entry: parsed.entry,
            sections: parsed.sections,
            segments: parsed.segments,
            dynamic: parsed.dynamic,
            has_symtab: parsed.has_symtab,
            functions: parsed.functions,
            objects: parsed.objects,
            dynamic_functions: parsed.dynamic_functions,
            build_id: parsed.build_id,
            debuglink: parsed.debuglink,
            bytes,
        })
    }

    /// The path the image was opened from, if it was opened from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The ELF file type.
    pub fn elf_type(&self) -> ElfType {
        self.elf_type
    }

    /// Whether the executable is position independent (`ET_DYN`), i.e. is
    /// loaded at an address chosen at run time rather than its link address.
    pub fn is_pie(&self) -> bool {
        self.elf_type == ElfType::Dynamic
    }

    /// The entry point's link-time address (`e_entry`).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// All section headers, in file order (index 0 is the null section).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<Section> {
        self.sections.iter().find(|s| s.name == name).cloned()
    }

    /// The `.text` section.
    pub fn text_section(&self) -> Option<Section> {
        self.section(".text")
    }

    /// The bytes of a section, decompressed if it is `SHF_COMPRESSED`.
    pub fn section_data(&self, section: &Section) -> Result<Cow<'_, [u8]>, ElfError> {
        if section.is_nobits() {
            return Err(ElfError::NoBits {
                name: section.name.clone(),
            });
        }
        if section.is_compressed() {
            let file = ElfFile64::<LittleEndian, &[u8]>::parse(&self.bytes[..])?;
            let sec = file
                .section_by_index(SectionIndex(section.index))
                .map_err(|_| ElfError::SectionOutOfBounds {
                    name: section.name.clone(),
                })?;
            return sec
                .uncompressed_data()
                .map_err(|source| ElfError::Decompress {
                    name: section.name.clone(),
                    source,
                });
        }
        self.file_range(section.file_offset, section.size)
            .map(Cow::Borrowed)
            .ok_or_else(|| ElfError::SectionOutOfBounds {
                name: section.name.clone(),
            })
    }

    /// The `PT_LOAD` segments, in program header order.
    pub fn load_segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// The link-time address of the lowest `PT_LOAD` segment, aligned down to
    /// a 4 KiB page: the address that the start of the executable's first
    /// mapping corresponds to. A PIE's load bias is that mapping's runtime
    /// start minus this.
    pub fn first_load_vaddr(&self) -> Option<u64> {
        self.segments
            .iter()
            .map(|s| s.vaddr)
            .min()
            .map(|v| v & !0xfff)
    }

    /// The file offset backing link-time address `vaddr`, found through the
    /// `PT_LOAD` program headers (this is the offset a uprobe attaches to).
    /// `None` if no segment maps the address from the file (e.g. `.bss`).
    pub fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments.iter().find_map(|s| s.file_offset_of(vaddr))
    }

    /// The file bytes backing `len` bytes at link-time address `vaddr`. The
    /// whole range must lie in the file-backed part of one `PT_LOAD` segment.
    pub fn read_vaddr(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let len = u64::try_from(len).ok()?;
        self.segments.iter().find_map(|s| {
            let offset = s.file_offset_of(vaddr)?;
            let delta = vaddr - s.vaddr;
            if delta.checked_add(len)? > s.file_size {
                return None;
            }
            self.file_range(offset, len)
        })
    }

    /// Whether the file has a non-empty `.symtab` (i.e. is not stripped).
    pub fn has_symtab(&self) -> bool {
        self.has_symtab
    }

    /// The defined `STT_FUNC` symbols of `.symtab`, in table order; empty when
    /// stripped.
    pub fn symtab_functions(&self) -> &[ElfSymbol] {
        &self.functions
    }

    /// The defined `STT_OBJECT` symbols of `.symtab`, in table order; empty
    /// when stripped.
    pub fn symtab_objects(&self) -> &[ElfSymbol] {
        &self.objects
    }

    /// The defined `STT_FUNC` symbols of `.dynsym` (what a shared library
    /// exports, and all a stripped one names), in table order. A name may
    /// stand at several addresses, one per symbol version.
    pub fn dynamic_functions(&self) -> &[ElfSymbol] {
        &self.dynamic_functions
    }

    /// The GNU build ID (`NT_GNU_BUILD_ID`), when the file has one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The build ID as lowercase hex, as debug directories and pprof name it.
    pub fn build_id_hex(&self) -> Option<String> {
        self.build_id().map(hex)
    }

    /// The `.gnu_debuglink` section, when the file names its debug file.
    pub fn debuglink(&self) -> Option<&DebugLink> {
        self.debuglink.as_ref()
    }

    /// The addend of the `R_X86_64_RELATIVE` dynamic relocation that patches
    /// the 8 bytes at link-time address `vaddr`, if there is one: the
    /// link-time value the loader stores there (plus the load bias). Found
    /// through `PT_DYNAMIC` (`DT_RELA`/`DT_RELASZ`), so it works without
    /// section headers. Position-independent executables leave some
    /// pointers for the loader to fill in; this recovers their values.
    pub fn relative_relocation_at(&self, vaddr: u64) -> Option<u64> {
        let dynamic = self.dynamic?;
        let table = self.file_range(dynamic.file_offset, dynamic.file_size)?;
        let (mut rela, mut rela_size, mut rela_ent) = (None, None, 24u64);
        for entry in table.chunks_exact(16) {
            let tag = read_u64(entry, 0)?;
            let value = read_u64(entry, 8)?;
            match u32::try_from(tag) {
                Ok(elf::DT_NULL) => break,
                Ok(elf::DT_RELA) => rela = Some(value),
                Ok(elf::DT_RELASZ) => rela_size = Some(value),
                Ok(elf::DT_RELAENT) => rela_ent = value,
                _ => {}
            }
        }
        if rela_ent < 24 {
            return None;
        }
        let relocs = self.read_vaddr(rela?, usize::try_from(rela_size?).ok()?)?;
        let step = usize::try_from(rela_ent).ok()?;
        relocs.chunks(step).find_map(|r| {
            let offset = read_u64(r, 0)?;
            let info = read_u64(r, 8)?;
            (offset == vaddr && info & 0xffff_ffff == u64::from(elf::R_X86_64_RELATIVE))
                .then(|| read_u64(r, 16))
                .flatten()
        })
    }

    fn file_range(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CRC-32 that `.gnu_debuglink` records (IEEE 802.3, reflected, as
/// `zlib`'s `crc32`), of `bytes`.
pub fn debuglink_crc(bytes: &[u8]) -> u32 {
    const fn table() -> [u32; 256] {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    }
    const TABLE: [u32; 256] = table();
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Checks `e_ident` (class at byte 4, data encoding at byte 5) so
/// unsupported files get a precise error.
fn check_ident(bytes: &[u8]) -> Result<(), ElfError> {
    if bytes.get(..4) != Some(elf::ELFMAG.as_slice()) {
        return Err(ElfError::NotElf);
    }
    match bytes.get(4) {
        Some(&elf::ELFCLASS64) => {}
        Some(&elf::ELFCLASS32) => return Err(ElfError::Unsupported("32-bit ELF".into())),
        _ => return Err(ElfError::Unsupported("unknown ELF class".into())),
    }
    match bytes.get(5) {
        Some(&elf::ELFDATA2LSB) => Ok(()),
        Some(&elf::ELFDATA2MSB) => Err(ElfError::Unsupported("big-endian ELF".into())),
        _ => Err(ElfError::Unsupported("unknown ELF data encoding".into())),
    }
}

/// What [`ElfImage`] keeps from a parse.
struct Parsed {
    elf_type: ElfType,
    entry: u64,
    sections: Vec<Section>,
    segments: Vec<LoadSegment>,
    dynamic: Option<LoadSegment>,
    has_symtab: bool,
    functions: Vec<ElfSymbol>,
    objects: Vec<ElfSymbol>,
    dynamic_functions: Vec<ElfSymbol>,
    build_id: Option<Vec<u8>>,
    debuglink: Option<DebugLink>,
}

impl Parsed {
    fn from_bytes(bytes: &[u8]) -> Result<Parsed, ElfError> {
        let file = ElfFile64::<LittleEndian, &[u8]>::parse(bytes)?;
        let endian = file.endian();
        let header = file.elf_header();

        let machine = header.e_machine(endian);
        if machine != elf::EM_X86_64 {
            return Err(ElfError::Unsupported(format!(
                "machine {machine} (only x86-64 is supported)"
            )));
        }
        let elf_type = match header.e_type(endian) {
            elf::ET_EXEC => ElfType::Executable,
            elf::ET_DYN => ElfType::Dynamic,
            other => ElfType::Other(other),
        };

        let table = file.elf_section_table();
        let mut sections = Vec::with_capacity(table.len());
        for (index, sh) in table.iter().enumerate() {
            let name = table
                .section_name(endian, sh)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            sections.push(Section {
                name,
                address: sh.sh_addr(endian),
                file_offset: sh.sh_offset(endian),
                size: sh.sh_size(endian),
                kind: sh.sh_type(endian),
                flags: sh.sh_flags(endian),
                index,
            });
        }

        let segment = |ph: &elf::ProgramHeader64<LittleEndian>| LoadSegment {
            vaddr: ph.p_vaddr(endian),
            file_offset: ph.p_offset(endian),
            file_size: ph.p_filesz(endian),
            mem_size: ph.p_memsz(endian),
            flags: ph.p_flags(endian),
        };
        let program_headers = file.elf_program_headers();
        let segments = program_headers
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(segment)
            .collect();
        let dynamic = program_headers
            .iter()
            .find(|ph| ph.p_type(endian) == elf::PT_DYNAMIC)
            .map(segment);

        let symbols = file.elf_symbol_table();
        let mut functions = Vec::new();
        let mut objects = Vec::new();
        let mut dynamic_functions = Vec::new();
        let dynsym = file.elf_dynamic_symbol_table();
        for (table, in_dynsym) in [(&symbols, false), (&dynsym, true)] {
            for sym in table.iter() {
                let list = match (sym.st_type(), in_dynsym) {
                    (elf::STT_FUNC, false) => &mut functions,
                    (elf::STT_OBJECT, false) => &mut objects,
                    (elf::STT_FUNC, true) => &mut dynamic_functions,
                    _ => continue,
                };
                if sym.st_shndx(endian) == elf::SHN_UNDEF {
                    continue;
                }
                let Ok(name) = table.symbol_name(endian, sym) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                list.push(ElfSymbol {
                    name: String::from_utf8_lossy(name).into_owned(),
                    address: sym.st_value(endian),
                    size: sym.st_size(endian),
                });
            }
        }
        // Malformed notes or links are as good as none: they only help to
        // find a debug file, and a wrong one is refused when it is checked.
        let build_id = file.build_id().ok().flatten().map(<[u8]>::to_vec);
        let debuglink = file
            .gnu_debuglink()
            .ok()
            .flatten()
            .map(|(name, crc)| DebugLink {
                file_name: String::from_utf8_lossy(name).into_owned(),
                crc,
            });

        Ok(Parsed {
            elf_type,
            entry: header.e_entry(endian),
            sections,
            segments,
            dynamic,
            // Index 0 is the mandatory null symbol.
            has_symtab: symbols.len() > 1,
            functions,
            objects,
            dynamic_functions,
            build_id,
            debuglink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_exe() -> ElfImage {
        let path = std::env::current_exe().expect("test executable path");
        ElfImage::open(&path).expect("test executable parses")
    }

    #[test]
    fn rejects_non_elf_and_unsupported_classes() {
        assert!(matches!(
            ElfImage::parse(b"#!/bin/sh\n".to_vec()),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(ElfImage::parse(Vec::new()), Err(ElfError::NotElf)));
        let mut elf32 = b"\x7fELF\x01\x01\x01".to_vec();
        elf32.resize(64, 0);
        assert!(matches!(
            ElfImage::parse(elf32),
            Err(ElfError::Unsupported(_))
        ));
        let mut big = b"\x7fELF\x02\x02\x01".to_vec();
        big.resize(64, 0);
        assert!(matches!(
            ElfImage::parse(big),
            Err(ElfError::Unsupported(_))
        ));
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [5, 16, 63, 64, 200, 4096] {
            let _ = ElfImage::parse(bytes[..len.min(bytes.len())].to_vec());
        }
        assert!(ElfImage::parse(bytes[..40].to_vec()).is_err());
    }

    #[test]
    fn debuglink_crc_is_zlibs_crc32() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(debuglink_crc(b"123456789"), 0xcbf4_3926);
        assert_eq!(debuglink_crc(b""), 0);
        assert_eq!(hex(&[0x0a, 0xff, 0x00]), "0aff00");
    }

    #[test]
    fn open_error_carries_the_path() {
        let err = ElfImage::open(Path::new("/nonexistent/mapwatch-test")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/mapwatch-test"));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn reads_own_executable() {
        let image = own_exe();
        assert!(image.path().is_some());
        assert!(image.has_symtab());
        assert!(!image.symtab_functions().is_empty());
        assert!(!image.symtab_objects().is_empty());
        assert_eq!(image.is_pie(), image.elf_type() == ElfType::Dynamic);

        let text = image.text_section().expect(".text");
        assert!(text.size > 0);
        let data = image.section_data(&text).unwrap();
        assert_eq!(data.len() as u64, text.size);

        // .text is file backed: its vaddr maps to its file offset, and
        // read_vaddr returns the section bytes.
        assert_eq!(
            image.vaddr_to_file_offset(text.address),
            Some(text.file_offset)
        );
        let head = image.read_vaddr(text.address, 16).unwrap();
        assert_eq!(head, &data[..16]);
        assert!(image.read_vaddr(text.address, usize::MAX).is_none());
        assert!(image.vaddr_to_file_offset(u64::MAX).is_none());

        // The entry point is inside .text.
        assert!(text.contains(image.entry()));
        let first = image.first_load_vaddr().unwrap();
        assert!(first <= text.address);
        assert_eq!(first % 4096, 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn relative_relocations_match_object_crate() {
        let image = own_exe();
        let file = ElfFile64::<LittleEndian, &[u8]>::parse(image.bytes()).unwrap();
        let Some(relocs) = file.dynamic_relocations() else {
            return; // not dynamically linked
        };
        let mut checked = 0;
        for (offset, reloc) in relocs {
            let object::RelocationFlags::Elf { r_type } = reloc.flags() else {
                continue;
            };
            if r_type == elf::R_X86_64_RELATIVE {
                assert_eq!(
                    image.relative_relocation_at(offset),
                    Some(reloc.addend() as u64)
                );
                checked += 1;
                if checked == 20 {
                    break;
                }
            }
        }
        if image.is_pie() {
            assert!(checked > 0);
        }
        assert_eq!(image.relative_relocation_at(u64::MAX), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn bss_is_not_file_backed() {
        let image = own_exe();
        if let Some(bss) = image.section(".bss").filter(|s| s.size > 0) {
            assert!(matches!(
                image.section_data(&bss),
                Err(ElfError::NoBits { .. })
            ));
            assert!(image.read_vaddr(bss.address + bss.size - 1, 1).is_none());
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn symbols_map_into_their_sections() {
        let image = own_exe();
        let text = image.text_section().unwrap();
        let in_text = image
            .symtab_functions()
            .iter()
            .filter(|f| text.contains(f.address))
            .count();
        assert!(in_text > 0);
    }
}
