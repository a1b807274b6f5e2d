//! Where a wait on a Go runtime-internal lock (`runtime.mutex`) begins.
//!
//! `runtime.lock2` tries the lock once with an exchange on the lock word
//! (`xchg [rax], reg`, the lock's address in RAX by Go's register ABI) and
//! tests what it swapped out: a lock that was free is the fast path, taken
//! millions of times a second by channels and the scheduler, and must not
//! be probed. The other branch is the slow path, entered once per
//! contended acquisition. [`slow_path_entry`] finds the first instruction
//! of its straight-line start that the kernel emulates while RAX still
//! holds the lock, R14 the goroutine and RBP `lock2`'s frame (the waiter's
//! call site is the return address in that frame). Where the waits end is
//! [`super::exits::exit_edges_from`] restricted to the slow path.
//!
//! Versions whose `lock2` clobbers RAX before any emulated instruction
//! (1.22–1.24: it builds a `lockTimer` first) are observed at that timer's
//! `begin` and `end` instead (see [`crate::goruntime::RuntimeLockTimer`]).

use iced_x86::{
    ConditionCode, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register,
};

use super::x86::{is_emulated_at, mnemonic, Listing, SiteError};

/// How many instructions after the exchange the test and branch on its
/// result may be.
const MAX_TEST_DISTANCE: usize = 3;

/// The slow path's probe site in `lock2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowPathEntry {
    /// The slow path's first instruction (where the branch on the first
    /// exchange's result sends a lock that was held).
    pub slow_start: u64,
    /// The instruction to probe: emulated, passed once per entry into the
    /// slow path, with RAX, R14 and RBP as they were.
    pub address: u64,
    /// Its mnemonic.
    pub mnemonic: String,
}

/// Why `lock2`'s slow path could not be located.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlowPathError {
    /// The code does not decode.
    #[error(transparent)]
    Decode(#[from] SiteError),
    /// No exchange on the lock word `[rax]` before RAX is overwritten.
    #[error("no exchange on the lock word [rax]")]
    NoExchange,
    /// The exchange's result is not tested and branched on right after it.
    #[error("no test and branch on the exchanged value after {0:#x}")]
    NoBranch(u64),
    /// RBP is not `lock2`'s frame pointer by the exchange.
    #[error("no frame pointer set up before {0:#x}")]
    NoFrame(u64),
    /// The slow path's straight-line start has no emulated instruction
    /// before RAX, RBP, RSP or R14 change.
    #[error("no emulated instruction at the slow path's start {0:#x}")]
    NoSite(u64),
    /// Some branch lands inside the slow path's start: the site would be
    /// passed more than once per wait.
    #[error("a branch lands inside the slow path's start at {0:#x}")]
    Reentered(u64),
}

/// Finds the probe site of `lock2`'s slow path in its bytes `code` at
/// `start`.
pub fn slow_path_entry(code: &[u8], start: u64) -> Result<SlowPathEntry, SlowPathError> {
    let listing = Listing::sweep_all(code, start)?;
    let targets = listing.branch_targets().unwrap_or_default();
    let instrs = &listing.instructions;
    let mut factory = InstructionInfoFactory::new();
    let writes = |factory: &mut InstructionInfoFactory, instr: &Instruction, regs: &[Register]| {
        factory.info(instr).used_registers().iter().any(|used| {
            super::x86::is_write(used.access()) && regs.contains(&used.register().full_register())
        })
    };
    // The first exchange with [rax], RAX unchanged since the entry.
    let mut framed = false;
    let mut exchange = None;
    for (i, instr) in instrs.iter().enumerate() {
        if instr.mnemonic() == Mnemonic::Xchg
            && instr.memory_base() == Register::RAX
            && instr.memory_index() == Register::None
            && instr.memory_displacement64() == 0
        {
            exchange = Some(i);
            break;
        }
        // The prologue's branches (the stack check, `m.locks`' check) go
        // elsewhere; anything else ends the straight line.
        let straight = matches!(
            instr.flow_control(),
            FlowControl::Next | FlowControl::ConditionalBranch
        );
        if !straight || writes(&mut factory, instr, &[Register::RAX]) {
            return Err(SlowPathError::NoExchange);
        }
        framed |= writes(&mut factory, instr, &[Register::RBP]);
    }
    let exchange = exchange.ok_or(SlowPathError::NoExchange)?;
    let exchanged = (0..instrs[exchange].op_count())
        .find(|&op| instrs[exchange].op_kind(op) == OpKind::Register)
        .map(|op| instrs[exchange].op_register(op).full_register())
        .ok_or(SlowPathError::NoExchange)?;
    let at = instrs[exchange].ip();
    if !framed {
        return Err(SlowPathError::NoFrame(at));
    }
    // `test reg, …` (or `cmp`) on the exchanged value, then `je`/`jne`.
    let mut tested = false;
    let mut branch = None;
    let window = instrs.iter().enumerate().skip(exchange + 1);
    for (i, instr) in window.take(MAX_TEST_DISTANCE) {
        if matches!(instr.mnemonic(), Mnemonic::Test | Mnemonic::Cmp)
            && (0..instr.op_count()).any(|op| {
                instr.op_kind(op) == OpKind::Register
                    && instr.op_register(op).full_register() == exchanged
            })
        {
            tested = true;
            continue;
        }
        if tested && instr.flow_control() == FlowControl::ConditionalBranch {
            branch = Some(i);
            break;
        }
        if instr.flow_control() != FlowControl::Next
            || writes(&mut factory, instr, &[exchanged, Register::RAX])
        {
            break;
        }
    }
    let branch = branch.ok_or(SlowPathError::NoBranch(at))?;
    let jcc = &instrs[branch];
    // A free lock swaps out zero (or a clear locked bit): `je` goes to the
    // fast path, `jne` to the slow one.
    let slow_start = match jcc.condition_code() {
        ConditionCode::e => instrs
            .get(branch + 1)
            .ok_or(SlowPathError::NoBranch(at))?
            .ip(),
        ConditionCode::ne => jcc.near_branch_target(),
        _ => return Err(SlowPathError::NoBranch(at)),
    };
    let first = listing
        .index_of(slow_start)
        .ok_or(SlowPathError::NoSite(slow_start))?;
    for i in first..instrs.len() {
        let (instr, bytes) = listing.get(i);
        if i > first && targets.contains(&instr.ip()) {
            return Err(SlowPathError::Reentered(instr.ip()));
        }
        if is_emulated_at(instr, bytes) && instr.flow_control() != FlowControl::Call {
            return Ok(SlowPathEntry {
                slow_start,
                address: instr.ip(),
                mnemonic: mnemonic(instr),
            });
        }
        if instr.flow_control() != FlowControl::Next
            || writes(
                &mut factory,
                instr,
                &[Register::RAX, Register::RBP, Register::RSP, Register::R14],
            )
        {
            break;
        }
    }
    Err(SlowPathError::NoSite(slow_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go 1.27's `lock2`, shortened: the prologue, the exchange, `test
    /// $1, cl; je fast`, the slow path's spill and `jmp` into its loop, the
    /// fast path's epilogue and the morestack tail.
    #[test]
    fn finds_the_jump_at_the_slow_paths_start() {
        let code: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, // 1000 cmp rsp, [r14+0x10]
            0x76, 0x1c, // 1004 jbe 0x1022 (morestack)
            0x55, // 1006 push rbp
            0x48, 0x89, 0xe5, // 1007 mov rbp, rsp
            0xb9, 0x01, 0x00, 0x00, 0x00, // 100a mov ecx, 1
            0x86, 0x08, // 100f xchg [rax], cl
            0xf6, 0xc1, 0x01, // 1011 test cl, 1
            0x74, 0x07, // 1014 je 0x101d (fast)
            0x48, 0x89, 0x44, 0x24, 0x10, // 1016 mov [rsp+0x10], rax
            0xeb, 0x02, // 101b jmp 0x101f (the loop, shortened)
            0x5d, // 101d pop rbp
            0xc3, // 101e ret
            0xcc, 0xcc, 0xcc, // 101f the loop (shortened)
            0xe8, 0x00, 0x00, 0x00, 0x00, // 1022 call (morestack)
            0xeb, 0xd7, // 1027 jmp 0x1000
        ];
        let entry = slow_path_entry(code, 0x1000).expect("slow path");
        assert_eq!(
            entry,
            SlowPathEntry {
                slow_start: 0x1016,
                address: 0x101b,
                mnemonic: "jmp".into(),
            }
        );
    }

    #[test]
    fn a_lock2_that_overwrites_rax_first_has_no_site() {
        // mov rax, [rsp+8] before the exchange.
        let code: &[u8] = &[
            0x55, // 1000 push rbp
            0x48, 0x89, 0xe5, // 1001 mov rbp, rsp
            0x48, 0x8b, 0x44, 0x24, 0x08, // 1004 mov rax, [rsp+8]
            0x86, 0x08, // 1009 xchg [rax], cl
            0xc3, // 100b ret
        ];
        assert_eq!(
            slow_path_entry(code, 0x1000),
            Err(SlowPathError::NoExchange)
        );
    }

    #[test]
    fn a_slow_path_that_clobbers_rax_before_any_emulated_instruction_has_no_site() {
        let code: &[u8] = &[
            0x55, // 1000 push rbp
            0x48, 0x89, 0xe5, // 1001 mov rbp, rsp
            0x86, 0x08, // 1004 xchg [rax], cl
            0x84, 0xc9, // 1006 test cl, cl
            0x75, 0x01, // 1008 jne 0x100b
            0xc3, // 100a ret (fast)
            0x48, 0x8d, 0x44, 0x24, 0x08, // 100b lea rax, [rsp+8]
            0xe8, 0x00, 0x00, 0x00, 0x00, // 1010 call 0x1015
            0xc3, // 1015 ret
        ];
        assert_eq!(
            slow_path_entry(code, 0x1000),
            Err(SlowPathError::NoSite(0x100b))
        );
    }
}
