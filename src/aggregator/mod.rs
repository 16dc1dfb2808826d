//! [`Aggregator`]: keyed aggregation end to end — sharded table → bounded
//! output channel → pinned periodic flushers.
//!
//! ```
//! use std::time::Duration;
//! use sheaf::{merge::Sum, Aggregator, Upsert};
//!
//! let agg = Aggregator::<String, u64>::builder().merge_with(Sum).build().unwrap();
//! assert_eq!(agg.add("requests".to_string(), 1).unwrap(), Upsert::Inserted);
//! agg.add("requests".to_string(), 2).unwrap();
//! assert_eq!(agg.get("requests"), Some(3));
//!
//! assert_eq!(agg.flush(), 1);
//! let out = agg.receiver();
//! assert_eq!(out.recv().unwrap(), ("requests".to_string(), 3));
//!
//! let report = agg.shutdown(Duration::from_secs(1));
//! assert_eq!(report.delivered, 1);
//! assert!(report.undelivered.is_empty());
//! assert!(agg.add("late".to_string(), 1).is_err()); // Closed: the pair comes back
//! assert_eq!(out.iter().count(), 0); // the output ends after shutdown
//! ```
//!
//! # Hot keys scale with cores
//!
//! When the merge is commutative ([`Merge::is_commutative`]: `Sum`, `Min`,
//! `Max`, `Count`, or a closure given to
//! [`merge_commutative`](AggregatorBuilder::merge_commutative)), each CPU
//! adds into its own partial table, so adds to one
//! hot key from several cores never share a cache line; partials are folded
//! at flush and on [`get`](Aggregator::get). With a non-commutative merge
//! (`Last`, or a closure given to [`merge`](AggregatorBuilder::merge)) there is one table and
//! adds merge in the order they take its shard lock.
//!
//! # Nothing silently lost
//!
//! Every added value is, in the end, delivered to the output, counted in a
//! named drop counter of [`AggregatorStats`] (by the [`OnFull`] policy the
//! user chose, or a panicking merge), handed back by
//! [`shutdown`](Aggregator::shutdown) in `undelivered`, or refused at `add`
//! with the pair handed back in [`AddError`].

mod flush;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::channel::{self, Receiver, Sender};
use crate::error::ConfigError;
use crate::hash::FastBuildHasher;
use crate::merge::{FnMerge, Merge};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{thread, Arc, Mutex};
use crate::table::{Borrowed, Counting, KeyArg, Owned, Refused, ShardedTable, Upsert};
use crate::topology::Topology;

/// What a flush does with an entry when the output channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Keep the entry in the table, where it goes on merging, until a later
    /// flush finds room (the default: zero loss).
    #[default]
    Retain,
    /// Wait for room; the flush (and the flusher thread) blocks meanwhile.
    Block,
    /// Drop the entry being flushed; counted in `dropped_newest`.
    DropNewest,
    /// Evict the oldest entry queued in the output; counted in `dropped_oldest`.
    DropOldest,
}

/// Why [`Aggregator::add`] did not take a pair.
pub enum AddError<K, V> {
    /// The aggregator was shut down; the pair comes back.
    Closed(K, V),
    /// The key is new and the key cap ([`max_keys`](AggregatorBuilder::max_keys))
    /// is reached; the pair comes back.
    Full(K, V),
    /// The merge function panicked: the value and the key's aggregate were
    /// dropped (counted in `dropped_merge_panic`); the aggregator goes on.
    MergePanicked,
}

impl<K, V> AddError<K, V> {
    /// The pair that was handed back, if any.
    pub fn into_pair(self) -> Option<(K, V)> {
        match self {
            Self::Closed(k, v) | Self::Full(k, v) => Some((k, v)),
            Self::MergePanicked => None,
        }
    }
}

impl<K, V> fmt::Debug for AddError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(..) => f.write_str("Closed(..)"),
            Self::Full(..) => f.write_str("Full(..)"),
            Self::MergePanicked => f.write_str("MergePanicked"),
        }
    }
}

impl<K, V> fmt::Display for AddError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(..) => {
                f.write_str("the aggregator is shut down; the pair was handed back")
            }
            Self::Full(..) => {
                f.write_str("the key cap is reached; the new key was refused and handed back")
            }
            Self::MergePanicked => f.write_str(
                "the merge function panicked; the value and the key's aggregate were dropped",
            ),
        }
    }
}

impl<K, V> std::error::Error for AddError<K, V> {}

/// Counters of an [`Aggregator`]; see [`Aggregator::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AggregatorStats {
    /// Adds accepted (`inserted + merged`).
    pub added: u64,
    /// Adds that created an entry (per partial table under per-core combining).
    pub inserted: u64,
    /// Adds merged into an existing entry.
    pub merged: u64,
    /// Entries handed to the output channel.
    pub flushed: u64,
    /// Times an entry stayed in the table because the output was full (`OnFull::Retain`).
    pub retained: u64,
    /// Adds refused at the key cap.
    pub refused_full: u64,
    /// Adds refused after shutdown.
    pub refused_closed: u64,
    /// Entries dropped by `OnFull::DropNewest`.
    pub dropped_newest: u64,
    /// Output entries evicted by `OnFull::DropOldest`.
    pub dropped_oldest: u64,
    /// Entries (and values) dropped because the merge function panicked.
    pub dropped_merge_panic: u64,
    /// Panics caught in the merge function.
    pub merge_panics: u64,
    /// Entries still undelivered when the last handle was dropped (not
    /// handed back: call [`Aggregator::shutdown`] to get them).
    pub lost_at_drop: u64,
    /// Flushes run (manual and periodic).
    pub flushes: u64,
    /// Periodic ticks that ran a flush.
    pub ticks_run: u64,
    /// Periodic ticks skipped because the previous flush was still running.
    pub ticks_skipped: u64,
    /// Duration of the last flush.
    pub last_flush: Duration,
    /// Longest flush so far.
    pub longest_flush: Duration,
    /// Entries held now (partials on several cores count once per core).
    pub entries: usize,
    /// Entries queued in the output channel now.
    pub queued: usize,
}

/// What [`Aggregator::shutdown`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownReport<K, V> {
    /// Entries handed to the output over the aggregator's life (minus those
    /// later evicted by `OnFull::DropOldest`).
    pub delivered: u64,
    /// Entries dropped over its life, by policy or merge panic.
    pub dropped: u64,
    /// Entries that could not be delivered by the deadline: handed back.
    pub undelivered: Vec<(K, V)>,
    /// `true` if delivery stopped at the deadline.
    pub timed_out: bool,
}

impl<K, V> ShutdownReport<K, V> {
    fn empty() -> Self {
        Self {
            delivered: 0,
            dropped: 0,
            undelivered: Vec::new(),
            timed_out: false,
        }
    }
}

/// Deadline used when the last handle is dropped without [`Aggregator::shutdown`].
pub const DROP_DEADLINE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Counters {
    flushed: AtomicU64,
    retained: AtomicU64,
    refused_full: AtomicU64,
    refused_closed: AtomicU64,
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
    dropped_merge_panic: AtomicU64,
    merge_panics: AtomicU64,
    lost_at_drop: AtomicU64,
    flushes: AtomicU64,
    ticks_run: AtomicU64,
    ticks_skipped: AtomicU64,
    last_flush_ns: AtomicU64,
    longest_flush_ns: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Per-flush-partition state, locked by whoever flushes the partition.
struct Partition<K, V> {
    /// Reused map for folding per-core partials.
    fold: HashMap<K, V, FastBuildHasher>,
    /// Entries a blocked flush could not deliver before shutdown began.
    pending: Vec<(K, V)>,
}

pub(crate) struct Inner<K, V, S> {
    /// One table, or one per CPU when combining per core.
    partials: Box<[ShardedTable<K, V, S>]>,
    /// CPU id → partial index.
    partial_of_cpu: Box<[u16]>,
    merge: Box<dyn Merge<V>>,
    /// `merge.lifts()`, asked once.
    lifts: bool,
    on_full: OnFull,
    max_keys: Option<usize>,
    /// Entries held, tracked only with a key cap.
    keys: CachePadded<AtomicUsize>,
    receiver: Receiver<(K, V)>,
    output: Mutex<Option<Sender<(K, V)>>>,
    partitions: Box<[Mutex<Partition<K, V>>]>,
    closing: AtomicBool,
    shut_down: AtomicBool,
    handles: AtomicUsize,
    counters: CachePadded<Counters>,
    flushers: Mutex<Vec<thread::JoinHandle<()>>>,
    last_panic: Mutex<Option<String>>,
    /// `Inner::shutdown_on_drop`, captured where `K` and `V` are known to be
    /// hashable and sendable (a `Drop` impl cannot add those bounds).
    on_last_drop: fn(&Inner<K, V, S>),
}

/// A keyed aggregator: `add(key, value)` merges into a sharded table whose
/// entries are flushed — periodically and on demand — into a bounded output
/// channel. A cheap, cloneable handle; see the [module docs](self).
///
/// `S` hashes keys: [`FastBuildHasher`] by default (FNV-1a, deterministic);
/// give a [`SeededBuildHasher`](crate::hash::SeededBuildHasher) with
/// [`hasher`](AggregatorBuilder::hasher) when keys come from untrusted input.
pub struct Aggregator<K, V, S = FastBuildHasher> {
    inner: Arc<Inner<K, V, S>>,
}

/// Configures an [`Aggregator`]; see [`Aggregator::builder`].
pub struct AggregatorBuilder<K, V, S = FastBuildHasher> {
    hasher: S,
    merge: Option<Box<dyn Merge<V>>>,
    per_core: Option<bool>,
    flush_every: Option<Duration>,
    output_capacity: usize,
    on_full: OnFull,
    max_keys: Option<usize>,
    flush_threads: usize,
    pin: bool,
    shards: Option<usize>,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K, V, S> fmt::Debug for AggregatorBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregatorBuilder")
            .field("merge", &self.merge.is_some())
            .field("per_core", &self.per_core)
            .field("flush_every", &self.flush_every)
            .field("output_capacity", &self.output_capacity)
            .field("on_full", &self.on_full)
            .field("max_keys", &self.max_keys)
            .field("flush_threads", &self.flush_threads)
            .field("pin", &self.pin)
            .finish()
    }
}

impl<K, V, S> AggregatorBuilder<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The key hasher (default [`FastBuildHasher`]); every per-core table
    /// gets a clone.
    pub fn hasher<S2>(self, hasher: S2) -> AggregatorBuilder<K, V, S2> {
        AggregatorBuilder {
            hasher,
            merge: self.merge,
            per_core: self.per_core,
            flush_every: self.flush_every,
            output_capacity: self.output_capacity,
            on_full: self.on_full,
            max_keys: self.max_keys,
            flush_threads: self.flush_threads,
            pin: self.pin,
            shards: self.shards,
            _key: self._key,
        }
    }

    /// The merge as a closure: `merge(&mut held, added)`, applied in the
    /// order adds take their shard's lock, in one shared table. Use it for
    /// order-sensitive merges (keep the last, append to a list); for a
    /// merge whose order does not matter, [`merge_commutative`](Self::merge_commutative)
    /// lets hot keys scale with cores.
    pub fn merge(mut self, merge: impl Fn(&mut V, V) + Send + Sync + 'static) -> Self {
        self.merge = Some(Box::new(FnMerge {
            f: merge,
            commutative: false,
        }));
        self
    }

    /// The merge as a closure declared **commutative and associative**:
    /// each core adds into its own partial table (see the module docs), so
    /// adds to one hot key from several cores never share a cache line, and
    /// partials are folded with the same closure at flush, `get` and
    /// `snapshot`.
    ///
    /// # The contract
    /// For every held `a`, `b`, `c` (each an added value or a partial
    /// aggregate), folding must give the same result in any grouping and
    /// any order: `merge(a, b)` equals `merge(b, a)`, and merging `c` into
    /// `merge(a, b)` equals merging `merge(b, c)` into `a`. The closure also
    /// receives partial aggregates as its `added` argument, not only single
    /// added values. Sums, counts, min/max, bitwise or/and, set union and
    /// histogram bucket-wise addition qualify; "keep the last", "append",
    /// floating-point sums where the last bit matters, and anything
    /// counting calls to itself do not. The aggregator cannot check the
    /// contract: a closure that breaks it gives totals that depend on which
    /// core ran each add.
    ///
    /// ```
    /// use sheaf::Aggregator;
    ///
    /// let agg = Aggregator::<&str, u64>::builder()
    ///     .merge_commutative(|held, added| *held += added)
    ///     .build()
    ///     .unwrap();
    /// agg.add("hits", 2).unwrap();
    /// agg.add("hits", 3).unwrap();
    /// assert_eq!(agg.get("hits"), Some(5));
    /// ```
    pub fn merge_commutative(mut self, merge: impl Fn(&mut V, V) + Send + Sync + 'static) -> Self {
        self.merge = Some(Box::new(FnMerge {
            f: merge,
            commutative: true,
        }));
        self
    }

    /// The merge as a [`Merge`] value, e.g. [`Sum`](crate::merge::Sum).
    pub fn merge_with(mut self, merge: impl Merge<V>) -> Self {
        self.merge = Some(Box::new(merge));
        self
    }

    /// Combine per core (see the module docs). Default: on exactly when the
    /// merge says it is commutative ([`merge_commutative`](Self::merge_commutative),
    /// or a [`Merge`] whose `is_commutative` is `true`); off to keep one table.
    pub fn per_core(mut self, on: bool) -> Self {
        self.per_core = Some(on);
        self
    }

    /// Flush periodically (default: only on [`flush`](Aggregator::flush) and shutdown).
    pub fn flush_every(mut self, period: Duration) -> Self {
        self.flush_every = Some(period);
        self
    }

    /// Capacity of the output channel (default 65,536).
    pub fn output_capacity(mut self, capacity: usize) -> Self {
        self.output_capacity = capacity;
        self
    }

    /// What a flush does when the output is full (default [`OnFull::Retain`]).
    pub fn on_full(mut self, policy: OnFull) -> Self {
        self.on_full = policy;
        self
    }

    /// Cap on entries held: an add of a new key beyond it is refused with
    /// [`AddError::Full`]. Under per-core combining a key held on several
    /// cores takes one entry per core, so the cap bounds memory exactly.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = Some(max);
        self
    }

    /// Number of periodic flusher threads (default 1); each flushes its own
    /// share of the shards.
    pub fn flush_threads(mut self, threads: usize) -> Self {
        self.flush_threads = threads;
        self
    }

    /// Pin each flusher thread to its own physical core (default `false`).
    /// Harmless where pinning is unsupported.
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Shards per table (default [`default_shards`](crate::table::default_shards)).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Builds the aggregator and starts its flusher threads.
    ///
    /// # Errors
    /// [`ConfigError`] when no merge was given, `output_capacity`, `max_keys`
    /// or `flush_every` is zero, `flush_threads` is 0 or more than the
    /// shards, or `shards` is not a power of two.
    pub fn build(self) -> Result<Aggregator<K, V, S>, ConfigError> {
        let merge = self.merge.ok_or_else(|| {
            ConfigError::new(
                "merge",
                "no merge function; call .merge(|acc, v| ...) or .merge_with(Sum)",
            )
        })?;
        if self.output_capacity == 0 {
            return Err(ConfigError::new(
                "output_capacity",
                "0 cannot hold an entry; use 1 or more",
            ));
        }
        if self.max_keys == Some(0) {
            return Err(ConfigError::new(
                "max_keys",
                "0 refuses every key; use 1 or more, or no cap",
            ));
        }
        if self.flush_every == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "flush_every",
                "a zero period would flush in a busy loop; use a positive duration",
            ));
        }
        let per_core = self.per_core.unwrap_or_else(|| merge.is_commutative());
        let topology = if (per_core || self.pin) && !cfg!(sheaf_loom) {
            Topology::detect()
        } else {
            Topology::single()
        };
        let (partials, partial_of_cpu) = if per_core && !cfg!(sheaf_loom) {
            let n = topology.cpus().len().clamp(1, u16::MAX as usize);
            let max_cpu = topology.cpus().iter().map(|c| c.id).max().unwrap_or(0);
            let mut map = vec![0u16; max_cpu + 1];
            for (i, cpu) in topology.cpus().iter().enumerate() {
                map[cpu.id] = i as u16;
            }
            (n, map)
        } else if per_core {
            (2, vec![0, 1])
        } else {
            (1, vec![0])
        };
        let partials: Box<[ShardedTable<K, V, S>]> = (0..partials)
            .map(|_| {
                let builder = ShardedTable::builder().hasher(self.hasher.clone());
                match self.shards {
                    Some(n) => builder.shards(n).build(),
                    None => builder.build(),
                }
            })
            .collect::<Result<_, _>>()?;
        let shards = partials[0].shards();
        if self.flush_threads == 0 || self.flush_threads > shards {
            return Err(ConfigError::new(
                "flush_threads",
                format!(
                    "{} is out of range; use 1 to {shards} (the shard count)",
                    self.flush_threads
                ),
            ));
        }
        let (sender, receiver) = channel::builder().capacity(self.output_capacity).build()?;
        let inner = Arc::new(Inner {
            partials,
            partial_of_cpu: partial_of_cpu.into_boxed_slice(),
            lifts: merge.lifts(),
            merge,
            on_full: self.on_full,
            max_keys: self.max_keys,
            keys: CachePadded::new(AtomicUsize::new(0)),
            receiver,
            output: Mutex::new(Some(sender)),
            partitions: (0..self.flush_threads)
                .map(|_| {
                    Mutex::new(Partition {
                        fold: HashMap::default(),
                        pending: Vec::new(),
                    })
                })
                .collect(),
            closing: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            handles: AtomicUsize::new(1),
            counters: CachePadded::new(Counters::default()),
            flushers: Mutex::new(Vec::new()),
            last_panic: Mutex::new(None),
            on_last_drop: Inner::shutdown_on_drop,
        });
        if let Some(period) = self.flush_every {
            flush::spawn_flushers(&inner, period, self.pin.then_some(&topology))?;
        }
        Ok(Aggregator { inner })
    }
}

impl<K, V> Aggregator<K, V, FastBuildHasher>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
{
    /// A builder; a merge (`.merge(..)` or `.merge_with(..)`) is required.
    pub fn builder() -> AggregatorBuilder<K, V, FastBuildHasher> {
        AggregatorBuilder {
            hasher: FastBuildHasher,
            merge: None,
            per_core: None,
            flush_every: None,
            output_capacity: 65_536,
            on_full: OnFull::Retain,
            max_keys: None,
            flush_threads: 1,
            pin: false,
            shards: None,
            _key: std::marker::PhantomData,
        }
    }
}

impl<K, V, S> Aggregator<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Merges `value` into `key`'s aggregate, inserting the key if new.
    ///
    /// Returns [`Upsert::Inserted`] when the key had no entry (on this core,
    /// under per-core combining) and [`Upsert::Merged`] otherwise.
    ///
    /// # Errors
    /// [`AddError::Closed`] after shutdown and [`AddError::Full`] at the key
    /// cap, both handing the pair back; [`AddError::MergePanicked`] when the
    /// merge function panicked (caught, counted, and the aggregator goes on).
    #[inline]
    pub fn add(&self, key: K, value: V) -> Result<Upsert, AddError<K, V>> {
        self.add_key(Owned(key), value)
    }

    /// [`add`](Self::add) with a borrowed key: the key is cloned
    /// (`to_owned`) only when it is new in the table it goes to (or to hand
    /// it back in an error), so adds to a held `String` key allocate
    /// nothing.
    ///
    /// # Errors
    /// As [`add`](Self::add); the handed-back key is a clone.
    ///
    /// ```
    /// use sheaf::{merge::Sum, Aggregator, Upsert};
    ///
    /// let agg = Aggregator::<String, u64>::builder().merge_with(Sum).build().unwrap();
    /// let name = "requests"; // a &str: no String built per add
    /// agg.add_ref(name, 1).unwrap();
    /// assert_eq!(agg.add_ref(name, 2).unwrap(), Upsert::Merged);
    /// assert_eq!(agg.get(name), Some(3));
    /// ```
    #[inline]
    pub fn add_ref<Q>(&self, key: &Q, value: V) -> Result<Upsert, AddError<K, V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.add_key(Borrowed(key), value)
    }

    #[inline]
    fn add_key<A>(&self, key: A, value: V) -> Result<Upsert, AddError<K, V>>
    where
        A: KeyArg<K>,
        A::Q: Hash,
        K: std::borrow::Borrow<A::Q>,
    {
        let inner = &*self.inner;
        let table = inner.partial();
        let merge = &*inner.merge;
        let value = if !inner.lifts {
            value
        } else {
            match catch_unwind(AssertUnwindSafe(|| merge.lift(value))) {
                Ok(value) => value,
                Err(panic) => {
                    inner.record_panic(panic.as_ref(), 0);
                    return Err(AddError::MergePanicked);
                }
            }
        };
        // Set just before the merge runs: a panic with it set came from the
        // merge (the table removed that key's entry), one without it from
        // the key's `Hash` or `Eq` (the table is unchanged, no key admitted).
        let merging = std::cell::Cell::new(false);
        let merge_fn = |acc: &mut V, v: V| {
            merging.set(true);
            merge.merge(acc, v)
        };
        // One call site for the upsert (the key cap is asked inside
        // `admit`): two would inline the hash and the probe twice, and the
        // larger function then stops LLVM from inlining the key's `Hash`
        // and `Eq` (measured: DESIGN.md, "Per-operation cost").
        let admit = || match inner.max_keys {
            None => true,
            Some(max) => inner.admit_key(max),
        };
        let attempt =
            AssertUnwindSafe(|| table.try_upsert(key, value, merge_fn, admit, Counting::Count));
        match catch_unwind(attempt) {
            Ok(Ok(upsert)) => Ok(upsert),
            Ok(Err(refused)) => Err(inner.refused(refused)),
            Err(panic) => Err(inner.add_panicked(panic, merging.get())),
        }
    }

    /// The receiving end of the output. Every call returns a clone of the
    /// same receiver; iterating it ends once the aggregator is shut down and
    /// everything delivered has been received.
    pub fn receiver(&self) -> Receiver<(K, V)> {
        self.inner.receiver.clone()
    }

    /// Flushes every entry now, in the calling thread; returns how many
    /// reached the output. Under [`OnFull::Block`] it waits for room.
    pub fn flush(&self) -> usize {
        self.inner.flush_all()
    }

    /// The current aggregate for `key` (per-core partials folded), if held.
    ///
    /// # Panics
    /// Never because of the merge function: a panic in it while folding is
    /// caught and the partial it was folding is skipped.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let inner = &*self.inner;
        let mut acc: Option<V> = None;
        for table in inner.partials.iter() {
            if let Some(partial) = table.get(key) {
                acc = Some(match acc {
                    None => partial,
                    Some(mut acc) => {
                        let merged = catch_unwind(AssertUnwindSafe(|| {
                            inner.merge.merge(&mut acc, partial);
                            acc
                        }));
                        match merged {
                            Ok(acc) => acc,
                            Err(panic) => {
                                inner.record_panic(panic.as_ref(), 0);
                                return None;
                            }
                        }
                    }
                });
            }
        }
        acc
    }

    /// A copy of every aggregate held (per-core partials folded).
    pub fn snapshot(&self) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        let inner = &*self.inner;
        if inner.partials.len() == 1 {
            return inner.partials[0].snapshot();
        }
        let mut folded: HashMap<K, V, FastBuildHasher> = HashMap::default();
        for table in inner.partials.iter() {
            // Clones pair by pair under each shard's lock: no intermediate
            // copy of a whole partial table.
            table.for_each(|k, v| inner.fold_into(&mut folded, k.clone(), v.clone()));
        }
        folded.into_iter().collect()
    }

    /// Entries held now (a key held on several cores counts once per core).
    pub fn len(&self) -> usize {
        self.inner.partials.iter().map(ShardedTable::len).sum()
    }

    /// `true` when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.inner.partials.iter().all(ShardedTable::is_empty)
    }

    /// Counters; see [`AggregatorStats`].
    pub fn stats(&self) -> AggregatorStats {
        let inner = &*self.inner;
        let c = &inner.counters;
        let (inserted, merged) = inner.partials.iter().fold((0, 0), |(i, m), t| {
            let (ti, tm) = t.upsert_counts();
            (i + ti, m + tm)
        });
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AggregatorStats {
            added: inserted + merged,
            inserted,
            merged,
            flushed: load(&c.flushed),
            retained: load(&c.retained),
            refused_full: load(&c.refused_full),
            refused_closed: load(&c.refused_closed),
            dropped_newest: load(&c.dropped_newest),
            dropped_oldest: load(&c.dropped_oldest),
            dropped_merge_panic: load(&c.dropped_merge_panic),
            merge_panics: load(&c.merge_panics),
            lost_at_drop: load(&c.lost_at_drop),
            flushes: load(&c.flushes),
            ticks_run: load(&c.ticks_run),
            ticks_skipped: load(&c.ticks_skipped),
            last_flush: Duration::from_nanos(load(&c.last_flush_ns)),
            longest_flush: Duration::from_nanos(load(&c.longest_flush_ns)),
            entries: self.len(),
            queued: inner.receiver.len(),
        }
    }

    /// The message of the last panic caught in the merge function.
    pub fn last_panic(&self) -> Option<String> {
        self.inner.last_panic.lock().clone()
    }

    /// Number of per-core partial tables (1 without per-core combining).
    pub fn partial_tables(&self) -> usize {
        self.inner.partials.len()
    }

    /// Runs one periodic tick by hand: a flush of partition 0 that is
    /// skipped (`None`, counted in `ticks_skipped`) if that partition is
    /// being flushed. For loom models and tests of the overlap rule.
    #[doc(hidden)]
    pub fn tick(&self) -> Option<usize> {
        self.inner.flush_partition(0, flush::Trigger::Tick)
    }

    /// Stops the flushers, refuses further adds, and delivers every held
    /// entry to the output until `deadline` has passed; hands back what it
    /// could not deliver. Afterwards the output ends once drained.
    ///
    /// Idempotent: a second call (or a call on another handle) returns an
    /// empty report. Never hangs, even when nobody reads the output: under
    /// `Retain` and `Block` it waits for room only until the deadline.
    pub fn shutdown(&self, deadline: Duration) -> ShutdownReport<K, V> {
        self.inner.shutdown(deadline)
    }
}

impl<K, V, S> Inner<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The table this thread adds into.
    #[inline]
    fn partial(&self) -> &ShardedTable<K, V, S> {
        if self.partials.len() == 1 {
            return &self.partials[0];
        }
        &self.partials[self.partial_index()]
    }

    #[inline]
    fn partial_index(&self) -> usize {
        let n = self.partials.len();
        if !cfg!(sheaf_loom) {
            if let Some(cpu) = crate::topology::current_cpu_cached() {
                return self
                    .partial_of_cpu
                    .get(cpu)
                    .map_or(cpu % n, |&s| s as usize);
            }
        }
        crate::sync::thread_slot() % n
    }

    /// Counts a refused add and hands its pair back.
    #[cold]
    #[inline(never)]
    fn refused(&self, refused: Refused<K, V>) -> AddError<K, V> {
        match refused {
            Refused::Closed(k, v) => {
                Counters::bump(&self.counters.refused_closed, 1);
                AddError::Closed(k, v)
            }
            Refused::Full(k, v) => {
                Counters::bump(&self.counters.refused_full, 1);
                AddError::Full(k, v)
            }
        }
    }

    /// Records a panic caught in `add`: from the merge when `merging` (the
    /// table removed that key's entry), else from the key's `Hash` or `Eq`.
    #[cold]
    #[inline(never)]
    fn add_panicked(&self, panic: Box<dyn Any + Send>, merging: bool) -> AddError<K, V> {
        if merging {
            self.forget_keys(1);
        }
        self.record_panic(panic.as_ref(), 1);
        AddError::MergePanicked
    }

    fn admit_key(&self, max: usize) -> bool {
        if self.keys.fetch_add(1, Ordering::Relaxed) < max {
            true
        } else {
            self.keys.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }

    fn record_panic(&self, panic: &(dyn Any + Send), dropped: u64) {
        Counters::bump(&self.counters.merge_panics, 1);
        Counters::bump(&self.counters.dropped_merge_panic, dropped.max(1));
        *self.last_panic.lock() = Some(crate::unwind::message(panic));
    }

    /// Folds `(k, v)` into `map`. A panicking merge drops both values, a
    /// panicking `Hash` or `Eq` of the key drops the pair; either way the
    /// loss is counted and the fold goes on (the map is left consistent:
    /// std's map changes nothing when hashing or comparing panics).
    pub(super) fn fold_into(&self, map: &mut HashMap<K, V, FastBuildHasher>, k: K, v: V) {
        use std::collections::hash_map::Entry;
        let folded = catch_unwind(AssertUnwindSafe(|| match map.entry(k) {
            Entry::Vacant(e) => {
                e.insert(v);
            }
            Entry::Occupied(mut e) => {
                if let Err(panic) =
                    catch_unwind(AssertUnwindSafe(|| self.merge.merge(e.get_mut(), v)))
                {
                    e.remove();
                    self.record_panic(panic.as_ref(), 2);
                }
            }
        }));
        if let Err(panic) = folded {
            self.record_panic(panic.as_ref(), 1);
        }
    }

    /// Forgets `n` keys that left the tables (for the key cap).
    pub(super) fn forget_keys(&self, n: usize) {
        if self.max_keys.is_some() && n > 0 {
            self.keys.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

impl<K, V, S> Clone for Aggregator<K, V, S> {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, S> Drop for Aggregator<K, V, S> {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            (self.inner.on_last_drop)(&self.inner);
        }
    }
}

impl<K, V, S> fmt::Debug for Aggregator<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregator")
            .field("partial_tables", &self.inner.partials.len())
            .field("on_full", &self.inner.on_full)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<Aggregator<String, u64>>();
};

#[cfg(test)]
mod tests;
