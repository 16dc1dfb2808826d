//! [`ShardedTable`]: a concurrent upsert-and-merge hash table built to be drained.
//!
//! Keys are spread over a power-of-two number of cache-padded shards by the
//! top bits of their hash; each shard is a lock around a
//! cache-line bucket index over dense entries (DESIGN.md, "The table"). An upsert takes one shard
//! lock for a few nanoseconds and merges in place. A [`drain`] swaps each
//! shard's storage for a recycled empty one — one pointer-sized swap under the
//! lock, whatever the shard holds — and hands the pairs out after releasing it,
//! so writers keep going into fresh storage while the old one is consumed.
//!
//! ```
//! use sheaf::{ShardedTable, Upsert};
//!
//! let table: ShardedTable<&str, u64> = ShardedTable::new();
//! let sum = |acc: &mut u64, v: u64| *acc += v;
//! assert_eq!(table.upsert("requests", 1, sum), Upsert::Inserted);
//! assert_eq!(table.upsert("requests", 2, sum), Upsert::Merged);
//! assert_eq!(table.get("requests"), Some(3));
//!
//! let drained: Vec<(&str, u64)> = table.drain().collect();
//! assert_eq!(drained, vec![("requests", 3)]);
//! assert!(table.is_empty());
//! ```
//!
//! [`drain`]: ShardedTable::drain

pub(crate) mod raw;

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use crossbeam_utils::CachePadded;

use crate::error::ConfigError;
use crate::hash::FastBuildHasher;
use crate::sync::{Mutex, MutexGuard};
use raw::{Draining, RawTable, MAX_SHARD_ENTRIES};

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upsert {
    /// The key was absent; the value was stored as given.
    Inserted,
    /// The key was present; the value was merged into the stored one.
    Merged,
}

pub(crate) struct Shard<K, V> {
    /// Where upserts go.
    pub(crate) live: RawTable<K, V>,
    /// Emptied storage from the last drain, swapped in by the next one.
    spare: Option<RawTable<K, V>>,
    /// Set once by [`ShardedTable::close_and_drain`]: later upserts are refused.
    pub(crate) closed: bool,
    /// Upserts that inserted / merged (counted under the lock: no atomics).
    inserted: u64,
    merged: u64,
}

/// A shard behind its lock, alone on its cache lines.
type PaddedShard<K, V> = CachePadded<Mutex<Shard<K, V>>>;

/// Whether [`ShardedTable::try_upsert`] counts the upsert in the shard's
/// inserted / merged counters (a value put back by a flush is not a new add).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counting {
    Count,
    Skip,
}

/// Why [`ShardedTable::try_upsert`] handed a pair back.
#[derive(Debug)]
pub(crate) enum Refused<K, V> {
    /// The table was closed.
    Closed(K, V),
    /// `admit` refused a new key.
    Full(K, V),
}

/// A concurrent hash table of `K → V` with in-place merging upserts and an
/// O(shards) drain.
///
/// See the [module documentation](self) for the design. `S` is the hasher;
/// the default, [`FastBuildHasher`], is fast and deterministic — use
/// [`SeededBuildHasher`](crate::hash::SeededBuildHasher) for keys an attacker
/// chooses (see [`crate::hash`]).
///
/// Callbacks (`merge`, the closure of [`with`](Self::with),
/// [`retain`](Self::retain)) run while their shard is locked: they must not
/// call back into the same table.
pub struct ShardedTable<K, V, S = FastBuildHasher> {
    shards: Box<[PaddedShard<K, V>]>,
    shard_bits: u32,
    shard_capacity: usize,
    hasher: S,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ShardedTable<String, Vec<u8>>>();
};

/// The shard count used when none is given: the next power of two ≥ 4 × the
/// CPUs this process may use.
pub fn default_shards() -> usize {
    (crate::sync::available_cpus() * 4).next_power_of_two()
}

const MAX_SHARDS: usize = 1 << 16;

impl<K, V> ShardedTable<K, V, FastBuildHasher> {
    /// An empty table with [`default_shards`] shards and the fast hasher.
    pub fn new() -> Self {
        Self::with_hasher(FastBuildHasher)
    }

    /// A builder to choose shards, capacity and hasher.
    pub fn builder() -> ShardedTableBuilder<K, V, FastBuildHasher> {
        ShardedTableBuilder {
            shards: None,
            capacity: 0,
            hasher: FastBuildHasher,
            _types: std::marker::PhantomData,
        }
    }
}

impl<K, V> Default for ShardedTable<K, V, FastBuildHasher> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> fmt::Debug for ShardedTable<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedTable")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`ShardedTable`]; every setting is checked by [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct ShardedTableBuilder<K, V, S> {
    shards: Option<usize>,
    capacity: usize,
    hasher: S,
    _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K, V, S> ShardedTableBuilder<K, V, S> {
    /// Number of shards: a power of two from 1 to 65,536. Default:
    /// [`default_shards`]. More shards mean less lock contention across
    /// distinct keys and a finer-grained drain.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Entries to make room for up front (spread evenly over the shards),
    /// so filling the table to this size never grows an index. Checked by
    /// [`build`](Self::build): a capacity the shards cannot index, or memory
    /// that cannot be had, is a [`ConfigError`], never a hang or an abort.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The hasher for keys.
    pub fn hasher<S2>(self, hasher: S2) -> ShardedTableBuilder<K, V, S2> {
        ShardedTableBuilder {
            shards: self.shards,
            capacity: self.capacity,
            hasher,
            _types: self._types,
        }
    }

    /// Builds the table.
    ///
    /// # Errors
    /// [`ConfigError`] if `shards` is not a power of two between 1 and
    /// 65,536, or if `capacity` needs more than 2^32 - 2 entries in a shard
    /// or more memory than can be allocated.
    pub fn build(self) -> Result<ShardedTable<K, V, S>, ConfigError> {
        let shards = self.shards.unwrap_or_else(default_shards);
        if shards == 0 || !shards.is_power_of_two() || shards > MAX_SHARDS {
            let hint = shards
                .checked_next_power_of_two()
                .unwrap_or(MAX_SHARDS)
                .clamp(1, MAX_SHARDS);
            return Err(ConfigError::new(
                "shards",
                format!("{shards} is not a power of two between 1 and {MAX_SHARDS}; use {hint}"),
            ));
        }
        let shard_capacity = self.capacity.div_ceil(shards);
        if shard_capacity > MAX_SHARD_ENTRIES {
            return Err(ConfigError::new(
                "capacity",
                format!(
                    "{} is more than {shards} shards can index ({MAX_SHARD_ENTRIES} entries \
                     each); use at most {} or more shards",
                    self.capacity,
                    MAX_SHARD_ENTRIES.saturating_mul(shards)
                ),
            ));
        }
        let mut storage = Vec::with_capacity(shards);
        for _ in 0..shards {
            storage.push(RawTable::try_with_capacity(shard_capacity).ok_or_else(|| {
                ConfigError::new(
                    "capacity",
                    format!(
                        "{} entries do not fit in memory; use a smaller capacity \
                         (the table grows as needed)",
                        self.capacity
                    ),
                )
            })?);
        }
        Ok(ShardedTable::from_storage(
            storage,
            shard_capacity,
            self.hasher,
        ))
    }
}

impl<K, V, S> ShardedTable<K, V, S> {
    fn from_parts(shards: usize, capacity: usize, hasher: S) -> Self {
        let shard_capacity = capacity.div_ceil(shards);
        let storage = (0..shards)
            .map(|_| RawTable::with_capacity(shard_capacity))
            .collect();
        Self::from_storage(storage, shard_capacity, hasher)
    }

    fn from_storage(storage: Vec<RawTable<K, V>>, shard_capacity: usize, hasher: S) -> Self {
        let shards: Box<[_]> = storage
            .into_iter()
            .map(|live| {
                CachePadded::new(Mutex::new(Shard {
                    live,
                    spare: None,
                    closed: false,
                    inserted: 0,
                    merged: 0,
                }))
            })
            .collect();
        Self {
            shard_bits: shards_bits(&shards),
            shards,
            shard_capacity,
            hasher,
        }
    }

    /// An empty table with [`default_shards`] shards and the given hasher.
    pub fn with_hasher(hasher: S) -> Self {
        Self::from_parts(default_shards(), 0, hasher)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The table's hasher.
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// Number of pairs present. Locks each shard in turn, so under concurrent
    /// writes it is a moment-by-moment sum, not a snapshot.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().live.len())
            .sum()
    }

    /// `true` when no shard holds a pair (same caveat as [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.lock().live.len() == 0)
    }

    /// Drops every pair. Each shard's storage is swapped out and cleared
    /// after its lock is released, as in [`drain`](Self::drain).
    pub fn clear(&self) {
        self.drain().for_each(drop);
    }

    /// Keeps only the pairs for which `keep` returns `true`, shard by shard
    /// under each shard's lock.
    ///
    /// # Panics
    /// If `keep` panics, the panic propagates; pairs already visited keep the
    /// decision made for them and the table stays consistent and usable.
    pub fn retain(&self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for shard in self.shards.iter() {
            shard.lock().live.retain(&mut keep);
        }
    }

    /// Takes every pair out, shard by shard.
    ///
    /// When the returned iterator reaches a shard it swaps the shard's storage
    /// for an empty one (the storage emptied by the previous drain, so a
    /// steady add/drain cycle does not allocate) and releases the lock: a
    /// concurrent upsert waits at most for that swap. Pairs upserted into a
    /// shard after the drain passed it stay in the table for the next drain;
    /// every upserted value is thus yielded by exactly one drain or still in
    /// the table. Order is unspecified.
    ///
    /// Dropping the iterator early drops the rest of the shard being read
    /// (like [`Vec::drain`]) and leaves the shards not yet reached untouched.
    pub fn drain(&self) -> Drain<'_, K, V, S> {
        Drain {
            table: self,
            next_shard: 0,
            current: None,
        }
    }

    /// Swaps out shard `index`'s storage; the caller empties it and hands it
    /// back with [`recycle`](Self::recycle).
    pub(crate) fn take_shard(&self, index: usize) -> Draining<K, V> {
        let mut shard = self.shards[index].lock();
        let fresh = match shard.spare.take() {
            Some(spare) => spare,
            None => {
                // First drain of this shard: allocate outside the lock.
                drop(shard);
                let fresh = RawTable::with_capacity(self.shard_capacity);
                shard = self.shards[index].lock();
                fresh
            }
        };
        std::mem::replace(&mut shard.live, fresh).into_draining()
    }

    /// Returns emptied storage to shard `index` for the next drain.
    pub(crate) fn recycle(&self, index: usize, storage: Draining<K, V>) {
        let storage = storage.into_empty();
        let mut shard = self.shards[index].lock();
        if shard.spare.is_none() {
            shard.spare = Some(storage);
        }
    }

    /// Marks every shard closed (later [`try_upsert`](Self::try_upsert)s are
    /// refused) and swaps out its storage, in one critical section per shard.
    pub(crate) fn close_and_drain(&self) -> Vec<Draining<K, V>> {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.lock();
                shard.closed = true;
                std::mem::replace(&mut shard.live, RawTable::with_capacity(0)).into_draining()
            })
            .collect()
    }

    /// Sum of the shards' (inserted, merged) counters.
    pub(crate) fn upsert_counts(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(i, m), shard| {
            let shard = shard.lock();
            (i + shard.inserted, m + shard.merged)
        })
    }

    #[inline]
    pub(crate) fn shard_of(&self, hash: u64) -> usize {
        // `(h >> 1) >> (63 - bits)` is `h >> (64 - bits)` without a shift by 64 when bits == 0.
        ((hash >> 1) >> (63 - self.shard_bits)) as usize
    }

    #[inline]
    pub(crate) fn lock_shard(&self, index: usize) -> MutexGuard<'_, Shard<K, V>> {
        self.shards[index].lock()
    }
}

fn shards_bits<T>(shards: &[T]) -> u32 {
    shards.len().trailing_zeros()
}

impl<K, V, S> ShardedTable<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Inserts `(key, value)`, or, when `key` is present, calls
    /// `merge(&mut present, value)`.
    ///
    /// `merge` runs under the shard's lock: keep it short, and do not touch
    /// this table from inside it.
    ///
    /// # Panics
    /// If `merge` panics, the entry for `key` is **removed** (its value is in
    /// whatever state the panic left it) and the panic propagates. The shard
    /// is released, never poisoned, and the table stays consistent.
    ///
    /// ```
    /// let t = sheaf::ShardedTable::<u64, u64>::new();
    /// t.upsert(1, 10, |a, b| *a += b);
    /// let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     t.upsert(1, 1, |_, _| panic!("bad merge"))
    /// }));
    /// assert!(r.is_err());
    /// assert_eq!(t.get(&1), None); // removed
    /// t.upsert(1, 5, |a, b| *a += b); // and usable
    /// assert_eq!(t.get(&1), Some(5));
    /// ```
    #[inline]
    pub fn upsert(&self, key: K, value: V, merge: impl FnOnce(&mut V, V)) -> Upsert {
        let hash = self.hash(&key);
        self.lock_shard(self.shard_of(hash))
            .live
            .upsert(hash as u32, key, value, merge)
    }

    /// Like [`upsert`](Self::upsert), but hands the pair back once the table
    /// was closed by its owner (the aggregator's shutdown), or when `admit`
    /// refuses a new key. Counts what it did in the shard's counters unless
    /// `counting` says to skip it.
    #[inline]
    pub(crate) fn try_upsert(
        &self,
        key: K,
        value: V,
        merge: impl FnOnce(&mut V, V),
        admit: impl FnOnce() -> bool,
        counting: Counting,
    ) -> Result<Upsert, Refused<K, V>> {
        let count = counting == Counting::Count;
        let hash = self.hash(&key);
        let mut guard = self.lock_shard(self.shard_of(hash));
        let shard = &mut *guard;
        if shard.closed {
            return Err(Refused::Closed(key, value));
        }
        match shard
            .live
            .upsert_with(hash as u32, key, value, merge, admit)
        {
            Ok(Upsert::Inserted) => {
                shard.inserted += u64::from(count);
                Ok(Upsert::Inserted)
            }
            Ok(Upsert::Merged) => {
                shard.merged += u64::from(count);
                Ok(Upsert::Merged)
            }
            Err((key, value)) => Err(Refused::Full(key, value)),
        }
    }

    /// A clone of the value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.with(key, V::clone)
    }

    /// Calls `f` with the value for `key`, under the shard's lock.
    ///
    /// # Panics
    /// A panic in `f` propagates; the shard is released and nothing changes.
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.lock_shard(self.shard_of(hash));
        shard.live.get(hash as u32, key).map(f)
    }

    /// Calls `f` with a mutable reference to the value for `key`, under the shard's lock.
    ///
    /// # Panics
    /// A panic in `f` propagates; the shard is released, the value keeps
    /// whatever `f` did to it.
    pub fn with_mut<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut shard = self.lock_shard(self.shard_of(hash));
        shard.live.get_mut(hash as u32, key).map(f)
    }

    /// `true` if `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with(key, |_| ()).is_some()
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`, returning the stored key and its value.
    pub fn remove_entry<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.lock_shard(self.shard_of(hash))
            .live
            .remove(hash as u32, key)
    }

    /// A copy of every pair, taken shard by shard (each shard consistent in
    /// itself; shards are copied at successive moments).
    pub fn snapshot(&self) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend_from_slice(shard.lock().live.entries());
        }
        out
    }

    /// Checks every shard's internal invariants; for tests and fuzzing.
    #[cfg(any(test, fuzzing))]
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        for (index, shard) in self.shards.iter().enumerate() {
            let shard = shard.lock();
            shard.live.check_invariants();
            for (key, _) in shard.live.entries() {
                assert_eq!(
                    self.shard_of(self.hash(key)),
                    index,
                    "key in the wrong shard"
                );
            }
        }
    }
}

/// The iterator returned by [`ShardedTable::drain`]: owned pairs, shard by shard.
pub struct Drain<'a, K, V, S> {
    table: &'a ShardedTable<K, V, S>,
    next_shard: usize,
    current: Option<(usize, Draining<K, V>)>,
}

impl<K, V, S> Iterator for Drain<'_, K, V, S> {
    type Item = (K, V);

    #[inline]
    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some((_, storage)) = &mut self.current {
                if let Some(pair) = storage.pop() {
                    return Some(pair);
                }
                let (index, storage) = self.current.take().expect("checked above");
                self.table.recycle(index, storage);
            }
            if self.next_shard == self.table.shards.len() {
                return None;
            }
            let index = self.next_shard;
            self.next_shard += 1;
            self.current = Some((index, self.table.take_shard(index)));
        }
    }
}

impl<K, V, S> Drop for Drain<'_, K, V, S> {
    fn drop(&mut self) {
        if let Some((index, storage)) = self.current.take() {
            self.table.recycle(index, storage);
        }
    }
}

impl<K, V, S> fmt::Debug for Drain<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("next_shard", &self.next_shard)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
