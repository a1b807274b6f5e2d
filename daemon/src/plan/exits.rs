//! Where a slow path's waits end, at instructions the kernel emulates.
//!
//! A wait ends when the slow path returns, but its `RET` is single-stepped
//! by the kernel (several microseconds a hit), and uretprobes cannot be
//! used on Go code (they rewrite return addresses on goroutine stacks,
//! which Go moves). Nor does the caller's code help: Go lays the slow-path
//! call inline (`jne skip; call lockSlow; lea …; skip: …`), so the
//! instruction after the call is not emulated and the one after it is
//! shared with the fast path.
//!
//! Inside the slow path, though, control reaches its epilogue through a
//! few jumps: `lockSlow`'s `je` after the successful compare-and-swap, the
//! jumps of its starvation hand-off. [`exit_edges`] finds them: the region
//! of code from which every path leads to a `RET` without a call (the
//! epilogue and what falls into it), and every edge into that region from
//! outside — each an emulated jump (counted when taken) or an emulated
//! instruction falling into it (a conditional branch counted when not
//! taken). Every return of the function passes exactly one such edge.

use std::collections::{BTreeMap, BTreeSet};

use iced_x86::{ConditionCode, FlowControl, Instruction, Mnemonic};
use probe_common::Condition;

use super::x86::{self, Listing};

/// Most blocks the exit region may grow to before the search gives up.
pub const MAX_REGION_BLOCKS: usize = 8;

/// One place where control enters a function's exit region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEdge {
    /// Link-time address of the instruction to probe.
    pub address: u64,
    /// Its mnemonic.
    pub mnemonic: String,
    /// When a hit is an exit: always, or when the branch's condition holds
    /// (taken) or does not (falls through).
    pub when: ExitWhen,
}

/// When a hit on an exit edge's instruction is an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitWhen {
    /// Every time (an unconditional jump, or an instruction that falls in).
    Always,
    /// When the conditional branch is taken.
    Taken(Condition),
    /// When the conditional branch is not taken.
    NotTaken(Condition),
}

/// A basic block: its instructions' range in the listing.
#[derive(Debug, Clone, Copy)]
struct Block {
    first: usize,
    last: usize,
}

/// The exit edges of the function whose bytes are `code` at `start`, or
/// `None` when some path into a return cannot be observed at an emulated
/// instruction (the function's code then needs its `RET`s probed).
pub fn exit_edges(code: &[u8], start: u64) -> Option<Vec<ExitEdge>> {
    exit_edges_from(code, start, None, &[])
}

/// The exit edges of the part of a function reached from the block at
/// `slow` (the function's slow path: the runtime's `lock2` after its
/// failed first exchange), or of the whole function when `slow` is `None`.
/// `None` also when an edge would be passed by a path that never went
/// through `slow` (the fast path: its hits would end no wait), or `slow`
/// does not begin a block. Calls of the functions at `prompt` (which
/// return without waiting: a clock read) may be in the exit region.
pub fn exit_edges_from(
    code: &[u8],
    start: u64,
    slow: Option<u64>,
    prompt: &[u64],
) -> Option<Vec<ExitEdge>> {
    let listing = Listing::sweep_all(code, start).ok()?;
    let targets = listing.branch_targets()?;
    let instrs = &listing.instructions;
    if instrs.is_empty() {
        return None;
    }
    // Blocks begin at the entry, at branch targets, and after anything
    // that is not plain fall-through (calls included: a region must not
    // hold one, as the wait may be in it).
    let mut leaders: BTreeSet<usize> = BTreeSet::from([0]);
    for (i, instr) in instrs.iter().enumerate() {
        if targets.contains(&instr.ip()) {
            leaders.insert(i);
        }
        if instr.flow_control() != FlowControl::Next && i + 1 < instrs.len() {
            leaders.insert(i + 1);
        }
    }
    let leaders: Vec<usize> = leaders.into_iter().collect();
    let blocks: Vec<Block> = leaders
        .iter()
        .enumerate()
        .map(|(n, &first)| Block {
            first,
            last: leaders
                .get(n + 1)
                .map_or(instrs.len() - 1, |&next| next - 1),
        })
        .collect();
    let block_at: BTreeMap<u64, usize> = blocks
        .iter()
        .enumerate()
        .map(|(b, block)| (instrs[block.first].ip(), b))
        .collect();
    let end = |b: usize| &instrs[blocks[b].last];
    let falls_through = |b: usize| {
        !matches!(
            end(b).flow_control(),
            FlowControl::UnconditionalBranch
                | FlowControl::IndirectBranch
                | FlowControl::Return
                | FlowControl::Interrupt
        ) && b + 1 < blocks.len()
    };
    // Successors of each block.
    let successors = |b: usize| -> Vec<usize> {
        let mut next = Vec::new();
        let last = end(b);
        if matches!(
            last.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
        ) {
            if let Some(&target) = x86::direct_target(last).and_then(|t| block_at.get(&t)) {
                next.push(target);
            }
        }
        if falls_through(b) {
            next.push(b + 1);
        }
        next
    };
    // With a slow path: the blocks reached from its first block, and those
    // reached from the entry without passing it (the fast path).
    let sides: Option<(BTreeSet<usize>, BTreeSet<usize>)> = match slow {
        None => None,
        Some(address) => {
            let slow_block = *block_at.get(&address)?;
            let reach = |from: usize, avoid: Option<usize>| {
                let mut seen = BTreeSet::from([from]);
                let mut work = vec![from];
                while let Some(b) = work.pop() {
                    // A jump to the entry (after growing the stack) is a
                    // new call, not more of this one.
                    for next in successors(b) {
                        if next != 0 && Some(next) != avoid && seen.insert(next) {
                            work.push(next);
                        }
                    }
                }
                seen
            };
            Some((reach(slow_block, None), reach(0, Some(slow_block))))
        }
    };

    let has_call = |b: usize| {
        instrs[blocks[b].first..=blocks[b].last]
            .iter()
            .any(|i| match i.flow_control() {
                FlowControl::Call => !x86::direct_target(i).is_some_and(|t| prompt.contains(&t)),
                FlowControl::IndirectCall => true,
                _ => false,
            })
    };
    // The region: blocks ending in RET, grown by blocks all of whose
    // successors are in it.
    let mut region: BTreeSet<usize> = (0..blocks.len())
        .filter(|&b| end(b).mnemonic() == Mnemonic::Ret)
        .collect();
    if region.is_empty() || region.iter().any(|&b| has_call(b)) {
        return None;
    }
    loop {
        let mut edges = Vec::new();
        let mut grow = None;
        for from in 0..blocks.len() {
            if region.contains(&from) {
                continue;
            }
            // Off the slow path, or on it and on the fast path both (a hit
            // there on the fast path would end no wait).
            let (off_path, shared) = match &sides {
                None => (false, false),
                Some((slow_side, fast_side)) => (
                    !slow_side.contains(&from),
                    slow_side.contains(&from) && fast_side.contains(&from),
                ),
            };
            for to in successors(from) {
                if !region.contains(&to) {
                    continue;
                }
                if shared {
                    return None;
                }
                if off_path {
                    continue;
                }
                let last = end(from);
                let bytes = listing.get(blocks[from].last).1;
                let emulated = x86::is_emulated_at(last, bytes)
                    && !matches!(last.flow_control(), FlowControl::Call);
                let taken_edge = x86::direct_target(last) == Some(instrs[blocks[to].first].ip())
                    && last.flow_control() != FlowControl::Next;
                let when = match last.flow_control() {
                    FlowControl::UnconditionalBranch => ExitWhen::Always,
                    FlowControl::ConditionalBranch => match condition(last) {
                        // Both edges of a branch into the region: any hit is
                        // an exit.
                        Some(_) if successors(from).iter().all(|s| region.contains(s)) => {
                            ExitWhen::Always
                        }
                        Some(cc) if taken_edge => ExitWhen::Taken(cc),
                        Some(cc) => ExitWhen::NotTaken(cc),
                        None => {
                            grow = grow.or(Some(from));
                            continue;
                        }
                    },
                    _ => ExitWhen::Always,
                };
                if emulated {
                    edges.push(ExitEdge {
                        address: last.ip(),
                        mnemonic: x86::mnemonic(last),
                        when,
                    });
                } else {
                    grow = grow.or(Some(from));
                }
            }
        }
        match grow {
            None => {
                edges.sort_by_key(|e| e.address);
                edges.dedup_by_key(|e| e.address);
                return (!edges.is_empty()).then_some(edges);
            }
            Some(block) => {
                // Only a block that cannot leave the region, has no call,
                // and is not the entry may join it.
                let closed = successors(block).iter().all(|s| region.contains(s));
                if !closed || has_call(block) || block == 0 || region.len() >= MAX_REGION_BLOCKS {
                    return None;
                }
                region.insert(block);
            }
        }
    }
}

/// The shared form of a conditional branch's condition.
fn condition(instr: &Instruction) -> Option<Condition> {
    Some(match instr.condition_code() {
        ConditionCode::o => Condition::Overflow,
        ConditionCode::no => Condition::NotOverflow,
        ConditionCode::b => Condition::Below,
        ConditionCode::ae => Condition::AboveOrEqual,
        ConditionCode::e => Condition::Equal,
        ConditionCode::ne => Condition::NotEqual,
        ConditionCode::be => Condition::BelowOrEqual,
        ConditionCode::a => Condition::Above,
        ConditionCode::s => Condition::Sign,
        ConditionCode::ns => Condition::NotSign,
        ConditionCode::p => Condition::Parity,
        ConditionCode::np => Condition::NotParity,
        ConditionCode::l => Condition::Less,
        ConditionCode::ge => Condition::GreaterOrEqual,
        ConditionCode::le => Condition::LessOrEqual,
        ConditionCode::g => Condition::Greater,
        ConditionCode::None => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sync.(*Mutex).lockSlow`'s shape (Go 1.23, shortened): a loop, a
    /// CAS whose success `je`s to the epilogue, a starvation hand-off that
    /// jumps or falls into a `lock xadd` before it, and the morestack tail.
    #[test]
    fn a_lock_slow_path_exits_through_its_jumps() {
        let code: &[u8] = &[
            0x49, 0x3b, 0x66, 0x10, // 1000 cmp rsp, [r14+0x10]
            0x76, 0x2b, // 1004 jbe 0x1031 (morestack)
            0x55, // 1006 push rbp
            0x48, 0x89, 0xe5, // 1007 mov rbp, rsp
            0xf0, 0x0f, 0xb1, 0x0a, // 100a lock cmpxchg [rdx], ecx
            0x75, 0xfa, // 100e jne 0x100a (retry)
            0x85, 0xd2, // 1010 test edx, edx
            0x74, 0x16, // 1012 je 0x102a (acquired: epilogue)
            0x85, 0xc0, // 1014 test eax, eax
            0x74, 0x07, // 1016 je 0x101f
            0xb8, 0x01, 0x00, 0x00, 0x00, // 1018 mov eax, 1
            0xeb, 0x05, // 101d jmp 0x1024
            0xb8, 0x02, 0x00, 0x00, 0x00, // 101f mov eax, 2
            0xf0, 0x0f, 0xc1, 0x02, // 1024 lock xadd [rdx], eax
            0x90, // 1028 nop
            0x90, // 1029 nop
            0x5d, // 102a pop rbp
            0xc3, // 102b ret
            0xcc, 0xcc, 0xcc, 0xcc, 0xcc, // 102c int3 (padding)
            0xe8, 0xca, 0x0f, 0x00, 0x00, // 1031 call 0x2000 (morestack)
            0xeb, 0xc8, // 1036 jmp 0x1000
        ];
        let edges = exit_edges(code, 0x1000).expect("exit edges");
        // The `nop` at 0x1029 falls into the epilogue block (0x102a starts
        // one: the `je` at 0x1012 targets it) and is emulated: the region is
        // the epilogue, its edges the `je` and that `nop`.
        assert_eq!(
            edges,
            [
                ExitEdge {
                    address: 0x1012,
                    mnemonic: "je".into(),
                    when: ExitWhen::Taken(Condition::Equal)
                },
                ExitEdge {
                    address: 0x1029,
                    mnemonic: "nop".into(),
                    when: ExitWhen::Always
                },
            ]
        );
    }

    /// `runtime.lock2`'s shape, shortened: an exchange whose `je` takes
    /// the fast path to its own `ret`, a slow path looping on a wait, and
    /// a way out through a clock read.
    const LOCK2: &[u8] = &[
        0x86, 0x08, // 1000 xchg [rax], cl
        0x84, 0xc9, // 1002 test cl, cl
        0x74, 0x0c, // 1004 je 0x1012 (fast)
        0xe8, 0xf5, 0x0f, 0x00, 0x00, // 1006 call 0x2000 (the wait)
        0x84, 0xc9, // 100b test cl, cl
        0x75, 0xf7, // 100d jne 0x1006 (wait again)
        0xeb, 0x02, // 100f jmp 0x1013 (acquired)
        0x90, // 1011 nop
        0xc3, // 1012 ret (fast)
        0xe8, 0xe8, 0x1f, 0x00, 0x00, // 1013 call 0x3000 (the clock)
        0xc3, // 1018 ret
    ];

    #[test]
    fn a_slow_path_exits_only_where_the_fast_path_never_passes() {
        assert_eq!(
            exit_edges_from(LOCK2, 0x1000, Some(0x1006), &[0x3000]),
            Some(vec![ExitEdge {
                address: 0x100f,
                mnemonic: "jmp".into(),
                when: ExitWhen::Always
            }])
        );
        // The whole function: the fast path's `je` is a way out too.
        let all = exit_edges_from(LOCK2, 0x1000, None, &[0x3000]).expect("edges");
        assert!(all.iter().any(|e| e.address == 0x1004), "{all:?}");
        // A call that may wait is never in the way out.
        assert_eq!(exit_edges_from(LOCK2, 0x1000, Some(0x1006), &[]), None);
        // The slow path must begin a block.
        assert_eq!(
            exit_edges_from(LOCK2, 0x1000, Some(0x1008), &[0x3000]),
            None
        );
    }

    /// A wrapper whose only way out is a call's return: nothing to probe
    /// but the `RET`.
    #[test]
    fn a_wrapper_around_a_call_has_no_exit_edge() {
        let code: &[u8] = &[
            0x55, // 1000 push rbp
            0xe8, 0xfa, 0x0f, 0x00, 0x00, // 1001 call 0x2000
            0x5d, // 1006 pop rbp
            0xc3, // 1007 ret
        ];
        assert_eq!(exit_edges(code, 0x1000), None);
    }

    /// A jump over the epilogue's only way in is not an exit.
    #[test]
    fn a_conditional_fall_through_is_an_exit_when_not_taken() {
        let code: &[u8] = &[
            0x85, 0xc0, // 1000 test eax, eax
            0x75, 0xfc, // 1002 jne 0x1000 (loop)
            0xc3, // 1004 ret
        ];
        assert_eq!(
            exit_edges(code, 0x1000),
            Some(vec![ExitEdge {
                address: 0x1002,
                mnemonic: "jne".into(),
                when: ExitWhen::NotTaken(Condition::NotEqual)
            }])
        );
    }
}
