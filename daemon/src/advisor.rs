//! The map advisor: from one map's measured mix of operations, keys and
//! CPUs, says whether the structure fits the workload, citing the figures.
//!
//! The rules follow how the structures work:
//! - `sync.Map` is built for keys written once and read many times, or for
//!   goroutines working on disjoint keys. Up to Go 1.23 every store of a new
//!   key takes its mutex and, after each promotion of the dirty map, first
//!   copies the whole read-only map (`dirty_copy`); loads that miss the
//!   read-only map take the mutex too (`miss`). From Go 1.24 a store of a
//!   new key allocates trie nodes (`expand`). Under write-mostly traffic
//!   with mostly new keys, a plain map behind a mutex, or a sharded map,
//!   does less work.
//! - One key taking a large share of all operations, from many CPUs, keeps
//!   that key's cache line (and for a plain map, its lock) bouncing between
//!   cores: per-key striping, per-CPU counters or a local cache spread it.

use crate::model::{Advice, Finding, Key, MapHealth, MapKind, MapOp, MapReport};

/// The figures the advisor reads, for one map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapMix {
    /// `sync.Map` or runtime map.
    pub kind: Option<MapKind>,
    /// User-level operations.
    pub total: u64,
    /// Loads (`load`, and the load half of `load_or_store` is not counted).
    pub loads: u64,
    /// Writes: `store`, `swap`, `load_or_store`, `compare_and_swap`.
    pub writes: u64,
    /// Deletes: `delete`, `load_and_delete`, `compare_and_delete`.
    pub deletes: u64,
    /// Estimated distinct keys among the writes.
    pub distinct_written: u64,
    /// Writes that carried a key.
    pub keyed_writes: u64,
    /// `sync.Map` (≤ 1.23) read-map misses.
    pub misses: u64,
    /// `sync.Map` (≤ 1.23) dirty-map rebuilds.
    pub dirty_copies: u64,
    /// `sync.Map` (≥ 1.24) trie node splits.
    pub expansions: u64,
    /// The hottest key, its operations, and on how many CPUs it was seen.
    pub hottest: Option<(Key, u64, usize)>,
    /// CPUs that ran any operation on the map.
    pub cpus: usize,
}

/// Fewer operations than this say nothing about a workload.
pub const MIN_OPERATIONS: u64 = 1000;
/// Share of writes above which a `sync.Map` is called write-heavy.
pub const WRITE_HEAVY_SHARE: f64 = 0.5;
/// Share of writes going to keys not written before above which the writes
/// are called mostly new keys.
pub const NEW_KEY_SHARE: f64 = 0.5;
/// Share of operations on one key above which the key is called hot.
pub const HOT_KEY_SHARE: f64 = 0.2;

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The advisor's findings for one map, most important first; `fits` when
/// nothing stands out.
pub fn advise(mix: &MapMix) -> Vec<Advice> {
    if mix.total < MIN_OPERATIONS {
        return vec![Advice {
            finding: Finding::TooFewOperations,
            text: format!(
                "{} operations: too few to judge (at least {MIN_OPERATIONS} needed)",
                mix.total
            ),
        }];
    }
    let mut advice = Vec::new();
    let write_share = mix.writes as f64 / mix.total as f64;
    let new_key_share = if mix.keyed_writes == 0 {
        0.0
    } else {
        (mix.distinct_written as f64 / mix.keyed_writes as f64).min(1.0)
    };
    if mix.kind == Some(MapKind::SyncMap)
        && write_share >= WRITE_HEAVY_SHARE
        && new_key_share >= NEW_KEY_SHARE
    {
        let mut cost = String::new();
        if mix.dirty_copies > 0 || mix.misses > 0 {
            cost = format!(
                "; it rebuilt its dirty map {} times and missed its read-only map {} times",
                mix.dirty_copies, mix.misses
            );
        } else if mix.expansions > 0 {
            cost = format!("; its trie split {} nodes", mix.expansions);
        }
        advice.push(Advice {
            finding: Finding::WriteHeavySyncMap,
            text: format!(
                "sync.Map under write-heavy traffic to new keys: {:.0}% of {} operations are writes and about {:.0}% of writes add a key ({} distinct of {} writes){cost}. sync.Map is built for keys written once and read often, or disjoint keys per goroutine; here a map guarded by a sync.RWMutex (or a map sharded by key hash, one lock per shard) does less work per write.",
                100.0 * write_share,
                mix.total,
                100.0 * new_key_share,
                mix.distinct_written,
                mix.keyed_writes,
            ),
        });
    }
    if mix.kind == Some(MapKind::SyncMap) && mix.loads > 0 && mix.misses * 10 >= mix.loads {
        advice.push(Advice {
            finding: Finding::ReadMisses,
            text: format!(
                "{:.0}% of loads ({} of {}) missed sync.Map's read-only map and took its mutex: keys keep being added, so the read-only map is often stale. Add keys up front, or use a map with an RWMutex.",
                percent(mix.misses, mix.loads),
                mix.misses,
                mix.loads
            ),
        });
    }
    if let Some((key, ops, cpus)) = &mix.hottest {
        let key = key.to_string();
        let share = *ops as f64 / mix.total as f64;
        if share >= HOT_KEY_SHARE && *cpus >= 2 {
            advice.push(Advice {
                finding: Finding::HotKey,
                text: format!(
                    "one hot key: {key:?} takes {:.0}% of operations ({ops} of {}) from {cpus} CPUs{}. Every access to it contends for the same memory{}; stripe that key (per-CPU or per-goroutine counters merged on read), cache it locally, or split it into several keys.",
                    100.0 * share,
                    mix.total,
                    if mix.cpus > 0 { format!(" (of {} CPUs the map ran on)", mix.cpus) } else { String::new() },
                    if mix.kind == Some(MapKind::Runtime) { " and the lock guarding the map" } else { "" },
                ),
            });
        }
    }
    if advice.is_empty() {
        advice.push(Advice {
            finding: Finding::Fits,
            text: format!(
                "fits its workload: {:.0}% loads, {:.0}% writes ({:.0}% of them to new keys), {:.0}% deletes over {} operations{}",
                percent(mix.loads, mix.total),
                100.0 * write_share,
                100.0 * new_key_share,
                percent(mix.deletes, mix.total),
                mix.total,
                match &mix.hottest {
                    Some((key, ops, _)) => format!("; hottest key {:?} has {:.0}%", key.to_string(), percent(*ops, mix.total)),
                    None => String::new(),
                }
            ),
        });
    }
    advice
}

/// Share of a map's slots deleted at or above which it is called
/// churning (`tombstones`).
pub const TOMBSTONE_SHARE: f64 = 0.1;
/// Fewest tombstones for the `tombstones` finding.
pub const MIN_TOMBSTONES: u64 = 16;
/// Load at or below which a map is called oversized: a map that just grew
/// is at least 40% full (bucket maps grow at 6.5 of 8 cells a bucket, swiss
/// tables at 7 of 8 slots a group, to twice the capacity).
pub const OVERSIZED_LOAD: f64 = 0.125;
/// Least capacity for the `oversized` finding (smaller maps cost little).
pub const OVERSIZED_MIN_CAPACITY: u64 = 1024;
/// Overflow buckets per bucket at or above which a bucket map's chains
/// are called long, or a longest chain of at least [`LONG_CHAIN`].
pub const OVERFLOW_SHARE: f64 = 0.5;
/// See [`OVERFLOW_SHARE`]: three overflow buckets after one bucket hold
/// more than 24 entries, which a uniform hash all but never gives.
pub const LONG_CHAIN: u64 = 3;
/// Skew at or above which a map is called skewed.
pub const SKEWED: f64 = 0.3;
/// Growths while attached from which a map is called growing.
pub const GROWING: u64 = 4;
/// Promotions a second from which a `sync.Map` is in a promotion storm,
/// when it also copies [`PROMOTION_STORM_COPIES`] entries a second: each
/// promotion is followed, at the next store of a new key, by a copy of the
/// whole read-only map, under the mutex.
pub const PROMOTION_STORM_RATE: f64 = 1.0;
/// See [`PROMOTION_STORM_RATE`]: entries copied a second (below, the
/// copies cost little whatever their number).
pub const PROMOTION_STORM_COPIES: f64 = 10_000.0;

/// Findings [`advise_health`] makes.
fn structural(finding: Finding) -> bool {
    matches!(
        finding,
        Finding::Tombstones
            | Finding::Growing
            | Finding::Oversized
            | Finding::OverflowChains
            | Finding::Skewed
            | Finding::PromotionStorm
    )
}

/// Brings a map report's structural findings up to date with its health
/// (as read, or scaled to the whole time under sampling): the old ones
/// go, the health's own come in, and `fits` goes when there are any.
pub fn refresh_health_advice(map: &mut MapReport) {
    map.advice.retain(|a| !structural(a.finding));
    let Some(health) = &map.health else {
        return;
    };
    let found = advise_health(health);
    if !found.is_empty() {
        map.advice.retain(|a| a.finding != Finding::Fits);
        map.advice.extend(found);
    }
}

/// The advisor's findings on a map's structure, none when it looks
/// healthy (or could not be read).
pub fn advise_health(health: &MapHealth) -> Vec<Advice> {
    let mut advice = Vec::new();
    if health.error.is_some() || health.replaced || health.readings == health.failed_readings {
        return advice;
    }
    if health.tombstones >= MIN_TOMBSTONES && health.tombstone_ratio >= TOMBSTONE_SHARE {
        advice.push(Advice {
            finding: Finding::Tombstones,
            text: format!(
                "a churning map: {} of its {} slots ({:.0}%) are deleted ones (tombstones) next to {} entries; they lengthen lookups until the table grows or is rehashed. If entries come and go, clear() and refill it now and then, or rebuild it.",
                health.tombstones,
                health.capacity,
                100.0 * health.tombstone_ratio,
                health.entries,
            ),
        });
    }
    if health.grows >= GROWING {
        advice.push(Advice {
            finding: Finding::Growing,
            text: format!(
                "growing: it grew {} times while watched, to {} slots for {} entries; each growth allocates a bigger table and moves every entry. If its size is known up front, make(map[K]V, n) allocates it once.",
                health.grows, health.capacity, health.entries,
            ),
        });
    }
    if health.capacity >= OVERSIZED_MIN_CAPACITY && health.load_factor <= OVERSIZED_LOAD {
        advice.push(Advice {
            finding: Finding::Oversized,
            text: format!(
                "oversized: capacity for {} entries holds {} ({:.1}% full; it once held {}); Go maps never shrink, so every walk and clear touches the empty capacity. Copy the entries into a fresh map once a burst is over.",
                health.capacity,
                health.entries,
                100.0 * health.load_factor,
                health.peak_entries,
            ),
        });
    }
    if let (Some(buckets), Some(overflow), Some(longest)) = (
        health.buckets,
        health.overflow_buckets,
        health.longest_chain,
    ) {
        if buckets > 0
            && (overflow as f64 >= OVERFLOW_SHARE * buckets as f64 || longest >= LONG_CHAIN)
        {
            advice.push(Advice {
                finding: Finding::OverflowChains,
                text: format!(
                    "long overflow chains: {overflow} overflow buckets for {buckets} buckets, the longest chain {longest} deep; lookups walk them. Many deletes leave them behind (a same-size grow cleans up), and so do keys whose hashes collide."
                ),
            });
        }
    }
    if let (Some(rate), Some(copied)) = (
        health.promotions_per_second,
        health.entries_copied_per_second,
    ) {
        if rate >= PROMOTION_STORM_RATE && copied >= PROMOTION_STORM_COPIES {
            advice.push(Advice {
                finding: Finding::PromotionStorm,
                text: format!(
                    "promotion storm: {} promotions while watched ({rate:.1} a second): loads of keys stored since the last promotion miss the read-only map until it is replaced by the dirty one, and the next store of a new key copies all {} of its entries into a new dirty map, about {copied:.0} entries a second, holding the mutex. sync.Map suits keys written once and read many times; for keys that keep coming, a map with a sync.RWMutex (sharded if contended) does not copy.",
                    health.promotions.unwrap_or(0),
                    health.read_entries.unwrap_or(0),
                ),
            });
        }
    }
    if let Some(skew) = health.skew.filter(|&s| s >= SKEWED) {
        advice.push(Advice {
            finding: Finding::Skewed,
            text: format!(
                "skewed: entries spread over buckets far from what a uniform hash gives at this load (distance {skew:.2}, 0 = as expected); keys whose hashes collide pile into a few buckets. Check custom key types (a constant or weak hash in a struct key) or keys built to collide."
            ),
        });
    }
    advice
}

/// What an operation does to a map, as the advisor counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// Reads.
    Load,
    /// May add or replace a key.
    Write,
    /// Removes keys.
    Delete,
}

/// Sorts an operation into the advisor's classes (`None` for internal
/// events).
pub fn op_class(op: MapOp) -> Option<OpClass> {
    match op {
        MapOp::Load | MapOp::Range => Some(OpClass::Load),
        MapOp::Store | MapOp::Swap | MapOp::LoadOrStore | MapOp::CompareAndSwap => {
            Some(OpClass::Write)
        }
        MapOp::Delete | MapOp::LoadAndDelete | MapOp::CompareAndDelete | MapOp::Clear => {
            Some(OpClass::Delete)
        }
        MapOp::Miss | MapOp::DirtyCopy | MapOp::Expand | MapOp::Grow => None,
    }
}

impl MapMix {
    /// Adds `count` operations `op` to the loads, writes or deletes.
    pub fn add_ops(&mut self, op: MapOp, count: u64) {
        match op_class(op) {
            Some(OpClass::Load) => self.loads += count,
            Some(OpClass::Write) => self.writes += count,
            Some(OpClass::Delete) => self.deletes += count,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(entries: u64, capacity: u64, tombstones: u64) -> MapHealth {
        MapHealth {
            implementation: crate::model::MapImplementation::Buckets,
            entries,
            peak_entries: entries,
            grows: 0,
            capacity,
            load_factor: entries as f64 / capacity as f64,
            tombstones,
            tombstone_ratio: tombstones as f64 / capacity as f64,
            buckets: Some(capacity / 8),
            overflow_buckets: Some(0),
            longest_chain: Some(0),
            growing: Some(false),
            tables: None,
            directory: None,
            growth_left: None,
            read_entries: None,
            dirty_entries: None,
            amended: None,
            misses: None,
            promotions: None,
            promotions_per_second: None,
            entries_copied_per_second: None,
            occupancy: Vec::new(),
            skew: Some(0.01),
            complete: true,
            consistent: true,
            readings: 3,
            failed_readings: 0,
            error: None,
            replaced: false,
            sampled_at: 2.0,
            bytes_read: 0,
            read_microseconds: 0.0,
        }
    }

    fn named(advice: &[Advice]) -> Vec<Finding> {
        advice.iter().map(|a| a.finding).collect()
    }

    #[test]
    fn a_healthy_map_gets_no_structural_finding() {
        assert!(advise_health(&health(1000, 2048, 0)).is_empty());
    }

    #[test]
    fn structural_findings_cite_their_figures() {
        let churning = advise_health(&health(1000, 2048, 400));
        assert_eq!(named(&churning), [Finding::Tombstones]);
        assert!(
            churning[0].text.contains("400 of its 2048 slots"),
            "{}",
            churning[0].text
        );
        let oversized = advise_health(&health(1000, 32768, 0));
        assert_eq!(named(&oversized), [Finding::Oversized]);
        assert!(
            oversized[0].text.contains("3.1% full"),
            "{}",
            oversized[0].text
        );
        let chained = MapHealth {
            longest_chain: Some(4),
            ..health(1000, 2048, 0)
        };
        assert_eq!(named(&advise_health(&chained)), [Finding::OverflowChains]);
        let skewed = MapHealth {
            skew: Some(0.6),
            ..health(1000, 2048, 0)
        };
        assert_eq!(named(&advise_health(&skewed)), [Finding::Skewed]);
        let storm = MapHealth {
            implementation: crate::model::MapImplementation::SyncMap,
            read_entries: Some(1000),
            promotions: Some(900),
            promotions_per_second: Some(150.0),
            entries_copied_per_second: Some(150_000.0),
            ..health(0, 0, 0)
        };
        let advice = advise_health(&storm);
        assert_eq!(named(&advice), [Finding::PromotionStorm]);
        assert!(
            advice[0].text.contains("900 promotions"),
            "{}",
            advice[0].text
        );
        let calm = MapHealth {
            promotions_per_second: Some(150.0),
            entries_copied_per_second: Some(1500.0),
            ..storm
        };
        assert!(advise_health(&calm).is_empty());
        let growing = MapHealth {
            grows: 14,
            ..health(100_000, 131_072, 0)
        };
        let advice = advise_health(&growing);
        assert_eq!(named(&advice), [Finding::Growing]);
        assert!(
            advice[0].text.contains("grew 14 times"),
            "{}",
            advice[0].text
        );
        // A map no longer there says nothing.
        let gone = MapHealth {
            error: Some("cannot read".into()),
            ..health(1000, 32768, 0)
        };
        assert!(advise_health(&gone).is_empty());
    }

    fn sync_map(total: u64, writes: u64, distinct_written: u64) -> MapMix {
        MapMix {
            kind: Some(MapKind::SyncMap),
            total,
            loads: total - writes,
            writes,
            keyed_writes: writes,
            distinct_written,
            ..MapMix::default()
        }
    }

    #[test]
    fn flags_a_write_heavy_unique_key_sync_map() {
        let advice = advise(&MapMix {
            dirty_copies: 12,
            misses: 40,
            ..sync_map(100_000, 95_000, 94_000)
        });
        assert_eq!(advice[0].finding, Finding::WriteHeavySyncMap);
        assert!(advice[0].text.contains("95%"), "{}", advice[0].text);
        assert!(advice[0].text.contains("rebuilt its dirty map 12 times"));
    }

    #[test]
    fn a_read_mostly_sync_map_fits() {
        let advice = advise(&sync_map(100_000, 5_000, 300));
        assert_eq!(advice.len(), 1);
        assert_eq!(advice[0].finding, Finding::Fits);
    }

    #[test]
    fn rewriting_the_same_keys_is_not_flagged() {
        let advice = advise(&sync_map(100_000, 80_000, 100));
        assert_eq!(advice[0].finding, Finding::Fits);
    }

    fn key0() -> Key {
        Key::Str {
            text: "key-0".into(),
            truncated: false,
        }
    }

    #[test]
    fn flags_one_hot_key_on_several_cpus_only() {
        let mut mix = sync_map(10_000, 100, 50);
        mix.hottest = Some((key0(), 4_000, 4));
        assert_eq!(advise(&mix)[0].finding, Finding::HotKey);
        mix.hottest = Some((key0(), 4_000, 1));
        assert_eq!(advise(&mix)[0].finding, Finding::Fits);
    }

    #[test]
    fn too_few_operations_say_nothing() {
        assert_eq!(
            advise(&sync_map(10, 10, 10))[0].finding,
            Finding::TooFewOperations
        );
    }
}
