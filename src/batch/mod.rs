//! [`GroupBatcher`]: keyed batching. Items carry a group key; a group is
//! sealed into one batch when no new item came for its **grace** period,
//! when its oldest item has waited its **max delay**, or when it reaches its
//! **max items** (or **max bytes**). A user function turns each sealed group
//! into one output, in the order the items were added.
//!
//! ```
//! use std::time::Duration;
//! use sheaf::batch::{Added, GroupBatcher, Trigger};
//!
//! let batcher = GroupBatcher::<&str, String, String>::builder()
//!     .grace(Duration::from_millis(50))
//!     .max_delay(Duration::from_secs(1))
//!     .max_items(3)
//!     .aggregate(|group, items: &mut Vec<String>| {
//!         Ok::<_, std::convert::Infallible>(Some(format!("{group}: {}", items.join(", "))))
//!     })
//!     .build()?;
//! assert_eq!(batcher.add("welcome", "ann@x".into()), Ok(Added::Opened));
//! assert_eq!(batcher.add("welcome", "bob@x".into()), Ok(Added::Joined));
//! assert_eq!(batcher.add("welcome", "cy@x".into()), Ok(Added::Sealed)); // max items
//!
//! let batch = batcher.receiver().recv().unwrap();
//! assert_eq!(batch.output, "welcome: ann@x, bob@x, cy@x");
//! assert_eq!((batch.items, batch.reason), (3, Trigger::MaxItems));
//!
//! batcher.add("digest", "d1".into()).unwrap();
//! let report = batcher.shutdown(Duration::from_secs(1)); // seals and delivers "digest"
//! assert_eq!(report.delivered, 2);
//! assert!(batcher.add("late", "x".into()).is_err()); // Closed: the item comes back
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
//!
//! # Deadlines
//!
//! Every open group has one entry in a [timer wheel](crate::timer) of its
//! shard (100 µs resolution). An add only stores the group's new grace
//! deadline; when the entry's old deadline comes, the driver thread re-arms
//! it at the group's current deadline if that moved, and seals the group
//! otherwise. Driver threads sleep on the batcher's [`Clock`] until their
//! next due slot; nothing scans the groups. A group never seals before its
//! deadline; how late it sealed is measured ([`BatchStats::late_max`]).
//!
//! # Nothing silently lost
//!
//! Each accepted item ends in exactly one place: one batch's output
//! (delivered, or dropped by the [`on_full`](GroupBatcherBuilder::on_full)
//! policy and counted), a [`Failed`] dead letter (the aggregate function
//! returned `Err` or panicked), an `Ok(None)` result (counted in
//! [`BatchStats::empty`]), or [`shutdown`](GroupBatcher::shutdown)'s
//! report. A group sealed while items still arrive for its key is closed for
//! good: those items open a fresh group.
//!
//! # A full output
//!
//! [`on_full`](GroupBatcherBuilder::on_full) takes any [`Overflow`] policy:
//! `Block` (the default: the driver waits), `BlockTimeout`, `DropNewest`,
//! `DropOldest` and `Reject` (counted in [`BatchStats`]), or `Spill`, which
//! writes the batches beyond the output's capacity to a log on disk and
//! hands them back, in seal order, as the receiver drains; it needs
//! [`spill_codecs`](GroupBatcherBuilder::spill_codecs). A spilling output
//! waits, refuses or drops only when the disk bound is reached, under the
//! spill config's own `when_full` policy, and counts it the same way. What
//! is on disk when the batcher goes is delivered first by the next batcher
//! built on the same directory.

mod engine;
#[cfg(feature = "redis")]
pub mod redis;
mod spill;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

use crate::channel::Receiver;
use crate::clock::{Clock, SharedClock};
use crate::codec::Codec;
use crate::hash::FastBuildHasher;
use crate::sync::Arc;
use crate::{ConfigError, Overflow};

use engine::Inner;

/// What [`GroupBatcher::add`] did with the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The item opened a new group.
    Opened,
    /// The item joined an open group.
    Joined,
    /// The item filled its group (max items or max bytes): the group is
    /// sealed and its batch is on its way.
    Sealed,
}

/// Why [`GroupBatcher::add`] refused an item; the key and item come back.
#[derive(PartialEq, Eq)]
pub enum AddError<K, T> {
    /// The batcher was shut down.
    Closed(K, T),
    /// The key would open a new group beyond
    /// [`max_groups`](GroupBatcherBuilder::max_groups).
    Full(K, T),
}

impl<K, T> AddError<K, T> {
    /// The key and item handed back.
    pub fn into_inner(self) -> (K, T) {
        match self {
            Self::Closed(k, t) | Self::Full(k, t) => (k, t),
        }
    }
}

impl<K, T> fmt::Debug for AddError<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(..) => f.write_str("Closed(..)"),
            Self::Full(..) => f.write_str("Full(..)"),
        }
    }
}

impl<K, T> fmt::Display for AddError<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(..) => f.write_str("the batcher is shut down; the item was handed back"),
            Self::Full(..) => f.write_str(
                "max_groups open groups already; the item for a new group was handed back",
            ),
        }
    }
}

impl<K, T> std::error::Error for AddError<K, T> {}

/// What sealed a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// No item came for the grace period.
    Grace,
    /// The group's first item had waited the max delay.
    MaxDelay,
    /// The group reached max items.
    MaxItems,
    /// The group reached max bytes.
    MaxBytes,
    /// [`flush`](GroupBatcher::flush) or [`flush_all`](GroupBatcher::flush_all).
    Manual,
    /// [`shutdown`](GroupBatcher::shutdown).
    Shutdown,
}

/// Identifies one sealed group, unique within a batcher (for idempotent
/// downstream handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// One sealed group's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<K, O> {
    /// The group key.
    pub group: K,
    /// What the aggregate function made of the group's items.
    pub output: O,
    /// How many items the group had.
    pub items: usize,
    /// The batch's id.
    pub id: BatchId,
    /// When the group's first item was added (on the batcher's clock).
    /// Rebuilt from the wall-clock time for a batch read back from a spill
    /// log: see [`spill_codecs`](GroupBatcherBuilder::spill_codecs).
    pub opened_at: Instant,
    /// What sealed the group.
    pub reason: Trigger,
    /// How long after its deadline the group was sealed (zero unless
    /// `reason` is `Grace` or `MaxDelay`): the driver's lateness.
    pub late: Duration,
}

/// A group whose aggregate function returned `Err` or panicked: its items
/// (those the function left in the vector), on the dead-letter output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed<K, T> {
    /// The group key.
    pub group: K,
    /// The items the function left in its vector (all of them unless it
    /// took some out before failing).
    pub items: Vec<T>,
    /// The error's `Display` text, or `"panicked: <message>"`.
    pub error: String,
    /// The batch's id.
    pub id: BatchId,
}

/// Per-group overrides of the batcher's limits, chosen when a group opens
/// (see [`group_config`](GroupBatcherBuilder::group_config)). `None` fields
/// keep the batcher's setting; a zero duration or count is raised to the
/// smallest meaningful value (one 100 µs timer tick, 1 item, 1 byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupConfig {
    /// Grace period for this group.
    pub grace: Option<Duration>,
    /// Max delay for this group.
    pub max_delay: Option<Duration>,
    /// Max items for this group.
    pub max_items: Option<usize>,
    /// Max bytes for this group (needs a weigher: see
    /// [`max_bytes`](GroupBatcherBuilder::max_bytes)).
    pub max_bytes: Option<usize>,
}

impl GroupConfig {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overrides the grace period.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Overrides the max delay.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// Overrides max items.
    pub fn max_items(mut self, max_items: usize) -> Self {
        self.max_items = Some(max_items);
        self
    }

    /// Overrides max bytes.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }
}

/// A snapshot of one open group; see [`GroupBatcher::group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo<K> {
    /// The group key.
    pub key: K,
    /// Items in the group.
    pub items: usize,
    /// Their weight, if a weigher is set (else 0).
    pub bytes: usize,
    /// Time since the group's first item.
    pub age: Duration,
    /// When a deadline will seal it (`None`: only size or a flush will).
    pub next_deadline: Option<Instant>,
    /// The trigger of that deadline (`Grace` or `MaxDelay`).
    pub trigger: Option<Trigger>,
}

/// Batches sealed, by trigger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggerCounts {
    /// Sealed by the grace period.
    pub grace: u64,
    /// Sealed by the max delay.
    pub max_delay: u64,
    /// Sealed at max items.
    pub max_items: u64,
    /// Sealed at max bytes.
    pub max_bytes: u64,
    /// Sealed by a flush.
    pub manual: u64,
    /// Sealed by shutdown.
    pub shutdown: u64,
}

impl Trigger {
    /// The trigger's slot in counters kept per trigger (see
    /// [`TriggerCounts::load`]).
    pub(crate) fn index(self) -> usize {
        match self {
            Trigger::Grace => 0,
            Trigger::MaxDelay => 1,
            Trigger::MaxItems => 2,
            Trigger::MaxBytes => 3,
            Trigger::Manual => 4,
            Trigger::Shutdown => 5,
        }
    }

    /// The trigger at `index` (the inverse of [`Trigger::index`]).
    pub(crate) fn from_index(index: u8) -> Option<Self> {
        Some(match index {
            0 => Trigger::Grace,
            1 => Trigger::MaxDelay,
            2 => Trigger::MaxItems,
            3 => Trigger::MaxBytes,
            4 => Trigger::Manual,
            5 => Trigger::Shutdown,
            _ => return None,
        })
    }
}

impl TriggerCounts {
    /// Reads counters kept per trigger, in `Trigger` order (grace, max
    /// delay, max items, max bytes, manual, shutdown).
    pub(crate) fn load(counts: &[crate::sync::atomic::AtomicU64; 6]) -> Self {
        let [grace, max_delay, max_items, max_bytes, manual, shutdown] = counts
            .each_ref()
            .map(|c| c.load(crate::sync::atomic::Ordering::Relaxed));
        TriggerCounts {
            grace,
            max_delay,
            max_items,
            max_bytes,
            manual,
            shutdown,
        }
    }

    /// All sealed batches.
    pub fn total(&self) -> u64 {
        self.grace + self.max_delay + self.max_items + self.max_bytes + self.manual + self.shutdown
    }
}

/// Counters of a [`GroupBatcher`]; see [`GroupBatcher::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchStats {
    /// Items accepted.
    pub added: u64,
    /// Groups open now.
    pub groups_open: usize,
    /// Groups sealed, by trigger.
    pub sealed: TriggerCounts,
    /// Batches handed to the output channel (some may since have been
    /// evicted under `Overflow::DropOldest`: see `dropped_oldest`).
    pub emitted: u64,
    /// Aggregations that returned `Ok(None)` (nothing to emit).
    pub empty: u64,
    /// Aggregations that returned `Err`.
    pub failures: u64,
    /// Aggregations that panicked.
    pub panics: u64,
    /// Failed groups handed to the dead-letter output.
    pub dead_letters: u64,
    /// Dead letters evicted from a full dead-letter output (oldest first).
    pub dead_letters_dropped: u64,
    /// Adds refused after shutdown.
    pub refused_closed: u64,
    /// Adds refused at `max_groups`.
    pub refused_full: u64,
    /// Batches dropped on a full output under `Overflow::DropNewest`.
    pub dropped_newest: u64,
    /// Batches evicted from a full output under `Overflow::DropOldest`.
    pub dropped_oldest: u64,
    /// Batches refused by a full output under `Overflow::Reject`.
    pub rejected: u64,
    /// Batches not sent within `Overflow::BlockTimeout`.
    pub timed_out: u64,
    /// Groups sealed by a deadline (grace or max delay): the count behind
    /// `late_sum` and `late_max`.
    pub late_count: u64,
    /// Sum over those groups of how long after its deadline each was sealed.
    pub late_sum: Duration,
    /// The most any of them was late.
    pub late_max: Duration,
    /// Batches queued in the output's memory now.
    pub queued: usize,
    /// Batches written to the spill log (under `Overflow::Spill`; counted
    /// in `emitted` too).
    pub spilled: u64,
    /// Batches read back from the spill log.
    pub unspilled: u64,
    /// Batches in the spill log now (not counted in `queued`), those a
    /// previous run left included.
    pub on_disk: u64,
    /// Spilled batches lost reading them back (undecodable or corrupt).
    pub spill_lost: u64,
    /// Deliveries the spill log refused with a codec or I/O error (the
    /// batch is kept, retried at shutdown, and handed back in
    /// [`BatchReport::undelivered`] if that fails too).
    pub spill_failed: u64,
}

/// What [`GroupBatcher::shutdown`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchReport<K, T, O> {
    /// Batches handed to the output over the batcher's life (minus those
    /// dropped by the output's policy).
    pub delivered: u64,
    /// Failed groups handed to the dead-letter output over its life.
    pub dead_lettered: u64,
    /// Batches dropped over its life by the output's policy.
    pub dropped: u64,
    /// Batches sealed at shutdown that could not be delivered by the
    /// deadline: handed back.
    pub undelivered: Vec<Batch<K, O>>,
    /// Failed groups that could not be put on the dead-letter output.
    pub failed: Vec<Failed<K, T>>,
    /// `true` if delivery stopped at the deadline.
    pub timed_out: bool,
}

impl<K, T, O> BatchReport<K, T, O> {
    fn empty() -> Self {
        Self {
            delivered: 0,
            dead_lettered: 0,
            dropped: 0,
            undelivered: Vec::new(),
            failed: Vec::new(),
            timed_out: false,
        }
    }
}

/// Deadline used when the last handle is dropped without [`GroupBatcher::shutdown`].
pub const DROP_DEADLINE: Duration = Duration::from_secs(1);

type AggregateFn<K, T, O> = dyn Fn(&K, &mut Vec<T>) -> Result<Option<O>, String> + Send + Sync;
type WeigherFn<T> = dyn Fn(&T) -> usize + Send + Sync;
type GroupConfigFn<K> = dyn Fn(&K) -> Option<GroupConfig> + Send + Sync;
/// The key and output codecs of a spilling output.
type SpillCodecs<K, O> = (Box<dyn Codec<K>>, Box<dyn Codec<O>>);

/// Configures a [`GroupBatcher`]; see [`GroupBatcher::builder`].
pub struct GroupBatcherBuilder<K, T, O, S = FastBuildHasher> {
    hasher: S,
    grace: Option<Duration>,
    max_delay: Option<Duration>,
    max_items: Option<usize>,
    max_bytes: Option<(usize, Box<WeigherFn<T>>)>,
    aggregate: Option<Box<AggregateFn<K, T, O>>>,
    group_config: Option<Box<GroupConfigFn<K>>>,
    output_capacity: usize,
    on_full: Overflow,
    spill_codecs: Option<SpillCodecs<K, O>>,
    flush_threads: usize,
    pin: bool,
    max_groups: Option<usize>,
    shards: Option<usize>,
    clock: Option<SharedClock>,
    drivers: bool,
}

impl<K, T, O, S> fmt::Debug for GroupBatcherBuilder<K, T, O, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBatcherBuilder")
            .field("grace", &self.grace)
            .field("max_delay", &self.max_delay)
            .field("max_items", &self.max_items)
            .field("max_bytes", &self.max_bytes.as_ref().map(|(n, _)| n))
            .field("aggregate", &self.aggregate.is_some())
            .field("output_capacity", &self.output_capacity)
            .field("on_full", &self.on_full)
            .field("spill_codecs", &self.spill_codecs.is_some())
            .field("flush_threads", &self.flush_threads)
            .field("max_groups", &self.max_groups)
            .finish_non_exhaustive()
    }
}

impl<K, T, O> GroupBatcher<K, T, O, FastBuildHasher>
where
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
{
    /// A builder. Required: [`aggregate`](GroupBatcherBuilder::aggregate)
    /// and at least one of `grace`, `max_delay`, `max_items`.
    pub fn builder() -> GroupBatcherBuilder<K, T, O, FastBuildHasher> {
        GroupBatcherBuilder {
            hasher: FastBuildHasher,
            grace: None,
            max_delay: None,
            max_items: None,
            max_bytes: None,
            aggregate: None,
            group_config: None,
            output_capacity: 65_536,
            on_full: Overflow::Block,
            spill_codecs: None,
            flush_threads: 1,
            pin: false,
            max_groups: None,
            shards: None,
            clock: None,
            drivers: true,
        }
    }
}

impl<K, T, O, S> GroupBatcherBuilder<K, T, O, S>
where
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Seal a group once no item came for `grace` (reset by every item).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// Seal a group once its first item has waited `max_delay`, however
    /// many items keep coming.
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// Seal a group at once when it holds `max_items` items.
    pub fn max_items(mut self, max_items: usize) -> Self {
        self.max_items = Some(max_items);
        self
    }

    /// Seal a group at once when the weights of its items, by `weigher`,
    /// add up to `max_bytes` or more (an item heavier than that is a batch
    /// of its own).
    pub fn max_bytes(
        mut self,
        max_bytes: usize,
        weigher: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.max_bytes = Some((max_bytes, Box::new(weigher)));
        self
    }

    /// The function that turns a sealed group into one output:
    /// `f(&key, &mut items)`, items in the order they were added.
    /// `Ok(Some(output))` is delivered; `Ok(None)` means nothing to emit
    /// (counted); `Err(e)` and panics are counted and the items still in
    /// the vector go to the [dead-letter output](GroupBatcher::dead_letters)
    /// with `e`'s text. Take the items with `std::mem::take(items)` or
    /// `items.drain(..)` when the output keeps them.
    pub fn aggregate<E: fmt::Display>(
        mut self,
        f: impl Fn(&K, &mut Vec<T>) -> Result<Option<O>, E> + Send + Sync + 'static,
    ) -> Self {
        self.aggregate = Some(Box::new(move |k: &K, items: &mut Vec<T>| {
            f(k, items).map_err(|e| e.to_string())
        }));
        self
    }

    /// Per-group overrides, asked once when a group opens (`None`: the
    /// batcher's settings). A panic in `f` is caught and counted in
    /// `panics`, and the group gets the batcher's settings.
    pub fn group_config(
        mut self,
        f: impl Fn(&K) -> Option<GroupConfig> + Send + Sync + 'static,
    ) -> Self {
        self.group_config = Some(Box::new(f));
        self
    }

    /// Capacity of the output channel (default 65,536).
    pub fn output_capacity(mut self, capacity: usize) -> Self {
        self.output_capacity = capacity;
        self
    }

    /// What delivering a batch to a full output does (default
    /// [`Overflow::Block`]: the driver waits, and groups meanwhile keep
    /// filling and are sealed late). [`Overflow::Spill`] writes batches
    /// beyond the output's capacity to disk and needs
    /// [`spill_codecs`](Self::spill_codecs). The dead-letter output never
    /// blocks: when full it evicts its oldest entry (counted).
    pub fn on_full(mut self, policy: Overflow) -> Self {
        self.on_full = policy;
        self
    }

    /// How batches are written to disk when [`on_full`](Self::on_full) is
    /// [`Overflow::Spill`]: `keys` encodes the group key and `outputs` the
    /// aggregate's output; the batcher frames the rest of the [`Batch`]
    /// itself. The output channel then holds
    /// [`output_capacity`](Self::output_capacity) batches in memory and
    /// appends the rest, in order, to the spill log in the
    /// [`SpillConfig`](crate::spill::SpillConfig)'s directory; receivers get
    /// them back in seal order once the memory part is drained.
    ///
    /// A batch read back from disk is rebuilt: its `opened_at` comes from
    /// the wall-clock time it was written with (an `Instant` means nothing
    /// in another process), so it moves if the wall clock stepped; its `id`
    /// is unique only within the batcher that sealed it. Batches on disk
    /// when the batcher goes stay there, and a batcher built on the same
    /// directory delivers them first
    /// ([`Receiver::spill_recovery`](crate::channel::Receiver::spill_recovery)
    /// on its [`receiver`](GroupBatcher::receiver) says how many). Batches
    /// still in memory when the last receiver goes are dropped with it:
    /// drain the receiver before dropping it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sheaf::batch::GroupBatcher;
    /// use sheaf::codec::{LittleEndian, Utf8};
    /// use sheaf::spill::{Fsync, SpillConfig};
    /// use sheaf::Overflow;
    ///
    /// let dir = std::env::temp_dir().join(format!("sheaf-batch-doc-{}", std::process::id()));
    /// let config = SpillConfig::builder(&dir).fsync(Fsync::Never).build()?;
    /// let batcher = GroupBatcher::<u32, u64, String>::builder()
    ///     .max_items(2)
    ///     .aggregate(|_, items: &mut Vec<u64>| Ok::<_, std::fmt::Error>(Some(format!("{items:?}"))))
    ///     .output_capacity(1)
    ///     .on_full(Overflow::Spill(config))
    ///     .spill_codecs(LittleEndian, Utf8)
    ///     .build()?;
    /// for i in 0..6 {
    ///     batcher.add(7, i).unwrap();
    /// }
    /// batcher.shutdown(Duration::from_secs(1)); // 1 batch in memory, 2 on disk
    /// assert!(batcher.stats().spilled >= 1);
    /// let outputs: Vec<String> = batcher.receiver().iter().map(|b| b.output).collect();
    /// assert_eq!(outputs, ["[0, 1]", "[2, 3]", "[4, 5]"]);
    /// # drop(batcher);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), sheaf::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`build`](Self::build) returns a [`ConfigError`] (setting
    /// `"spill_codecs"`) when codecs are given but the policy is not
    /// `Overflow::Spill`: codecs alone would spill nothing, which is more
    /// likely a mistake than a plan.
    pub fn spill_codecs(
        mut self,
        keys: impl Codec<K> + 'static,
        outputs: impl Codec<O> + 'static,
    ) -> Self {
        self.spill_codecs = Some((Box::new(keys), Box::new(outputs)));
        self
    }

    /// Driver threads (default 1). Each owns a share of the shards: it
    /// sleeps until their next deadline, seals, aggregates and delivers.
    pub fn flush_threads(mut self, threads: usize) -> Self {
        self.flush_threads = threads;
        self
    }

    /// Pin each driver thread to its own physical core (default `false`).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Cap on open groups: an item for a new group beyond it is handed
    /// back in [`AddError::Full`].
    pub fn max_groups(mut self, max: usize) -> Self {
        self.max_groups = Some(max);
        self
    }

    /// Number of shards (a power of two; default: 4 per CPU, at least 16).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The time source (default [`QuantaClock`](crate::clock::QuantaClock),
    /// the time-stamp counter: every `add` reads it). The instants the
    /// batcher hands out (`Batch::opened_at`) are on this clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(std::sync::Arc::new(clock));
        self
    }

    /// The key hasher (default [`FastBuildHasher`]).
    pub fn hasher<S2>(self, hasher: S2) -> GroupBatcherBuilder<K, T, O, S2> {
        GroupBatcherBuilder {
            hasher,
            grace: self.grace,
            max_delay: self.max_delay,
            max_items: self.max_items,
            max_bytes: self.max_bytes,
            aggregate: self.aggregate,
            group_config: self.group_config,
            output_capacity: self.output_capacity,
            on_full: self.on_full,
            spill_codecs: self.spill_codecs,
            flush_threads: self.flush_threads,
            pin: self.pin,
            max_groups: self.max_groups,
            shards: self.shards,
            clock: self.clock,
            drivers: self.drivers,
        }
    }

    /// No driver threads: deadlines are processed only by
    /// [`GroupBatcher::tick`]. For loom models and fuzzing.
    #[doc(hidden)]
    pub fn manual_ticks(mut self) -> Self {
        self.drivers = false;
        self
    }

    /// Builds the batcher and starts its driver threads.
    ///
    /// # Errors
    /// [`ConfigError`] when no aggregate function was given; none of
    /// `grace`, `max_delay`, `max_items` was set; a duration, count or
    /// capacity is zero; `max_delay` is shorter than `grace` (the grace
    /// period could never fire); `shards` is not a power of two;
    /// `flush_threads` is 0 or more than the shards; `on_full` is
    /// `Overflow::Spill` without [`spill_codecs`](Self::spill_codecs) (or
    /// codecs were given without it); the spill directory cannot be opened
    /// (setting `"on_full"`, the I/O error in the message); or the OS
    /// refuses a thread.
    pub fn build(self) -> Result<GroupBatcher<K, T, O, S>, ConfigError> {
        let aggregate = self.aggregate.ok_or_else(|| {
            ConfigError::new(
                "aggregate",
                "no aggregate function; call .aggregate(|key, items| Ok::<_, E>(Some(output)))",
            )
        })?;
        if self.grace.is_none() && self.max_delay.is_none() && self.max_items.is_none() {
            return Err(ConfigError::new(
                "grace",
                "no trigger: set at least one of .grace(d), .max_delay(d), .max_items(n)",
            ));
        }
        if self.grace == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "grace",
                "0 would seal every item alone; use a positive duration (100 µs, the timer's tick, at least), or .max_items(1)",
            ));
        }
        if self.max_delay == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "max_delay",
                "0 would seal every item alone; use a positive duration (100 µs, the timer's tick, at least), or .max_items(1)",
            ));
        }
        if let (Some(grace), Some(max_delay)) = (self.grace, self.max_delay) {
            if max_delay < grace {
                return Err(ConfigError::new(
                    "max_delay",
                    format!(
                        "{max_delay:?} is shorter than the grace period {grace:?}, which could never fire; \
                         raise max_delay to at least the grace period or drop .grace"
                    ),
                ));
            }
        }
        if self.max_items == Some(0) {
            return Err(ConfigError::new(
                "max_items",
                "0 holds no item; use 1 or more",
            ));
        }
        if matches!(self.max_bytes, Some((0, _))) {
            return Err(ConfigError::new(
                "max_bytes",
                "0 holds no item; use 1 or more",
            ));
        }
        if self.output_capacity == 0 {
            return Err(ConfigError::new(
                "output_capacity",
                "0 cannot hold a batch; use 1 or more",
            ));
        }
        if self.max_groups == Some(0) {
            return Err(ConfigError::new(
                "max_groups",
                "0 refuses every group; use 1 or more, or no cap",
            ));
        }
        match (&self.on_full, &self.spill_codecs) {
            (Overflow::Spill(_), None) => {
                return Err(ConfigError::new(
                    "on_full",
                    "Overflow::Spill needs codecs to write batches to disk: \
                     call .spill_codecs(key_codec, output_codec), e.g. .spill_codecs(Utf8, Raw)",
                ))
            }
            (Overflow::Spill(_), Some(_)) | (_, None) => {}
            (other, Some(_)) => {
                return Err(ConfigError::new(
                    "spill_codecs",
                    format!(
                        "codecs given but on_full is {other:?}, which spills nothing: \
                         add .on_full(Overflow::Spill(config)) or drop .spill_codecs"
                    ),
                ))
            }
        }
        let shards = match self.shards {
            Some(n) if n == 0 || !n.is_power_of_two() => {
                return Err(ConfigError::new(
                    "shards",
                    format!("{n} is not a power of two; use 1, 2, 4, ..."),
                ))
            }
            Some(n) => n,
            None if cfg!(sheaf_loom) => 2,
            None => (crate::sync::available_cpus() * 4)
                .next_power_of_two()
                .max(16)
                .max(self.flush_threads.next_power_of_two()),
        };
        if self.flush_threads == 0 || self.flush_threads > shards {
            return Err(ConfigError::new(
                "flush_threads",
                format!(
                    "{} is out of range; use 1 to {shards} (the shard count)",
                    self.flush_threads
                ),
            ));
        }
        let settings = engine::Settings {
            grace: self.grace,
            max_delay: self.max_delay,
            max_items: self.max_items,
            max_bytes: self.max_bytes.as_ref().map(|(n, _)| *n),
        };
        let inner = Inner::new(engine::Parts {
            hasher: self.hasher,
            settings,
            weigher: self.max_bytes.map(|(_, w)| w),
            aggregate,
            group_config: self.group_config,
            output_capacity: self.output_capacity,
            on_full: self.on_full,
            spill_codecs: self.spill_codecs,
            partitions: self.flush_threads,
            max_groups: self.max_groups,
            shards,
            clock: self
                .clock
                .unwrap_or_else(|| std::sync::Arc::new(crate::clock::QuantaClock::new())),
        })?;
        let inner = Arc::new(inner);
        if self.drivers {
            engine::spawn_drivers(&inner, self.pin)?;
        }
        Ok(GroupBatcher { inner })
    }
}

/// Keyed batching on grace, max delay and max size; a cheap, cloneable
/// handle. See the [module docs](self).
pub struct GroupBatcher<K, T, O, S = FastBuildHasher> {
    inner: Arc<Inner<K, T, O, S>>,
}

impl<K, T, O, S> GroupBatcher<K, T, O, S>
where
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Adds `item` to `key`'s open group, opening one if there is none.
    ///
    /// # Errors
    /// [`AddError::Closed`] after shutdown and [`AddError::Full`] at the
    /// group cap; both hand the key and item back.
    #[inline]
    pub fn add(&self, key: K, item: T) -> Result<Added, AddError<K, T>> {
        self.inner.add(key, item)
    }

    /// The output: one [`Batch`] per sealed group with an output. Every
    /// call returns a clone of one receiver; iterating it ends once the
    /// batcher is shut down and everything delivered has been received.
    pub fn receiver(&self) -> Receiver<Batch<K, O>> {
        self.inner.receiver()
    }

    /// The dead-letter output: groups whose aggregate function failed, with
    /// their items.
    pub fn dead_letters(&self) -> Receiver<Failed<K, T>> {
        self.inner.dead_letter_receiver()
    }

    /// Seals `key`'s open group now (trigger [`Manual`](Trigger::Manual))
    /// and wakes its driver thread, which aggregates and delivers it.
    /// `false` when no group is open for `key` (or after shutdown).
    pub fn flush(&self, key: &K) -> bool {
        self.inner.flush(key)
    }

    /// Seals every open group now and wakes the drivers, which aggregate
    /// and deliver them; returns how many groups were sealed.
    pub fn flush_all(&self) -> usize {
        self.inner.flush_all()
    }

    /// A snapshot of `key`'s open group.
    pub fn group(&self, key: &K) -> Option<GroupInfo<K>>
    where
        K: Clone,
    {
        self.inner.group(key)
    }

    /// Snapshots of every open group (shard by shard, so not one instant).
    pub fn groups(&self) -> Vec<GroupInfo<K>>
    where
        K: Clone,
    {
        self.inner.groups()
    }

    /// Counters; see [`BatchStats`].
    pub fn stats(&self) -> BatchStats {
        self.inner.stats()
    }

    /// The message of the last panic caught in a user function.
    pub fn last_panic(&self) -> Option<String> {
        self.inner.last_panic()
    }

    /// Refuses further adds, seals every open group (trigger
    /// [`Shutdown`](Trigger::Shutdown)), aggregates them and delivers
    /// everything within `deadline` (real time); hands back what it could
    /// not deliver. Afterwards the outputs end once drained.
    ///
    /// Idempotent: a second call (or a call on another handle) returns an
    /// empty report. Never hangs, even when nobody reads the output.
    pub fn shutdown(&self, deadline: Duration) -> BatchReport<K, T, O> {
        self.inner.shutdown(deadline)
    }

    /// Runs one deadline pass of every partition in the calling thread.
    /// For loom models and fuzzing with
    /// [`manual_ticks`](GroupBatcherBuilder::manual_ticks).
    #[doc(hidden)]
    pub fn tick(&self) {
        self.inner.tick();
    }

    /// Blocks until every driver has run a pass that began after this call
    /// (so everything due at the clock's current time is sealed and
    /// delivered). For tests driving a
    /// [`ManualClock`](crate::clock::ManualClock).
    #[doc(hidden)]
    pub fn settle(&self) {
        self.inner.settle();
    }
}

impl<K, T, O, S> Clone for GroupBatcher<K, T, O, S> {
    fn clone(&self) -> Self {
        self.inner.retain_handle();
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, T, O, S> Drop for GroupBatcher<K, T, O, S> {
    fn drop(&mut self) {
        self.inner.release_handle();
    }
}

impl<K, T, O, S> fmt::Debug for GroupBatcher<K, T, O, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBatcher").finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<GroupBatcher<String, Vec<u8>, String>>();
};
