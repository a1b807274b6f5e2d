//! Map operation sites: the functions behind Go's `sync.Map` (both
//! implementations) and the runtime's map functions (`map[K]V`), with where
//! each finds the map and the key at its probe site.
//!
//! Go inlines the small `sync.Map` wrappers (`Store` calls `Swap`, `Delete`
//! calls `LoadAndDelete`, and from Go 1.24 every method calls the
//! `internal/sync.HashTrieMap` one). The probes sit on the functions that
//! exist; each event carries the caller's return address, and the
//! aggregator names the user-level operation from the inlined frames there
//! (see [`sync_map_op_from_frames`]).

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, Register};
use probe_common::{GeneralRegister, KeyShape, MapOp};

use super::{file_offset, site::SiteChoice, PlanError, SiteMode};
use crate::target::Target;
use probe_common::SkipWhen;

/// Which kind of map a site observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum MapKind {
    /// Go's `sync.Map`.
    #[serde(rename = "sync.Map")]
    SyncMap,
    /// A runtime map (`map[K]V`).
    #[serde(rename = "map")]
    Runtime,
}

impl MapKind {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyncMap => "sync.Map",
            Self::Runtime => "map",
        }
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapFunction {
    /// Its symbol.
    pub name: &'static str,
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

use GeneralRegister as R;

const NO_KEY: KeyAccess = KeyAccess {
    shape: KeyShape::None,
    a: R::Rax,
    b: R::Rax,
    map_type: None,
    width: 0,
};

/// `sync.Map` methods up to Go 1.23: receiver in RAX, the `any` key as
/// (type, data) in RBX, RCX.
const SYNC_MAP_OLD: &[(&str, MapOp, bool)] = &[
    ("sync.(*Map).Load", MapOp::Load, true),
    ("sync.(*Map).Store", MapOp::Store, true),
    ("sync.(*Map).LoadOrStore", MapOp::LoadOrStore, true),
    ("sync.(*Map).LoadAndDelete", MapOp::LoadAndDelete, true),
    ("sync.(*Map).Delete", MapOp::Delete, true),
    ("sync.(*Map).Swap", MapOp::Swap, true),
    ("sync.(*Map).CompareAndSwap", MapOp::CompareAndSwap, true),
    (
        "sync.(*Map).CompareAndDelete",
        MapOp::CompareAndDelete,
        true,
    ),
    ("sync.(*Map).Range", MapOp::Range, false),
    ("sync.(*Map).Clear", MapOp::Clear, false),
    ("sync.(*Map).missLocked", MapOp::Miss, false),
    ("sync.(*Map).dirtyLocked", MapOp::DirtyCopy, false),
];

/// The `internal/sync.HashTrieMap` instantiation behind `sync.Map` from Go
/// 1.24 (its methods' symbol prefix).
pub const HASH_TRIE_MAP_PREFIX: &str =
    "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).";

/// `HashTrieMap` methods from Go 1.24: receiver in RAX, the generic
/// dictionary in RBX, the `any` key as (type, data) in RCX, RDI.
const SYNC_MAP_NEW: &[(&str, MapOp, bool)] = &[
    ("Load", MapOp::Load, true),
    ("Store", MapOp::Store, true),
    ("LoadOrStore", MapOp::LoadOrStore, true),
    ("LoadAndDelete", MapOp::LoadAndDelete, true),
    ("Delete", MapOp::Delete, true),
    ("Swap", MapOp::Swap, true),
    ("CompareAndSwap", MapOp::CompareAndSwap, true),
    ("CompareAndDelete", MapOp::CompareAndDelete, true),
    ("Range", MapOp::Range, false),
    ("Clear", MapOp::Clear, false),
    ("expand", MapOp::Expand, false),
];

/// The runtime's map functions, the same names and arguments for bucket maps
/// (≤ 1.23) and swiss tables (≥ 1.24): map type in RAX, map in RBX, key in
/// RCX (and RDI for a string's length).
const RUNTIME_MAP: &[(&str, MapOp, KeyShape, u32)] = &[
    ("runtime.mapaccess1", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess2", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess1_fat", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess2_fat", MapOp::Load, KeyShape::Pointer, 0),
    ("runtime.mapaccess1_fast32", MapOp::Load, KeyShape::Int, 4),
    ("runtime.mapaccess2_fast32", MapOp::Load, KeyShape::Int, 4),
    ("runtime.mapaccess1_fast64", MapOp::Load, KeyShape::Int, 8),
    ("runtime.mapaccess2_fast64", MapOp::Load, KeyShape::Int, 8),
    ("runtime.mapaccess1_faststr", MapOp::Load, KeyShape::Str, 0),
    ("runtime.mapaccess2_faststr", MapOp::Load, KeyShape::Str, 0),
    ("runtime.mapassign", MapOp::Store, KeyShape::Pointer, 0),
    ("runtime.mapassign_fast32", MapOp::Store, KeyShape::Int, 4),
    (
        "runtime.mapassign_fast32ptr",
        MapOp::Store,
        KeyShape::Int,
        4,
    ),
    ("runtime.mapassign_fast64", MapOp::Store, KeyShape::Int, 8),
    (
        "runtime.mapassign_fast64ptr",
        MapOp::Store,
        KeyShape::Int,
        8,
    ),
    ("runtime.mapassign_faststr", MapOp::Store, KeyShape::Str, 0),
    ("runtime.mapdelete", MapOp::Delete, KeyShape::Pointer, 0),
    ("runtime.mapdelete_fast32", MapOp::Delete, KeyShape::Int, 4),
    ("runtime.mapdelete_fast64", MapOp::Delete, KeyShape::Int, 8),
    ("runtime.mapdelete_faststr", MapOp::Delete, KeyShape::Str, 0),
];

/// The `sync.Map` functions for a Go version (both generations when it is
/// unknown).
pub fn sync_map_functions(version: Option<(u32, u32)>) -> Vec<MapFunction> {
    let old = || {
        SYNC_MAP_OLD
            .iter()
            .map(|&(name, op, user_op)| sync_map_function(name, op, user_op, R::Rbx, R::Rcx))
    };
    let new = || {
        SYNC_MAP_NEW.iter().map(|&(method, op, user_op)| {
            // Leaked once per plan: a handful of short names.
            let name = Box::leak(format!("{HASH_TRIE_MAP_PREFIX}{method}").into_boxed_str());
            sync_map_function(name, op, user_op, R::Rcx, R::Rdi)
        })
    };
    match version {
        Some((1, minor)) if minor < 24 => old().collect(),
        Some(_) => new().collect(),
        None => old().chain(new()).collect(),
    }
}

/// A `sync.Map` function: receiver in RAX, the `any` key (user-level
/// operations) as (type, data) in `key_type`, `key_data`.
fn sync_map_function(
    name: &'static str,
    op: MapOp,
    user_op: bool,
    key_type: GeneralRegister,
    key_data: GeneralRegister,
) -> MapFunction {
    MapFunction {
        name,
        op,
        kind: MapKind::SyncMap,
        map: R::Rax,
        key: if user_op {
            KeyAccess {
                shape: KeyShape::Iface,
                a: key_type,
                b: key_data,
                map_type: None,
                width: 0,
            }
        } else {
            NO_KEY
        },
        user_op,
    }
}

/// The runtime map functions.
pub fn runtime_map_functions() -> Vec<MapFunction> {
    RUNTIME_MAP
        .iter()
        .map(|&(name, op, shape, width)| MapFunction {
            name,
            op,
            kind: MapKind::Runtime,
            map: R::Rbx,
            key: KeyAccess {
                shape,
                a: R::Rcx,
                b: R::Rdi,
                map_type: Some(R::Rax),
                width,
            },
            user_op: true,
        })
        .collect()
}

/// One planned map operation site.
#[derive(Debug, Clone)]
pub struct PlannedMapSite {
    /// The function.
    pub function: MapFunction,
    /// Its link-time entry.
    pub function_address: u64,
    /// The probed instruction.
    pub address: u64,
    /// Its file offset.
    pub file_offset: u64,
    /// Why this instruction.
    pub choice: SiteChoice,
    /// When a hit is a re-entry and not counted.
    pub skip_when: SkipWhen,
}

/// Plans a site for every function of `functions` present in the target,
/// leaving out thin wrappers around another of them (from Go 1.24,
/// `mapaccess1_faststr` only calls `mapaccess2_faststr`: probing both would
/// count each load twice). Returns the sites and the names not found.
pub fn plan_map_sites(
    target: &Target,
    functions: &[MapFunction],
    mode: SiteMode,
) -> Result<(Vec<PlannedMapSite>, Vec<String>), PlanError> {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for function in functions {
        match target.symbols.function(function.name) {
            Some(symbol) => present.push((*function, symbol.start, symbol.end)),
            None => missing.push(function.name.to_string()),
        }
    }
    let user_entries: Vec<u64> = present
        .iter()
        .filter(|(f, _, _)| f.user_op)
        .map(|(_, start, _)| *start)
        .collect();
    let mut sites = Vec::new();
    for (function, start, end) in present {
        let code = target
            .elf
            .read_vaddr(start, end.saturating_sub(start) as usize)
            .ok_or_else(|| PlanError::Site {
                function: function.name.to_string(),
                address: start,
                reason: "cannot read its code".into(),
            })?;
        if function.user_op && is_thin_wrapper(code, start, &user_entries) {
            log::debug!("{}: wraps another probed map function", function.name);
            continue;
        }
        let mut preserve = vec![
            register(function.map),
            Register::RSP,
            register(function.key.a),
            register(function.key.b),
        ];
        if let Some(map_type) = function.key.map_type {
            preserve.push(register(map_type));
        }
        let site =
            super::entry_site_preserving(target, function.name, start, end, mode, &preserve)?;
        sites.push(PlannedMapSite {
            function,
            function_address: start,
            address: site.address,
            file_offset: file_offset(target, function.name, site.address)?,
            choice: site.choice,
            skip_when: site.skip_when,
        });
    }
    Ok((sites, missing))
}

/// The iced register of a shared register number.
fn register(reg: GeneralRegister) -> Register {
    match reg {
        R::Rax => Register::RAX,
        R::Rbx => Register::RBX,
        R::Rcx => Register::RCX,
        R::Rdx => Register::RDX,
        R::Rsi => Register::RSI,
        R::Rdi => Register::RDI,
        R::Rbp => Register::RBP,
        R::R8 => Register::R8,
        R::R9 => Register::R9,
        R::R10 => Register::R10,
        R::R11 => Register::R11,
        R::R12 => Register::R12,
        R::R13 => Register::R13,
        R::R14 => Register::R14,
        R::R15 => Register::R15,
        R::Rsp => Register::RSP,
    }
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

/// The user-level `sync.Map` operation of a call, from the logical frames
/// (innermost first, `function (file:line)`) at its call site: the
/// outermost `sync.(*Map).Method` or `HashTrieMap` method inlined there.
/// `None` when no frame is one (a direct call from user code: the probed
/// function's own operation applies).
pub fn sync_map_op_from_frames(frames: &[String]) -> Option<MapOp> {
    frames.iter().rev().find_map(|frame| {
        let function = frame.split(" (").next().unwrap_or(frame);
        let method = function.strip_prefix("sync.(*Map).").or_else(|| {
            function
                .strip_prefix("internal/sync.(*HashTrieMap[")
                .and_then(|rest| rest.split_once("]).").map(|(_, m)| m))
        })?;
        sync_map_method_op(method)
    })
}

/// The operation of a `sync.Map` method name.
pub fn sync_map_method_op(method: &str) -> Option<MapOp> {
    Some(match method {
        "Load" => MapOp::Load,
        "Store" => MapOp::Store,
        "LoadOrStore" => MapOp::LoadOrStore,
        "LoadAndDelete" => MapOp::LoadAndDelete,
        "Delete" => MapOp::Delete,
        "Swap" => MapOp::Swap,
        "CompareAndSwap" => MapOp::CompareAndSwap,
        "CompareAndDelete" => MapOp::CompareAndDelete,
        "Range" => MapOp::Range,
        "Clear" => MapOp::Clear,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_inlined_sync_map_method_names_the_operation() {
        let go127 = [
            "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Store (hashtriemap.go:1)".to_string(),
            "sync.(*Map).Store (map.go:2)".to_string(),
            "main.storeSync (main.go:3)".to_string(),
        ];
        assert_eq!(sync_map_op_from_frames(&go127), Some(MapOp::Store));
        let go123 = [
            "sync.(*Map).Delete (map.go:2)".to_string(),
            "main.f (main.go:3)".to_string(),
        ];
        assert_eq!(sync_map_op_from_frames(&go123), Some(MapOp::Delete));
        assert_eq!(
            sync_map_op_from_frames(&["main.loadSync (main.go:9)".to_string()]),
            None
        );
    }

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
}
