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
pub(crate) use raw::{Borrowed, KeyArg, Owned};
use raw::{Draining, Position, RawTable, Vacancy, MAX_SHARD_ENTRIES};

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

/// Prints the pairs as a map, shard by shard under each shard's lock (as
/// [`for_each`](ShardedTable::for_each): not a snapshot under concurrent
/// writes).
impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for ShardedTable<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for shard in self.iter() {
            map.entries(shard.iter());
        }
        map.finish()
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

    /// The shards one at a time, each locked while its [`ShardRef`] lives:
    /// iterate a `ShardRef` for its pairs, by reference. Not a snapshot:
    /// under concurrent writes, a shard visited early may change before a
    /// later one is locked. Clones nothing. Hold one `ShardRef` at a time
    /// and do not touch the table while holding it.
    ///
    /// ```
    /// let t: sheaf::ShardedTable<u64, u64> = (0..100).map(|k| (k, 1)).collect();
    /// let mut seen = 0;
    /// for shard in t.iter() {
    ///     for (k, v) in &shard {
    ///         assert!(*k < 100 && *v == 1);
    ///         seen += 1;
    ///     }
    /// }
    /// assert_eq!(seen, 100);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, S> {
        Iter {
            table: self,
            next_shard: 0,
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
    #[inline(always)]
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

    /// [`upsert`](Self::upsert) with a borrowed key: the key is cloned
    /// (`to_owned`) only when it is new, so merging into a present `String`
    /// key allocates nothing.
    ///
    /// # Panics
    /// As [`upsert`](Self::upsert); a panic in `to_owned` changes nothing.
    ///
    /// ```
    /// let t = sheaf::ShardedTable::<String, u64>::new();
    /// t.upsert_ref("hits", 1, |a, b| *a += b); // clones "hits" once
    /// t.upsert_ref("hits", 2, |a, b| *a += b); // no allocation
    /// assert_eq!(t.get("hits"), Some(3));
    /// ```
    #[inline]
    pub fn upsert_ref<Q>(&self, key: &Q, value: V, merge: impl FnOnce(&mut V, V)) -> Upsert
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hash(key);
        match self.lock_shard(self.shard_of(hash)).live.upsert_with(
            hash as u32,
            Borrowed(key),
            value,
            merge,
            || true,
        ) {
            Ok(upsert) => upsert,
            Err(_) => unreachable!("admit always admits"),
        }
    }

    /// Inserts `key → value`, returning the value it replaced (the stored
    /// key is kept, as in [`HashMap::insert`](std::collections::HashMap::insert)).
    ///
    /// ```
    /// let t = sheaf::ShardedTable::<&str, u64>::new();
    /// assert_eq!(t.insert("a", 1), None);
    /// assert_eq!(t.insert("a", 2), Some(1));
    /// ```
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let hash = self.hash(&key);
        self.lock_shard(self.shard_of(hash))
            .live
            .insert(hash as u32, key, value)
    }

    /// The entry for `key`, for in-place insert-or-modify. The entry holds
    /// its shard's lock until it (or the [`RefMut`] it turns into) is
    /// dropped: keep it short, and do not touch this table while holding it.
    ///
    /// ```
    /// use sheaf::table::Entry;
    ///
    /// let t = sheaf::ShardedTable::<&str, Vec<u32>>::new();
    /// t.entry("a").or_default().push(1);
    /// t.entry("a").and_modify(|v| v.push(2)).or_insert_with(Vec::new);
    /// match t.entry("b") {
    ///     Entry::Occupied(_) => unreachable!(),
    ///     Entry::Vacant(e) => {
    ///         e.insert(vec![9]);
    ///     }
    /// }
    /// assert_eq!(t.get("a"), Some(vec![1, 2]));
    /// assert_eq!(t.entry("b").or_default().len(), 1);
    /// ```
    pub fn entry(&self, key: K) -> Entry<'_, K, V> {
        let hash = self.hash(&key);
        let guard = self.lock_shard(self.shard_of(hash));
        match guard.live.locate(hash as u32, &key) {
            Ok(at) => Entry::Occupied(OccupiedEntry { guard, at }),
            Err(vacancy) => Entry::Vacant(VacantEntry {
                guard,
                key,
                vacancy,
            }),
        }
    }

    /// Like [`upsert`](Self::upsert), but hands the pair back once the table
    /// was closed by its owner (the aggregator's shutdown), or when `admit`
    /// refuses a new key. Counts what it did in the shard's counters unless
    /// `counting` says to skip it. The key may be owned or borrowed
    /// ([`KeyArg`]); a borrowed one is cloned only when new or handed back.
    #[inline(always)]
    pub(crate) fn try_upsert<A>(
        &self,
        key: A,
        value: V,
        merge: impl FnOnce(&mut V, V),
        admit: impl FnOnce() -> bool,
        counting: Counting,
    ) -> Result<Upsert, Refused<K, V>>
    where
        A: KeyArg<K>,
        A::Q: Hash,
        K: Borrow<A::Q>,
    {
        let count = counting == Counting::Count;
        let hash = self.hash(key.get());
        let mut guard = self.lock_shard(self.shard_of(hash));
        let shard = &mut *guard;
        if shard.closed {
            drop(guard);
            return Err(Refused::Closed(key.into_owned(), value));
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

    /// Calls `f` on every pair, shard by shard, each shard under its lock
    /// for the duration of its visit. Not a snapshot: under concurrent
    /// writes, a shard visited early may change before a later one is
    /// visited. Clones nothing.
    ///
    /// # Panics
    /// A panic in `f` propagates; the shard is released and nothing changes.
    ///
    /// ```
    /// let t: sheaf::ShardedTable<u64, u64> = (0..10).map(|k| (k, k * 2)).collect();
    /// let mut sum = 0;
    /// t.for_each(|_, v| sum += v);
    /// assert_eq!(sum, 90);
    /// ```
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in self.iter() {
            for (k, v) in shard.iter() {
                f(k, v);
            }
        }
    }

    /// Calls `f` on every pair with its value mutable, shard by shard under
    /// each shard's lock (not a snapshot, as [`for_each`](Self::for_each)).
    ///
    /// # Panics
    /// A panic in `f` propagates; the shard is released, values keep what
    /// `f` did to them.
    pub fn for_each_mut(&self, mut f: impl FnMut(&K, &mut V)) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.live.retain(|k, v| {
                f(k, v);
                true
            });
        }
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

/// The iterator returned by [`ShardedTable::iter`]: one locked shard at a time.
pub struct Iter<'a, K, V, S> {
    table: &'a ShardedTable<K, V, S>,
    next_shard: usize,
}

impl<'a, K, V, S> Iterator for Iter<'a, K, V, S> {
    type Item = ShardRef<'a, K, V>;

    fn next(&mut self) -> Option<ShardRef<'a, K, V>> {
        let shard = self.table.shards.get(self.next_shard)?;
        self.next_shard += 1;
        Some(ShardRef {
            guard: shard.lock(),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.table.shards.len() - self.next_shard;
        (left, Some(left))
    }
}

impl<K, V, S> fmt::Debug for Iter<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("next_shard", &self.next_shard)
            .finish_non_exhaustive()
    }
}

/// The pairs of one [`ShardRef`], by reference.
pub type ShardIter<'a, K, V> =
    std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&(K, V)) -> (&K, &V)>;

/// One shard of a [`ShardedTable`], locked until dropped; iterate it for
/// its pairs.
pub struct ShardRef<'a, K, V> {
    guard: MutexGuard<'a, Shard<K, V>>,
}

impl<K, V> ShardRef<'_, K, V> {
    /// The shard's pairs, by reference.
    pub fn iter(&self) -> ShardIter<'_, K, V> {
        self.guard.live.entries().iter().map(|(k, v)| (k, v))
    }

    /// Pairs in this shard.
    pub fn len(&self) -> usize {
        self.guard.live.len()
    }

    /// `true` when this shard holds no pair.
    pub fn is_empty(&self) -> bool {
        self.guard.live.len() == 0
    }
}

impl<'s, K, V> IntoIterator for &'s ShardRef<'_, K, V> {
    type Item = (&'s K, &'s V);
    type IntoIter = ShardIter<'s, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for ShardRef<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// An entry of a [`ShardedTable`], from [`ShardedTable::entry`]; holds its
/// shard's lock.
pub enum Entry<'a, K, V> {
    /// The key is present.
    Occupied(OccupiedEntry<'a, K, V>),
    /// The key is absent.
    Vacant(VacantEntry<'a, K, V>),
}

/// A present key's entry; holds its shard's lock.
pub struct OccupiedEntry<'a, K, V> {
    guard: MutexGuard<'a, Shard<K, V>>,
    at: Position,
}

/// An absent key's entry; holds its shard's lock.
pub struct VacantEntry<'a, K, V> {
    guard: MutexGuard<'a, Shard<K, V>>,
    key: K,
    vacancy: Vacancy,
}

/// A value in a [`ShardedTable`], mutable, with its shard locked until dropped.
pub struct RefMut<'a, K, V> {
    guard: MutexGuard<'a, Shard<K, V>>,
    at: Position,
}

impl<'a, K, V> Entry<'a, K, V> {
    /// The entry's key.
    pub fn key(&self) -> &K {
        match self {
            Self::Occupied(e) => e.key(),
            Self::Vacant(e) => e.key(),
        }
    }

    /// The value, inserting `default` if the key is absent.
    pub fn or_insert(self, default: V) -> RefMut<'a, K, V> {
        self.or_insert_with(|| default)
    }

    /// The value, inserting `make()` if the key is absent.
    ///
    /// # Panics
    /// A panic in `make` propagates; nothing is inserted.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> RefMut<'a, K, V> {
        match self {
            Self::Occupied(e) => e.into_ref(),
            Self::Vacant(e) => e.insert(make()),
        }
    }

    /// The value, inserting `V::default()` if the key is absent.
    pub fn or_default(self) -> RefMut<'a, K, V>
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// Calls `f` on the value if the key is present.
    ///
    /// # Panics
    /// A panic in `f` propagates; the value keeps what `f` did to it.
    pub fn and_modify(mut self, f: impl FnOnce(&mut V)) -> Self {
        if let Self::Occupied(e) = &mut self {
            f(e.get_mut());
        }
        self
    }
}

impl<'a, K, V> OccupiedEntry<'a, K, V> {
    /// The stored key.
    pub fn key(&self) -> &K {
        &self.guard.live.pair_at(&self.at).0
    }

    /// The value.
    pub fn get(&self) -> &V {
        &self.guard.live.pair_at(&self.at).1
    }

    /// The value, mutably.
    pub fn get_mut(&mut self) -> &mut V {
        self.guard.live.value_at_mut(&self.at)
    }

    /// Replaces the value, returning the old one.
    pub fn insert(&mut self, value: V) -> V {
        std::mem::replace(self.get_mut(), value)
    }

    /// Removes the pair, returning the value.
    pub fn remove(self) -> V {
        self.remove_entry().1
    }

    /// Removes the pair, returning the stored key and the value.
    pub fn remove_entry(mut self) -> (K, V) {
        self.guard.live.remove_position(self.at)
    }

    /// The value, keeping the shard locked.
    pub fn into_ref(self) -> RefMut<'a, K, V> {
        RefMut {
            guard: self.guard,
            at: self.at,
        }
    }
}

impl<'a, K, V> VacantEntry<'a, K, V> {
    /// The key that would be inserted.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Gives the key back without inserting.
    pub fn into_key(self) -> K {
        self.key
    }

    /// Inserts `value` under the key.
    pub fn insert(mut self, value: V) -> RefMut<'a, K, V> {
        let at = self.guard.live.insert_vacant(self.vacancy, self.key, value);
        RefMut {
            guard: self.guard,
            at,
        }
    }
}

impl<K, V> RefMut<'_, K, V> {
    /// The stored key.
    pub fn key(&self) -> &K {
        &self.guard.live.pair_at(&self.at).0
    }
}

impl<K, V> std::ops::Deref for RefMut<'_, K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.guard.live.pair_at(&self.at).1
    }
}

impl<K, V> std::ops::DerefMut for RefMut<'_, K, V> {
    fn deref_mut(&mut self) -> &mut V {
        self.guard.live.value_at_mut(&self.at)
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Entry<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Occupied(e) => f.debug_tuple("Occupied").field(e).finish(),
            Self::Vacant(e) => f.debug_tuple("Vacant").field(e).finish(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for OccupiedEntry<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OccupiedEntry")
            .field("key", self.key())
            .field("value", self.get())
            .finish()
    }
}

impl<K: fmt::Debug, V> fmt::Debug for VacantEntry<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VacantEntry").field(self.key()).finish()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for RefMut<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefMut")
            .field("key", self.key())
            .field("value", &**self)
            .finish()
    }
}

/// Inserts every pair (a later pair replaces an earlier one with an equal key).
impl<K, V, S> Extend<(K, V)> for ShardedTable<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }
}

/// A table of [`default_shards`] shards and `S::default()` hashing, holding
/// every pair (a later pair replaces an earlier one with an equal key).
impl<K, V, S> FromIterator<(K, V)> for ShardedTable<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let pairs = pairs.into_iter();
        let table = Self::from_parts(default_shards(), pairs.size_hint().0, S::default());
        for (k, v) in pairs {
            table.insert(k, v);
        }
        table
    }
}

#[cfg(test)]
mod tests;
