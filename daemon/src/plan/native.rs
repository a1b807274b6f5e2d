//! The probes that tell a native thread's futex waits apart: glibc's
//! condition-variable waits and thread joins (waits for another thread,
//! not for a lock) and its rwlocks' reader and writer locks. Each function's entry — or the first
//! instruction the kernel emulates before anything changes RDI, the object
//! — gets a uprobe that notes the object for the thread; the futex
//! tracepoints then charge a wait inside that object to it, with its role.
//! C++'s `std::condition_variable` and `std::shared_mutex` call these.

use probe_common::{GeneralRegister, LockRole};

use super::{
    site::{choose_entry_site, EntrySite, SiteChoice},
    x86, Placement, SiteMode,
};
use crate::target::elf::ElfImage;

/// The pthread functions probed, with the role of the futex waits they make
/// inside their object (their first argument). A signaller can wait too:
/// `pthread_cond_broadcast` and `_signal` wait for the waiters of the
/// group they close to leave it (`__g_refs`), inside the condition
/// variable and no more a lock's contention than the waiters' own waits.
pub const NATIVE_LOCK_CALLS: [(&str, LockRole); 14] = [
    ("pthread_cond_wait", LockRole::CondWait),
    ("pthread_cond_signal", LockRole::CondWait),
    ("pthread_cond_broadcast", LockRole::CondWait),
    ("pthread_cond_timedwait", LockRole::CondWait),
    ("pthread_cond_clockwait", LockRole::CondWait),
    ("pthread_rwlock_rdlock", LockRole::RwlockReader),
    ("pthread_rwlock_timedrdlock", LockRole::RwlockReader),
    ("pthread_rwlock_clockrdlock", LockRole::RwlockReader),
    ("pthread_rwlock_wrlock", LockRole::RwlockWriter),
    ("pthread_rwlock_timedwrlock", LockRole::RwlockWriter),
    ("pthread_rwlock_clockwrlock", LockRole::RwlockWriter),
    ("pthread_join", LockRole::ThreadJoin),
    ("pthread_timedjoin_np", LockRole::ThreadJoin),
    ("pthread_clockjoin_np", LockRole::ThreadJoin),
];

/// One probe of [`NATIVE_LOCK_CALLS`] in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeLockCall {
    /// Where in the module.
    pub at: Placement,
    /// The role of the waits it marks.
    pub role: LockRole,
}

/// The probes of [`NATIVE_LOCK_CALLS`] in `module` (libc, or an executable
/// linked statically), found in its dynamic symbols and symbol table; each
/// address once (a function has one symbol per version, often at one
/// address). Empty when the module has none of them.
pub fn native_lock_calls(module: &ElfImage, mode: SiteMode) -> Vec<NativeLockCall> {
    let mut out: Vec<NativeLockCall> = Vec::new();
    let symbols = module
        .dynamic_functions()
        .iter()
        .chain(module.symtab_functions());
    for symbol in symbols {
        let Some(&(name, role)) = NATIVE_LOCK_CALLS
            .iter()
            .find(|(name, _)| *name == symbol.name)
        else {
            continue;
        };
        if out.iter().any(|c| c.at.function_address == symbol.address) {
            continue;
        }
        let end = symbol.address.saturating_add(symbol.size);
        let site = match (
            mode,
            module.read_vaddr(symbol.address, symbol.size as usize),
        ) {
            (SiteMode::Auto, Some(code)) => {
                let rdi = [x86::register(GeneralRegister::Rdi)];
                choose_entry_site(code, symbol.address, end, &rdi).ok()
            }
            _ => None,
        }
        .unwrap_or(EntrySite {
            address: symbol.address,
            skip_when: probe_common::SkipWhen::Never,
            choice: SiteChoice::Entry,
        });
        // A site that would be hit more than once per call (a re-entry
        // branch: Go's, never glibc's) is not one this probe can use.
        let site = if site.skip_when == probe_common::SkipWhen::Never {
            site
        } else {
            EntrySite {
                address: symbol.address,
                skip_when: probe_common::SkipWhen::Never,
                choice: SiteChoice::Entry,
            }
        };
        let Some(file_offset) = module.vaddr_to_file_offset(site.address) else {
            continue;
        };
        out.push(NativeLockCall {
            at: Placement {
                function: name.to_string(),
                function_address: symbol.address,
                address: site.address,
                file_offset,
                choice: site.choice,
                skip_when: site.skip_when,
            },
            role,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_libc_has_every_call_at_a_cheap_site() {
        let Ok(libc) = ElfImage::open(std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
        else {
            return; // not a Debian-like glibc host
        };
        let calls = native_lock_calls(&libc, SiteMode::Auto);
        for (name, role) in [
            ("pthread_cond_wait", LockRole::CondWait),
            ("pthread_rwlock_rdlock", LockRole::RwlockReader),
            ("pthread_rwlock_wrlock", LockRole::RwlockWriter),
        ] {
            let call = calls
                .iter()
                .find(|c| c.at.function == name)
                .unwrap_or_else(|| panic!("{name} in libc: {calls:#?}"));
            assert_eq!(call.role, role);
            assert!(call.at.address >= call.at.function_address);
        }
        // Each address once, though each name has several versions.
        let mut addresses: Vec<u64> = calls.iter().map(|c| c.at.function_address).collect();
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), calls.len());
        let entry = native_lock_calls(&libc, SiteMode::Entry);
        assert!(entry.iter().all(|c| c.at.address == c.at.function_address));
    }
}
