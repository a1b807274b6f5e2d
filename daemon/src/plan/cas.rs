//! Where to observe the outcome of a compare-and-swap.
//!
//! A `LOCK CMPXCHG` (or `CMPXCHG8B`/`CMPXCHG16B`) succeeded iff ZF is set
//! right after it. The kernel refuses uprobes on lock-prefixed instructions,
//! so the outcome has to be read at a later instruction; a uprobe fires
//! before its instruction executes and sees the flags and registers of that
//! moment. The instruction right after the CAS is the obvious place, but it
//! is rarely one the kernel emulates (`sete`, `test`, `mov`…), and a
//! single-stepped probe costs about 15 µs per hit against 0.8 µs for an
//! emulated one (see [`super::site`]).
//!
//! Compilers consume the outcome within a few instructions, nearly always
//! with a conditional branch:
//!
//! - gcc and clang: `lock cmpxchg; jne retry` — ZF still holds it;
//! - Go: `lock cmpxchg; sete cl; test cl, cl; je retry` — the `sete` copies
//!   ZF into CL, the `test` turns it into ZF again, inverted;
//! - a function returning the result: `lock cmpxchg; sete al; ret`.
//!
//! [`plan_cas_sites`] follows the straight-line code after each CAS, tracks
//! where the outcome lives (ZF with a polarity, and the low bytes of
//! registers written by `sete`/`setne` and copied by `mov`/`movzx`), and
//! picks the first emulated instruction at which it is still known. That
//! instruction must run exactly once per execution of the CAS: the path to it
//! has no branch, call or return, and no branch of the function lands inside
//! it.

use std::collections::BTreeSet;

use iced_x86::{
    ConditionCode, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register,
    RflagsBits,
};

use super::site::find_cmpxchg;
use super::x86::{
    direct_target, is_emulated_at as emulated, is_write, mnemonic, Listing, SiteError,
};
use crate::model::{CasCondition, CasProbe};

/// How many instructions after a CAS [`plan_cas_sites`] examines, the one
/// right after it included.
pub const MAX_OUTCOME_WALK: usize = 8;

/// Where the CAS outcome is at the chosen site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In ZF of the saved flags: success iff ZF is set, when
    /// `success_when_set`, else iff ZF is clear. `true` right after the
    /// cmpxchg; `false` after `test r8, r8` of a register `sete` wrote.
    Zf {
        /// Whether ZF = 1 means success.
        success_when_set: bool,
    },
    /// In the low byte of a general register written by `setcc`: success iff
    /// `(reg & 0xff != 0) == success_when_nonzero`.
    Register {
        /// The full 64-bit register, e.g. RAX for AL.
        reg: Register,
        /// Whether a nonzero low byte means success.
        success_when_nonzero: bool,
    },
}

/// Where to probe to learn the outcome of one compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasSite {
    /// Address of the lock-prefixed cmpxchg instruction.
    pub cmpxchg_address: u64,
    /// Address of the instruction to attach to.
    pub probe_address: u64,
    /// Where the outcome is when the probe fires.
    pub outcome: Outcome,
    /// Whether the kernel emulates the probed instruction (cheap hits).
    pub emulated: bool,
    /// Lower-case Intel mnemonic of the probed instruction, e.g. `jne`.
    pub mnemonic: String,
    /// A branch elsewhere in the function jumps to the instruction right
    /// after the CAS, so the probe also fires on paths that did not run the
    /// CAS, and then the flags say nothing about it. The site is then the
    /// instruction right after the CAS with [`Outcome::Zf`]; a consumer that
    /// cannot tell the paths apart should not trust its hits. Compilers do
    /// not emit this in practice (it would take a loop head right after the
    /// CAS); only direct branches are known, see [`plan_cas_sites`].
    pub ambiguous: bool,
    /// The CAS is a call to a function that performs it and returns whether
    /// it succeeded (Go's `sync/atomic.CompareAndSwapPointer`, …):
    /// `cmpxchg_address` is then the call's address.
    pub via_call: bool,
}

/// Chooses a probe site for every lock-prefixed `CMPXCHG`, `CMPXCHG8B` and
/// `CMPXCHG16B` in a function's code, in address order.
///
/// `code` holds the function's bytes from its entry at `function_address`;
/// it is decoded once by a linear sweep (see [`find_cmpxchg`], whose errors
/// are returned). CAS instructions without a lock prefix are not atomic
/// across CPUs and are left out.
///
/// For each CAS, up to [`MAX_OUTCOME_WALK`] instructions from the one right
/// after it are followed while they fall through to the next one. Tracked:
///
/// - ZF, initially holding the outcome (success iff set);
/// - `sete`/`setne` (also spelled `setz`/`setnz`) of a low-byte register
///   while ZF holds it: the register now holds it too (inverted for `setne`);
/// - `mov` between registers and `movzx` from a tracked register copy it;
/// - `xor r, 1` of a tracked register inverts it (its low byte is 0 or 1),
///   and sets ZF from it;
/// - `test r, r` and `cmp r, 0` of a tracked register (of its low byte, or of
///   the wider register when `movzx` zero-extended it): ZF holds it again,
///   set on zero;
/// - any other write of the flags loses ZF, any write of a register loses it.
///
/// The site is the first instruction the kernel emulates at which the
/// outcome is still known (ZF preferred over a register). Instructions after
/// the one following the CAS qualify only if no direct branch or call of the
/// function targets an address from the instruction after the CAS up to and
/// including the candidate, and the function has no indirect jump (whose
/// targets are unknown). Failing that, the site is the instruction right
/// after the CAS, reading ZF, whatever it costs.
pub fn plan_cas_sites(code: &[u8], function_address: u64) -> Result<Vec<CasSite>, SiteError> {
    plan(code, function_address, true)
}

/// Like [`plan_cas_sites`], but always probes the instruction right after
/// each CAS, reading ZF, as a tracer that does not decode further would (for
/// comparison: `--probe-site entry`).
pub fn plan_cas_sites_next(code: &[u8], function_address: u64) -> Result<Vec<CasSite>, SiteError> {
    plan(code, function_address, false)
}

fn plan(code: &[u8], function_address: u64, search: bool) -> Result<Vec<CasSite>, SiteError> {
    let cas_list = find_cmpxchg(code, function_address)?;
    let listing = Listing::sweep(code, function_address);
    let targets = listing.branch_targets();
    let mut factory = InstructionInfoFactory::new();
    let mut sites = Vec::new();
    for cas in cas_list.iter().filter(|cas| cas.locked) {
        let Some(first) = listing.index_of(cas.next_address) else {
            // Nothing decodable follows the CAS within the code.
            let offset = cas.next_address - function_address;
            return Err(SiteError::Truncated {
                address: cas.next_address,
                offset,
            });
        };
        let fallback = |ambiguous: bool| {
            let (instr, bytes) = listing.get(first);
            CasSite {
                cmpxchg_address: cas.address,
                probe_address: cas.next_address,
                outcome: Outcome::Zf {
                    success_when_set: true,
                },
                emulated: emulated(instr, bytes),
                mnemonic: mnemonic(instr),
                ambiguous,
                via_call: false,
            }
        };
        let site = match &targets {
            Some(targets) if targets.contains(&cas.next_address) => fallback(true),
            Some(_) if !search => fallback(false),
            Some(targets) => walk(
                &listing,
                targets,
                first,
                cas.address,
                &mut factory,
                State::after_cas(),
            )
            .unwrap_or_else(|| fallback(false)),
            // Targets unknown: only the instruction right after the CAS is
            // sure to follow it, and whether it is a target is unknown too.
            None => fallback(false),
        };
        sites.push(site);
    }
    Ok(sites)
}

/// Sites for every direct call in the function to a CAS function (one for
/// which `is_cas_function(target)` holds) that returns its success as a
/// boolean in AL, as Go's `sync/atomic.CompareAndSwapPointer` and the
/// runtime's `Cas*` do: the outcome is tracked from the return site like a
/// `LOCK CMPXCHG`'s, starting in AL instead of ZF. `search` as in
/// [`plan_cas_sites`] (true) or [`plan_cas_sites_next`] (false).
pub fn plan_cas_call_sites(
    code: &[u8],
    function_address: u64,
    is_cas_function: impl Fn(u64) -> bool,
    search: bool,
) -> Vec<CasSite> {
    let listing = Listing::sweep(code, function_address);
    let targets = listing.branch_targets();
    let mut factory = InstructionInfoFactory::new();
    let mut sites = Vec::new();
    for (index, call) in listing.instructions.iter().enumerate() {
        let callee = (call.flow_control() == FlowControl::Call)
            .then(|| direct_target(call))
            .flatten();
        if !callee.is_some_and(&is_cas_function) {
            continue;
        }
        let first = index + 1;
        if first >= listing.instructions.len() {
            continue;
        }
        let (next, next_bytes) = listing.get(first);
        let fallback = |ambiguous: bool| CasSite {
            cmpxchg_address: call.ip(),
            probe_address: next.ip(),
            outcome: Outcome::Register {
                reg: Register::RAX,
                success_when_nonzero: true,
            },
            emulated: emulated(next, next_bytes),
            mnemonic: mnemonic(next),
            ambiguous,
            via_call: true,
        };
        let site = match &targets {
            Some(targets) if targets.contains(&next.ip()) => fallback(true),
            Some(targets) if search => walk(
                &listing,
                targets,
                first,
                call.ip(),
                &mut factory,
                State::after_cas_call(),
            )
            .map(|site| CasSite {
                via_call: true,
                ..site
            })
            .unwrap_or_else(|| fallback(false)),
            _ => fallback(false),
        };
        sites.push(site);
    }
    sites
}

impl CasSite {
    /// How reports describe where and how the outcome is read, e.g. `je at
    /// 0x48f6dd (+0xa after lock cmpxchg at 0x48f6d3), emulated: success iff
    /// ZF=0`.
    pub fn probe(&self) -> CasProbe {
        CasProbe {
            mnemonic: self.mnemonic.clone(),
            address: self.probe_address,
            cas_address: self.cmpxchg_address,
            via_call: self.via_call,
            emulated: self.emulated,
            condition: match self.outcome {
                Outcome::Zf { success_when_set } => CasCondition::Zf {
                    set: success_when_set,
                },
                Outcome::Register {
                    reg,
                    success_when_nonzero,
                } => CasCondition::Register {
                    name: format!("{:?}", low_byte_of(reg).unwrap_or(reg)).to_lowercase(),
                    nonzero: success_when_nonzero,
                },
            },
            ambiguous: self.ambiguous,
        }
    }
}

/// Follows the straight line from `listing[first]` (the instruction after
/// the CAS at `cas_address`) to the first emulated instruction at which the
/// outcome is still known. `None` when there is none within reach.
fn walk(
    listing: &Listing<'_>,
    targets: &BTreeSet<u64>,
    first: usize,
    cas_address: u64,
    factory: &mut InstructionInfoFactory,
    mut state: State,
) -> Option<CasSite> {
    for index in first..listing.instructions.len().min(first + MAX_OUTCOME_WALK) {
        let (instr, bytes) = listing.get(index);
        if index > first && targets.contains(&instr.ip()) {
            // Reachable without the CAS: neither this instruction nor any
            // later one will do.
            return None;
        }
        if emulated(instr, bytes) {
            if let Some(outcome) = state.outcome() {
                return Some(CasSite {
                    cmpxchg_address: cas_address,
                    probe_address: instr.ip(),
                    outcome,
                    emulated: true,
                    mnemonic: mnemonic(instr),
                    ambiguous: false,
                    via_call: false,
                });
            }
        }
        if instr.flow_control() != FlowControl::Next {
            return None;
        }
        state.step(instr, factory);
        state.outcome()?;
    }
    None
}

/// A register holding the outcome in its low byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// The full 64-bit register.
    full: Register,
    /// Whether a nonzero low byte means success.
    success_when_nonzero: bool,
    /// Whether the bits above the low byte are known to be zero, so a test
    /// of the whole register is a test of the low byte.
    clean: bool,
}

/// Where the outcome is before some instruction on the path.
#[derive(Debug, Clone, Default)]
struct State {
    /// ZF holds it: success iff ZF == this.
    zf: Option<bool>,
    /// Registers holding it.
    held: Vec<Held>,
}

impl State {
    fn after_cas() -> State {
        State {
            zf: Some(true),
            held: Vec::new(),
        }
    }

    /// After a call to a CAS function: its boolean result in AL.
    fn after_cas_call() -> State {
        State {
            zf: None,
            held: vec![Held {
                full: Register::RAX,
                success_when_nonzero: true,
                clean: false,
            }],
        }
    }

    /// Where to read the outcome, preferring ZF.
    fn outcome(&self) -> Option<Outcome> {
        if let Some(success_when_set) = self.zf {
            return Some(Outcome::Zf { success_when_set });
        }
        self.held.first().map(|held| Outcome::Register {
            reg: held.full,
            success_when_nonzero: held.success_when_nonzero,
        })
    }

    /// The tracked register `register` reads, if reading it reads the
    /// outcome: its low byte, or the whole of a clean register.
    fn reads(&self, register: Register) -> Option<Held> {
        let held = *self
            .held
            .iter()
            .find(|h| h.full == register.full_register())?;
        (is_low_byte(register) || (held.clean && register.is_gpr() && !register.is_gpr8()))
            .then_some(held)
    }

    /// The tracked register whose low byte reading `register` reads.
    fn copied_by(&self, register: Register) -> Option<Held> {
        let held = *self
            .held
            .iter()
            .find(|h| h.full == register.full_register())?;
        (is_low_byte(register) || (register.is_gpr() && !register.is_gpr8())).then_some(held)
    }

    /// Updates the state across a fall-through instruction.
    fn step(&mut self, instr: &Instruction, factory: &mut InstructionInfoFactory) {
        // What the instruction derives from the outcome, judged before it
        // executes.
        let mut new_zf = None;
        let mut new_held = None;
        let reg = |n: u32| (instr.op_kind(n) == OpKind::Register).then(|| instr.op_register(n));
        match instr.mnemonic() {
            Mnemonic::Sete | Mnemonic::Setne => {
                if let (Some(zf), Some(dst)) = (self.zf, reg(0)) {
                    if is_low_byte(dst) {
                        let on_zf_set = instr.condition_code() == ConditionCode::e;
                        new_held = Some(Held {
                            full: dst.full_register(),
                            success_when_nonzero: zf == on_zf_set,
                            clean: false,
                        });
                    }
                }
            }
            Mnemonic::Test => {
                if let (Some(a), Some(b)) = (reg(0), reg(1)) {
                    if a == b {
                        new_zf = self.reads(a).map(|held| !held.success_when_nonzero);
                    }
                }
            }
            Mnemonic::Cmp => {
                if let Some(a) = reg(0) {
                    if is_immediate(instr.op1_kind()) && instr.immediate(1) == 0 {
                        new_zf = self.reads(a).map(|held| !held.success_when_nonzero);
                    }
                }
            }
            Mnemonic::Xor => {
                // The low byte of a held register is 0 or 1 (`setcc` writes
                // nothing else): xor with 1 inverts it.
                if let Some(dst) = reg(0) {
                    let flips = is_immediate(instr.op1_kind()) && instr.immediate(1) == 1;
                    if let Some(held) = self.copied_by(dst).filter(|_| flips) {
                        new_held = Some(Held {
                            success_when_nonzero: !held.success_when_nonzero,
                            ..held
                        });
                        if is_low_byte(dst) || held.clean {
                            // ZF is set when the result, the inverted byte,
                            // is zero: when the old byte was nonzero.
                            new_zf = Some(held.success_when_nonzero);
                        }
                    }
                }
            }
            Mnemonic::Mov | Mnemonic::Movzx => {
                if let (Some(dst), Some(src)) = (reg(0), reg(1)) {
                    if let Some(held) = self.copied_by(src) {
                        // The destination's low byte is the source's low
                        // byte (AH..BH excluded by `copied_by` and here).
                        let wide = dst.is_gpr32() || dst.is_gpr64();
                        let clean = wide
                            && (held.clean
                                || (instr.mnemonic() == Mnemonic::Movzx && src.is_gpr8()));
                        if wide || dst.is_gpr16() || is_low_byte(dst) {
                            new_held = Some(Held {
                                full: dst.full_register(),
                                success_when_nonzero: held.success_when_nonzero,
                                clean,
                            });
                        }
                    }
                }
            }
            _ => {}
        }

        if instr.rflags_modified() & RflagsBits::ZF != 0 {
            self.zf = None;
        }
        let info = factory.info(instr);
        for used in info.used_registers() {
            if is_write(used.access()) {
                let full = used.register().full_register();
                self.held.retain(|held| held.full != full);
            }
        }
        if new_zf.is_some() {
            self.zf = new_zf;
        }
        if let Some(held) = new_held {
            self.held.push(held);
        }
    }
}

/// AL, CL, …, R15L: the registers whose value is the low byte of a 64-bit
/// one (not AH..BH).
fn is_low_byte(register: Register) -> bool {
    register.is_gpr8()
        && !matches!(
            register,
            Register::AH | Register::CH | Register::DH | Register::BH
        )
}

/// The low-byte register of a 64-bit one (AL for RAX).
fn low_byte_of(full: Register) -> Option<Register> {
    const LOW: [Register; 16] = [
        Register::AL,
        Register::CL,
        Register::DL,
        Register::BL,
        Register::SPL,
        Register::BPL,
        Register::SIL,
        Register::DIL,
        Register::R8L,
        Register::R9L,
        Register::R10L,
        Register::R11L,
        Register::R12L,
        Register::R13L,
        Register::R14L,
        Register::R15L,
    ];
    LOW.into_iter().find(|low| low.full_register() == full)
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    const BASE: u64 = 0x1000;

    fn describe(site: &CasSite) -> String {
        site.probe().to_string()
    }

    /// Decodes `code` and lists "address mnemonic [target]" per instruction,
    /// so every test vector is checked to be the sequence it claims.
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
            let mut line = format!("{:x} {}", instr.ip(), mnemonic(&instr));
            if instr.op_count() > 0 && instr.op0_kind() == OpKind::NearBranch64 {
                line += &format!(" {:x}", instr.near_branch_target());
            }
            out.push(line);
        }
        out.join("; ")
    }

    fn zf(success_when_set: bool) -> Outcome {
        Outcome::Zf { success_when_set }
    }

    fn in_reg(reg: Register, success_when_nonzero: bool) -> Outcome {
        Outcome::Register {
            reg,
            success_when_nonzero,
        }
    }

    fn site(cas: u64, probe: u64, outcome: Outcome, emulated: bool, mnemonic: &str) -> CasSite {
        CasSite {
            cmpxchg_address: cas,
            probe_address: probe,
            outcome,
            emulated,
            mnemonic: mnemonic.to_string(),
            ambiguous: false,
            via_call: false,
        }
    }

    /// Go 1.23.9's `sync.(*entry).trySwap` (start, at its real address): the
    /// CAS is a call to `sync/atomic.CompareAndSwapPointer` (0x4614e0) whose
    /// result is tested and branched on.
    #[test]
    fn go_1_23_entry_try_swap_calls_compare_and_swap_pointer() {
        let code: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x5d, 0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x20,
            0x48, 0x89, 0x44, 0x24, 0x30, 0x48, 0x89, 0x5c, 0x24, 0x38, 0xeb, 0x0a, 0x48, 0x8b,
            0x44, 0x24, 0x30, 0x48, 0x8b, 0x5c, 0x24, 0x38, 0x48, 0x8b, 0x10, 0x48, 0x8b, 0x35,
            0x52, 0x9d, 0x13, 0x00, 0x48, 0x39, 0xf2, 0x74, 0x26, 0x48, 0x89, 0x54, 0x24, 0x18,
            0x48, 0x89, 0xd9, 0x48, 0x89, 0xd3, 0x66, 0x90, 0xe8, 0x1b, 0xee, 0xfe, 0xff, 0x84,
            0xc0, 0x74, 0xd1, 0xc3,
        ];
        let start = 0x47_2680;
        let sites = plan_cas_call_sites(code, start, |callee| callee == 0x46_14e0, true);
        assert_eq!(sites.len(), 1, "{sites:?}");
        let site = &sites[0];
        assert_eq!(site.cmpxchg_address, 0x47_26c0);
        assert_eq!(site.probe_address, 0x47_26c7);
        assert_eq!(site.mnemonic, "je");
        assert!(site.emulated && site.via_call && !site.ambiguous);
        assert_eq!(
            site.outcome,
            Outcome::Zf {
                success_when_set: false
            }
        );
        assert!(site.probe().to_string().contains("CAS call"));

        // Without the search: right after the call, reading AL.
        let naive = plan_cas_call_sites(code, start, |callee| callee == 0x46_14e0, false);
        assert_eq!(naive[0].probe_address, 0x47_26c5);
        assert_eq!(
            naive[0].outcome,
            Outcome::Register {
                reg: Register::RAX,
                success_when_nonzero: true
            }
        );
        // Calls to anything else are not CAS sites.
        assert!(plan_cas_call_sites(code, start, |_| false, true).is_empty());
    }

    /// The one site of a function with one CAS at `BASE`.
    fn only_site(code: &[u8]) -> CasSite {
        let sites = plan_cas_sites(code, BASE).unwrap();
        assert_eq!(sites.len(), 1, "{sites:?}");
        sites.into_iter().next().unwrap()
    }

    /// (a) gcc -O2 retry loop: the `jne` right after the CAS reads ZF.
    #[test]
    fn gcc_loop_branches_on_zf() {
        let code: &[u8] = &[
            0x48, 0x8b, 0x07, // 1000 mov rax, [rdi]
            0x48, 0x8d, 0x50, 0x01, // 1003 lea rdx, [rax+1]
            0xf0, 0x48, 0x0f, 0xb1, 0x17, // 1007 lock cmpxchg [rdi], rdx
            0x75, 0xf5, // 100c jne 0x1003
            0xc3, // 100e ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 mov; 1003 lea; 1007 cmpxchg; 100c jne 1003; 100e ret"
        );
        assert_eq!(
            plan_cas_sites(code, BASE).unwrap(),
            [site(0x1007, 0x100c, zf(true), true, "jne")]
        );
    }

    /// (b) Go: `sete`, `test`, then the branch, which sees ZF inverted.
    #[test]
    fn go_sete_test_branch_inverts_zf() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x84, 0xc0, // 1008 test al, al
            0x75, 0x01, // 100a jne 0x100d
            0xc3, // 100c ret
            0xc3, // 100d ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 sete; 1008 test; 100a jne 100d; 100c ret; 100d ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x100a, zf(false), true, "jne"));
    }

    /// `setne` stores failure; testing it makes ZF mean success again.
    #[test]
    fn setne_then_test_restores_polarity() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x95, 0xc1, // 1005 setne cl
            0x84, 0xc9, // 1008 test cl, cl
            0x75, 0x00, // 100a jne 0x100c
            0xc3, // 100c ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 setne; 1008 test; 100a jne 100c; 100c ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x100a, zf(true), true, "jne"));
    }

    /// The flags survive `sete` and a store, so a call reads ZF; once
    /// something writes the flags, the register is what is left.
    #[test]
    fn call_after_sete() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x88, 0x03, // 1008 mov [rbx], al
            0xe8, 0xf1, 0x0f, 0x00, 0x00, // 100a call 0x2000
            0xc3, // 100f ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 sete; 1008 mov; 100a call 2000; 100f ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x100a, zf(true), true, "call"));

        let flags_written: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x48, 0x83, 0xc3, 0x08, // 1008 add rbx, 8
            0xe8, 0xef, 0x0f, 0x00, 0x00, // 100c call 0x2000
            0xc3, // 1011 ret
        ];
        assert_eq!(
            listing(flags_written, BASE),
            "1000 cmpxchg; 1005 sete; 1008 add; 100c call 2000; 1011 ret"
        );
        assert_eq!(
            only_site(flags_written),
            site(BASE, 0x100c, in_reg(Register::RAX, true), true, "call")
        );
    }

    /// `movzx` copies the outcome and zero-extends it, so testing the wide
    /// register works; without it the upper bits are unknown.
    #[test]
    fn movzx_copies_and_cleans() {
        let copied: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x0f, 0xb6, 0xc8, // 1008 movzx ecx, al
            0x83, 0xc0, 0x01, // 100b add eax, 1
            0x90, // 100e nop
            0xc3, // 100f ret
        ];
        assert_eq!(
            listing(copied, BASE),
            "1000 cmpxchg; 1005 sete; 1008 movzx; 100b add; 100e nop; 100f ret"
        );
        assert_eq!(
            only_site(copied),
            site(BASE, 0x100e, in_reg(Register::RCX, true), true, "nop")
        );

        let wide_test: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x95, 0xc0, // 1005 setne al
            0x0f, 0xb6, 0xc0, // 1008 movzx eax, al
            0x85, 0xc0, // 100b test eax, eax
            0x74, 0x00, // 100d je 0x100f
            0xc3, // 100f ret
        ];
        assert_eq!(
            listing(wide_test, BASE),
            "1000 cmpxchg; 1005 setne; 1008 movzx; 100b test; 100d je 100f; 100f ret"
        );
        assert_eq!(
            only_site(wide_test),
            site(BASE, 0x100d, zf(true), true, "je")
        );

        // Without the movzx, EAX's upper bits are whatever they were: the
        // test says nothing, but AL still holds the outcome.
        let dirty: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x85, 0xc0, // 1008 test eax, eax
            0x74, 0x00, // 100a je 0x100c
            0xc3, // 100c ret
        ];
        assert_eq!(
            listing(dirty, BASE),
            "1000 cmpxchg; 1005 sete; 1008 test; 100a je 100c; 100c ret"
        );
        assert_eq!(
            only_site(dirty),
            site(BASE, 0x100a, in_reg(Register::RAX, true), true, "je")
        );
    }

    /// Go's `!v.CompareAndSwap(…)` in `runtime.chansend` (Go 1.23.9):
    /// `sete r8b; xor r8d, 1; jmp`.
    #[test]
    fn xor_one_inverts() {
        let code: &[u8] = &[
            0xf0, 0x45, 0x0f, 0xb1, 0x88, 0x78, 0x01, 0x00,
            0x00, // 1000 lock cmpxchg [r8+0x178], r9d
            0x41, 0x0f, 0x94, 0xc0, // 1009 sete r8b
            0x41, 0x83, 0xf0, 0x01, // 100d xor r8d, 1
            0xeb, 0x00, // 1011 jmp 0x1013
            0xc3, // 1013 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1009 sete; 100d xor; 1011 jmp 1013; 1013 ret"
        );
        // R8D's bits 8..31 are unknown, so ZF says nothing; R8B does.
        assert_eq!(
            only_site(code),
            site(BASE, 0x1011, in_reg(Register::R8, false), true, "jmp")
        );
        // On the byte itself, ZF is set on success.
        let byte: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x34, 0x01, // 1008 xor al, 1
            0x75, 0x00, // 100a jne 0x100c
            0xc3, // 100c ret
        ];
        assert_eq!(
            listing(byte, BASE),
            "1000 cmpxchg; 1005 sete; 1008 xor; 100a jne 100c; 100c ret"
        );
        assert_eq!(only_site(byte), site(BASE, 0x100a, zf(true), true, "jne"));
        // Any other xor just overwrites it.
        let mut two = byte.to_vec();
        two[9] = 0x02; // xor al, 2
        assert_eq!(only_site(&two), site(BASE, 0x1005, zf(true), false, "sete"));
    }

    /// `cmp r8, 0` works like `test r8, r8`; near branches are emulated too.
    #[test]
    fn cmp_zero_and_near_branch() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x3c, 0x00, // 1008 cmp al, 0
            0x0f, 0x84, 0x00, 0x00, 0x00, 0x00, // 100a je 0x1010
            0xc3, // 1010 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 sete; 1008 cmp; 100a je 1010; 1010 ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x100a, zf(false), true, "je"));
    }

    /// When the outcome is lost before anything emulated, or nothing
    /// emulated follows, the instruction after the CAS is probed.
    #[test]
    fn outcome_lost_falls_back() {
        // Go's `return v.CompareAndSwap(o, n)`: nothing emulated before ret.
        let returned: &[u8] = &[
            0xf0, 0x0f, 0xb1, 0x0a, // 1000 lock cmpxchg [rdx], ecx
            0x0f, 0x94, 0xc0, // 1004 sete al
            0xc3, // 1007 ret
            0x90, // 1008 nop
        ];
        assert_eq!(
            listing(returned, BASE),
            "1000 cmpxchg; 1004 sete; 1007 ret; 1008 nop"
        );
        assert_eq!(
            only_site(returned),
            site(BASE, 0x1004, zf(true), false, "sete")
        );

        // Flags overwritten, no register holds it.
        let add: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x48, 0x83, 0xc1, 0x01, // 1005 add rcx, 1
            0x75, 0x00, // 1009 jne 0x100b
            0xc3, // 100b ret
        ];
        assert_eq!(
            listing(add, BASE),
            "1000 cmpxchg; 1005 add; 1009 jne 100b; 100b ret"
        );
        assert_eq!(only_site(add), site(BASE, 0x1005, zf(true), false, "add"));

        // The register is overwritten after the flags were.
        let xor: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x31, 0xc0, // 1008 xor eax, eax
            0xeb, 0x00, // 100a jmp 0x100c
            0xc3, // 100c ret
        ];
        assert_eq!(
            listing(xor, BASE),
            "1000 cmpxchg; 1005 sete; 1008 xor; 100a jmp 100c; 100c ret"
        );
        assert_eq!(only_site(xor), site(BASE, 0x1005, zf(true), false, "sete"));

        // `sete ah` is not the low byte of anything; `test ah, ah` then
        // loses the flags.
        let high: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc4, // 1005 sete ah
            0x84, 0xe4, // 1008 test ah, ah
            0x75, 0x00, // 100a jne 0x100c
            0xc3, // 100c ret
        ];
        assert_eq!(
            listing(high, BASE),
            "1000 cmpxchg; 1005 sete; 1008 test; 100a jne 100c; 100c ret"
        );
        assert_eq!(only_site(high), site(BASE, 0x1005, zf(true), false, "sete"));
    }

    /// Only `MAX_OUTCOME_WALK` instructions are examined.
    #[test]
    fn walk_is_bounded() {
        let with_moves = |count: usize| {
            let mut code = vec![0xf0, 0x48, 0x0f, 0xb1, 0x11]; // lock cmpxchg [rcx], rdx
            for _ in 0..count {
                code.extend_from_slice(&[0x48, 0x89, 0xc8]); // mov rax, rcx
            }
            code.extend_from_slice(&[0x75, 0x00, 0xc3]); // jne +0; ret
            code
        };
        let near = with_moves(MAX_OUTCOME_WALK - 1);
        assert_eq!(
            listing(&near[..11], BASE),
            "1000 cmpxchg; 1005 mov; 1008 mov"
        );
        let jne = 0x1005 + 3 * (MAX_OUTCOME_WALK as u64 - 1);
        assert_eq!(only_site(&near), site(BASE, jne, zf(true), true, "jne"));
        let far = with_moves(MAX_OUTCOME_WALK);
        assert_eq!(only_site(&far), site(BASE, 0x1005, zf(true), false, "mov"));
    }

    /// A two-byte push is emulated only with REX 0x41.
    #[test]
    fn push_rex_checked() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x49, 0x54, // 1005 push r12 (REX.WB)
            0x41, 0x54, // 1007 push r12
            0xc3, // 1009 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 push; 1007 push; 1009 ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x1007, zf(true), true, "push"));
    }

    /// (c) A branch into the path after the CAS: later instructions could
    /// run without it, so the instruction right after it is probed.
    #[test]
    fn branch_into_path_falls_back() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x84, 0xc0, // 1008 test al, al
            0x75, 0x03, // 100a jne 0x100f
            0xc3, // 100c ret
            0xeb, 0xf9, // 100d jmp 0x1008
            0xc3, // 100f ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 sete; 1008 test; 100a jne 100f; 100c ret; 100d jmp 1008; 100f ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x1005, zf(true), false, "sete"));

        // A branch to the candidate itself is as bad.
        let mut to_candidate = code.to_vec();
        to_candidate[0xe] = 0xfb; // jmp 0x100a
        assert_eq!(
            listing(&to_candidate[0xd..], 0x100d),
            "100d jmp 100a; 100f ret"
        );
        assert_eq!(
            only_site(&to_candidate),
            site(BASE, 0x1005, zf(true), false, "sete")
        );

        // A branch past the candidate is harmless.
        let mut past = code.to_vec();
        past[0xe] = 0x00; // jmp 0x100f
        assert_eq!(listing(&past[0xd..], 0x100d), "100d jmp 100f; 100f ret");
        assert_eq!(only_site(&past), site(BASE, 0x100a, zf(false), true, "jne"));
    }

    /// (c) The instruction after the CAS is itself a branch target: the
    /// probe also fires on the other path, flagged as ambiguous.
    #[test]
    fn branch_to_next_instruction_is_ambiguous() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x75, 0xf9, // 1005 jne 0x1000
            0xc3, // 1007 ret
            0xeb, 0xfb, // 1008 jmp 0x1005
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 jne 1000; 1007 ret; 1008 jmp 1005"
        );
        assert_eq!(
            only_site(code),
            CasSite {
                ambiguous: true,
                ..site(BASE, 0x1005, zf(true), true, "jne")
            }
        );
        assert!(only_site(code)
            .probe()
            .to_string()
            .ends_with("(ambiguous: also reached by a branch)"));
    }

    /// An indirect jump could land anywhere: only the next instruction.
    #[test]
    fn indirect_jump_falls_back() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xb1, 0x11, // 1000 lock cmpxchg [rcx], rdx
            0x0f, 0x94, 0xc0, // 1005 sete al
            0x84, 0xc0, // 1008 test al, al
            0x75, 0x02, // 100a jne 0x100e
            0xff, 0xe1, // 100c jmp rcx
            0xc3, // 100e ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg; 1005 sete; 1008 test; 100a jne 100e; 100c jmp; 100e ret"
        );
        assert_eq!(only_site(code), site(BASE, 0x1005, zf(true), false, "sete"));
    }

    /// (d) `cmpxchg16b` and `cmpxchg8b` set ZF the same way; unlocked
    /// `cmpxchg` is not planned.
    #[test]
    fn wide_and_unlocked_cas() {
        let code: &[u8] = &[
            0xf0, 0x48, 0x0f, 0xc7, 0x0f, // 1000 lock cmpxchg16b [rdi]
            0x75, 0xf9, // 1005 jne 0x1000
            0x0f, 0xb1, 0x0a, // 1007 cmpxchg [rdx], ecx
            0x75, 0x00, // 100a jne 0x100c
            0xf0, 0x0f, 0xc7, 0x0f, // 100c lock cmpxchg8b [rdi]
            0x0f, 0x94, 0xc0, // 1010 sete al
            0x84, 0xc0, // 1013 test al, al
            0x74, 0x00, // 1015 je 0x1017
            0xc3, // 1017 ret
        ];
        assert_eq!(
            listing(code, BASE),
            "1000 cmpxchg16b; 1005 jne 1000; 1007 cmpxchg; 100a jne 100c; 100c cmpxchg8b; \
             1010 sete; 1013 test; 1015 je 1017; 1017 ret"
        );
        assert_eq!(
            plan_cas_sites(code, BASE).unwrap(),
            [
                site(0x1000, 0x1005, zf(true), true, "jne"),
                site(0x100c, 0x1015, zf(false), true, "je"),
            ]
        );
    }

    #[test]
    fn errors_and_empty() {
        assert_eq!(
            plan_cas_sites(&[], BASE),
            Err(SiteError::Empty {
                function_address: BASE
            })
        );
        assert_eq!(
            plan_cas_sites(&[0xf0, 0x48, 0x0f, 0xb1, 0x11], BASE),
            Err(SiteError::Truncated {
                address: 0x1005,
                offset: 5
            })
        );
        assert_eq!(
            plan_cas_sites(&[0x06, 0xc3], BASE),
            Err(SiteError::InvalidInstruction {
                address: BASE,
                offset: 0
            })
        );
        assert_eq!(plan_cas_sites(&[0x90, 0xc3], BASE), Ok(vec![]));
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            describe(&site(0x48_f6d3, 0x48_f6dd, zf(false), true, "je")),
            "je at 0x48f6dd (+0xa after lock cmpxchg at 0x48f6d3), emulated: success iff ZF=0"
        );
        assert_eq!(
            describe(&site(0x1000, 0x1005, zf(true), false, "sete")),
            "sete at 0x1005 (+0x5 after lock cmpxchg at 0x1000), single-stepped: success iff ZF=1"
        );
        assert_eq!(
            describe(&site(
                0x1000,
                0x100c,
                in_reg(Register::RAX, true),
                true,
                "call"
            )),
            "call at 0x100c (+0xc after lock cmpxchg at 0x1000), emulated: success iff al != 0"
        );
        assert_eq!(
            describe(&site(
                0x1000,
                0x100c,
                in_reg(Register::R9, false),
                true,
                "nop"
            )),
            "nop at 0x100c (+0xc after lock cmpxchg at 0x1000), emulated: success iff r9l == 0"
        );
    }

    /// `main.casLoop` (`for { old := v.Load(); if v.CompareAndSwap(old,
    /// old+1) { return } }` on an `atomic.Int64`) as built by Go 1.23.9 and
    /// Go 1.27.3 (linux/amd64), whole, at its real addresses. Both emit the
    /// same code.
    #[test]
    fn go_cas_loop() {
        const CODE: &[u8] = &[
            0xeb, 0x03, // jmp +3
            0x48, 0x89, 0xd8, // mov rax, rbx
            0x90, // nop
            0x48, 0x8b, 0x08, // mov rcx, [rax]
            0x48, 0x8d, 0x51, 0x01, // lea rdx, [rcx+1]
            0x48, 0x89, 0xc3, // mov rbx, rax
            0x48, 0x89, 0xc8, // mov rax, rcx
            0xf0, 0x48, 0x0f, 0xb1, 0x13, // lock cmpxchg [rbx], rdx
            0x0f, 0x94, 0xc1, // sete cl
            0x84, 0xc9, // test cl, cl
            0x74, 0xe3, // je -0x1d
            0x90, // nop
            0xc3, // ret
        ];
        for (version, start) in [("1.23.9", 0x48_f6c0), ("1.27.3", 0x49_9de0)] {
            assert_eq!(
                listing(CODE, start),
                format!(
                    "{s0:x} jmp {s5:x}; {s2:x} mov; {s5:x} nop; {s6:x} mov; {s9:x} lea; \
                     {sd:x} mov; {s10:x} mov; {s13:x} cmpxchg; {s18:x} sete; {s1b:x} test; \
                     {s1d:x} je {s2:x}; {s1f:x} nop; {s20:x} ret",
                    s0 = start,
                    s2 = start + 2,
                    s5 = start + 5,
                    s6 = start + 6,
                    s9 = start + 9,
                    sd = start + 0xd,
                    s10 = start + 0x10,
                    s13 = start + 0x13,
                    s18 = start + 0x18,
                    s1b = start + 0x1b,
                    s1d = start + 0x1d,
                    s1f = start + 0x1f,
                    s20 = start + 0x20,
                ),
                "Go {version}"
            );
            assert_eq!(
                plan_cas_sites(CODE, start).unwrap(),
                [site(start + 0x13, start + 0x1d, zf(false), true, "je")],
                "Go {version}"
            );
        }
    }

    /// `main.casOnce` (`return v.CompareAndSwap(o, n)` on an `atomic.Int32`)
    /// as built by Go 1.23.9: nothing emulated before the `ret`.
    #[test]
    fn go_cas_returned() {
        const START: u64 = 0x48_f700;
        const CODE: &[u8] = &[
            0x48, 0x89, 0xc2, // 48f700 mov rdx, rax
            0x89, 0xd8, // 48f703 mov eax, ebx
            0xf0, 0x0f, 0xb1, 0x0a, // 48f705 lock cmpxchg [rdx], ecx
            0x0f, 0x94, 0xc0, // 48f709 sete al
            0xc3, // 48f70c ret
        ];
        assert_eq!(
            listing(CODE, START),
            "48f700 mov; 48f703 mov; 48f705 cmpxchg; 48f709 sete; 48f70c ret"
        );
        assert_eq!(
            plan_cas_sites(CODE, START).unwrap(),
            [site(0x48_f705, 0x48_f709, zf(true), false, "sete")]
        );
    }

    /// `cas_loop`, `cas_once` and `cas_count` built by gcc 12.2 -O2
    /// (Debian) from `__atomic_compare_exchange_n` loops, with their
    /// padding, at their addresses in the linked executable.
    #[test]
    fn gcc_functions() {
        const CAS_LOOP: &[u8] = &[
            0x48, 0x8b, 0x07, // 11a0 mov rax, [rdi]
            0x48, 0x8d, 0x50, 0x01, // 11a3 lea rdx, [rax+1]
            0xf0, 0x48, 0x0f, 0xb1, 0x17, // 11a7 lock cmpxchg [rdi], rdx
            0x75, 0xf5, // 11ac jne 0x11a3
            0xc3, // 11ae ret
            0x90, // 11af nop
        ];
        assert_eq!(
            listing(CAS_LOOP, 0x11a0),
            "11a0 mov; 11a3 lea; 11a7 cmpxchg; 11ac jne 11a3; 11ae ret; 11af nop"
        );
        assert_eq!(
            plan_cas_sites(CAS_LOOP, 0x11a0).unwrap(),
            [site(0x11a7, 0x11ac, zf(true), true, "jne")]
        );

        const CAS_ONCE: &[u8] = &[
            0x89, 0xf0, // 11b0 mov eax, esi
            0xf0, 0x0f, 0xb1, 0x17, // 11b2 lock cmpxchg [rdi], edx
            0x0f, 0x94, 0xc0, // 11b6 sete al
            0xc3, // 11b9 ret
            0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, // 11ba nop word [rax+rax]
        ];
        assert_eq!(
            listing(CAS_ONCE, 0x11b0),
            "11b0 mov; 11b2 cmpxchg; 11b6 sete; 11b9 ret; 11ba nop"
        );
        assert_eq!(
            plan_cas_sites(CAS_ONCE, 0x11b0).unwrap(),
            [site(0x11b2, 0x11b6, zf(true), false, "sete")]
        );

        // Two CAS: the first falls into the success path, the second jumps
        // to it; the branch targets (0x11ce, 0x11d4) lie past both sites.
        const CAS_COUNT: &[u8] = &[
            0x48, 0x8b, 0x07, // 11c0 mov rax, [rdi]
            0x48, 0x8d, 0x50, 0x01, // 11c3 lea rdx, [rax+1]
            0xf0, 0x48, 0x0f, 0xb1, 0x17, // 11c7 lock cmpxchg [rdi], rdx
            0x75, 0x06, // 11cc jne 0x11d4
            0xb8, 0x01, 0x00, 0x00, 0x00, // 11ce mov eax, 1
            0xc3, // 11d3 ret
            0x48, 0x8d, 0x50, 0x01, // 11d4 lea rdx, [rax+1]
            0x48, 0x83, 0x06, 0x01, // 11d8 add qword [rsi], 1
            0xf0, 0x48, 0x0f, 0xb1, 0x17, // 11dc lock cmpxchg [rdi], rdx
            0x74, 0xeb, // 11e1 je 0x11ce
            0xeb, 0xef, // 11e3 jmp 0x11d4
            0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00,
            0x00, // 11e5 data16 cs nop word [rax+rax]
        ];
        assert_eq!(
            listing(CAS_COUNT, 0x11c0),
            "11c0 mov; 11c3 lea; 11c7 cmpxchg; 11cc jne 11d4; 11ce mov; 11d3 ret; 11d4 lea; \
             11d8 add; 11dc cmpxchg; 11e1 je 11ce; 11e3 jmp 11d4; 11e5 nop"
        );
        assert_eq!(
            plan_cas_sites(CAS_COUNT, 0x11c0).unwrap(),
            [
                site(0x11c7, 0x11cc, zf(true), true, "jne"),
                site(0x11dc, 0x11e1, zf(true), true, "je"),
            ]
        );
    }
}
