//! The traced process's memory, read through `/proc/PID/mem`: map variables'
//! current values, and which global variable holds a given map.

use std::{collections::HashMap, fs::File, os::unix::fs::FileExt as _};

use thiserror::Error;

use crate::target::{demangle, Executable};

/// Errors reading the target's memory.
#[derive(Debug, Error)]
pub enum MemoryError {
    /// `/proc/PID/mem` could not be opened.
    #[error("cannot open /proc/{pid}/mem: {source}")]
    Open {
        /// The process.
        pid: u32,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// A read failed.
    #[error("cannot read {len} bytes at {address:#x} of PID {pid}: {source}")]
    Read {
        /// The process.
        pid: u32,
        /// Where.
        address: u64,
        /// How much.
        len: usize,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// An open handle on a process's memory.
#[derive(Debug)]
pub struct Memory {
    pid: u32,
    file: File,
}

impl Memory {
    /// Opens process `pid`'s memory.
    pub fn open(pid: u32) -> Result<Self, MemoryError> {
        let file = File::open(format!("/proc/{pid}/mem"))
            .map_err(|source| MemoryError::Open { pid, source })?;
        Ok(Self { pid, file })
    }

    /// Reads `buf.len()` bytes at runtime address `address`.
    pub fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.file
            .read_exact_at(buf, address)
            .map_err(|source| MemoryError::Read {
                pid: self.pid,
                address,
                len: buf.len(),
                source,
            })
    }

    /// Reads a little-endian u64 at `address`.
    pub fn read_u64(&self, address: u64) -> Result<u64, MemoryError> {
        let mut bytes = [0u8; 8];
        self.read(address, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

impl crate::maphealth::Peek for Memory {
    fn peek(&self, address: u64, buf: &mut [u8]) -> bool {
        self.read(address, buf).is_ok()
    }
}

/// Sections holding Go's (and C's) global variables.
const DATA_SECTIONS: [&str; 5] = [".data", ".noptrdata", ".bss", ".noptrbss", ".go.buildinfo"];

/// Most bytes read of one data section.
const MAX_SECTION_BYTES: u64 = 256 << 20;

/// Pointer-sized global variables by the value they hold now: a runtime
/// map is named after the variable holding its header pointer. Variables
/// whose names start with `main.` win over others holding the same value.
pub fn pointer_globals(exe: &Executable, load_bias: u64, memory: &Memory) -> HashMap<u64, String> {
    let mut sections = Vec::new();
    for name in DATA_SECTIONS {
        let Some(section) = exe.elf.section(name) else {
            continue;
        };
        let start = section.address.wrapping_add(load_bias);
        // Nobody's globals need more; a bogus header must not allocate more.
        let mut bytes = vec![0u8; section.size.min(MAX_SECTION_BYTES) as usize];
        if memory.read(start, &mut bytes).is_ok() {
            sections.push((section.address, bytes));
        }
    }
    let mut by_value: HashMap<u64, String> = HashMap::new();
    for global in exe.symbols.globals() {
        if global.size != 8 {
            continue;
        }
        let Some((base, bytes)) = sections.iter().find(|(base, bytes)| {
            global.address >= *base && global.address + 8 <= base + bytes.len() as u64
        }) else {
            continue;
        };
        let at = (global.address - base) as usize;
        let value = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        if value == 0 {
            continue;
        }
        let name = demangle(&global.name);
        match by_value.get(&value) {
            Some(existing) if existing.starts_with("main.") || !name.starts_with("main.") => {}
            _ => {
                by_value.insert(value, name);
            }
        }
    }
    by_value
}
