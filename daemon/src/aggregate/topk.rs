//! Bounded-memory heavy hitters: the Space-Saving algorithm (Metwally,
//! Agrawal, El Abbadi, 2005) with per-entry payloads, and a HyperLogLog
//! distinct-count estimate.
//!
//! [`SpaceSaving`] keeps at most `capacity` keys. A key already kept is
//! counted exactly from the moment it entered. A new key, when the table is
//! full, takes the place of the key with the smallest count `m` and starts at
//! `m + 1`, with error `m`: its true count lies in `[count - error, count]`.
//! Every count overestimates by at most `N / capacity` for `N` updates, any
//! key with a true count above `N / capacity` is kept, and while no more
//! than `capacity` distinct keys were seen, every count is exact (error 0).

use std::{collections::HashMap, hash::Hash};

use crate::model::hash::stable_hash as hash64;

/// One kept key.
#[derive(Debug, Clone)]
pub struct Entry<K, P> {
    /// The key.
    pub key: K,
    /// Its count (an upper bound of the true count).
    pub count: u64,
    /// How much of `count` may belong to keys it replaced: the true count
    /// is at least `count - error`. Zero means exact.
    pub error: u64,
    /// Caller data, reset when the entry changes keys.
    pub payload: P,
}

/// Space-Saving top-K counter with a per-key payload `P` that is reset
/// (to `P::default()`) when a key replaces another.
#[derive(Debug, Clone)]
pub struct SpaceSaving<K, P> {
    capacity: usize,
    entries: Vec<Entry<K, P>>,
    index: HashMap<K, usize>,
    /// A min-heap of entry indexes by count.
    heap: Vec<usize>,
    /// Position of each entry in `heap`.
    position: Vec<usize>,
    total: u64,
}

impl<K: Hash + Eq + Clone, P: Default> SpaceSaving<K, P> {
    /// An empty counter keeping at most `capacity` (≥ 1) keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Vec::new(),
            index: HashMap::new(),
            heap: Vec::new(),
            position: Vec::new(),
            total: 0,
        }
    }

    /// How many keys it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Updates seen.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Keys kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The largest possible overestimate of any count: the smallest count
    /// kept once the table is full, else 0.
    pub fn error_bound(&self) -> u64 {
        if self.entries.len() < self.capacity {
            0
        } else {
            self.heap.first().map_or(0, |&i| self.entries[i].count)
        }
    }

    /// Counts one occurrence of `key` and returns its entry's payload, for
    /// the caller to update. `key` is only cloned when it enters the table.
    pub fn add(&mut self, key: &K) -> &mut P {
        self.add_n(key, 1)
    }

    /// Counts `n` (≥ 1) occurrences of `key` at once, as `n` calls of
    /// [`add`](Self::add) would (a key entering the table inherits the
    /// minimum as its error once).
    pub fn add_n(&mut self, key: &K, n: u64) -> &mut P {
        let n = n.max(1);
        self.total += n;
        if let Some(&i) = self.index.get(key) {
            self.entries[i].count += n;
            self.sift_down(self.position[i]);
            return &mut self.entries[i].payload;
        }
        if self.entries.len() < self.capacity {
            let i = self.entries.len();
            self.entries.push(Entry {
                key: key.clone(),
                count: n,
                error: 0,
                payload: P::default(),
            });
            self.index.insert(key.clone(), i);
            self.heap.push(i);
            self.position.push(self.heap.len() - 1);
            self.sift_up(self.heap.len() - 1);
            return &mut self.entries[i].payload;
        }
        // Replace the key with the smallest count.
        let i = self.heap[0];
        let entry = &mut self.entries[i];
        self.index.remove(&entry.key);
        entry.key = key.clone();
        entry.error = entry.count;
        entry.count += n;
        entry.payload = P::default();
        self.index.insert(key.clone(), i);
        self.sift_down(0);
        &mut self.entries[i].payload
    }

    /// The kept entries, largest count first (ties by insertion order).
    pub fn top(&self, n: usize) -> Vec<&Entry<K, P>> {
        let mut all: Vec<&Entry<K, P>> = self.entries.iter().collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.count));
        all.truncate(n);
        all
    }

    /// Every kept entry, in no particular order.
    pub fn entries(&self) -> &[Entry<K, P>] {
        &self.entries
    }

    /// Every kept entry's payload, mutably (e.g. to fold time columns).
    pub fn payloads_mut(&mut self) -> impl Iterator<Item = &mut P> {
        self.entries.iter_mut().map(|e| &mut e.payload)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        self.entries[self.heap[a]].count < self.entries[self.heap[b]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a]] = a;
        self.position[self.heap[b]] = b;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !self.less(at, parent) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let left = 2 * at + 1;
            let right = left + 1;
            let mut smallest = at;
            if left < self.heap.len() && self.less(left, smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.less(right, smallest) {
                smallest = right;
            }
            if smallest == at {
                return;
            }
            self.swap(at, smallest);
            at = smallest;
        }
    }
}

/// Registers of a [`HyperLogLog`]: 2^12, a standard error of about 1.6%.
const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// A HyperLogLog distinct-count estimate in 4 KiB.
#[derive(Clone)]
pub struct HyperLogLog {
    registers: Box<[u8; HLL_REGISTERS]>,
}

impl std::fmt::Debug for HyperLogLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HyperLogLog(≈{})", self.estimate())
    }
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self {
            registers: Box::new([0; HLL_REGISTERS]),
        }
    }
}

impl HyperLogLog {
    /// Adds a value.
    pub fn add<T: Hash + ?Sized>(&mut self, value: &T) {
        self.add_hash(hash64(value));
    }

    /// Adds a value by its 64-bit hash.
    pub fn add_hash(&mut self, hash: u64) {
        let register = (hash >> (64 - HLL_BITS)) as usize;
        let rest = hash << HLL_BITS;
        let rank = (rest.leading_zeros() + 1).min(64 - HLL_BITS + 1) as u8;
        if self.registers[register] < rank {
            self.registers[register] = rank;
        }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut sum = 0.0;
        let mut zeros = 0;
        for &r in self.registers.iter() {
            sum += 2f64.powi(-(r as i32));
            if r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            // Small range: linear counting.
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_while_distinct_keys_fit() {
        let mut ss: SpaceSaving<u32, u64> = SpaceSaving::new(8);
        for (key, n) in [(1, 50), (2, 30), (3, 20), (4, 1)] {
            for _ in 0..n {
                *ss.add(&key) += 2;
            }
        }
        let top = ss.top(3);
        assert_eq!(
            top.iter()
                .map(|e| (e.key, e.count, e.error, e.payload))
                .collect::<Vec<_>>(),
            vec![(1, 50, 0, 100), (2, 30, 0, 60), (3, 20, 0, 40)]
        );
        assert_eq!(ss.error_bound(), 0);
        assert_eq!(ss.total(), 101);
    }

    #[test]
    fn keeps_heavy_hitters_under_a_flood_of_distinct_keys() {
        let mut ss: SpaceSaving<u64, ()> = SpaceSaving::new(64);
        let mut truth = HashMap::new();
        // 10 heavy keys interleaved with 100k one-off keys.
        for i in 0..100_000u64 {
            let heavy = i % 10;
            if i % 3 == 0 {
                ss.add(&heavy);
                *truth.entry(heavy).or_insert(0u64) += 1;
            }
            ss.add(&(1_000_000 + i));
        }
        assert_eq!(ss.len(), 64);
        let bound = ss.error_bound();
        assert!(bound <= ss.total() / 64);
        let top: Vec<u64> = ss.top(10).iter().map(|e| e.key).collect();
        let mut sorted = top.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        for entry in ss.top(10) {
            let true_count = truth[&entry.key];
            assert!(entry.count >= true_count);
            assert!(entry.count - entry.error <= true_count);
            assert!(entry.count - true_count <= bound);
        }
    }

    #[test]
    fn a_replacing_key_inherits_the_minimum_as_error() {
        let mut ss: SpaceSaving<&str, u32> = SpaceSaving::new(2);
        ss.add(&"a");
        ss.add(&"a");
        *ss.add(&"b") = 7;
        *ss.add(&"c") = 1; // replaces b (count 1)
        let c = ss.entries().iter().find(|e| e.key == "c").unwrap();
        assert_eq!((c.count, c.error, c.payload), (2, 1, 1));
        assert!(ss.entries().iter().all(|e| e.key != "b"));
    }

    #[test]
    fn hyperloglog_estimates_within_a_few_percent() {
        for n in [0u64, 10, 1_000, 100_000] {
            let mut hll = HyperLogLog::default();
            for i in 0..n {
                hll.add(&i);
                hll.add(&i); // duplicates do not count
            }
            let estimate = hll.estimate() as f64;
            let error = (estimate - n as f64).abs() / (n.max(1) as f64);
            assert!(error < 0.05, "n={n} estimate={estimate}");
        }
    }
}
