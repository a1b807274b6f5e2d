//! Map operation sites: the functions behind Go's `sync.Map` (both
//! implementations) and the runtime's map functions (`map[K]V`), with where
//! each finds the map and the key at its probe site; and the maps a user
//! selects with `--map`.
//!
//! Go inlines the small `sync.Map` wrappers (`Store` calls `Swap`, `Delete`
//! calls `LoadAndDelete`, and from Go 1.24 every method calls the
//! `internal/sync.HashTrieMap` one). The probes sit on the functions that
//! exist; each event carries the caller's return address, and the
//! aggregator names the user-level operation from the inlined frames there.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction};
use probe_common::{GeneralRegister, KeyShape, MapOp};
use thiserror::Error;

use super::{code, entry_placement, Placement, PlanError, SiteMode};
use crate::{
    goruntime::{self, runtime_map_registers as rmap, Generation},
    model::MapKind,
    target::Executable,
};

/// Where a site finds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAccess {
    /// How the key is passed.
    pub shape: KeyShape,
    /// First key register (see [`KeyShape`]).
    pub a: GeneralRegister,
    /// Second key register.
    pub b: GeneralRegister,
    /// Register holding the map's type (runtime maps).
    pub map_type: Option<GeneralRegister>,
    /// Integer keys' width in bytes.
    pub width: u32,
}

/// A function that performs a map operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFunction {
    /// Its symbol.
    pub name: String,
    /// What it does.
    pub op: MapOp,
    /// Which kind of map.
    pub kind: MapKind,
    /// The register holding the map.
    pub map: GeneralRegister,
    /// The key.
    pub key: KeyAccess,
    /// A user-level operation (not an internal event): when it merely wraps
    /// another such function, only the inner one is probed.
    pub user_op: bool,
}

impl MapFunction {
    /// The registers its probe reads.
    fn reads(&self) -> Vec<GeneralRegister> {
        let mut reads = vec![self.map, GeneralRegister::Rsp, self.key.a, self.key.b];
        reads.extend(self.key.map_type);
        reads
    }
}

const NO_KEY: KeyAccess = KeyAccess {
    shape: KeyShape::None,
    a: GeneralRegister::Rax,
    b: GeneralRegister::Rax,
    map_type: None,
    width: 0,
};

/// The `sync.Map` functions of one generation.
pub fn sync_map_functions(generation: &Generation) -> Vec<MapFunction> {
    let facts = &generation.sync_map;
    let keyed = goruntime::SYNC_MAP_METHODS
        .iter()
        .map(|&(m, op)| (m, op, true));
    let internal = facts.internal.iter().map(|&(m, op)| (m, op, false));
    keyed
        .chain(internal)
        .map(|(method, op, user_op)| MapFunction {
            name: format!("{}{method}", facts.prefix),
            op,
            kind: MapKind::SyncMap,
            map: facts.receiver,
            key: if user_op {
                KeyAccess {
                    shape: KeyShape::Iface,
                    a: facts.key_type,
                    b: facts.key_data,
                    map_type: None,
                    width: 0,
                }
            } else {
                NO_KEY
            },
            user_op,
        })
        .collect()
}

/// The runtime map functions, and where maps of `generations` grow.
pub fn runtime_map_functions(generations: &[&Generation]) -> Vec<MapFunction> {
    let grows = generations
        .iter()
        .flat_map(|g| g.map_grows)
        .map(|&(name, map)| MapFunction {
            name: name.to_string(),
            op: MapOp::Grow,
            kind: MapKind::Runtime,
            map,
            key: NO_KEY,
            user_op: false,
        });
    goruntime::RUNTIME_MAP_FUNCTIONS
        .iter()
        .map(|&(name, op, shape, width)| MapFunction {
            name: name.to_string(),
            op,
            kind: MapKind::Runtime,
            map: rmap::MAP,
            key: KeyAccess {
                shape,
                a: rmap::KEY,
                b: rmap::KEY_LEN,
                map_type: Some(rmap::MAP_TYPE),
                width,
            },
            user_op: true,
        })
        .chain(grows)
        .collect()
}

/// One planned map operation site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMapSite {
    /// The function.
    pub function: MapFunction,
    /// Where its probe goes.
    pub at: Placement,
}

/// Plans a site for every function of `functions` present in the
/// executable, leaving out thin wrappers around another of them (from Go
/// 1.24, `mapaccess1_faststr` only calls `mapaccess2_faststr`: probing both
/// would count each load twice). Returns the sites and the names not found.
pub fn plan_map_sites(
    exe: &Executable,
    functions: &[MapFunction],
    mode: SiteMode,
) -> Result<(Vec<PlannedMapSite>, Vec<String>), PlanError> {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for function in functions {
        match exe.symbols.function(&function.name) {
            Some(symbol) => present.push((function, symbol.start, symbol.end)),
            None => missing.push(function.name.clone()),
        }
    }
    let user_entries: Vec<u64> = present
        .iter()
        .filter(|(f, _, _)| f.user_op)
        .map(|(_, start, _)| *start)
        .collect();
    let mut sites = Vec::new();
    for (function, start, end) in present {
        let bytes = code(exe, &function.name, start, end)?;
        if function.user_op && is_thin_wrapper(bytes, start, &user_entries) {
            log::debug!("{}: wraps another probed map function", function.name);
            continue;
        }
        let at = entry_placement(exe, &function.name, start, end, mode, &function.reads())?;
        sites.push(PlannedMapSite {
            function: function.clone(),
            at,
        });
    }
    Ok((sites, missing))
}

/// Most instructions a function may have and still count as a thin wrapper.
const MAX_WRAPPER_INSTRUCTIONS: usize = 48;

/// Whether the function at `start` is a short function whose only direct
/// call into `entries` is one call to another of them (and it calls nothing
/// else but the stack-growth routine): every call of it is also a call of
/// the function it wraps.
pub fn is_thin_wrapper(code: &[u8], start: u64, entries: &[u64]) -> bool {
    let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut calls_into = 0;
    let mut other_calls = 0;
    let mut count = 0;
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() || instr.code() == Code::Int3 {
            break;
        }
        count += 1;
        if count > MAX_WRAPPER_INSTRUCTIONS {
            return false;
        }
        if instr.flow_control() == FlowControl::Call {
            let target = instr.near_branch_target();
            if target != start && entries.contains(&target) {
                calls_into += 1;
            } else {
                other_calls += 1;
            }
        }
    }
    // The morestack call is the one other call a wrapper has.
    calls_into == 1 && other_calls <= 1
}

/// A map selected with `--map`, resolved against the executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapSelector {
    /// A runtime address given as such (from a report).
    Runtime(u64),
    /// A global variable that is the map (a `sync.Map`), at this link-time
    /// address.
    Global {
        /// The variable's name.
        name: String,
        /// Its link-time address.
        address: u64,
    },
    /// A pointer-sized global variable holding the map (a `map[K]V` or a
    /// `*sync.Map`): its value is read again every second, as the program
    /// may replace the map.
    Variable {
        /// The variable's name.
        name: String,
        /// Its link-time address.
        address: u64,
    },
}

/// A `--map` argument that names nothing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    /// `0x…` that is not hexadecimal.
    #[error("--map {0}: not a hexadecimal address")]
    BadAddress(String),
    /// No global of that name.
    #[error("--map {name}: no global variable {name} in {exe}{}; give a global's full name (e.g. main.sessions) or an address from a report", if *.no_symbols { " (it has no symbol table)" } else { "" })]
    NoSuchGlobal {
        /// The name given.
        name: String,
        /// The executable.
        exe: String,
        /// Whether the executable has no globals at all.
        no_symbols: bool,
    },
}

/// Resolves a `--map` argument: `0x…` (an address from a report) or the
/// name of a global variable.
pub fn resolve_selector(exe: &Executable, text: &str) -> Result<MapSelector, SelectorError> {
    if let Some(hex) = text.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16)
            .map(MapSelector::Runtime)
            .map_err(|_| SelectorError::BadAddress(text.to_string()));
    }
    let global = exe
        .symbols
        .global(text)
        .ok_or_else(|| SelectorError::NoSuchGlobal {
            name: text.to_string(),
            exe: exe.name.clone(),
            no_symbols: exe.symbols.global_count() == 0,
        })?;
    let name = text.to_string();
    Ok(if global.size == 8 {
        MapSelector::Variable {
            name,
            address: global.address,
        }
    } else {
        MapSelector::Global {
            name,
            address: global.address,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_that_only_calls_another_entry_is_a_wrapper() {
        // cmp rsp,[r14+16]; jbe +0x12; push rbp; mov rbp,rsp; sub rsp,0x20;
        // call 0x2000; add rsp,0x20; pop rbp; ret; ...; call morestack; jmp
        let mut code = vec![
            0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
            0x76, 0x10, // jbe +0x10
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp,rsp
            0x48, 0x83, 0xec, 0x20, // sub rsp,0x20
        ];
        let call_at = 0x1000 + code.len() as u64;
        let rel = (0x2000i64 - (call_at as i64 + 5)) as i32;
        code.push(0xe8);
        code.extend_from_slice(&rel.to_le_bytes());
        code.extend_from_slice(&[0x48, 0x83, 0xc4, 0x20, 0x5d, 0xc3]);
        let call_at = 0x1000 + code.len() as u64;
        let rel = (0x3000i64 - (call_at as i64 + 5)) as i32;
        code.push(0xe8);
        code.extend_from_slice(&rel.to_le_bytes());
        code.extend_from_slice(&[0xeb, 0xd0, 0xcc, 0xcc]);
        assert!(is_thin_wrapper(&code, 0x1000, &[0x1000, 0x2000]));
        assert!(!is_thin_wrapper(&code, 0x1000, &[0x1000, 0x4000]));
    }

    #[test]
    fn sync_map_functions_follow_the_generation() {
        let old = sync_map_functions(&goruntime::GENERATIONS[0]);
        let store = old.iter().find(|f| f.op == MapOp::Store).unwrap();
        assert_eq!(store.name, "sync.(*Map).Store");
        assert_eq!(store.key.a, GeneralRegister::Rbx);
        let new = sync_map_functions(&goruntime::GENERATIONS[1]);
        let store = new.iter().find(|f| f.op == MapOp::Store).unwrap();
        assert!(store.name.starts_with("internal/sync.(*HashTrieMap["));
        assert_eq!(store.key.a, GeneralRegister::Rcx);
        let expand = new.iter().find(|f| f.op == MapOp::Expand).unwrap();
        assert_eq!(expand.key.shape, KeyShape::None);
    }
}
