//! [`KeyedLimiter`]: one GCRA state per key in a [`ShardedTable`], with
//! per-key quotas and memory that follows the keys in use.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::gcra::decide;
use super::{CheckError, NotUntil, Quota};
use crate::clock::{Clock, Origin, QuantaClock};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::table::raw::RawTable;
use crate::table::{Shard, ShardedTable};
use crate::ConfigError;

/// What a [`KeyedLimiter`] at `max_keys` does with a key it does not track yet
/// (after dropping the fully replenished keys of the new key's shard, which
/// changes nothing anyone could observe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Refuse the check with [`CheckError::KeysFull`] and count it in
    /// [`KeyedStats::refused`]. Keys already tracked are never disturbed.
    #[default]
    RefuseNewKey,
    /// Forget the idlest key (the smallest theoretical arrival time) of the
    /// new key's shard, or of the next non-empty shard, and count it in
    /// [`KeyedStats::evicted`]. An evicted key that was not fully
    /// replenished starts full again when it comes back: the price of the bound.
    EvictIdlest,
}

/// Counters of a [`KeyedLimiter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedStats {
    /// Keys tracked now.
    pub keys: usize,
    /// Keys started (first check, or first after being dropped).
    pub created: u64,
    /// Fully replenished keys dropped by the idle sweep (or to make room).
    pub expired: u64,
    /// Keys forgotten under [`WhenFull::EvictIdlest`] while not replenished.
    pub evicted: u64,
    /// New keys refused under [`WhenFull::RefuseNewKey`].
    pub refused: u64,
    /// Panics caught in the `quota_for` function (the default quota was used).
    pub quota_panics: u64,
}

/// A quota in the units a check computes with: `T` and `burst · T`, in ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rates {
    interval: u64,
    capacity: u64,
}

impl Rates {
    fn of(quota: Quota) -> Self {
        Self {
            interval: quota.interval_ns(),
            capacity: quota.capacity_ns(),
        }
    }
}

/// A key's GCRA state: its theoretical arrival time, and its quota only
/// when `quota_for` gave it one other than the default. Most keys run on
/// the default, so the entry is 16 bytes beside the key, not 24: the
/// table's entries are what a check at a million keys misses on.
#[derive(Debug)]
pub(crate) struct KeyState {
    tat: u64,
    own: Option<Box<Rates>>,
}

impl KeyState {
    fn new(rates: Rates, default: Rates) -> Self {
        Self {
            tat: 0,
            own: (rates != default).then(|| Box::new(rates)),
        }
    }

    #[inline]
    fn rates(&self, default: Rates) -> Rates {
        self.own.as_deref().copied().unwrap_or(default)
    }

    #[inline]
    fn take(&mut self, now: u64, n: u64, default: Rates) -> Result<(), Denied> {
        let Rates { interval, capacity } = self.rates(default);
        match n.checked_mul(interval) {
            Some(increment) if increment <= capacity => {
                self.tat = decide(self.tat, now, increment, capacity).map_err(Denied::Wait)?;
                Ok(())
            }
            _ => Err(Denied::Exceeds(capacity / interval)),
        }
    }
}

enum Denied {
    Wait(u64),
    Exceeds(u64),
}

type QuotaFn<K> = Box<dyn Fn(&K) -> Option<Quota> + Send + Sync>;

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    quota_panics: AtomicU64,
}

/// A rate limiter per key, created on a key's first check.
///
/// Each key's GCRA state (its theoretical arrival time and, for a key whose
/// `quota_for` quota differs from the default, a pointer to it: 16 bytes
/// beside the key, and 16 more on the heap for such a key) lives in a
/// [`ShardedTable`]; a check locks one shard for
/// a lookup and a few arithmetic operations.
///
/// Memory follows the keys in use, without the caller doing anything:
/// - a key whose state is "fully replenished" (its TAT is past) is
///   indistinguishable from a key never seen, and an incremental sweep,
///   driven by the checks themselves, drops such keys: one shard per
///   `idle_sweep / shards` of clock time, so every key is looked at once per
///   `idle_sweep` (default 1 s); a shard that lost most of its keys gets
///   smaller storage. After a long quiet spell the sweep catches up one
///   shard per check.
/// - `max_keys` bounds the count outright, with an explicit [`WhenFull`] policy.
///
/// ```
/// use std::time::Duration;
/// use sheaf::clock::ManualClock;
/// use sheaf::limit::{CheckError, KeyedLimiter, Quota, WhenFull};
///
/// let clock = ManualClock::new();
/// let limiter = KeyedLimiter::<String, _>::builder(Quota::per_second(2)?)
///     .quota_for(|user: &String| (user == "admin").then(|| Quota::per_second(100).unwrap()))
///     .max_keys(10_000)
///     .when_full(WhenFull::EvictIdlest)
///     .clock(clock.clone())
///     .build()?;
/// let alice = "alice".to_string();
/// assert!(limiter.check(&alice).is_ok());
/// assert!(limiter.check(&alice).is_ok());
/// assert!(matches!(limiter.check(&alice), Err(CheckError::Wait(_))));
/// assert!(limiter.check_n(&"admin".to_string(), 50).is_ok());
/// assert_eq!(limiter.len(), 2);
///
/// // Quiet for a while: both keys are fully replenished and get dropped.
/// clock.advance(Duration::from_secs(5));
/// for _ in 0..limiter.shards() {
///     let _ = limiter.check(&"bob".to_string());
/// }
/// assert_eq!(limiter.len(), 1); // only bob
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
pub struct KeyedLimiter<K, C: Clock = QuantaClock> {
    table: ShardedTable<K, KeyState>,
    default: Quota,
    /// `default` in the units of a check.
    rates: Rates,
    quota_for: Option<QuotaFn<K>>,
    max_keys: usize,
    when_full: WhenFull,
    keys: CachePadded<AtomicUsize>,
    /// When the next sweep step is due (ns after `origin`): the only
    /// sweep word a check reads.
    sweep_due: CachePadded<AtomicU64>,
    sweep_cursor: AtomicUsize,
    sweep_step: u64,
    sweep_period: u64,
    /// Per shard: the most keys seen at a sweep since its storage was last sized.
    peaks: Box<[AtomicUsize]>,
    counters: CachePadded<Counters>,
    clock: C,
    origin: Origin,
}

/// Builds a [`KeyedLimiter`].
pub struct KeyedLimiterBuilder<K, C> {
    default: Quota,
    quota_for: Option<QuotaFn<K>>,
    max_keys: usize,
    when_full: WhenFull,
    idle_sweep: Duration,
    shards: usize,
    clock: C,
}

impl<K, C: fmt::Debug> fmt::Debug for KeyedLimiterBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiterBuilder")
            .field("default", &self.default)
            .field("max_keys", &self.max_keys)
            .field("when_full", &self.when_full)
            .field("idle_sweep", &self.idle_sweep)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl<K> KeyedLimiter<K, QuantaClock> {
    /// A builder with `default` as every key's quota.
    pub fn builder(default: Quota) -> KeyedLimiterBuilder<K, QuantaClock> {
        KeyedLimiterBuilder {
            default,
            quota_for: None,
            max_keys: usize::MAX,
            when_full: WhenFull::default(),
            idle_sweep: Duration::from_secs(1),
            shards: crate::table::default_shards().max(256),
            clock: QuantaClock::new(),
        }
    }
}

impl<K, C: Clock> KeyedLimiterBuilder<K, C> {
    /// Per-key quotas: called once when a key starts being tracked; `None`
    /// means the default quota. A panic in it is caught and counted
    /// ([`KeyedStats::quota_panics`]) and the default quota used.
    pub fn quota_for(mut self, f: impl Fn(&K) -> Option<Quota> + Send + Sync + 'static) -> Self {
        self.quota_for = Some(Box::new(f));
        self
    }

    /// The most keys tracked at once (default: no bound beyond the idle sweep).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What to do with a new key at `max_keys` (default: refuse it).
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// How often every key is looked at for expiry (default 1 s;
    /// `Duration::MAX`: never, leaving only `max_keys` as a bound).
    pub fn idle_sweep(mut self, period: Duration) -> Self {
        self.idle_sweep = period;
        self
    }

    /// Shards of the key table: a power of two (default: the table's
    /// default, at least 256, so a sweep step stays short).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The clock to read.
    pub fn clock<C2: Clock>(self, clock: C2) -> KeyedLimiterBuilder<K, C2> {
        KeyedLimiterBuilder {
            default: self.default,
            quota_for: self.quota_for,
            max_keys: self.max_keys,
            when_full: self.when_full,
            idle_sweep: self.idle_sweep,
            shards: self.shards,
            clock,
        }
    }

    /// Builds the limiter.
    ///
    /// # Errors
    /// [`ConfigError`] if `max_keys` is 0, `idle_sweep` is zero, or
    /// `shards` is not a power of two from 1 to 65,536.
    pub fn build(self) -> Result<KeyedLimiter<K, C>, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                "max_keys",
                "0 keys would refuse every check; give at least 1",
            ));
        }
        if self.idle_sweep.is_zero() {
            return Err(ConfigError::new(
                "idle_sweep",
                "a zero sweep period would sweep on every check; give a period, or Duration::MAX for none",
            ));
        }
        let table = ShardedTable::builder().shards(self.shards).build()?;
        let shards = table.shards() as u64;
        let period = crate::clock::saturating_nanos(self.idle_sweep);
        let step = (period / shards).max(1);
        let origin = Origin::now(&self.clock);
        Ok(KeyedLimiter {
            peaks: (0..table.shards()).map(|_| AtomicUsize::new(0)).collect(),
            table,
            default: self.default,
            rates: Rates::of(self.default),
            quota_for: self.quota_for,
            max_keys: self.max_keys,
            when_full: self.when_full,
            keys: CachePadded::new(AtomicUsize::new(0)),
            sweep_due: CachePadded::new(AtomicU64::new(step)),
            sweep_cursor: AtomicUsize::new(0),
            sweep_step: step,
            sweep_period: period,
            counters: CachePadded::new(Counters::default()),
            clock: self.clock,
            origin,
        })
    }
}

impl<K, C> KeyedLimiter<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    #[inline]
    fn now_ns(&self) -> u64 {
        self.origin.elapsed(&self.clock)
    }

    /// Takes one cell for `key`.
    ///
    /// # Errors
    /// [`CheckError::Wait`] when `key` is out of cells for now;
    /// [`CheckError::KeysFull`] for a new key at `max_keys` under
    /// [`WhenFull::RefuseNewKey`].
    #[inline]
    pub fn check(&self, key: &K) -> Result<(), CheckError> {
        self.check_n(key, 1)
    }

    /// Takes `n` cells for `key` at once.
    ///
    /// # Errors
    /// As [`check`](Self::check), plus [`CheckError::ExceedsBurst`] if `n`
    /// is over the key's burst.
    #[inline]
    pub fn check_n(&self, key: &K, n: u64) -> Result<(), CheckError> {
        let now = self.now_ns();
        if now >= self.sweep_due.load(Ordering::Relaxed) {
            self.sweep_step(now);
        }
        let hash = self.table.hash(key);
        let index = self.table.shard_of(hash);
        {
            let mut shard = self.table.lock_shard(index);
            if let Some(state) = shard.live.get_mut(hash as u32, key) {
                let result = state.take(now, n, self.rates);
                drop(shard);
                return result.map_err(|d| self.error(d, n));
            }
        }
        self.check_new(key, hash, index, n, now)
    }

    fn error(&self, denied: Denied, n: u64) -> CheckError {
        match denied {
            Denied::Wait(at) => CheckError::Wait(NotUntil::at(self.origin.instant(), at)),
            Denied::Exceeds(burst) => CheckError::ExceedsBurst {
                requested: n,
                burst,
            },
        }
    }

    fn quota_of(&self, key: &K) -> Quota {
        match &self.quota_for {
            None => self.default,
            Some(f) => match crate::unwind::catch(|| f(key)) {
                Ok(quota) => quota.unwrap_or(self.default),
                Err(_) => {
                    self.counters.quota_panics.fetch_add(1, Ordering::Relaxed);
                    self.default
                }
            },
        }
    }

    #[cold]
    fn check_new(
        &self,
        key: &K,
        hash: u64,
        index: usize,
        n: u64,
        now: u64,
    ) -> Result<(), CheckError> {
        // The user's function runs outside any lock.
        let quota = self.quota_of(key);
        let mut state = KeyState::new(Rates::of(quota), self.rates);
        let mut evicted_elsewhere = 0;
        loop {
            let mut shard = self.table.lock_shard(index);
            if let Some(existing) = shard.live.get_mut(hash as u32, key) {
                // Another thread started the key meanwhile.
                let result = existing.take(now, n, self.rates);
                drop(shard);
                return result.map_err(|d| self.error(d, n));
            }
            // Only a passing first check starts tracking a key.
            state
                .take(now, n, self.rates)
                .map_err(|d| self.error(d, n))?;
            if self.reserve_key() {
                shard
                    .live
                    .upsert(hash as u32, key.clone(), state, |_, _| {});
                drop(shard);
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            state.tat = 0;
            if self.sweep_locked(index, &mut shard, now) > 0 {
                continue;
            }
            match self.when_full {
                WhenFull::RefuseNewKey => {
                    drop(shard);
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(CheckError::KeysFull);
                }
                WhenFull::EvictIdlest => {
                    if self.evict_idlest(&mut shard) {
                        continue;
                    }
                    // This shard is empty: the keys are elsewhere. Never
                    // hold two shard locks at once.
                    drop(shard);
                    evicted_elsewhere += 1;
                    self.evict_elsewhere(index, now, evicted_elsewhere);
                }
            }
        }
    }

    /// Counts one more key if under `max_keys`.
    #[inline]
    fn reserve_key(&self) -> bool {
        self.keys
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |k| {
                (k < self.max_keys).then_some(k + 1)
            })
            .is_ok()
    }

    /// Drops the shard's fully replenished keys; resizes its storage down
    /// when it lost most of them. Returns how many were dropped.
    fn sweep_locked(&self, index: usize, shard: &mut Shard<K, KeyState>, now: u64) -> usize {
        let before = shard.live.len();
        if before == 0 {
            return 0;
        }
        shard.live.retain(|_, state| state.tat > now);
        let after = shard.live.len();
        let dropped = before - after;
        if dropped > 0 {
            self.keys.fetch_sub(dropped, Ordering::Relaxed);
            self.counters
                .expired
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let peak = self.peaks[index].load(Ordering::Relaxed).max(before);
        if peak >= 64 && after <= peak / 4 {
            self.resize(shard, after);
            self.peaks[index].store(after, Ordering::Relaxed);
        } else {
            self.peaks[index].store(peak, Ordering::Relaxed);
        }
        dropped
    }

    /// Moves the shard's keys into storage sized for `len` (the old,
    /// larger storage is freed).
    fn resize(&self, shard: &mut Shard<K, KeyState>, len: usize) {
        let mut old =
            std::mem::replace(&mut shard.live, RawTable::with_capacity(len)).into_draining();
        while let Some((key, state)) = old.pop() {
            let hash = self.table.hash(&key);
            shard.live.upsert(hash as u32, key, state, |_, _| {});
        }
    }

    fn evict_idlest(&self, shard: &mut Shard<K, KeyState>) -> bool {
        let victim = shard
            .live
            .entries()
            .iter()
            .min_by_key(|(_, state)| state.tat)
            .map(|(key, _)| key.clone());
        let Some(victim) = victim else {
            return false;
        };
        let hash = self.table.hash(&victim);
        if shard.live.remove(hash as u32, &victim).is_some() {
            self.keys.fetch_sub(1, Ordering::Relaxed);
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Makes room in the shards after `index` (starting further on each
    /// retry, so two threads do not keep emptying the same one).
    fn evict_elsewhere(&self, index: usize, now: u64, attempt: usize) {
        let shards = self.table.shards();
        for offset in 0..shards {
            let other = (index + attempt + offset) % shards;
            let mut shard = self.table.lock_shard(other);
            if self.sweep_locked(other, &mut shard, now) > 0 || self.evict_idlest(&mut shard) {
                return;
            }
        }
    }

    /// One step of the idle sweep: the claimer of a due step sweeps one shard.
    #[cold]
    fn sweep_step(&self, now: u64) {
        let due = self.sweep_due.load(Ordering::Relaxed);
        if now < due || self.sweep_period == u64::MAX {
            return;
        }
        // Far behind (a quiet spell): catch up at most one full pass.
        let next = due.max(now.saturating_sub(self.sweep_period)) + self.sweep_step;
        if self
            .sweep_due
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let index = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % self.table.shards();
        let mut shard = self.table.lock_shard(index);
        self.sweep_locked(index, &mut shard, now);
    }

    /// Sweeps every shard now (what the incremental sweep does over one
    /// `idle_sweep` period); returns the keys dropped.
    pub fn sweep_now(&self) -> usize {
        let now = self.now_ns();
        (0..self.table.shards())
            .map(|index| {
                let mut shard = self.table.lock_shard(index);
                self.sweep_locked(index, &mut shard, now)
            })
            .sum()
    }

    /// Cells `key` could take at once now (its burst if it is not tracked).
    pub fn available(&self, key: &K) -> u64 {
        let now = self.now_ns();
        let (tat, rates) = self
            .table
            .with(key, |s| (s.tat, s.rates(self.rates)))
            .unwrap_or_else(|| (0, Rates::of(self.quota_of(key))));
        rates.capacity.saturating_sub(tat.saturating_sub(now)) / rates.interval
    }

    /// Stops tracking `key` (it starts full on its next check).
    pub fn forget(&self, key: &K) -> bool {
        let removed = self.table.remove(key).is_some();
        if removed {
            self.keys.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }
}

impl<K, C: Clock> KeyedLimiter<K, C> {
    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// `true` when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shards of the key table (a full idle sweep takes this many steps).
    pub fn shards(&self) -> usize {
        self.table.shards()
    }

    /// The default quota.
    pub fn default_quota(&self) -> Quota {
        self.default
    }

    /// Counters; see [`KeyedStats`].
    pub fn stats(&self) -> KeyedStats {
        KeyedStats {
            keys: self.len(),
            created: self.counters.created.load(Ordering::Relaxed),
            expired: self.counters.expired.load(Ordering::Relaxed),
            evicted: self.counters.evicted.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            quota_panics: self.counters.quota_panics.load(Ordering::Relaxed),
        }
    }

    /// Checks that the key count matches the table; for tests.
    #[cfg(any(test, fuzzing))]
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert_eq!(self.len(), self.table.len(), "key count drifted");
        assert!(self.len() <= self.max_keys, "over max_keys");
    }
}

impl<K, C: Clock> fmt::Debug for KeyedLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("default", &self.default)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .field("when_full", &self.when_full)
            .finish_non_exhaustive()
    }
}
