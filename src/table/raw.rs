//! One shard's storage: a cache-line bucket index over dense entries.
//!
//! Layout (see DESIGN.md, "The table"):
//! - `entries: Vec<(K, V)>` holds every pair contiguously, so a drain or a
//!   snapshot is a sequential sweep and an insert appends at a hot tail;
//! - `hashes: Vec<u32>` holds each entry's 32 hash bits, so growing rebuilds
//!   the index from a 4-byte-per-entry array without touching keys or
//!   re-hashing them;
//! - `buckets` is the index: 64-byte, 64-byte-aligned buckets of 12 slots,
//!   each slot a 1-byte tag (in a 16-byte header) and a `u32` entry index. A
//!   probe reads one cache line per bucket and compares 12 tags at once with
//!   SWAR arithmetic on a `u128`.
//!
//! Invariants:
//! 1. `entries.len() == hashes.len()`, and every entry `i` is referenced by
//!    exactly one full slot whose tag is `tag(hashes[i])` and whose index is `i`.
//! 2. A slot's tag is `EMPTY`, `DELETED`, or full (`0x80 | 7 hash bits`).
//! 3. Probing is linear over buckets from `home(h)` and stops at the first
//!    bucket holding an `EMPTY` slot; a bucket that was ever full never gets an
//!    `EMPTY` slot back until the index is rebuilt, so a probe never stops
//!    short of a key.
//! 4. `full + deleted == capacity(buckets) - growth_left` and
//!    `capacity(buckets) < slots`, so some slot is always `EMPTY` and every
//!    probe terminates.
//!
//! This module is single-threaded; the sharded table puts each `RawTable`
//! behind its shard's lock. Its `unsafe` is unchecked indexing that the
//! invariants above prove in bounds, and the SSE2 intrinsics of `group`.
//! Storage being emptied by a drain is a [`Draining`], whose stale index
//! the type makes unreachable.

use std::borrow::Borrow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::Upsert;

const SLOTS: usize = 12;
const EMPTY: u8 = 0x00;
const DELETED: u8 = 0x01;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u8; 16],
    index: [u32; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

impl Bucket {
    const EMPTY: Bucket = Bucket {
        tags: [EMPTY; 16],
        index: [0; SLOTS],
    };

    #[inline(always)]
    fn word(&self) -> group::Word {
        group::load(&self.tags)
    }
}

/// Matching 12 tags at once: SSE2 on x86-64 (one compare, one movemask),
/// SWAR on a `u128` elsewhere. Masks have one bit (SSE2) or one byte (SWAR)
/// per slot; `lowest` turns the lowest into a slot number.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod group {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        _mm_setzero_si128,
    };

    use super::SLOTS;

    pub(super) type Word = __m128i;
    pub(super) type Mask = u32;

    const VALID: Mask = (1 << SLOTS) - 1;

    #[inline(always)]
    pub(super) fn load(tags: &[u8; 16]) -> Word {
        // SAFETY: `tags` is 16 readable bytes and the load is unaligned.
        unsafe { _mm_loadu_si128(tags.as_ptr().cast()) }
    }

    /// Slots whose tag equals `tag` (exact).
    #[inline(always)]
    pub(super) fn match_tag(word: Word, tag: u8) -> Mask {
        // SAFETY: this module is compiled only with SSE2 enabled (cfg above);
        // the intrinsics touch registers only.
        let bits = unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(word, _mm_set1_epi8(tag as i8))) };
        (bits as Mask) & VALID
    }

    /// Slots that are exactly `EMPTY`.
    #[inline(always)]
    pub(super) fn match_empty(word: Word) -> Mask {
        // SAFETY: SSE2 is enabled (cfg above); registers only.
        let bits = unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(word, _mm_setzero_si128())) };
        (bits as Mask) & VALID
    }

    /// Slots that are `EMPTY` or `DELETED` (high bit clear).
    #[inline(always)]
    pub(super) fn match_free(word: Word) -> Mask {
        // SAFETY: SSE2 is enabled (cfg above); registers only.
        let bits = unsafe { _mm_movemask_epi8(word) };
        !(bits as Mask) & VALID
    }

    #[inline(always)]
    pub(super) fn lowest(mask: Mask) -> usize {
        mask.trailing_zeros() as usize
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
mod group {
    use super::SLOTS;

    pub(super) type Word = u128;
    pub(super) type Mask = u128;

    /// `0x01` in each of the 16 header bytes.
    const LO: u128 = u128::MAX / 0xff;
    /// `0x80` in each of the 16 header bytes.
    const HI: u128 = LO << 7;
    /// The 12 tag bytes of the header; bytes 12..16 are padding.
    const VALID: u128 = (1u128 << (8 * SLOTS)) - 1;

    #[inline(always)]
    pub(super) fn load(tags: &[u8; 16]) -> Word {
        u128::from_le_bytes(*tags)
    }

    /// Bytes equal to `tag` (may include a full slot with a near-equal tag
    /// after a true match: callers compare keys, so that costs one compare).
    #[inline(always)]
    pub(super) fn match_tag(word: Word, tag: u8) -> Mask {
        let x = word ^ (LO * u128::from(tag));
        x.wrapping_sub(LO) & !x & HI & VALID
    }

    /// Bytes that are exactly `EMPTY`.
    #[inline(always)]
    pub(super) fn match_empty(word: Word) -> Mask {
        !word & !(word << 7) & HI & VALID
    }

    /// Bytes that are `EMPTY` or `DELETED` (high bit clear).
    #[inline(always)]
    pub(super) fn match_free(word: Word) -> Mask {
        !word & HI & VALID
    }

    #[inline(always)]
    pub(super) fn lowest(mask: Mask) -> usize {
        (mask.trailing_zeros() / 8) as usize
    }
}

use group::{lowest, match_empty, match_free, match_tag};

#[inline(always)]
fn tag_of(hash: u32) -> u8 {
    0x80 | (hash >> 25) as u8
}

/// Entries a table of `buckets` buckets holds before it grows (80% load).
#[inline]
fn capacity_of(buckets: usize) -> usize {
    let slots = buckets * SLOTS;
    slots - slots / 5
}

fn buckets_for(entries: usize) -> usize {
    // Smallest power of two whose capacity holds `entries`; at least one
    // bucket, so a probe never has to check for an unallocated index.
    let mut buckets = entries.div_ceil(capacity_of(1)).next_power_of_two();
    while capacity_of(buckets) < entries {
        buckets *= 2;
    }
    buckets
}

pub(crate) struct RawTable<K, V> {
    buckets: Box<[Bucket]>,
    growth_left: usize,
    entries: Vec<(K, V)>,
    hashes: Vec<u32>,
}

/// A shard's storage taken out to be emptied by a drain.
///
/// Popping pairs off the end of `entries` leaves the index pointing at
/// entries that are gone (invariant 1 broken), which a lookup would read
/// through unchecked indexing. This type is the proof that no lookup
/// happens: it offers only [`pop`](Self::pop), and the storage becomes a
/// table again only through [`into_empty`](Self::into_empty), which
/// resets the index.
pub(crate) struct Draining<K, V> {
    table: RawTable<K, V>,
}

impl<K, V> Draining<K, V> {
    /// Removes and returns the last pair in storage order.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<(K, V)> {
        self.table.entries.pop()
    }

    /// Pairs left.
    pub(crate) fn len(&self) -> usize {
        self.table.entries.len()
    }

    /// The storage, emptied (pairs left are dropped) and with a clean index,
    /// keeping its allocations for reuse.
    pub(crate) fn into_empty(mut self) -> RawTable<K, V> {
        self.table.reset_index();
        self.table
    }
}

/// Where a present key is: its bucket, slot and entry.
#[derive(Debug)]
pub(crate) struct Position {
    bucket: usize,
    slot: usize,
    entry: usize,
}

/// Where an absent key would go: its hash and the first free slot on its
/// probe path (`None`: the index must grow first).
#[derive(Debug)]
pub(crate) struct Vacancy {
    hash: u32,
    free: Option<(usize, usize)>,
}

/// A key as an upsert receives it: owned, or borrowed and cloned only if
/// it turns out to be new.
pub(crate) trait KeyArg<K> {
    /// What lookups compare against.
    type Q: ?Sized + Eq;
    /// The key to compare.
    fn get(&self) -> &Self::Q;
    /// The key to store, for a new entry.
    fn into_owned(self) -> K;
}

/// An owned key.
pub(crate) struct Owned<K>(pub(crate) K);

impl<K: Eq> KeyArg<K> for Owned<K> {
    type Q = K;
    #[inline(always)]
    fn get(&self) -> &K {
        &self.0
    }
    #[inline(always)]
    fn into_owned(self) -> K {
        self.0
    }
}

/// A borrowed key, cloned (`to_owned`) only when inserted.
pub(crate) struct Borrowed<'a, Q: ?Sized>(pub(crate) &'a Q);

impl<K, Q> KeyArg<K> for Borrowed<'_, Q>
where
    Q: ?Sized + Eq + ToOwned<Owned = K>,
{
    type Q = Q;
    #[inline(always)]
    fn get(&self) -> &Q {
        self.0
    }
    #[inline(always)]
    fn into_owned(self) -> K {
        self.0.to_owned()
    }
}

/// Most entries one shard holds: entry indices are `u32`, and `u32::MAX`
/// is never an index.
pub(crate) const MAX_SHARD_ENTRIES: usize = u32::MAX as usize - 1;

impl<K, V> RawTable<K, V> {
    /// An empty table with room for `capacity` entries.
    ///
    /// # Panics
    /// If `capacity > MAX_SHARD_ENTRIES` or the allocation fails; use
    /// [`try_with_capacity`](Self::try_with_capacity) to get an error.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        match Self::try_with_capacity(capacity) {
            Some(table) => table,
            None => panic!("a shard of {capacity} entries cannot be allocated"),
        }
    }

    /// An empty table with room for `capacity` entries, or `None` when
    /// `capacity > MAX_SHARD_ENTRIES` or the memory cannot be had.
    pub(crate) fn try_with_capacity(capacity: usize) -> Option<Self> {
        if capacity > MAX_SHARD_ENTRIES {
            return None;
        }
        let buckets = buckets_for(capacity);
        let mut index = Vec::new();
        index.try_reserve_exact(buckets).ok()?;
        index.resize(buckets, Bucket::EMPTY);
        let mut entries = Vec::new();
        entries.try_reserve_exact(capacity).ok()?;
        let mut hashes = Vec::new();
        hashes.try_reserve_exact(capacity).ok()?;
        Some(Self {
            buckets: index.into_boxed_slice(),
            growth_left: capacity_of(buckets),
            entries,
            hashes,
        })
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries it can hold before its index must grow.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        capacity_of(self.buckets.len())
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    /// The bucket at `b`, which callers derive as `x & self.mask()` on a
    /// non-empty index.
    #[inline(always)]
    fn bucket(&self, b: usize) -> &Bucket {
        debug_assert!(b < self.buckets.len());
        // SAFETY: `buckets.len()` is a power of two and callers pass
        // `x & (len - 1)` with `len > 0`, so `b < len`.
        unsafe { self.buckets.get_unchecked(b) }
    }

    /// The entry a full slot points at.
    #[inline(always)]
    fn entry(&self, entry: usize) -> &(K, V) {
        debug_assert!(entry < self.entries.len());
        // SAFETY: `entry` was read from a full slot, and invariant 1 says a
        // full slot indexes an existing entry (a SWAR false positive can only
        // hit a full slot: its tag has the high bit set, like the tag sought).
        unsafe { self.entries.get_unchecked(entry) }
    }

    /// Every pair, in storage order.
    pub(crate) fn entries(&self) -> &[(K, V)] {
        &self.entries
    }

    /// Turns this storage into one that can only be emptied (see [`Draining`]).
    pub(crate) fn into_draining(self) -> Draining<K, V> {
        Draining { table: self }
    }

    /// Forgets every slot of the index; entries must already be empty or are dropped.
    fn reset_index(&mut self) {
        self.entries.clear();
        self.hashes.clear();
        for bucket in self.buckets.iter_mut() {
            bucket.tags = [EMPTY; 16];
        }
        self.growth_left = capacity_of(self.buckets.len());
    }

    /// Finds the full slot holding a key equal to `key`: `(bucket, slot, entry)`.
    #[inline]
    fn find<Q>(&self, hash: u32, key: &Q) -> Option<(usize, usize, usize)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mask = self.mask();
        let tag = tag_of(hash);
        let mut b = hash as usize & mask;
        loop {
            let bucket = self.bucket(b);
            let word = bucket.word();
            let mut candidates = match_tag(word, tag);
            while candidates != 0 {
                let slot = lowest(candidates);
                let entry = bucket.index[slot] as usize;
                if self.entry(entry).0.borrow() == key {
                    return Some((b, slot, entry));
                }
                candidates &= candidates - 1;
            }
            if match_empty(word) != 0 {
                return None;
            }
            b = (b + 1) & mask;
        }
    }

    #[inline]
    pub(crate) fn get<Q>(&self, hash: u32, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key)
            .map(|(_, _, entry)| &self.entries[entry].1)
    }

    #[inline]
    pub(crate) fn get_mut<Q>(&mut self, hash: u32, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.find(hash, key)
            .map(|(_, _, entry)| &mut self.entries[entry].1)
    }

    /// Inserts `(key, value)`, or merges `value` into the present value.
    ///
    /// If `merge` panics, the entry is removed (its value is in an unknown
    /// state) and the panic resumes; the table stays consistent.
    #[inline]
    pub(crate) fn upsert(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        merge: impl FnOnce(&mut V, V),
    ) -> Upsert
    where
        K: Eq,
    {
        match self.upsert_with(hash, Owned(key), value, merge, || true) {
            Ok(upsert) => upsert,
            Err(_) => unreachable!("admit always admits"),
        }
    }

    /// [`upsert`](Self::upsert) that asks `admit` before inserting a new key
    /// and hands the pair back when it says no. The key is made owned
    /// (`key.into_owned()`, a clone for a borrowed key) only when it is new,
    /// and before `admit` is asked, so a panicking clone changes nothing.
    #[inline]
    pub(crate) fn upsert_with<A: KeyArg<K>>(
        &mut self,
        hash: u32,
        key: A,
        value: V,
        merge: impl FnOnce(&mut V, V),
        admit: impl FnOnce() -> bool,
    ) -> Result<Upsert, (K, V)>
    where
        K: Borrow<A::Q>,
    {
        match self.find_or_free(hash, key.get()) {
            Ok((b, slot, entry)) => {
                debug_assert!(entry < self.entries.len());
                // SAFETY: `find_or_free` returned the index of a present entry.
                let value_ref = unsafe { &mut self.entries.get_unchecked_mut(entry).1 };
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| merge(value_ref, value))) {
                    drop(self.remove_at(b, slot, entry));
                    resume_unwind(panic);
                }
                Ok(Upsert::Merged)
            }
            Err(free) => {
                let key = key.into_owned();
                if !admit() {
                    return Err((key, value));
                }
                self.insert_new(hash, key, value, free);
                Ok(Upsert::Inserted)
            }
        }
    }

    /// Inserts `(key, value)`, returning the value it replaced.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u32, key: K, value: V) -> Option<V>
    where
        K: Eq,
    {
        match self.find_or_free(hash, &key) {
            Ok((_, _, entry)) => Some(std::mem::replace(&mut self.entries[entry].1, value)),
            Err(free) => {
                self.insert_new(hash, key, value, free);
                None
            }
        }
    }

    /// Where `key` is (`Ok(position)`) or would go (`Err(free slot)`), for
    /// the entry API; valid until the table is next changed.
    #[inline]
    pub(crate) fn locate<Q>(&self, hash: u32, key: &Q) -> Result<Position, Vacancy>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match self.find_or_free(hash, key) {
            Ok((bucket, slot, entry)) => Ok(Position {
                bucket,
                slot,
                entry,
            }),
            Err(free) => Err(Vacancy { hash, free }),
        }
    }

    /// The pair at a position from [`locate`](Self::locate).
    #[inline]
    pub(crate) fn pair_at(&self, at: &Position) -> &(K, V) {
        &self.entries[at.entry]
    }

    /// The pair at a position from [`locate`](Self::locate), mutably (the
    /// key only through the shared reference: changing it would break the
    /// index).
    #[inline]
    pub(crate) fn value_at_mut(&mut self, at: &Position) -> &mut V {
        &mut self.entries[at.entry].1
    }

    /// Removes the pair at a position from [`locate`](Self::locate).
    pub(crate) fn remove_position(&mut self, at: Position) -> (K, V) {
        self.remove_at(at.bucket, at.slot, at.entry)
    }

    /// Inserts a new key at a vacancy from [`locate`](Self::locate); returns
    /// its position.
    pub(crate) fn insert_vacant(&mut self, vacancy: Vacancy, key: K, value: V) -> Position {
        let (bucket, slot) = self.insert_new(vacancy.hash, key, value, vacancy.free);
        let entry = self.entries.len() - 1;
        Position {
            bucket,
            slot,
            entry,
        }
    }

    /// Probes once for `key`: `Ok` with its position, or `Err` with the first
    /// free slot on its probe path (`None` when the index is unallocated).
    #[inline]
    fn find_or_free<Q>(
        &self,
        hash: u32,
        key: &Q,
    ) -> Result<(usize, usize, usize), Option<(usize, usize)>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mask = self.mask();
        let tag = tag_of(hash);
        let mut b = hash as usize & mask;
        let mut free = None;
        loop {
            let bucket = self.bucket(b);
            let word = bucket.word();
            let mut candidates = match_tag(word, tag);
            while candidates != 0 {
                let slot = lowest(candidates);
                let entry = bucket.index[slot] as usize;
                if self.entry(entry).0.borrow() == key {
                    return Ok((b, slot, entry));
                }
                candidates &= candidates - 1;
            }
            if free.is_none() {
                let open = match_free(word);
                if open != 0 {
                    free = Some((b, lowest(open)));
                }
            }
            if match_empty(word) != 0 {
                return Err(free);
            }
            b = (b + 1) & mask;
        }
    }

    /// First `EMPTY` or `DELETED` slot on `hash`'s probe path.
    fn first_free(&self, hash: u32) -> Option<(usize, usize)> {
        let mask = self.mask();
        let mut b = hash as usize & mask;
        loop {
            let open = match_free(self.buckets[b].word());
            if open != 0 {
                return Some((b, lowest(open)));
            }
            b = (b + 1) & mask;
        }
    }

    #[inline]
    fn insert_new(
        &mut self,
        hash: u32,
        key: K,
        value: V,
        free: Option<(usize, usize)>,
    ) -> (usize, usize) {
        let (b, slot) = match free {
            Some((b, slot)) if self.growth_left > 0 || self.buckets[b].tags[slot] == DELETED => {
                (b, slot)
            }
            _ => {
                self.grow();
                self.first_free(hash).expect("a grown index has free slots")
            }
        };
        let entry = self.entries.len();
        assert!(
            entry < u32::MAX as usize,
            "a shard holds at most 2^32 - 1 entries"
        );
        let bucket = &mut self.buckets[b];
        if bucket.tags[slot] == EMPTY {
            self.growth_left -= 1;
        }
        bucket.tags[slot] = tag_of(hash);
        bucket.index[slot] = entry as u32;
        self.entries.push((key, value));
        self.hashes.push(hash);
        (b, slot)
    }

    /// Rebuilds the index: same size when tombstones are most of the load,
    /// otherwise twice as large.
    #[cold]
    fn grow(&mut self) {
        let len = self.entries.len();
        let current = self.buckets.len();
        let buckets = if current > 0 && len < capacity_of(current) / 2 {
            current
        } else {
            buckets_for(len + 1).max(current * 2).max(1)
        };
        self.rebuild(buckets);
    }

    fn rebuild(&mut self, buckets: usize) {
        if self.buckets.len() == buckets {
            for bucket in self.buckets.iter_mut() {
                bucket.tags = [EMPTY; 16];
            }
        } else {
            self.buckets = vec![Bucket::EMPTY; buckets].into_boxed_slice();
        }
        self.growth_left = capacity_of(buckets) - self.entries.len();
        let mask = buckets - 1;
        for (entry, &hash) in self.hashes.iter().enumerate() {
            let mut b = hash as usize & mask;
            loop {
                let open = match_empty(self.buckets[b].word());
                if open != 0 {
                    let slot = lowest(open);
                    self.buckets[b].tags[slot] = tag_of(hash);
                    self.buckets[b].index[slot] = entry as u32;
                    break;
                }
                b = (b + 1) & mask;
            }
        }
    }

    pub(crate) fn remove<Q>(&mut self, hash: u32, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (b, slot, entry) = self.find(hash, key)?;
        Some(self.remove_at(b, slot, entry))
    }

    fn remove_at(&mut self, b: usize, slot: usize, entry: usize) -> (K, V) {
        let bucket = &mut self.buckets[b];
        // Invariant 3: only a bucket that was never full may get EMPTY back.
        if match_empty(bucket.word()) != 0 {
            bucket.tags[slot] = EMPTY;
            self.growth_left += 1;
        } else {
            bucket.tags[slot] = DELETED;
        }
        let last = self.entries.len() - 1;
        let removed = self.entries.swap_remove(entry);
        self.hashes.swap_remove(entry);
        if entry != last {
            self.repoint(self.hashes[entry], last, entry);
        }
        removed
    }

    /// The slot that indexes entry `from` now indexes entry `to`.
    fn repoint(&mut self, hash: u32, from: usize, to: usize) {
        let mask = self.mask();
        let tag = tag_of(hash);
        let mut b = hash as usize & mask;
        loop {
            let bucket = &mut self.buckets[b];
            let mut candidates = match_tag(bucket.word(), tag);
            while candidates != 0 {
                let slot = lowest(candidates);
                if bucket.index[slot] as usize == from {
                    bucket.index[slot] = to as u32;
                    return;
                }
                candidates &= candidates - 1;
            }
            b = (b + 1) & mask;
        }
    }

    /// Keeps the pairs for which `keep` returns `true`. A panic in `keep`
    /// leaves the table consistent with the pairs visited so far decided.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut entry = 0;
        while entry < self.entries.len() {
            let (key, value) = &mut self.entries[entry];
            if keep(key, value) {
                entry += 1;
            } else {
                let hash = self.hashes[entry];
                let (b, slot) = self.slot_of(hash, entry);
                drop(self.remove_at(b, slot, entry));
            }
        }
    }

    fn slot_of(&self, hash: u32, entry: usize) -> (usize, usize) {
        let mask = self.mask();
        let tag = tag_of(hash);
        let mut b = hash as usize & mask;
        loop {
            let bucket = &self.buckets[b];
            let mut candidates = match_tag(bucket.word(), tag);
            while candidates != 0 {
                let slot = lowest(candidates);
                if bucket.index[slot] as usize == entry {
                    return (b, slot);
                }
                candidates &= candidates - 1;
            }
            b = (b + 1) & mask;
        }
    }

    /// Longest probe (in buckets) any present key needs; for flooding tests.
    #[cfg(test)]
    pub(crate) fn longest_probe(&self) -> usize {
        let mask = self.mask();
        (0..self.entries.len())
            .map(|entry| {
                let hash = self.hashes[entry];
                let (b, _) = self.slot_of(hash, entry);
                (b.wrapping_sub(hash as usize) & mask) + 1
            })
            .max()
            .unwrap_or(0)
    }

    /// Checks invariants 1, 2 and 4; for tests and fuzzing.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn check_invariants(&self)
    where
        K: Eq,
    {
        assert_eq!(self.entries.len(), self.hashes.len());
        let mut seen = vec![false; self.entries.len()];
        let (mut full, mut deleted) = (0, 0);
        for bucket in self.buckets.iter() {
            for slot in 0..SLOTS {
                match bucket.tags[slot] {
                    EMPTY => {}
                    DELETED => deleted += 1,
                    tag => {
                        assert!(tag & 0x80 != 0, "bad tag {tag:#x}");
                        let entry = bucket.index[slot] as usize;
                        assert!(!seen[entry], "entry {entry} indexed twice");
                        seen[entry] = true;
                        assert_eq!(tag, tag_of(self.hashes[entry]));
                        full += 1;
                    }
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "an entry is not indexed");
        assert_eq!(full, self.entries.len());
        assert_eq!(
            full + deleted,
            capacity_of(self.buckets.len()) - self.growth_left
        );
        for (entry, (key, _)) in self.entries.iter().enumerate() {
            let (_, _, found) = self
                .find(self.hashes[entry], key)
                .expect("every key is reachable");
            assert_eq!(found, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: u64) -> u32 {
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
    }

    fn sum(a: &mut u64, b: u64) {
        *a += b;
    }

    #[test]
    fn swar_matches_are_exact_for_empty_and_free() {
        let mut tags = [EMPTY; 16];
        tags[0] = 0x85;
        tags[1] = DELETED;
        tags[2] = 0x84;
        let word = group::load(&tags);
        assert_eq!(lowest(match_tag(word, 0x85)), 0);
        assert_eq!(match_empty(word).count_ones(), 9);
        assert_eq!(match_free(word).count_ones(), 10);
        assert_eq!(lowest(match_empty(word)), 3);
        assert_eq!(lowest(match_free(word)), 1);
    }

    #[test]
    fn upsert_get_remove_and_grow() {
        let n: u64 = if cfg!(miri) { 600 } else { 10_000 };
        let mut t = RawTable::with_capacity(0);
        for k in 0..n {
            assert_eq!(t.upsert(h(k), k, k, sum), Upsert::Inserted);
        }
        for k in 0..n {
            assert_eq!(t.upsert(h(k), k, 1, sum), Upsert::Merged);
        }
        t.check_invariants();
        assert_eq!(t.len() as u64, n);
        for k in 0..n {
            assert_eq!(t.get(h(k), &k), Some(&(k + 1)));
        }
        for k in (0..n).step_by(3) {
            assert_eq!(t.remove(h(k), &k), Some((k, k + 1)));
            assert_eq!(t.remove(h(k), &k), None);
        }
        t.check_invariants();
        assert_eq!(t.len() as u64, n - n.div_ceil(3));
        for k in 0..n {
            assert_eq!(t.get(h(k), &k).copied(), (k % 3 != 0).then_some(k + 1));
        }
    }

    #[test]
    fn tombstones_are_reclaimed_without_unbounded_growth() {
        let mut t = RawTable::with_capacity(64);
        let buckets = t.buckets.len();
        let rounds = if cfg!(miri) { 60 } else { 1_000 };
        for round in 0..rounds {
            for k in 0..40u64 {
                t.upsert(h(k + round * 40), k + round * 40, 0, sum);
            }
            for k in 0..40u64 {
                assert!(t.remove(h(k + round * 40), &(k + round * 40)).is_some());
            }
        }
        t.check_invariants();
        assert_eq!(t.len(), 0);
        assert!(
            t.buckets.len() <= buckets * 2,
            "{} buckets",
            t.buckets.len()
        );
    }

    #[test]
    fn retain_and_clear_keep_storage() {
        let mut t = RawTable::with_capacity(0);
        for k in 0..1_000u64 {
            t.upsert(h(k), k, k, sum);
        }
        t.retain(|k, v| {
            *v += 1;
            k % 2 == 0
        });
        t.check_invariants();
        assert_eq!(t.len(), 500);
        assert!(t.entries().iter().all(|&(k, v)| k % 2 == 0 && v == k + 1));
        let capacity = t.capacity();
        t.reset_index();
        t.check_invariants();
        assert_eq!((t.len(), t.capacity()), (0, capacity));
    }

    #[test]
    fn panicking_merge_removes_the_entry_and_keeps_the_table_consistent() {
        let mut t = RawTable::with_capacity(0);
        for k in 0..100u64 {
            t.upsert(h(k), k, k, sum);
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            t.upsert(h(7), 7, 1, |_, _| panic!("user merge"));
        }));
        assert!(result.is_err());
        t.check_invariants();
        assert_eq!(t.len(), 99);
        assert_eq!(t.get(h(7), &7), None);
        assert_eq!(t.upsert(h(7), 7, 5, sum), Upsert::Inserted);
        assert_eq!(t.get(h(8), &8), Some(&8));
    }

    #[test]
    fn colliding_hashes_all_stay_reachable() {
        let mut t = RawTable::with_capacity(0);
        for k in 0..200u64 {
            t.upsert(7, k, k, sum);
        }
        t.check_invariants();
        for k in (0..200u64).rev().step_by(2) {
            assert_eq!(t.remove(7, &k), Some((k, k)));
        }
        t.check_invariants();
        for k in 0..200u64 {
            assert_eq!(t.get(7, &k).is_some(), k % 2 == 0);
        }
    }
}
