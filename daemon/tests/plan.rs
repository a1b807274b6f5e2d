//! The planner on every fixture binary, with no root and no process: an
//! executable opened from a file, a plan out, and the plan checked against
//! what the machine code says (each probed byte decoded from the file at
//! the planned offset) and against the Go runtime table.

mod common;

use std::path::Path;

use mapwatch::{
    goruntime,
    model::{Builtin, MapKind, ProbeKind, SiteCost},
    plan::{
        exits::ExitWhen,
        plan,
        site::SiteChoice,
        x86::{decode_at, is_emulated_at},
        PlanRequest, PlannedSite, ProbePlan, RuntimeSite, SiteMode, SiteProbe,
    },
    target::Executable,
};
use probe_common::{CallerSource, LockRole, SkipWhen};

/// Everything the planner can plan for a Go target.
fn everything() -> PlanRequest {
    PlanRequest {
        runtime_maps: true,
        blocked_time: true,
        ..PlanRequest::defaults()
    }
}

/// The instruction at a planned file offset, decoded from the file.
fn instruction_at(
    exe: &Executable,
    file_offset: u64,
    address: u64,
) -> (iced_x86::Instruction, Vec<u8>) {
    let bytes = exe.elf.bytes();
    let start = file_offset as usize;
    let code = &bytes[start..(start + 16).min(bytes.len())];
    let instr =
        decode_at(code, address, address).expect("a valid instruction at the planned offset");
    let len = instr.len();
    (instr, code[..len].to_vec())
}

/// Checks what every site's placement claims against the bytes in the file.
fn check_placements(exe: &Executable, plan: &ProbePlan, what: &str) {
    let placements = plan
        .sites
        .iter()
        .map(|s| (&s.at, Some(s)))
        .chain(plan.map_sites.iter().map(|s| (&s.at, None)));
    for (at, site) in placements {
        // The offset in the file is the address's, by the program headers.
        assert_eq!(
            exe.elf.vaddr_to_file_offset(at.address),
            Some(at.file_offset),
            "{what}: {}",
            at.function
        );
        let function = exe
            .symbols
            .function(&at.function)
            .unwrap_or_else(|| panic!("{what}: {} is not a function", at.function));
        assert_eq!(
            function.start, at.function_address,
            "{what}: {}",
            at.function
        );
        assert!(at.address >= function.start && at.address < function.end.max(function.start + 1));
        let (instr, bytes) = instruction_at(exe, at.file_offset, at.address);
        let mnemonic = format!("{:?}", instr.mnemonic()).to_lowercase();
        match &at.choice {
            SiteChoice::Emulated {
                offset,
                mnemonic: m,
            } => {
                assert_eq!(*offset, at.offset(), "{what}: {}", at.function);
                assert_eq!(*m, mnemonic, "{what}: {}", at.function);
                assert!(
                    is_emulated_at(&instr, &bytes),
                    "{what}: {} {m}",
                    at.function
                );
            }
            SiteChoice::SingleStepped {
                offset,
                mnemonic: m,
            } => {
                assert_eq!(*offset, at.offset());
                assert_eq!(*m, mnemonic, "{what}: {}", at.function);
            }
            SiteChoice::Entry => assert_eq!(at.offset(), 0),
        }
        // A skip rule belongs to the stack check's branch, and matches its
        // condition.
        match at.skip_when {
            SkipWhen::Never => {}
            SkipWhen::BelowOrEqual => assert_eq!(mnemonic, "jbe", "{what}: {}", at.function),
            SkipWhen::Below => assert_eq!(mnemonic, "jb", "{what}: {}", at.function),
        }
        if let Some(PlannedSite {
            probe: SiteProbe::LockReturn(_),
            ..
        }) = site
        {
            assert_eq!(mnemonic, "ret", "{what}: {}", at.function);
            assert_eq!(at.cost(), SiteCost::SingleStepped);
        }
        if let Some(PlannedSite {
            probe: SiteProbe::LockExit { when, .. },
            ..
        }) = site
        {
            match when {
                // (Or a branch both of whose ways lead out, or the stack
                // check's branch of a function whose entry is the exit,
                // skipped when about to grow the stack.)
                ExitWhen::Always => assert!(
                    mnemonic == "jmp"
                        || !instr.is_jcc_short_or_near()
                        || at.skip_when != SkipWhen::Never
                        || at.function == goruntime::RUNTIME_LOCK,
                    "{what}: {} {mnemonic}",
                    at.function
                ),
                ExitWhen::Taken(_) | ExitWhen::NotTaken(_) => {
                    assert!(
                        instr.is_jcc_short_or_near(),
                        "{what}: {} {mnemonic}",
                        at.function
                    )
                }
            }
        }
        if let Some((cas, _)) = site.and_then(PlannedSite::cas) {
            // The CAS itself: a lock cmpxchg, or a call to a CAS function.
            let offset = exe.elf.vaddr_to_file_offset(cas.cmpxchg_address).unwrap();
            let (cas_instr, _) = instruction_at(exe, offset, cas.cmpxchg_address);
            let name = format!("{:?}", cas_instr.mnemonic()).to_lowercase();
            if cas.via_call {
                assert_eq!(name, "call", "{what}: {}", at.function);
            } else {
                assert!(
                    name.starts_with("cmpxchg") && cas_instr.has_lock_prefix(),
                    "{what}: {name}"
                );
            }
            assert!(at.address > cas.cmpxchg_address, "{what}: {}", at.function);
        }
    }
}

/// The plan's sites as (kind, function, offset, cost, skip): what stays the
/// same between a binary and its stripped build.
fn shape(plan: &ProbePlan) -> Vec<(ProbeKind, String, u64, SiteCost, SkipWhen)> {
    let mut shape: Vec<_> = plan
        .sites
        .iter()
        .map(|s| {
            (
                s.probe_kind(),
                s.at.function.clone(),
                s.at.offset(),
                s.at.cost(),
                s.at.skip_when,
            )
        })
        .chain(plan.map_sites.iter().map(|s| {
            (
                ProbeKind::Map,
                s.at.function.clone(),
                s.at.offset(),
                s.at.cost(),
                s.at.skip_when,
            )
        }))
        .collect();
    shape.sort_by(|a, b| (a.1.as_str(), a.2).cmp(&(b.1.as_str(), b.2)));
    shape
}

fn open(path: &Path) -> Executable {
    Executable::open(path, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

#[test]
fn go_fixtures_plan_the_functions_of_their_generation_at_emulated_sites() {
    let versions = common::go_versions();
    assert!(versions.len() >= 4, "{versions:?}");
    for go in &versions {
        let plain = open(&common::fixture(go, "contend", false));
        let version = plain.go_version().expect("a Go version");
        let generation = goruntime::generations(Some(version))[0];
        let plan = plan(&plain, &everything()).unwrap();
        check_placements(&plain, &plan, go);
        // The mutex slow path of this generation, at the stack check's
        // branch, skipped when it is about to grow the stack.
        let entry = plan
            .sites
            .iter()
            .find(|s| {
                s.at.function == generation.mutex_slow_path
                    && s.probe_kind() == ProbeKind::LockEntry
            })
            .unwrap_or_else(|| panic!("Go {go}: no {} entry", generation.mutex_slow_path));
        assert_eq!(entry.at.cost(), SiteCost::Emulated, "Go {go}");
        assert_eq!(
            entry.at.offset(),
            4,
            "Go {go}: the jbe after cmp rsp,[r14+16]"
        );
        assert_eq!(entry.at.skip_when, SkipWhen::BelowOrEqual, "Go {go}");
        // Its waits end at emulated jumps into its epilogue, not at its
        // single-stepped RETs.
        let exits: Vec<_> = plan
            .sites
            .iter()
            .filter(|s| {
                s.at.function == generation.mutex_slow_path && s.probe_kind() == ProbeKind::LockExit
            })
            .collect();
        assert!(exits.len() >= 2, "Go {go}: {exits:?}");
        assert!(
            exits.iter().all(|s| s.at.cost() == SiteCost::Emulated),
            "Go {go}"
        );
        assert!(!plan.sites.iter().any(|s| {
            s.at.function == generation.mutex_slow_path && s.probe_kind() == ProbeKind::LockReturn
        }));
        // The RWMutex semaphore waits are wrappers of a call: their RETs.
        for wait in goruntime::RWMUTEX_WAITS {
            assert!(plan.sites.iter().any(|s| {
                s.at.function == wait.function && s.probe_kind() == ProbeKind::LockReturn
            }));
        }
        // The RWMutex semaphores with their offsets into the RWMutex.
        for wait in goruntime::RWMUTEX_WAITS {
            let site = plan
                .sites
                .iter()
                .find(|s| s.at.function == wait.function && s.probe_kind() == ProbeKind::LockEntry)
                .unwrap_or_else(|| panic!("Go {go}: no {}", wait.function));
            let SiteProbe::LockEntry(probe) = &site.probe else {
                unreachable!()
            };
            assert_eq!(probe.addr_adjust, wait.semaphore_offset);
            assert_eq!(probe.role, wait.role);
            assert!(probe.track_blocked, "Go {go}: blocked time asked for");
        }
        // Blocked time: the mutex's semaphore and runtime.ready.
        assert!(plan.sites.iter().any(|s| s.at.function == generation.mutex_semaphore_wait
            && matches!(&s.probe, SiteProbe::SemaEntry(p) if p.addr_adjust == goruntime::MUTEX_SEMA_OFFSET && p.role == LockRole::Mutex)));
        assert!(plan
            .sites
            .iter()
            .any(|s| s.at.function == goruntime::READY && s.probe_kind() == ProbeKind::Ready));
        // Go's GC and pauses: the cycle's end and, by version, the pause's
        // ends, every one at an emulated site.
        let runtime: Vec<_> = plan
            .sites
            .iter()
            .filter_map(|s| match s.probe {
                SiteProbe::Runtime(site) => Some((site, s)),
                _ => None,
            })
            .collect();
        assert!(
            runtime
                .iter()
                .all(|(_, s)| s.at.cost() == SiteCost::Emulated),
            "Go {go}: {runtime:#?}"
        );
        let has = |wanted: &dyn Fn(&RuntimeSite) -> bool| runtime.iter().any(|(r, _)| wanted(r));
        assert!(has(&|r| *r == RuntimeSite::GcCycle), "Go {go}");
        if version >= goruntime::WORLD_STOP_ARGS_SINCE {
            // The runtime's own figures at the restart's entry, and its
            // end where it read the time: the call to wakep.
            assert!(has(&|r| matches!(
                r,
                RuntimeSite::StartTheWorld {
                    world_stop: Some(_)
                }
            )));
            let (_, done) = runtime
                .iter()
                .find(|(r, _)| *r == RuntimeSite::RestartDone)
                .unwrap_or_else(|| panic!("Go {go}: no restart end"));
            assert!(
                matches!(&done.at.choice, SiteChoice::Emulated { mnemonic, .. } if mnemonic == "call"),
                "Go {go}: {:?}",
                done.at
            );
            assert!(!has(&|r| matches!(r, RuntimeSite::StopTheWorld { .. })));
        } else {
            assert!(has(&|r| *r
                == RuntimeSite::StopTheWorld {
                    reason: goruntime::stw_reason_register(Some(version))
                }));
            assert!(has(
                &|r| *r == RuntimeSite::StartTheWorld { world_stop: None }
            ));
        }
        assert_eq!(
            plan.go_runtime().map(|p| p.gc_pauses_told_apart),
            Some(version >= goruntime::STW_REASON_SINCE),
            "Go {go}"
        );
        // No function of the other generation.
        for other in &goruntime::GENERATIONS {
            if other.since != generation.since {
                assert!(
                    !plan
                        .sites
                        .iter()
                        .any(|s| s.at.function == other.mutex_slow_path),
                    "Go {go}"
                );
            }
        }
        // sync.Map's own CAS sites and methods, of this generation.
        let cas: Vec<_> = plan.sites.iter().filter_map(PlannedSite::cas).collect();
        assert!(!cas.is_empty(), "Go {go}: sync.Map CAS sites");
        assert!(cas
            .iter()
            .all(|(_, builtin)| *builtin == Some(Builtin::SyncMap)));
        let sync_maps: Vec<_> = plan
            .map_sites
            .iter()
            .filter(|s| s.function.kind == MapKind::SyncMap)
            .collect();
        assert!(
            sync_maps
                .iter()
                .all(|s| s.function.name.starts_with(generation.sync_map.prefix)),
            "Go {go}"
        );
        assert!(sync_maps
            .iter()
            .any(|s| s.function.op == probe_common::MapOp::Load));
        // Runtime maps: every map site of a user-level function, none a
        // thin wrapper of another (each load counted once).
        let runtime: Vec<_> = plan
            .map_sites
            .iter()
            .filter(|s| s.function.kind == MapKind::Runtime)
            .collect();
        assert!(
            runtime
                .iter()
                .any(|s| s.function.name == "runtime.mapaccess2_faststr"),
            "Go {go}"
        );
        assert!(
            runtime.iter().all(|s| s.at.cost() == SiteCost::Emulated),
            "Go {go}"
        );

        // The stripped build: functions from the pclntab, the same plan.
        let stripped = open(&common::fixture(go, "contend", true));
        assert!(stripped.symbols.global_count() == 0);
        let stripped_plan = plan_of(&stripped);
        check_placements(&stripped, &stripped_plan, &format!("{go} stripped"));
        assert_eq!(
            shape(&stripped_plan),
            shape(&plan),
            "Go {go}: stripped and plain differ"
        );
        eprintln!(
            "Go {go}: {} sites, {} map sites, {} CAS sites",
            plan.sites.len(),
            plan.map_sites.len(),
            cas.len()
        );

        // Probing at the entry, as a symbol-based tracer would: the same
        // functions, each at offset 0 (CAS sites right after the CAS).
        let at_entry = plan_with(&plain, SiteMode::Entry);
        assert!(at_entry
            .sites
            .iter()
            .filter(|s| s.probe_kind() == ProbeKind::LockEntry)
            .all(|s| s.at.offset() == 0 && s.at.cost() == SiteCost::Entry));
    }
}

fn plan_of(exe: &Executable) -> ProbePlan {
    plan(exe, &everything()).unwrap()
}

fn plan_with(exe: &Executable, mode: SiteMode) -> ProbePlan {
    plan(
        exe,
        &PlanRequest {
            mode,
            ..everything()
        },
    )
    .unwrap()
}

#[test]
fn cas_patterns_plan_an_emulated_branch_after_each_cas() {
    for go in common::go_versions() {
        let exe = open(&common::fixture(&go, "casloop", false));
        let plan = plan(
            &exe,
            &PlanRequest {
                cas_patterns: vec!["main.casIncrement".into()],
                builtin_cas: false,
                ..PlanRequest::defaults()
            },
        )
        .unwrap();
        check_placements(&exe, &plan, &go);
        let cas: Vec<_> = plan
            .sites
            .iter()
            .filter(|s| s.at.function == "main.casIncrement")
            .collect();
        assert_eq!(cas.len(), 1, "Go {go}: {cas:?}");
        assert_eq!(cas[0].at.cost(), SiteCost::Emulated, "Go {go}");
        assert_eq!(cas[0].cas().map(|(_, builtin)| builtin), Some(None));
    }
    let c = open(&common::fixtures_dir().join("c/casloop"));
    let plan = plan(
        &c,
        &PlanRequest {
            cas_patterns: vec!["cas_*".into()],
            ..PlanRequest::defaults()
        },
    )
    .unwrap();
    check_placements(&c, &plan, "C casloop");
    assert!(plan
        .sites
        .iter()
        .all(|s| s.at.cost() == SiteCost::Emulated && s.cas().is_some()));
    assert!(plan.map_sites.is_empty(), "no Go map functions in C");
}

#[test]
fn native_targets_plan_futex_waits_and_say_what_is_missing() {
    let request = PlanRequest {
        futex: true,
        ..PlanRequest::defaults()
    };
    let c = open(&common::fixtures_dir().join("c/lockloop"));
    let plan_c = plan(&c, &request).unwrap();
    assert!(plan_c.futex && plan_c.sites.is_empty());
    let text = c.elf.text_section().unwrap();
    assert_eq!(
        plan_c.native.text,
        Some((text.address, text.address + text.size))
    );
    assert!(
        plan_c.native.skip.is_empty(),
        "C's lock path is all in libc"
    );

    let rust = open(&common::fixtures_dir().join("rust/lockloop"));
    let plan_rust = plan(&rust, &request).unwrap();
    assert!(
        !plan_rust.native.skip.is_empty(),
        "Rust std's futex lock path is looked past"
    );
    // std's own sys layer first (the kernel side has 8 slots), and the
    // contended path among them.
    let names: Vec<String> = plan_rust
        .native
        .skip
        .iter()
        .map(|(start, end)| {
            assert!(end > start);
            rust.symbols
                .function_at(*start)
                .map(|f| mapwatch::target::demangle(&f.name))
                .unwrap()
        })
        .collect();
    assert!(names[0].contains("std::sys::"), "{names:#?}");
    assert!(
        names
            .iter()
            .take(probe_common::NATIVE_SKIP_RANGES)
            .any(|n| n.contains("lock_contended")),
        "{names:#?}"
    );
    for name in &names {
        // A function whose type arguments mention a mutex is no lock code.
        assert!(!name.contains("OnceLock"), "{names:#?}");
    }

    // Without --futex a native binary has nothing to probe, and says what
    // was looked for.
    let error = plan(&c, &PlanRequest::defaults()).unwrap_err().to_string();
    assert!(error.starts_with("nothing to probe in"), "{error}");
    assert!(
        error.contains("(not a Go binary)") && error.contains("--futex"),
        "{error}"
    );
    // A pattern that matches nothing is an error naming it.
    let error = plan(
        &c,
        &PlanRequest {
            cas_patterns: vec!["no_such_*".into()],
            ..PlanRequest::defaults()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("--cas no_such_*: no function"), "{error}");
}

/// Go's runtime locks (`--probe rtlocks`) on every fixture version: one
/// entry, at an emulated instruction only the slow path passes (inside
/// `lock2`, or the `lockTimer`'s `begin` where the version has one),
/// reading the waiter's call site from `lock2`'s frame; exits all at
/// emulated instructions, none on the fast path.
#[test]
fn runtime_locks_plan_their_slow_path_only_at_emulated_sites() {
    for go in &common::go_versions() {
        let exe = open(&common::fixture(go, "contend", false));
        let request = PlanRequest {
            runtime_locks: true,
            ..everything()
        };
        let plan = plan(&exe, &request).unwrap();
        check_placements(&exe, &plan, go);
        let runtime: Vec<&PlannedSite> = plan
            .sites
            .iter()
            .filter(|s| match &s.probe {
                SiteProbe::LockEntry(p) | SiteProbe::LockExit { probe: p, .. } => {
                    p.role == LockRole::Runtime
                }
                _ => false,
            })
            .collect();
        let entries: Vec<_> = runtime
            .iter()
            .filter(|s| s.probe_kind() == ProbeKind::LockEntry)
            .collect();
        assert_eq!(entries.len(), 1, "Go {go}: {runtime:?}");
        let entry = entries[0];
        assert_eq!(entry.at.cost(), SiteCost::Emulated, "Go {go}: {entry:?}");
        let SiteProbe::LockEntry(probe) = &entry.probe else {
            unreachable!()
        };
        assert_eq!(probe.caller, CallerSource::FramePointer, "Go {go}");
        let timer = goruntime::RUNTIME_LOCK_TIMER;
        let exits: Vec<_> = runtime
            .iter()
            .filter(|s| s.probe_kind() == ProbeKind::LockExit)
            .collect();
        assert!(!exits.is_empty(), "Go {go}");
        assert!(
            exits.iter().all(|s| s.at.cost() == SiteCost::Emulated),
            "Go {go}: {exits:?}"
        );
        if exe.symbols.function(timer.begin).is_some() {
            // The timer's methods, past their stack check.
            assert_eq!(entry.at.function, timer.begin, "Go {go}");
            assert!(probe.deref, "Go {go}");
            assert_eq!(entry.at.skip_when, SkipWhen::BelowOrEqual, "Go {go}");
            assert!(exits.iter().all(|s| s.at.function == timer.end), "Go {go}");
        } else {
            // Inside lock2, after its first exchange: never its entry, and
            // no exit on its fast path's own way out.
            assert_eq!(entry.at.function, goruntime::RUNTIME_LOCK, "Go {go}");
            assert!(!probe.deref, "Go {go}");
            let lock2 = exe.symbols.function(goruntime::RUNTIME_LOCK).unwrap();
            let code = exe
                .elf
                .read_vaddr(lock2.start, (lock2.end - lock2.start) as usize)
                .unwrap();
            let listing = mapwatch::plan::x86::Listing::sweep_all(code, lock2.start).unwrap();
            let exchange = listing
                .instructions
                .iter()
                .find(|i| i.mnemonic() == iced_x86::Mnemonic::Xchg)
                .expect("an exchange")
                .ip();
            assert!(entry.at.address > exchange, "Go {go}: {entry:?}");
            for exit in &exits {
                assert_eq!(exit.at.function, goruntime::RUNTIME_LOCK, "Go {go}");
                assert!(exit.at.address > exchange, "Go {go}: {exit:?}");
            }
        }
        // Not asked for, not planned.
        let plain = plan_of(&exe);
        assert!(!plain.sites.iter().any(|s| matches!(
            &s.probe,
            SiteProbe::LockEntry(p) if p.role == LockRole::Runtime
        )));
    }
}
