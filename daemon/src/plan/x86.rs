//! The x86-64 facts every planner shares: which instructions the kernel
//! emulates when probed, linear sweeps of a function's code (tolerating
//! trailing padding), direct branch targets, whether an instruction writes
//! what a probe reads, and the one table between decoded registers and the
//! register numbering of the kernel side.
//!
//! A uprobe on x86-64 costs very different amounts depending on the probed
//! instruction. The kernel emulates a handful of instructions in the trap
//! handler (about 0.8 µs per hit on Linux 6.18); everything else it copies
//! to an out-of-line slot and single-steps there (about 15 µs per hit). The
//! emulated set is small:
//!
//! - conditional jumps, short (`0x70..=0x7f`) and near (`0x0f 0x80..=0x8f`);
//! - `jmp rel8` / `jmp rel32` (`0xeb` / `0xe9`) and `call rel32` (`0xe8`);
//! - the one-byte `nop` (`0x90`);
//! - `push r64` (`0x50..=0x57`, optionally with the REX prefix `0x41`).
//!
//! Branches carrying an operand-size prefix (`0x66`) are refused outright,
//! and any instruction carrying a lock prefix or an ES/CS/SS/DS segment
//! prefix cannot be probed at all.

use std::collections::BTreeSet;

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, FlowControl, Instruction, InstructionInfo,
    OpAccess, OpKind, Register,
};
use probe_common::GeneralRegister;

/// Why a function's code could not be analysed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// No bytes were given, or the function's range is empty.
    #[error("no code for the function at {function_address:#x}")]
    Empty {
        /// The function's entry address.
        function_address: u64,
    },
    /// The bytes at `offset` are not a valid x86-64 instruction.
    #[error("invalid instruction at {address:#x} (function offset {offset:#x})")]
    InvalidInstruction {
        /// Virtual address of the undecodable bytes.
        address: u64,
        /// Their offset from the function's entry.
        offset: u64,
    },
    /// The instruction at `offset` continues past the end of the given bytes.
    #[error(
        "instruction at {address:#x} (function offset {offset:#x}) runs past the end of the code"
    )]
    Truncated {
        /// Virtual address of the incomplete instruction.
        address: u64,
        /// Its offset from the function's entry.
        offset: u64,
    },
}

impl SiteError {
    /// The error for undecodable bytes at `offset` of a function.
    pub fn at(truncated: bool, function_address: u64, offset: usize) -> Self {
        let offset = offset as u64;
        let address = function_address.wrapping_add(offset);
        if truncated {
            Self::Truncated { address, offset }
        } else {
            Self::InvalidInstruction { address, offset }
        }
    }
}

/// Whether the kernel emulates a uprobe on `instr` instead of single-stepping
/// it, judged from the decoded instruction alone.
///
/// Only canonical encodings are accepted: a branch may carry nothing but a
/// single `bnd` (`0xf2`) prefix, and a `nop` must be `0x90` or `REX.W 0x90`.
/// The one inexactness: [`Instruction`] does not record which REX byte a
/// two-byte `push r8`..`push r15` used, and the kernel emulates only the
/// `0x41` form; [`is_emulated_at`], which has the bytes, checks it.
pub fn is_emulated(instr: &Instruction) -> bool {
    let bnd = usize::from(instr.has_repne_prefix());
    match instr.code() {
        Code::Nopd => instr.len() == 1,
        Code::Nopq => instr.len() == 2,
        Code::Push_r64 => {
            instr.len() == 1 || (instr.len() == 2 && is_extended_gpr(instr.op0_register()))
        }
        Code::Call_rel32_64 | Code::Jmp_rel32_64 => instr.len() == 5 + bnd,
        Code::Jmp_rel8_64 => instr.len() == 2 + bnd,
        _ if instr.is_jcc_short() => instr.len() == 2 + bnd,
        _ if instr.is_jcc_near() => instr.len() == 6 + bnd,
        _ => false,
    }
}

/// [`is_emulated`], with the REX byte of a two-byte `push` checked against
/// the instruction's `bytes`: the kernel emulates only `0x41`.
pub fn is_emulated_at(instr: &Instruction, bytes: &[u8]) -> bool {
    is_emulated(instr)
        && (instr.code() != Code::Push_r64 || bytes.len() == 1 || bytes.first() == Some(&0x41))
}

/// R8 … R15.
fn is_extended_gpr(register: Register) -> bool {
    matches!(
        register,
        Register::R8
            | Register::R9
            | Register::R10
            | Register::R11
            | Register::R12
            | Register::R13
            | Register::R14
            | Register::R15
    )
}

/// The lower-case Intel mnemonic of an instruction (`jbe`, `push`).
pub fn mnemonic(instr: &Instruction) -> String {
    format!("{:?}", instr.mnemonic()).to_lowercase()
}

/// The target of a direct (near, relative) branch or call.
pub fn direct_target(instr: &Instruction) -> Option<u64> {
    (instr.op_count() > 0 && instr.op0_kind() == OpKind::NearBranch64)
        .then(|| instr.near_branch_target())
}

/// Whether an access writes its operand (possibly conditionally).
pub fn is_write(access: OpAccess) -> bool {
    matches!(
        access,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

/// Whether an instruction writes memory, RSP, or (any part of) one of the
/// registers in `preserve`: what a probe placed after it would no longer
/// see as it was at the function's entry.
pub fn clobbers(info: &InstructionInfo, preserve: &[Register]) -> bool {
    let clobbered = info.used_registers().iter().any(|used| {
        if !is_write(used.access()) {
            return false;
        }
        let full = used.register().full_register();
        full == Register::RSP || preserve.iter().any(|p| p.full_register() == full)
    });
    clobbered || info.used_memory().iter().any(|m| is_write(m.access()))
}

/// Decodes the instruction at `address` of code starting at `start`, if its
/// bytes are there and valid.
pub fn decode_at(code: &[u8], start: u64, address: u64) -> Option<Instruction> {
    let offset = usize::try_from(address.checked_sub(start)?).ok()?;
    let bytes = code.get(offset..)?;
    let instr = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE).decode();
    (!instr.is_invalid()).then_some(instr)
}

/// How a linear sweep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepEnd {
    /// Every byte decoded.
    Complete,
    /// The rest is padding that does not decode (`0x00` or `0xcc` bytes).
    Padding,
    /// Undecodable bytes at `offset` (`truncated`: an instruction runs past
    /// the end).
    Invalid {
        /// Offset from the start.
        offset: usize,
        /// Whether the bytes ended mid-instruction.
        truncated: bool,
    },
}

/// A function's instructions by linear sweep, which is sound for Go text and
/// compiler output generally (no data between instructions).
pub struct Listing<'a> {
    code: &'a [u8],
    start: u64,
    /// The instructions decoded, in address order.
    pub instructions: Vec<Instruction>,
    /// How the sweep ended.
    pub end: SweepEnd,
    has_indirect_branch: bool,
}

impl<'a> Listing<'a> {
    /// Sweeps `code`, the bytes of a function at `start`, up to its end or
    /// the first bytes that do not decode.
    pub fn sweep(code: &'a [u8], start: u64) -> Listing<'a> {
        let mut decoder = Decoder::with_ip(64, code, start, DecoderOptions::NONE);
        let mut instructions = Vec::new();
        let mut instr = Instruction::default();
        let mut end = SweepEnd::Complete;
        let mut has_indirect_branch = false;
        while decoder.can_decode() {
            let offset = decoder.position();
            decoder.decode_out(&mut instr);
            if instr.is_invalid() {
                end = if code[offset..].iter().all(|&b| b == 0xcc || b == 0x00) {
                    SweepEnd::Padding
                } else {
                    SweepEnd::Invalid {
                        offset,
                        truncated: decoder.last_error() == DecoderError::NoMoreBytes,
                    }
                };
                break;
            }
            has_indirect_branch |= instr.flow_control() == FlowControl::IndirectBranch;
            instructions.push(instr);
        }
        Listing {
            code,
            start,
            instructions,
            end,
            has_indirect_branch,
        }
    }

    /// The sweep of a whole function, failing on empty code and on bytes
    /// that do not decode (trailing padding excepted).
    pub fn sweep_all(code: &'a [u8], start: u64) -> Result<Listing<'a>, SiteError> {
        if code.is_empty() {
            return Err(SiteError::Empty {
                function_address: start,
            });
        }
        let listing = Self::sweep(code, start);
        match listing.end {
            SweepEnd::Invalid { offset, truncated } => Err(SiteError::at(truncated, start, offset)),
            _ => Ok(listing),
        }
    }

    /// Targets of the function's direct branches and calls; `None` when they
    /// are not all known (the sweep stopped at undecodable bytes, or an
    /// indirect jump could land anywhere).
    pub fn branch_targets(&self) -> Option<BTreeSet<u64>> {
        if matches!(self.end, SweepEnd::Invalid { .. }) || self.has_indirect_branch {
            return None;
        }
        Some(self.instructions.iter().filter_map(direct_target).collect())
    }

    /// The index of the instruction at `address`.
    pub fn index_of(&self, address: u64) -> Option<usize> {
        self.instructions
            .binary_search_by_key(&address, Instruction::ip)
            .ok()
    }

    /// Instruction `index` and its bytes.
    pub fn get(&self, index: usize) -> (&Instruction, &'a [u8]) {
        let instr = &self.instructions[index];
        let offset = (instr.ip() - self.start) as usize;
        (instr, &self.code[offset..offset + instr.len()])
    }
}

/// The decoder's register for a shared register number.
pub fn register(reg: GeneralRegister) -> Register {
    use GeneralRegister as R;
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

/// The shared number of the 64-bit register holding `reg` (AL → RAX), if
/// it is a general register.
pub fn general_register(reg: Register) -> Option<GeneralRegister> {
    use GeneralRegister as R;
    Some(match reg.full_register() {
        Register::RAX => R::Rax,
        Register::RBX => R::Rbx,
        Register::RCX => R::Rcx,
        Register::RDX => R::Rdx,
        Register::RSI => R::Rsi,
        Register::RDI => R::Rdi,
        Register::RBP => R::Rbp,
        Register::R8 => R::R8,
        Register::R9 => R::R9,
        Register::R10 => R::R10,
        Register::R11 => R::R11,
        Register::R12 => R::R12,
        Register::R13 => R::R13,
        Register::R14 => R::R14,
        Register::R15 => R::R15,
        Register::RSP => R::Rsp,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_table_goes_both_ways() {
        use GeneralRegister as R;
        for reg in [
            R::Rax,
            R::Rbx,
            R::Rcx,
            R::Rdx,
            R::Rsi,
            R::Rdi,
            R::Rbp,
            R::R8,
            R::R9,
            R::R10,
            R::R11,
            R::R12,
            R::R13,
            R::R14,
            R::R15,
            R::Rsp,
        ] {
            assert_eq!(general_register(register(reg)), Some(reg));
        }
        assert_eq!(general_register(Register::AL), Some(R::Rax));
        assert_eq!(general_register(Register::R9L), Some(R::R9));
        assert_eq!(general_register(Register::XMM0), None);
    }

    #[test]
    fn sweeps_stop_at_padding_or_garbage() {
        // ret; a lone 0x00 (an `add` cut short): padding.
        let padded = Listing::sweep(&[0xc3, 0x00], 0x1000);
        assert_eq!(padded.end, SweepEnd::Padding);
        assert_eq!(padded.instructions.len(), 1);
        assert!(padded.branch_targets().is_some());
        // ret; (push es: invalid in 64-bit mode); ret.
        let invalid = Listing::sweep(&[0xc3, 0x06, 0xc3], 0x1000);
        assert_eq!(
            invalid.end,
            SweepEnd::Invalid {
                offset: 1,
                truncated: false
            }
        );
        assert!(invalid.branch_targets().is_none());
        assert_eq!(
            Listing::sweep_all(&[0xc3, 0x48, 0x8b], 0x1000).err(),
            Some(SiteError::Truncated {
                address: 0x1001,
                offset: 1
            })
        );
        // jmp rcx: targets unknown.
        assert!(Listing::sweep(&[0xff, 0xe1, 0xc3], 0)
            .branch_targets()
            .is_none());
        // jmp +0; ret: one target.
        let listing = Listing::sweep(&[0xeb, 0x00, 0xc3], 0x10);
        assert_eq!(
            listing
                .branch_targets()
                .map(|t| t.into_iter().collect::<Vec<_>>()),
            Some(vec![0x12])
        );
        assert_eq!(listing.index_of(0x12), Some(1));
        assert_eq!(listing.get(1).1, &[0xc3]);
    }
}
