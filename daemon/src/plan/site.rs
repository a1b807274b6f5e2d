//! Instruction-level placement of probes inside a function.
//!
//! Which instructions the kernel emulates when probed (cheap) and which it
//! single-steps (dear) is in [`super::x86`].
//!
//! The first instruction of a function is rarely in that set: Go functions
//! start with a stack-bound check (`cmp rsp, [r14+0x10]`), glibc functions
//! with `endbr64`. One to three instructions later there usually is one —
//! the `jbe` of Go's stack check, the `push` of a C prologue — and the
//! argument registers still hold the arguments there. [`choose_entry_site`]
//! finds that instruction and works out whether a hit on it must sometimes be
//! discarded (see [`SkipWhen`]).
//!
//! The module also locates return instructions ([`find_returns`]) and
//! compare-and-swap instructions ([`find_cmpxchg`]) by a linear sweep, which
//! is sound for Go text (it carries no data between instructions).

use iced_x86::{
    ConditionCode, Decoder, DecoderError, DecoderOptions, FlowControl, Instruction,
    InstructionInfoFactory, Mnemonic, Register,
};
use probe_common::SkipWhen;

use super::x86::{clobbers, direct_target, is_emulated_at, mnemonic, Listing};
pub use super::x86::{is_emulated, SiteError};

/// How many instructions from the entry [`choose_entry_site`] examines before
/// giving up and probing the entry itself.
pub const MAX_PROLOGUE_INSTRUCTIONS: usize = 6;

/// How many instructions [`choose_entry_site`] follows along a branch's path
/// when deciding whether the path leads back to the function's entry.
///
/// Go's morestack block spills every register argument (at most 9 integer and
/// 15 floating-point registers), calls `runtime.morestack_noctxt`, reloads
/// them and jumps back: at most 50 instructions.
pub const MAX_REENTRY_WALK: usize = 64;

/// Where to attach the probe that counts calls of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntrySite {
    /// Virtual address of the instruction to probe.
    pub address: u64,
    /// When a hit at [`address`](Self::address) is not a new call and must
    /// be skipped. Always [`SkipWhen::Never`] unless the site is the branch
    /// to a block that re-enters the function from the top.
    pub skip_when: SkipWhen,
    /// Why this instruction was chosen.
    pub choice: SiteChoice,
}

/// The kind of instruction an [`EntrySite`] probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteChoice {
    /// Fallback: the function's first instruction. The kernel most likely
    /// single-steps it, so each hit is expensive. Note that for a Go function
    /// with a stack check the entry is hit a second time whenever the call
    /// has to grow its goroutine's stack first.
    Entry,
    /// An instruction the kernel emulates, found in the straight-line part of
    /// the prologue before anything modified the registers the probe reads.
    Emulated {
        /// Byte offset of the instruction from the function's entry.
        offset: u64,
        /// Its lower-case Intel mnemonic, e.g. `jbe`, `push`, `call`.
        mnemonic: String,
    },
    /// An instruction inside the function the kernel single-steps, chosen
    /// because nothing cheaper still has what the probe reads (e.g. the
    /// `sete` right after a compare-and-swap whose result is returned).
    SingleStepped {
        /// Byte offset of the instruction from the function's entry.
        offset: u64,
        /// Its lower-case Intel mnemonic.
        mnemonic: String,
    },
}

/// One compare-and-swap instruction found by [`find_cmpxchg`].
///
/// The kernel refuses uprobes on lock-prefixed instructions, so an observer
/// of the outcome (ZF, and the old value in RAX/RDX:RAX) has to probe
/// [`next_address`](Self::next_address) instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CasInstruction {
    /// Virtual address of the instruction.
    pub address: u64,
    /// Address of the instruction that follows it.
    pub next_address: u64,
    /// Encoded length in bytes, prefixes included.
    pub length: usize,
    /// `CMPXCHG16B`: compares RDX:RAX with a 16-byte memory operand.
    pub is_16b: bool,
    /// Carries a `LOCK` prefix.
    pub locked: bool,
}

/// Chooses the cheapest instruction at which a probe still sees every call of
/// the function at `function_address` exactly once, with the registers in
/// `preserve` (and RSP, and memory) still as they were at the entry.
///
/// `code` holds the function's bytes starting at its entry. The first ~64
/// bytes suffice to find a candidate, but classifying a conditional branch
/// needs the bytes at its target (Go's morestack block sits at the end of the
/// function), and ruling out branches back into the prologue needs all of
/// them; without them the entry is chosen. `function_end` is the address
/// one past the function's last byte; a value not above `function_address`
/// means unknown, and the end of `code` is used instead. Bytes past
/// `function_end` are ignored.
///
/// Up to [`MAX_PROLOGUE_INSTRUCTIONS`] instructions are examined. The search
/// stops, and the entry is chosen, at a branch, call or return the kernel
/// does not emulate, or at an instruction that writes memory, RSP or a
/// register in `preserve` (writes to flags and to other registers are fine).
/// The first emulated instruction before that point is the site, unless some
/// branch in the function jumps into the prologue at or before it (then it
/// could run more than once per call).
///
/// A conditional branch whose taken path leads back to the entry (Go's
/// stack-growth path) gets [`SkipWhen::BelowOrEqual`] for `jbe` and
/// [`SkipWhen::Below`] for `jb`, so the pass that is about to grow the stack
/// is not counted; with any other condition, or when the path cannot be
/// followed, the entry is chosen. When a second such branch follows (Go's
/// check for huge frames: `jb` on wrap-around, then `jbe`), the last one is
/// the site, since a hit on the first would be counted again after a re-entry
/// through the second. Any other emulated instruction runs exactly once per
/// call and gets [`SkipWhen::Never`].
///
/// Fails when `code` is empty or the prologue does not decode.
pub fn choose_entry_site(
    code: &[u8],
    function_address: u64,
    function_end: u64,
    preserve: &[Register],
) -> Result<EntrySite, SiteError> {
    let code = clip(code, function_address, function_end);
    if code.is_empty() {
        return Err(SiteError::Empty { function_address });
    }
    let function = Function {
        code,
        start: function_address,
        end: if function_end > function_address {
            function_end
        } else {
            function_address.saturating_add(code.len() as u64)
        },
    };
    let entry = EntrySite {
        address: function_address,
        skip_when: SkipWhen::Never,
        choice: SiteChoice::Entry,
    };

    let mut decoder = Decoder::with_ip(64, code, function_address, DecoderOptions::NONE);
    let mut factory = InstructionInfoFactory::new();
    let mut instr = Instruction::default();
    // A re-entry branch found so far, and whether anything after it wrote
    // what the probe reads.
    let mut reentry: Option<EntrySite> = None;
    let mut clobbered_since = false;
    for index in 0..MAX_PROLOGUE_INSTRUCTIONS {
        if !decoder.can_decode() {
            // Only a prefix of the function was given and it ended here.
            return Ok(entry);
        }
        let offset = decoder.position();
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            let truncated = decoder.last_error() == DecoderError::NoMoreBytes;
            if truncated && index > 0 {
                return Ok(entry);
            }
            return Err(SiteError::at(truncated, function_address, offset));
        }
        let bytes = &code[offset..offset + instr.len()];
        let emulated = is_emulated_at(&instr, bytes);

        if let Some(site) = reentry.take() {
            // A stack check may take two branches to the morestack block
            // (`jb` when the frame size wraps below zero, then `jbe`). A
            // probe on the first would count the call again after a re-entry
            // through the second, so the last of them is the site.
            if instr.is_jcc_short_or_near() {
                match follow_path(&function, instr.near_branch_target()) {
                    PathEnd::Elsewhere => return Ok(site),
                    PathEnd::Unknown => return Ok(entry),
                    PathEnd::ReachesEntry if clobbered_since || !emulated => return Ok(entry),
                    PathEnd::ReachesEntry => match classify_site(&function, &instr) {
                        Some(later) if later.skip_when != SkipWhen::Never => {
                            reentry = Some(later);
                            continue;
                        }
                        _ => return Ok(entry),
                    },
                }
            }
            if emulated || instr.flow_control() != FlowControl::Next {
                // The function's body begins (`push rbp`, a call, …).
                return Ok(site);
            }
            clobbered_since |= clobbers(factory.info(&instr), preserve);
            reentry = Some(site);
            continue;
        }

        if emulated {
            match classify_site(&function, &instr) {
                Some(site) if site.skip_when != SkipWhen::Never => {
                    reentry = Some(site);
                    continue;
                }
                Some(site) => return Ok(site),
                None => return Ok(entry),
            }
        }
        if instr.flow_control() != FlowControl::Next || clobbers(factory.info(&instr), preserve) {
            return Ok(entry);
        }
    }
    Ok(reentry.unwrap_or(entry))
}

/// Addresses of all near `ret` instructions (`C3`, `C2 iw`, with or without a
/// `rep`/`bnd` prefix) of the function whose bytes are `code`, by linear
/// sweep from `function_address`.
///
/// Trailing padding that does not decode (a lone `0x00` or `0xcc` tail) is
/// ignored; any other decode failure is an error naming its offset.
pub fn find_returns(code: &[u8], function_address: u64) -> Result<Vec<u64>, SiteError> {
    let listing = Listing::sweep_all(code, function_address)?;
    Ok(listing
        .instructions
        .iter()
        .filter(|instr| instr.mnemonic() == Mnemonic::Ret)
        .map(Instruction::ip)
        .collect())
}

/// Every direct `CALL` to `target` in the function whose bytes are `code`,
/// by linear sweep from `function_address`.
///
/// Decode failures are handled as in [`find_returns`].
pub fn find_calls(code: &[u8], function_address: u64, target: u64) -> Result<Vec<u64>, SiteError> {
    let listing = Listing::sweep_all(code, function_address)?;
    Ok(listing
        .instructions
        .iter()
        .filter(|instr| instr.mnemonic() == Mnemonic::Call && direct_target(instr) == Some(target))
        .map(Instruction::ip)
        .collect())
}

/// Every `CMPXCHG`, `CMPXCHG8B` and `CMPXCHG16B` (locked or not) of the
/// function whose bytes are `code`, by linear sweep from `function_address`.
///
/// Decode failures are handled as in [`find_returns`].
pub fn find_cmpxchg(code: &[u8], function_address: u64) -> Result<Vec<CasInstruction>, SiteError> {
    let listing = Listing::sweep_all(code, function_address)?;
    Ok(listing
        .instructions
        .iter()
        .filter(|instr| {
            matches!(
                instr.mnemonic(),
                Mnemonic::Cmpxchg | Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b
            )
        })
        .map(|instr| CasInstruction {
            address: instr.ip(),
            next_address: instr.next_ip(),
            length: instr.len(),
            is_16b: instr.mnemonic() == Mnemonic::Cmpxchg16b,
            locked: instr.has_lock_prefix(),
        })
        .collect())
}

/// The bytes of one function and the address range they belong to.
struct Function<'a> {
    /// The function's bytes from its entry; possibly only a prefix.
    code: &'a [u8],
    /// Entry address.
    start: u64,
    /// One past the function's last byte (may lie beyond `code`).
    end: u64,
}

impl Function<'_> {
    fn contains(&self, address: u64) -> bool {
        (self.start..self.end).contains(&address)
    }

    /// Decodes the instruction at `address`, if its bytes are available and
    /// valid.
    fn decode_at(&self, address: u64) -> Option<Instruction> {
        super::x86::decode_at(self.code, self.start, address)
    }
}

/// Where a path through the function ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathEnd {
    /// It jumps back to the function's entry.
    ReachesEntry,
    /// It returns, leaves the function, stops (trap) or runs long enough that
    /// it is no re-entry block.
    Elsewhere,
    /// It could not be followed: missing or invalid bytes, or an ambiguous
    /// conditional branch back to the entry.
    Unknown,
}

/// Decides the [`SkipWhen`] for an emulated instruction found in the
/// prologue, or `None` when the entry must be probed instead.
fn classify_site(function: &Function<'_>, instr: &Instruction) -> Option<EntrySite> {
    if branches_into_prologue(function, instr.ip()) {
        return None;
    }
    let skip_when = if instr.is_jcc_short_or_near() {
        match follow_path(function, instr.near_branch_target()) {
            PathEnd::ReachesEntry => match instr.condition_code() {
                ConditionCode::be => SkipWhen::BelowOrEqual,
                ConditionCode::b => SkipWhen::Below,
                _ => return None,
            },
            PathEnd::Unknown => return None,
            PathEnd::Elsewhere => {
                // A branch that jumps over the re-entry block: the hit to
                // skip would be the one where it is *not* taken, which the
                // probe cannot express.
                if follow_path(function, instr.next_ip()) == PathEnd::ReachesEntry {
                    return None;
                }
                SkipWhen::Never
            }
        }
    } else {
        SkipWhen::Never
    };
    Some(EntrySite {
        address: instr.ip(),
        skip_when,
        choice: SiteChoice::Emulated {
            offset: instr.ip() - function.start,
            mnemonic: mnemonic(instr),
        },
    })
}

/// Follows the path that starts at `from`: straight on through ordinary
/// instructions, calls (assumed to return) and not-taken conditional
/// branches, along unconditional direct jumps.
fn follow_path(function: &Function<'_>, from: u64) -> PathEnd {
    let mut pc = from;
    for _ in 0..MAX_REENTRY_WALK {
        if pc == function.start {
            return PathEnd::ReachesEntry;
        }
        if !function.contains(pc) {
            return PathEnd::Elsewhere;
        }
        let Some(instr) = function.decode_at(pc) else {
            return PathEnd::Unknown;
        };
        match instr.flow_control() {
            FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => {
                pc = instr.next_ip();
            }
            FlowControl::UnconditionalBranch => match direct_target(&instr) {
                Some(target) => pc = target,
                None => return PathEnd::Unknown,
            },
            FlowControl::ConditionalBranch => {
                if direct_target(&instr) == Some(function.start) {
                    return PathEnd::Unknown;
                }
                pc = instr.next_ip();
            }
            FlowControl::Return
            | FlowControl::IndirectBranch
            | FlowControl::Interrupt
            | FlowControl::Exception => return PathEnd::Elsewhere,
            FlowControl::XbeginXabortXend => return PathEnd::Unknown,
        }
    }
    PathEnd::Elsewhere
}

/// Whether any direct branch or call in the function's bytes targets an
/// address in `(start, site]`, so the site could execute more than once per
/// call. Jumps to the entry itself do not count: they re-run the whole
/// prologue, entry included, and are handled by [`SkipWhen`].
fn branches_into_prologue(function: &Function<'_>, site: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, function.code, function.start, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if let Some(target) = direct_target(&instr) {
            if target > function.start && target <= site {
                return true;
            }
        }
    }
    false
}

/// Limits `code` to the function's range when its end is known.
fn clip(code: &[u8], start: u64, end: u64) -> &[u8] {
    match end.checked_sub(start) {
        Some(size) if size > 0 => match usize::try_from(size) {
            Ok(size) if size < code.len() => &code[..size],
            _ => code,
        },
        _ => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers a Go (ABIInternal) probe reads: the integer argument
    /// registers and the goroutine pointer.
    const GO_PRESERVE: &[Register] = &[
        Register::RAX,
        Register::RBX,
        Register::RCX,
        Register::RDI,
        Register::RSI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R14,
    ];

    /// System V argument registers.
    const C_PRESERVE: &[Register] = &[
        Register::RDI,
        Register::RSI,
        Register::RDX,
        Register::RCX,
        Register::R8,
        Register::R9,
    ];

    const BASE: u64 = 0x1000;

    /// Decodes `code` and lists "address mnemonic" per instruction, so every
    /// test vector is checked to be the instruction sequence it claims.
    fn listing(code: &[u8], ip: u64) -> String {
        let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
        let mut out = Vec::new();
        while decoder.can_decode() {
            let instr = decoder.decode();
            assert!(
                !instr.is_invalid(),
                "test vector does not decode at {:#x}",
                instr.ip()
            );
            out.push(format!("{:x} {:?}", instr.ip(), instr.mnemonic()).to_lowercase());
        }
        out.join("; ")
    }

    fn emulated(address: u64, skip_when: SkipWhen, mnemonic: &str) -> EntrySite {
        EntrySite {
            address,
            skip_when,
            choice: SiteChoice::Emulated {
                offset: address - BASE,
                mnemonic: mnemonic.to_string(),
            },
        }
    }

    fn entry() -> EntrySite {
        EntrySite {
            address: BASE,
            skip_when: SkipWhen::Never,
            choice: SiteChoice::Entry,
        }
    }

    fn site(code: &[u8], preserve: &[Register]) -> EntrySite {
        choose_entry_site(code, BASE, BASE + code.len() as u64, preserve).unwrap()
    }

    /// (a) Go stack check with a near `jbe` to a morestack block that jumps
    /// back to the entry.
    const GO_NEAR_JBE: &[u8] = &[
        0x49, 0x3b, 0x66, 0x10, // 1000 cmp rsp, [r14+0x10]
        0x0f, 0x86, 0x0e, 0x00, 0x00, 0x00, // 1004 jbe 0x1018
        0x55, // 100a push rbp
        0x48, 0x89, 0xe5, // 100b mov rbp, rsp
        0x48, 0x83, 0xec, 0x10, // 100e sub rsp, 0x10
        0x48, 0x83, 0xc4, 0x10, // 1012 add rsp, 0x10
        0x5d, // 1016 pop rbp
        0xc3, // 1017 ret
        0x48, 0x89, 0x44, 0x24, 0x08, // 1018 mov [rsp+8], rax
        0xe8, 0xde, 0x0f, 0x00, 0x00, // 101d call 0x2000
        0x48, 0x8b, 0x44, 0x24, 0x08, // 1022 mov rax, [rsp+8]
        0xe9, 0xd4, 0xff, 0xff, 0xff, // 1027 jmp 0x1000
    ];

    #[test]
    fn go_prologue_near_jbe() {
        assert_eq!(
            listing(GO_NEAR_JBE, BASE),
            "1000 cmp; 1004 jbe; 100a push; 100b mov; 100e sub; 1012 add; 1016 pop; 1017 ret; 1018 mov; 101d call; 1022 mov; 1027 jmp"
        );
        assert_eq!(
            site(GO_NEAR_JBE, GO_PRESERVE),
            emulated(0x1004, SkipWhen::BelowOrEqual, "jbe")
        );
        // With only the first 16 bytes the morestack block is out of sight:
        // the branch cannot be classified, so the entry is probed.
        assert_eq!(
            choose_entry_site(&GO_NEAR_JBE[..16], BASE, BASE + 0x2c, GO_PRESERVE).unwrap(),
            entry()
        );
    }

    /// (b) The same with a short `jbe`.
    #[test]
    fn go_prologue_short_jbe() {
        let code: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, // 1000 cmp rsp, [r14+0x10]
            0x76, 0x06, // 1004 jbe 0x100c
            0x55, // 1006 push rbp
            0x48, 0x89, 0xe5, // 1007 mov rbp, rsp
            0x5d, // 100a pop rbp
            0xc3, // 100b ret
            0x48, 0x89, 0x44, 0x24, 0x08, // 100c mov [rsp+8], rax
            0xe8, 0xea, 0x0f, 0x00, 0x00, // 1011 call 0x2000
            0x48, 0x8b, 0x44, 0x24, 0x08, // 1016 mov rax, [rsp+8]
            0xeb, 0xe3, // 101b jmp 0x1000
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmp; 1004 jbe; 1006 push; 1007 mov; 100a pop; 100b ret; 100c mov; 1011 call; 1016 mov; 101b jmp"
        );
        assert_eq!(
            site(code, GO_PRESERVE),
            emulated(0x1004, SkipWhen::BelowOrEqual, "jbe")
        );
    }

    /// (c) Large frame: the bound is computed into R12 first.
    #[test]
    fn go_prologue_large_frame() {
        let code: &[u8] = &[
            0x4c, 0x8d, 0xa4, 0x24, 0xe8, 0xfe, 0xff, 0xff, // 1000 lea r12, [rsp-0x118]
            0x4d, 0x3b, 0x66, 0x10, // 1008 cmp r12, [r14+0x10]
            0x0f, 0x86, 0x14, 0x00, 0x00, 0x00, // 100c jbe 0x1026
            0x55, // 1012 push rbp
            0x48, 0x89, 0xe5, // 1013 mov rbp, rsp
            0x48, 0x81, 0xec, 0x98, 0x01, 0x00, 0x00, // 1016 sub rsp, 0x198
            0x48, 0x81, 0xc4, 0x98, 0x01, 0x00, 0x00, // 101d add rsp, 0x198
            0x5d, // 1024 pop rbp
            0xc3, // 1025 ret
            0x48, 0x89, 0x44, 0x24, 0x08, // 1026 mov [rsp+8], rax
            0x48, 0x89, 0x5c, 0x24, 0x10, // 102b mov [rsp+0x10], rbx
            0xe8, 0xcb, 0x0f, 0x00, 0x00, // 1030 call 0x2000
            0x48, 0x8b, 0x44, 0x24, 0x08, // 1035 mov rax, [rsp+8]
            0x48, 0x8b, 0x5c, 0x24, 0x10, // 103a mov rbx, [rsp+0x10]
            0xe9, 0xbc, 0xff, 0xff, 0xff, // 103f jmp 0x1000
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 lea; 1008 cmp; 100c jbe; 1012 push; 1013 mov; 1016 sub; 101d add; 1024 pop; 1025 ret; 1026 mov; 102b mov; 1030 call; 1035 mov; 103a mov; 103f jmp"
        );
        assert_eq!(
            site(code, GO_PRESERVE),
            emulated(0x100c, SkipWhen::BelowOrEqual, "jbe")
        );
        // A probe that reads R12 cannot use the branch.
        assert_eq!(site(code, &[Register::RAX, Register::R12]), entry());
    }

    /// Huge frame: `sub` may wrap below zero, checked by a `jb` before the
    /// `jbe`, both to the morestack block. Only the `jbe` counts each call
    /// once: a probe on the `jb` would fire again after a re-entry through
    /// the `jbe`.
    #[test]
    fn go_prologue_huge_frame_jb_then_jbe() {
        let code: &[u8] = &[
            0x49, 0x89, 0xe4, // 1000 mov r12, rsp
            0x49, 0x81, 0xec, 0x00, 0x80, 0x00, 0x00, // 1003 sub r12, 0x8000
            0x72, 0x0b, // 100a jb 0x1017
            0x4d, 0x3b, 0x66, 0x10, // 100c cmp r12, [r14+0x10]
            0x76, 0x05, // 1010 jbe 0x1017
            0x55, // 1012 push rbp
            0x48, 0x89, 0xe5, // 1013 mov rbp, rsp
            0xc3, // 1016 ret (body elided)
            0xe8, 0xe4, 0x0f, 0x00, 0x00, // 1017 call 0x2000
            0xeb, 0xe2, // 101c jmp 0x1000
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 mov; 1003 sub; 100a jb; 100c cmp; 1010 jbe; 1012 push; 1013 mov; 1016 ret; \
             1017 call; 101c jmp"
        );
        assert_eq!(
            site(code, GO_PRESERVE),
            emulated(0x1010, SkipWhen::BelowOrEqual, "jbe")
        );
        // If something between them overwrote an argument register, neither
        // branch would do.
        let mut clobbered = code.to_vec();
        clobbered[0xc..0x10].copy_from_slice(&[0x49, 0x8b, 0x46, 0x10]); // mov rax, [r14+0x10]
        assert_eq!(listing(&clobbered[0xc..0x10], 0x100c), "100c mov");
        assert_eq!(site(&clobbered, GO_PRESERVE), entry());
    }

    /// A lone `jb` to a re-entry block.
    #[test]
    fn reentry_jb() {
        let code: &[u8] = &[
            0x49, 0x89, 0xe4, // 1000 mov r12, rsp
            0x49, 0x83, 0xec, 0x40, // 1003 sub r12, 0x40
            0x72, 0x05, // 1007 jb 0x100e
            0x55, // 1009 push rbp
            0x48, 0x89, 0xe5, // 100a mov rbp, rsp
            0xc3, // 100d ret (body elided)
            0xe8, 0xed, 0x0f, 0x00, 0x00, // 100e call 0x2000
            0xeb, 0xeb, // 1013 jmp 0x1000
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 mov; 1003 sub; 1007 jb; 1009 push; 100a mov; 100d ret; 100e call; 1013 jmp"
        );
        assert_eq!(
            site(code, GO_PRESERVE),
            emulated(0x1007, SkipWhen::Below, "jb")
        );
    }

    /// (d) The first instruction overwrites an argument register the probe
    /// reads.
    #[test]
    fn clobbered_argument_falls_back_to_entry() {
        let code: &[u8] = &[
            0x48, 0x8b, 0x07, // 1000 mov rax, [rdi]
            0x55, // 1003 push rbp
            0x5d, // 1004 pop rbp
            0xc3, // 1005 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 mov; 1003 push; 1004 pop; 1005 ret"
        );
        assert_eq!(site(code, &[Register::RAX]), entry());
        // A 32-bit write zero-extends into the full register.
        let code32: &[u8] = &[0x8b, 0x07, 0x55, 0x5d, 0xc3]; // mov eax, [rdi]; push rbp; ...
        assert_eq!(site(code32, &[Register::RAX]), entry());
        // Without RAX to preserve the push is fine.
        assert_eq!(
            site(code, &[Register::RDI]),
            emulated(0x1003, SkipWhen::Never, "push")
        );
    }

    /// A store before any emulated instruction falls back too.
    #[test]
    fn memory_or_stack_write_falls_back_to_entry() {
        let store: &[u8] = &[
            0x48, 0x89, 0x44, 0x24, 0x08, // 1000 mov [rsp+8], rax
            0x55, // 1005 push rbp
            0xc3, // 1006 ret
        ];
        assert_eq!(listing(store, BASE), "1000 mov; 1005 push; 1006 ret");
        assert_eq!(site(store, GO_PRESERVE), entry());
        let sub_rsp: &[u8] = &[
            0x48, 0x83, 0xec, 0x18, // 1000 sub rsp, 0x18
            0x55, // 1004 push rbp
            0xc3, // 1005 ret
        ];
        assert_eq!(listing(sub_rsp, BASE), "1000 sub; 1004 push; 1005 ret");
        assert_eq!(site(sub_rsp, &[]), entry());
    }

    /// (e) A CET-enabled C function: `endbr64` then `push r12`.
    #[test]
    fn c_prologue_endbr64_push() {
        let code: &[u8] = &[
            0xf3, 0x0f, 0x1e, 0xfa, // 1000 endbr64
            0x41, 0x54, // 1004 push r12
            0x55, // 1006 push rbp
            0x48, 0x89, 0xfd, // 1007 mov rbp, rdi
            0x5d, // 100a pop rbp
            0x41, 0x5c, // 100b pop r12
            0xc3, // 100d ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 endbr64; 1004 push; 1006 push; 1007 mov; 100a pop; 100b pop; 100d ret"
        );
        assert_eq!(
            site(code, C_PRESERVE),
            emulated(0x1004, SkipWhen::Never, "push")
        );
        // `push rax` reads RAX, it does not modify it.
        let push_rax: &[u8] = &[0xf3, 0x0f, 0x1e, 0xfa, 0x50, 0x58, 0xc3];
        assert_eq!(
            site(push_rax, &[Register::RAX]),
            emulated(0x1004, SkipWhen::Never, "push")
        );
    }

    /// A push with a REX byte other than 0x41 is single-stepped.
    #[test]
    fn push_with_other_rex_is_not_a_site() {
        let code: &[u8] = &[
            0x49, 0x54, // 1000 push r12 (REX.WB)
            0x41, 0x5c, // 1002 pop r12
            0xc3, // 1004 ret
        ];
        assert_eq!(listing(code, BASE), "1000 push; 1002 pop; 1004 ret");
        // The push writes RSP and memory, so the search ends there.
        assert_eq!(site(code, &[]), entry());
    }

    /// (f) A `jbe` whose target returns instead of re-entering.
    #[test]
    fn jbe_without_reentry_is_never_skipped() {
        let code: &[u8] = &[
            0x48, 0x3b, 0x7e, 0x08, // 1000 cmp rdi, [rsi+8]
            0x76, 0x03, // 1004 jbe 0x1009
            0x31, 0xc0, // 1006 xor eax, eax
            0xc3, // 1008 ret
            0xb8, 0x01, 0x00, 0x00, 0x00, // 1009 mov eax, 1
            0xc3, // 100e ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmp; 1004 jbe; 1006 xor; 1008 ret; 1009 mov; 100e ret"
        );
        assert_eq!(
            site(code, C_PRESERVE),
            emulated(0x1004, SkipWhen::Never, "jbe")
        );
        // A target past the function's end leaves it: not a re-entry.
        let cold: &[u8] = &[
            0x48, 0x3b, 0x7e, 0x08, // 1000 cmp rdi, [rsi+8]
            0x0f, 0x86, 0xf6, 0x0f, 0x00, 0x00, // 1004 jbe 0x2000
            0xc3, // 100a ret
        ];
        assert_eq!(listing(cold, BASE), "1000 cmp; 1004 jbe; 100a ret");
        assert_eq!(
            site(cold, C_PRESERVE),
            emulated(0x1004, SkipWhen::Never, "jbe")
        );
    }

    /// A re-entry branch whose condition the probe cannot evaluate.
    #[test]
    fn reentry_with_unsupported_condition_falls_back() {
        let code: &[u8] = &[
            0x48, 0x39, 0xf7, // 1000 cmp rdi, rsi
            0x7c, 0x01, // 1003 jl 0x1006
            0xc3, // 1005 ret
            0xe8, 0xf5, 0x0f, 0x00, 0x00, // 1006 call 0x2000
            0xeb, 0xf3, // 100b jmp 0x1000
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmp; 1003 jl; 1005 ret; 1006 call; 100b jmp"
        );
        assert_eq!(site(code, C_PRESERVE), entry());
    }

    /// A branch that jumps over a re-entry block: the skip would have to be
    /// on the not-taken side, which the probe cannot express.
    #[test]
    fn branch_over_reentry_block_falls_back() {
        let code: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, // 1000 cmp rsp, [r14+0x10]
            0x77, 0x07, // 1004 ja 0x100d
            0xe8, 0xf5, 0x0f, 0x00, 0x00, // 1006 call 0x2000
            0xeb, 0xf3, // 100b jmp 0x1000
            0xc3, // 100d ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmp; 1004 ja; 1006 call; 100b jmp; 100d ret"
        );
        assert_eq!(site(code, GO_PRESERVE), entry());
    }

    /// A loop back to the candidate would make it fire more than once per
    /// call.
    #[test]
    fn branch_into_prologue_falls_back() {
        let code: &[u8] = &[
            0xf3, 0x0f, 0x1e, 0xfa, // 1000 endbr64
            0x55, // 1004 push rbp
            0x48, 0xff, 0xcf, // 1005 dec rdi
            0x75, 0xfa, // 1008 jne 0x1004
            0xc3, // 100a ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 endbr64; 1004 push; 1005 dec; 1008 jne; 100a ret"
        );
        assert_eq!(site(code, C_PRESERVE), entry());
    }

    /// Unemulated control flow ends the search.
    #[test]
    fn unemulated_branch_falls_back() {
        let code: &[u8] = &[
            0xf3, 0x0f, 0x1e, 0xfa, // 1000 endbr64
            0xff, 0xe0, // 1004 jmp rax
            0x55, // 1006 push rbp
        ];
        assert_eq!(listing(code, BASE), "1000 endbr64; 1004 jmp; 1006 push");
        assert_eq!(site(code, C_PRESERVE), entry());
    }

    /// An emulated first instruction is its own site.
    #[test]
    fn emulated_entry_instruction() {
        let code: &[u8] = &[
            0x55, // 1000 push rbp
            0x48, 0x89, 0xe5, // 1001 mov rbp, rsp
            0x5d, // 1004 pop rbp
            0xc3, // 1005 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 push; 1001 mov; 1004 pop; 1005 ret"
        );
        assert_eq!(
            site(code, GO_PRESERVE),
            emulated(BASE, SkipWhen::Never, "push")
        );
    }

    /// Nothing emulated within the first instructions.
    #[test]
    fn no_emulated_instruction_in_reach() {
        // endbr64, six times `nop dword [rax]` (multi-byte nops are
        // single-stepped), then a one-byte nop as the 8th instruction.
        let mut code = vec![0xf3, 0x0f, 0x1e, 0xfa];
        for _ in 0..6 {
            code.extend_from_slice(&[0x0f, 0x1f, 0x00]);
        }
        code.extend_from_slice(&[0x90, 0xc3]);
        assert_eq!(
            listing(&code, BASE),
            "1000 endbr64; 1004 nop; 1007 nop; 100a nop; 100d nop; 1010 nop; 1013 nop; \
             1016 nop; 1017 ret"
        );
        assert_eq!(site(&code, C_PRESERVE), entry());
        // A one-byte nop within reach is a site.
        let near: &[u8] = &[0xf3, 0x0f, 0x1e, 0xfa, 0x90, 0xc3];
        assert_eq!(
            site(near, C_PRESERVE),
            emulated(0x1004, SkipWhen::Never, "nop")
        );
    }

    #[test]
    fn decode_failures() {
        assert_eq!(
            choose_entry_site(&[], BASE, BASE + 8, &[]),
            Err(SiteError::Empty {
                function_address: BASE
            })
        );
        // 0x06 (push es) does not exist in 64-bit mode.
        assert_eq!(
            choose_entry_site(&[0x06, 0xc3], BASE, 0, &[]),
            Err(SiteError::InvalidInstruction {
                address: BASE,
                offset: 0
            })
        );
        assert_eq!(
            choose_entry_site(&[0x49, 0x3b], BASE, 0, &[]),
            Err(SiteError::Truncated {
                address: BASE,
                offset: 0
            })
        );
        assert_eq!(
            choose_entry_site(&[0xf3, 0x0f, 0x1e, 0xfa, 0x06, 0xc3], BASE, 0, &[]),
            Err(SiteError::InvalidInstruction {
                address: 0x1004,
                offset: 4
            })
        );
        // A prefix that ends mid-instruction after the first one: entry.
        assert_eq!(
            choose_entry_site(&[0xf3, 0x0f, 0x1e, 0xfa, 0x41], BASE, 0x1100, &[]),
            Ok(entry())
        );
    }

    /// Bytes past `function_end` belong to the next function.
    #[test]
    fn function_end_clips_code() {
        let code: &[u8] = &[0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0xc3];
        assert_eq!(choose_entry_site(code, BASE, BASE + 4, &[]), Ok(entry()));
    }

    #[test]
    fn emulation_rules() {
        let decode = |bytes: &[u8]| {
            let instr = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE).decode();
            assert!(!instr.is_invalid());
            assert_eq!(instr.len(), bytes.len());
            instr
        };
        let yes: &[&[u8]] = &[
            &[0x74, 0x00],             // je
            &[0x0f, 0x86, 0, 0, 0, 0], // jbe rel32
            &[0xeb, 0x00],             // jmp rel8
            &[0xe9, 0, 0, 0, 0],       // jmp rel32
            &[0xe8, 0, 0, 0, 0],       // call rel32
            &[0xf2, 0xe9, 0, 0, 0, 0], // bnd jmp rel32
            &[0x90],                   // nop
            &[0x55],                   // push rbp
            &[0x41, 0x57],             // push r15
        ];
        for bytes in yes {
            assert!(is_emulated(&decode(bytes)), "{bytes:02x?}");
        }
        let no: &[&[u8]] = &[
            &[0x66, 0xe8, 0, 0, 0, 0], // call with operand-size prefix
            &[0x3e, 0x74, 0x00],       // je with a DS (branch hint) prefix
            &[0x66, 0x90],             // xchg ax, ax
            &[0xf3, 0x90],             // pause
            &[0x41, 0x90],             // xchg r8d, eax
            &[0x0f, 0x1f, 0x00],       // nop dword [rax]
            &[0xff, 0x35, 0, 0, 0, 0], // push qword [rip]
            &[0x6a, 0x01],             // push 1
            &[0xff, 0xd0],             // call rax
            &[0xc3],                   // ret
            &[0xe3, 0x00],             // jrcxz
            &[0xe2, 0x00],             // loop
            &[0x49, 0x3b, 0x66, 0x10], // cmp rsp, [r14+0x10]
        ];
        for bytes in no {
            assert!(!is_emulated(&decode(bytes)), "{bytes:02x?}");
        }
    }

    /// (g) Near returns in all their encodings.
    #[test]
    fn returns() {
        let code: &[u8] = &[
            0x31, 0xc0, // 1000 xor eax, eax
            0xc3, // 1002 ret
            0xf3, 0xc3, // 1003 rep ret
            0xc2, 0x08, 0x00, // 1005 ret 8
            0xf2, 0xc3, // 1008 bnd ret
            0xcb, // 100a retf: not a near return
            0xcc, 0xcc, // padding
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 xor; 1002 ret; 1003 ret; 1005 ret; 1008 ret; 100a retf; 100b int3; 100c int3"
        );
        assert_eq!(
            find_returns(code, BASE),
            Ok(vec![0x1002, 0x1003, 0x1005, 0x1008])
        );
        assert_eq!(find_returns(GO_NEAR_JBE, BASE), Ok(vec![0x1017]));
    }

    #[test]
    fn returns_decode_errors() {
        assert_eq!(
            find_returns(&[], BASE),
            Err(SiteError::Empty {
                function_address: BASE
            })
        );
        assert_eq!(
            find_returns(&[0xc3, 0x06, 0xc3], BASE),
            Err(SiteError::InvalidInstruction {
                address: 0x1001,
                offset: 1
            })
        );
        assert_eq!(
            find_returns(&[0xc3, 0x48, 0x8b], BASE),
            Err(SiteError::Truncated {
                address: 0x1001,
                offset: 1
            })
        );
        // A lone trailing padding byte that does not decode is fine.
        assert_eq!(find_returns(&[0xc3, 0xcc, 0x00], BASE), Ok(vec![0x1000]));
    }

    /// (h) Compare-and-swap in its three sizes.
    #[test]
    fn cmpxchg() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x0a, // 1000 lock cmpxchg [rdx], rcx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0xf0, 0x48, 0x0f, 0xc7, 0x0e, // 1008 lock cmpxchg16b [rsi]
            0x0f, 0xb1, 0x0a, // 100d cmpxchg [rdx], ecx
            0x0f, 0xc7, 0x0f, // 1010 cmpxchg8b [rdi]
            0xc3, // 1013 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 sete; 1008 cmpxchg16b; 100d cmpxchg; 1010 cmpxchg8b; 1013 ret"
        );
        let cas = |address, length: usize, is_16b, locked| CasInstruction {
            address,
            next_address: address + length as u64,
            length,
            is_16b,
            locked,
        };
        assert_eq!(
            find_cmpxchg(code, BASE),
            Ok(vec![
                cas(0x1000, 5, false, true),
                cas(0x1008, 5, true, true),
                cas(0x100d, 3, false, false),
                cas(0x1010, 3, false, false),
            ])
        );
        assert_eq!(find_cmpxchg(GO_NEAR_JBE, BASE), Ok(vec![]));
    }

    /// `sync.(*Mutex).lockSlow` as built by Go 1.23.9 (linux/amd64): the
    /// first 16 bytes and the morestack block, at their real addresses; the
    /// body in between is replaced by `int3`.
    #[test]
    fn go_1_23_mutex_lock_slow() {
        const START: u64 = 0x47_6180;
        const END: u64 = 0x47_6409;
        const HEAD: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, // 476180 cmp rsp, [r14+0x10]
            0x0f, 0x86, 0x6b, 0x02, 0x00, 0x00, // 476184 jbe 0x4763f5
            0x55, // 47618a push rbp
            0x48, 0x89, 0xe5, // 47618b mov rbp, rsp
            0x48, 0x83, 0xec, 0x40, // 47618e sub rsp, 0x40
        ];
        const TAIL: &[u8] = &[
            0x48, 0x89, 0x44, 0x24, 0x08, // 4763f5 mov [rsp+8], rax
            0xe8, 0xc1, 0x37, 0xff, 0xff, // 4763fa call runtime.morestack_noctxt
            0x48, 0x8b, 0x44, 0x24, 0x08, // 4763ff mov rax, [rsp+8]
            0xe9, 0x77, 0xfd, 0xff, 0xff, // 476404 jmp 0x476180
        ];
        let mut code = vec![0xcc; (END - START) as usize];
        code[..HEAD.len()].copy_from_slice(HEAD);
        let tail_at = code.len() - TAIL.len();
        code[tail_at..].copy_from_slice(TAIL);
        assert_eq!(
            listing(&code[tail_at..], START + tail_at as u64),
            "4763f5 mov; 4763fa call; 4763ff mov; 476404 jmp"
        );
        let site = choose_entry_site(&code, START, END, GO_PRESERVE).unwrap();
        assert_eq!(
            site,
            EntrySite {
                address: 0x47_6184,
                skip_when: SkipWhen::BelowOrEqual,
                choice: SiteChoice::Emulated {
                    offset: 4,
                    mnemonic: "jbe".to_string()
                },
            }
        );
    }

    /// `runtime.getproccount` as built by Go 1.23.9 (linux/amd64), a huge
    /// frame: head and morestack block at their real addresses, the body
    /// replaced by `int3`.
    #[test]
    fn go_1_23_huge_frame_getproccount() {
        const START: u64 = 0x42_efc0;
        const END: u64 = 0x42_f091;
        const HEAD: &[u8] = &[
            0x49, 0x89, 0xe4, // 42efc0 mov r12, rsp
            0x49, 0x81, 0xec, 0xa8, 0x1f, 0x00, 0x00, // 42efc3 sub r12, 0x1fa8
            0x0f, 0x82, 0xb7, 0x00, 0x00, 0x00, // 42efca jb 0x42f087
            0x4d, 0x3b, 0x66, 0x10, // 42efd0 cmp r12, [r14+0x10]
            0x0f, 0x86, 0xad, 0x00, 0x00, 0x00, // 42efd4 jbe 0x42f087
            0x55, // 42efda push rbp
        ];
        const TAIL: &[u8] = &[
            0xe8, 0x34, 0xab, 0x03, 0x00, // 42f087 call runtime.morestack_noctxt
            0xe9, 0x2f, 0xff, 0xff, 0xff, // 42f08c jmp 0x42efc0
        ];
        let mut code = vec![0xcc; (END - START) as usize];
        code[..HEAD.len()].copy_from_slice(HEAD);
        let tail_at = code.len() - TAIL.len();
        code[tail_at..].copy_from_slice(TAIL);
        assert_eq!(
            listing(&code[..HEAD.len()], START),
            "42efc0 mov; 42efc3 sub; 42efca jb; 42efd0 cmp; 42efd4 jbe; 42efda push"
        );
        assert_eq!(
            listing(&code[tail_at..], START + tail_at as u64),
            "42f087 call; 42f08c jmp"
        );
        assert_eq!(
            choose_entry_site(&code, START, END, GO_PRESERVE).unwrap(),
            EntrySite {
                address: 0x42_efd4,
                skip_when: SkipWhen::BelowOrEqual,
                choice: SiteChoice::Emulated {
                    offset: 0x14,
                    mnemonic: "jbe".to_string()
                },
            }
        );
    }
}
