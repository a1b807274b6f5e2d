//! Go build information: the Go version and module data the Go linker embeds
//! in every executable (the `.go.buildinfo` section).
//!
//! Layout of the blob, as written by `cmd/link` and read by `debug/buildinfo`:
//! 14 bytes of magic `"\xff Go buildinf:"`, a pointer-size byte and a flags
//! byte, padding to 32 bytes. Since Go 1.18 (`flags & 2` set) the version and
//! the module info follow inline as two uvarint-length-prefixed strings.
//! Earlier versions store two pointers to Go string headers at offset 16
//! instead, which need the executable's address space to resolve.

use thiserror::Error;

use super::elf::ElfImage;

/// The magic that starts the build info blob.
pub const BUILDINFO_MAGIC: &[u8; 14] = b"\xff Go buildinf:";

/// Size of the fixed header before the inline strings.
const HEADER_SIZE: usize = 32;

/// The blob is 16-byte aligned.
const ALIGN: usize = 16;

/// Flag bit: version and module info are stored inline (Go 1.18+).
const FLAG_INLINE: u8 = 2;

/// Flag bit: big-endian pointers (old layout only).
const FLAG_BIG_ENDIAN: u8 = 1;

/// Sentinel-framing length around the module info string.
const MODINFO_FRAME: usize = 16;

/// Errors reading Go build info.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildInfoError {
    /// No build info magic: not a Go executable (or built without it).
    #[error("no Go build info found (not a Go executable?)")]
    NotFound,
    /// The blob ends before its header or strings do.
    #[error("Go build info is truncated")]
    Truncated,
    /// A pointer size other than 4 or 8.
    #[error("Go build info has an invalid pointer size {0}")]
    BadPointerSize(u8),
    /// The pre-Go-1.18 pointer layout, whose pointers could not be resolved.
    #[error("Go build info uses the pre-Go 1.18 pointer layout, which could not be resolved")]
    UnsupportedLayout,
    /// Big-endian pointers (only little-endian targets are supported).
    #[error("Go build info is big-endian")]
    BigEndian,
    /// The version string is empty.
    #[error("Go build info has no Go version")]
    MissingVersion,
}

/// One `build` setting of the module info, such as `GOARCH=amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSetting {
    /// The key, e.g. `-ldflags` or `GOARCH`.
    pub key: String,
    /// The value, unquoted.
    pub value: String,
}

/// Go build information of an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// The Go toolchain version, such as `go1.23.9`.
    pub version: String,
    /// Pointer size of the target, in bytes.
    pub ptr_size: u8,
    /// The main package's import path (`path` line), e.g. `example.com/hot`.
    pub main_path: Option<String>,
    /// The main module's path (`mod` line).
    pub main_module: Option<String>,
    /// The main module's version (`mod` line), e.g. `(devel)` or `v1.2.3`.
    pub main_version: Option<String>,
    /// The `build` settings, in order.
    pub settings: Vec<BuildSetting>,
    /// The module info text without its sentinel framing (empty when the
    /// binary was built without module support).
    pub modinfo: String,
}

impl GoBuildInfo {
    /// Parses build info from the `.go.buildinfo` section's bytes (the magic
    /// is searched at 16-byte aligned offsets, so a whole data segment works
    /// too). The pre-Go 1.18 pointer layout yields
    /// [`BuildInfoError::UnsupportedLayout`]; use [`GoBuildInfo::from_elf`] or
    /// [`GoBuildInfo::parse_with`] to resolve it.
    pub fn parse(data: &[u8]) -> Result<GoBuildInfo, BuildInfoError> {
        Self::parse_with(data, |_, _| None)
    }

    /// Like [`GoBuildInfo::parse`], resolving the pointers of the pre-Go 1.18
    /// layout with `read(vaddr, len)`, which returns the bytes at a link-time
    /// virtual address.
    pub fn parse_with<'r>(
        data: &[u8],
        read: impl Fn(u64, usize) -> Option<&'r [u8]>,
    ) -> Result<GoBuildInfo, BuildInfoError> {
        let start = find_magic(data).ok_or(BuildInfoError::NotFound)?;
        let blob = data.get(start..).ok_or(BuildInfoError::NotFound)?;
        let header = blob.get(..HEADER_SIZE).ok_or(BuildInfoError::Truncated)?;
        let ptr_size = header.get(BUILDINFO_MAGIC.len()).copied().unwrap_or(0);
        let flags = header.get(BUILDINFO_MAGIC.len() + 1).copied().unwrap_or(0);
        if ptr_size != 4 && ptr_size != 8 {
            return Err(BuildInfoError::BadPointerSize(ptr_size));
        }

        let (version, modinfo) = if flags & FLAG_INLINE != 0 {
            let rest = blob.get(HEADER_SIZE..).ok_or(BuildInfoError::Truncated)?;
            let (version, rest) = read_varint_string(rest).ok_or(BuildInfoError::Truncated)?;
            let (modinfo, _) = read_varint_string(rest).ok_or(BuildInfoError::Truncated)?;
            (version.to_vec(), modinfo.to_vec())
        } else {
            if flags & FLAG_BIG_ENDIAN != 0 {
                return Err(BuildInfoError::BigEndian);
            }
            let ptr = usize::from(ptr_size);
            let version_ptr = read_le(header.get(16..16 + ptr)).ok_or(BuildInfoError::Truncated)?;
            let modinfo_ptr =
                read_le(header.get(16 + ptr..16 + 2 * ptr)).ok_or(BuildInfoError::Truncated)?;
            let version =
                read_go_string(&read, ptr, version_ptr).ok_or(BuildInfoError::UnsupportedLayout)?;
            // Binaries built without modules have an empty modinfo string.
            let modinfo = read_go_string(&read, ptr, modinfo_ptr).unwrap_or_default();
            (version, modinfo)
        };

        let version = String::from_utf8_lossy(&version).into_owned();
        if version.is_empty() {
            return Err(BuildInfoError::MissingVersion);
        }
        let modinfo = String::from_utf8_lossy(strip_modinfo_frame(&modinfo)).into_owned();
        let mut info = GoBuildInfo {
            version,
            ptr_size,
            main_path: None,
            main_module: None,
            main_version: None,
            settings: Vec::new(),
            modinfo,
        };
        info.parse_modinfo();
        Ok(info)
    }

    /// Reads the build info of an ELF executable: from the `.go.buildinfo`
    /// section, or, without section headers, from the writable segments.
    /// Resolves the pre-Go 1.18 layout through the program headers.
    pub fn from_elf(image: &ElfImage) -> Result<GoBuildInfo, BuildInfoError> {
        let read = |vaddr: u64, len: usize| image.read_vaddr(vaddr, len);
        if let Some(section) = image.section(".go.buildinfo") {
            if let Ok(data) = image.section_data(&section) {
                return Self::parse_with(&data, read);
            }
        }
        let mut last = BuildInfoError::NotFound;
        for segment in image.load_segments().iter().filter(|s| s.is_writable()) {
            let Ok(len) = usize::try_from(segment.file_size) else {
                continue;
            };
            let Some(data) = image.read_vaddr(segment.vaddr, len) else {
                continue;
            };
            match Self::parse_with(data, read) {
                Ok(info) => return Ok(info),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The (major, minor) Go version, see [`parse_go_version`].
    pub fn version_number(&self) -> Option<(u32, u32)> {
        parse_go_version(&self.version)
    }

    /// The value of a `build` setting, such as `GOARCH` or `CGO_ENABLED`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.value.as_str())
    }

    fn parse_modinfo(&mut self) {
        for line in self.modinfo.lines() {
            let Some((word, rest)) = line.split_once('\t') else {
                continue;
            };
            match word {
                "path" if self.main_path.is_none() => self.main_path = Some(rest.to_string()),
                "mod" if self.main_module.is_none() => {
                    let mut fields = rest.split('\t');
                    self.main_module = fields.next().map(str::to_string);
                    self.main_version = fields.next().map(str::to_string);
                }
                "build" => {
                    if let Some(setting) = parse_build_setting(rest) {
                        self.settings.push(setting);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Parses build info from the `.go.buildinfo` section's bytes; the same as
/// [`GoBuildInfo::parse`].
pub fn parse(data: &[u8]) -> Result<GoBuildInfo, BuildInfoError> {
    GoBuildInfo::parse(data)
}

/// The (major, minor) numbers of a Go version string: `"go1.23.9"` gives
/// `(1, 23)`, `"go1.24rc1"` gives `(1, 24)`, `"go1.21"` gives `(1, 21)`,
/// `"go1.27.3 X:nocoverageredesign"` gives `(1, 27)`. Development versions
/// (`"devel ..."`) and anything unparsable give `None`.
pub fn parse_go_version(s: &str) -> Option<(u32, u32)> {
    let rest = s.trim_start().strip_prefix("go")?;
    let (major, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix('.')?;
    let (minor, _) = leading_number(rest)?;
    Some((major, minor))
}

/// Splits a leading decimal number off `s`.
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = s.split_at(digits);
    Some((number.parse().ok()?, rest))
}

/// Offset of the magic at a 16-byte aligned position of `data`.
fn find_magic(data: &[u8]) -> Option<usize> {
    (0..data.len())
        .step_by(ALIGN)
        .find(|&i| data.get(i..i + BUILDINFO_MAGIC.len()) == Some(BUILDINFO_MAGIC.as_slice()))
}

/// Reads an unsigned LEB128 varint (Go's `binary.Uvarint`).
fn read_uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if i == 9 && byte > 1 {
            return None; // overflows 64 bits
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads a uvarint-length-prefixed string; returns it and the rest.
fn read_varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = read_uvarint(data)?;
    let len = usize::try_from(len).ok()?;
    let rest = data.get(n..)?;
    let s = rest.get(..len)?;
    Some((s, rest.get(len..)?))
}

/// A little-endian unsigned integer of 4 or 8 bytes.
fn read_le(bytes: Option<&[u8]>) -> Option<u64> {
    match bytes? {
        [a, b, c, d] => Some(u64::from(u32::from_le_bytes([*a, *b, *c, *d]))),
        b => Some(u64::from_le_bytes(b.try_into().ok()?)),
    }
}

/// Reads the Go string whose header (data pointer, length) is at `vaddr`.
fn read_go_string<'r>(
    read: &impl Fn(u64, usize) -> Option<&'r [u8]>,
    ptr_size: usize,
    vaddr: u64,
) -> Option<Vec<u8>> {
    if vaddr == 0 {
        return None;
    }
    let header = read(vaddr, 2 * ptr_size)?;
    let data = read_le(header.get(..ptr_size))?;
    let len = usize::try_from(read_le(header.get(ptr_size..2 * ptr_size))?).ok()?;
    if len == 0 {
        return Some(Vec::new());
    }
    read(data, len).map(<[u8]>::to_vec)
}

/// Removes the 16-byte sentinels that frame the module info, as
/// `debug/buildinfo` does; text that is not framed is returned empty.
fn strip_modinfo_frame(modinfo: &[u8]) -> &[u8] {
    let len = modinfo.len();
    if len > 2 * MODINFO_FRAME && modinfo.get(len - MODINFO_FRAME - 1) == Some(&b'\n') {
        modinfo
            .get(MODINFO_FRAME..len - MODINFO_FRAME)
            .unwrap_or_default()
    } else {
        &[]
    }
}

/// Parses the text after `build\t`: `key=value`, either side possibly a Go
/// quoted string.
fn parse_build_setting(text: &str) -> Option<BuildSetting> {
    let (key, rest) = if text.starts_with('"') || text.starts_with('`') {
        let (key, used) = unquote_prefix(text)?;
        (key, text.get(used..)?.strip_prefix('=')?)
    } else {
        let (key, rest) = text.split_once('=')?;
        (key.to_string(), rest)
    };
    let value = if rest.starts_with('"') || rest.starts_with('`') {
        unquote_prefix(rest)
            .map(|(v, _)| v)
            .unwrap_or_else(|| rest.to_string())
    } else {
        rest.to_string()
    };
    Some(BuildSetting { key, value })
}

/// Unquotes the Go string literal at the start of `s` (double-quoted with the
/// common escapes, or back-quoted). Returns the string and the bytes used.
fn unquote_prefix(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    let (_, quote) = chars.next()?;
    let mut out = String::new();
    if quote == '`' {
        let end = s.get(1..)?.find('`')? + 1;
        return Some((s.get(1..end)?.to_string(), end + 1));
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' => {
                        let hex: String = [chars.next()?.1, chars.next()?.1].iter().collect();
                        out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uvarint(mut v: usize, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Frames module info with 16-byte sentinels like cmd/go does (the real
    /// ones are binary, not UTF-8; the text before the end one ends in a newline).
    fn framed(modinfo: &str) -> Vec<u8> {
        let mut out = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
        out.extend_from_slice(modinfo.as_bytes());
        out.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
        out
    }

    fn inline_blob(version: &str, modinfo: &[u8]) -> Vec<u8> {
        let mut blob = BUILDINFO_MAGIC.to_vec();
        blob.push(8);
        blob.push(FLAG_INLINE);
        blob.resize(HEADER_SIZE, 0);
        uvarint(version.len(), &mut blob);
        blob.extend_from_slice(version.as_bytes());
        uvarint(modinfo.len(), &mut blob);
        blob.extend_from_slice(modinfo);
        blob
    }

    const MODINFO: &str = "path\texample.com/hot/cmd/hot\n\
        mod\texample.com/hot\t(devel)\t\n\
        dep\tgolang.org/x/sync\tv0.8.0\th1:abc=\n\
        build\t-buildmode=exe\n\
        build\t-ldflags=\"-s -w\"\n\
        build\tCGO_ENABLED=1\n\
        build\tGOARCH=amd64\n";

    #[test]
    fn parses_inline_layout() {
        let blob = inline_blob("go1.23.9", &framed(MODINFO));
        let info = GoBuildInfo::parse(&blob).unwrap();
        assert_eq!(info.version, "go1.23.9");
        assert_eq!(info.ptr_size, 8);
        assert_eq!(info.version_number(), Some((1, 23)));
        assert_eq!(info.main_path.as_deref(), Some("example.com/hot/cmd/hot"));
        assert_eq!(info.main_module.as_deref(), Some("example.com/hot"));
        assert_eq!(info.main_version.as_deref(), Some("(devel)"));
        assert_eq!(info.setting("-ldflags"), Some("-s -w"));
        assert_eq!(info.setting("GOARCH"), Some("amd64"));
        assert_eq!(info.setting("GOOS"), None);
        assert!(info.modinfo.starts_with("path\t"));
    }

    #[test]
    fn magic_is_found_at_aligned_offsets_only() {
        let mut data = vec![0u8; 48];
        data.extend(inline_blob("go1.22.0", b""));
        let info = GoBuildInfo::parse(&data).unwrap();
        assert_eq!(info.version, "go1.22.0");
        assert_eq!(info.main_module, None);
        assert_eq!(info.modinfo, "");

        let mut misaligned = vec![0u8; 3];
        misaligned.extend(inline_blob("go1.22.0", b""));
        assert_eq!(
            GoBuildInfo::parse(&misaligned),
            Err(BuildInfoError::NotFound)
        );
    }

    #[test]
    fn errors_on_bad_input() {
        assert_eq!(GoBuildInfo::parse(b""), Err(BuildInfoError::NotFound));
        assert_eq!(
            GoBuildInfo::parse(&[0u8; 64]),
            Err(BuildInfoError::NotFound)
        );
        let blob = inline_blob("go1.23.9", &framed(MODINFO));
        for len in [14, 20, 31, 32, 35, 45] {
            assert_eq!(
                GoBuildInfo::parse(&blob[..len]),
                Err(BuildInfoError::Truncated),
                "len {len}"
            );
        }
        let mut bad_ptr = blob.clone();
        bad_ptr[14] = 3;
        assert_eq!(
            GoBuildInfo::parse(&bad_ptr),
            Err(BuildInfoError::BadPointerSize(3))
        );
        let empty_version = inline_blob("", b"");
        assert_eq!(
            GoBuildInfo::parse(&empty_version),
            Err(BuildInfoError::MissingVersion)
        );
        // A length prefix far beyond the data.
        let mut huge = BUILDINFO_MAGIC.to_vec();
        huge.extend([8, FLAG_INLINE]);
        huge.resize(HEADER_SIZE, 0);
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(GoBuildInfo::parse(&huge), Err(BuildInfoError::Truncated));
    }

    #[test]
    fn pointer_layout_needs_a_resolver() {
        // Header with pointers to two string headers at 0x1000 and 0x1010.
        let mut blob = BUILDINFO_MAGIC.to_vec();
        blob.extend([8, 0]);
        blob.extend(0x1000u64.to_le_bytes());
        blob.extend(0x1010u64.to_le_bytes());
        assert_eq!(
            GoBuildInfo::parse(&blob),
            Err(BuildInfoError::UnsupportedLayout)
        );

        let modinfo = framed("path\tx\nmod\tx\t(devel)\t\n");
        // Fake memory: string headers at 0x1000, string bytes at 0x2000.
        let mut memory = vec![0u8; 0x2000];
        memory[0x1000..0x1008].copy_from_slice(&0x2000u64.to_le_bytes());
        memory[0x1008..0x1010].copy_from_slice(&8u64.to_le_bytes());
        memory[0x1010..0x1018].copy_from_slice(&0x2008u64.to_le_bytes());
        memory[0x1018..0x1020].copy_from_slice(&(modinfo.len() as u64).to_le_bytes());
        memory.extend_from_slice(b"go1.17.5");
        memory.extend_from_slice(&modinfo);
        let read = |vaddr: u64, len: usize| {
            let start = usize::try_from(vaddr).ok()?;
            memory.get(start..start.checked_add(len)?)
        };
        let info = GoBuildInfo::parse_with(&blob, read).unwrap();
        assert_eq!(info.version, "go1.17.5");
        assert_eq!(info.main_path.as_deref(), Some("x"));
        assert_eq!(info.main_module.as_deref(), Some("x"));

        let mut big = blob.clone();
        big[15] = FLAG_BIG_ENDIAN;
        assert_eq!(
            GoBuildInfo::parse_with(&big, read),
            Err(BuildInfoError::BigEndian)
        );
    }

    #[test]
    fn go_versions() {
        assert_eq!(parse_go_version("go1.23.9"), Some((1, 23)));
        assert_eq!(parse_go_version("go1.24rc1"), Some((1, 24)));
        assert_eq!(parse_go_version("go1.21"), Some((1, 21)));
        assert_eq!(
            parse_go_version("go1.27.3 X:nocoverageredesign"),
            Some((1, 27))
        );
        assert_eq!(parse_go_version("go1.18beta2"), Some((1, 18)));
        assert_eq!(parse_go_version("devel go1.24-abcdef Tue"), None);
        assert_eq!(parse_go_version("go"), None);
        assert_eq!(parse_go_version("go1"), None);
        assert_eq!(parse_go_version("go1."), None);
        assert_eq!(parse_go_version(""), None);
    }

    #[test]
    fn build_settings_unquote() {
        let s = parse_build_setting("-gcflags=\"all=-N -l\"").unwrap();
        assert_eq!(
            (s.key.as_str(), s.value.as_str()),
            ("-gcflags", "all=-N -l")
        );
        let s = parse_build_setting("\"odd key\"=v").unwrap();
        assert_eq!((s.key.as_str(), s.value.as_str()), ("odd key", "v"));
        let s = parse_build_setting("k=`raw \"v\"`").unwrap();
        assert_eq!(s.value, "raw \"v\"");
        let s = parse_build_setting("k=\"a\\tb\\\\c\\x41\"").unwrap();
        assert_eq!(s.value, "a\tb\\cA");
        assert!(parse_build_setting("novalue").is_none());
    }
}
