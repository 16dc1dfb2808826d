//! The engine under [`GroupBatcher`](super::GroupBatcher): sharded group
//! tables, a timer wheel per shard, driver threads, delivery and shutdown.
//!
//! # Structure and invariants
//!
//! - Groups live in `shards[(hash >> 32) & mask]`, each a `Mutex<Shard>`
//!   holding a `HashTable<Group>`, a `Wheel<NonZeroU64>` (value: the group's
//!   hash) and `sealed`, the groups sealed by adds (max items / bytes) or
//!   flushes, waiting for their driver.
//! - Every open group with a time trigger has exactly one wheel entry, and
//!   its key is in `Group::timer`; a group leaves the table only under
//!   the shard lock, and the entry is cancelled in the same critical
//!   section (or is the entry firing). So a firing entry always finds its
//!   group by `(hash, timer key)`.
//! - An add moves the grace deadline later by a store to the group
//!   (`grace_due_ns`); the wheel entry stays where it was. When it fires,
//!   the driver seals the group if `min(grace, max delay)` has passed (never
//!   before: both are kept in nanoseconds) and otherwise re-arms the entry
//!   at that deadline.
//! - Items are pushed to `Group::items` under the shard lock, so a group's
//!   items are in add order, and sealing (removal from the table) is
//!   atomic with respect to adds: an item lands in the group before the
//!   seal or opens a fresh group after it. No item is in two batches, none
//!   in zero.
//! - Partition `p` (driver thread `p`) owns shards `p, p + n, p + 2n, ...`;
//!   its [`Alarm`] tells it when to wake. Only drivers, [`tick`] and
//!   shutdown (after joining the drivers) aggregate and deliver.
//! - Shutdown sets `closing` before it locks each shard; an add checks
//!   `closing` under the shard lock, so it either lands before the shard
//!   is drained or is refused with its item.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hashbrown::HashTable;

use super::{
    AddError, Added, AggregateFn, Batch, BatchId, BatchReport, BatchStats, Failed, GroupConfig,
    GroupConfigFn, GroupInfo, SpillCodecs, Trigger, TriggerCounts, WeigherFn, DROP_DEADLINE,
};
use crate::channel::{self, Receiver, SendTimeoutError, Sender, SpillSendError};
use crate::clock::{saturating_nanos, Origin, SharedClock};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{thread, Mutex};
use crate::timer::{tick_instant, Alarm, Tick, TimerKey, Wheel, TICK_NANOS};
use crate::{ConfigError, Overflow};

/// How long a blocked delivery waits before it re-checks for shutdown.
const BLOCK_SLICE: Duration = Duration::from_millis(10);
/// "No such limit."
const NONE: u64 = u64::MAX;

pub(super) struct Settings {
    pub(super) grace: Option<Duration>,
    pub(super) max_delay: Option<Duration>,
    pub(super) max_items: Option<usize>,
    pub(super) max_bytes: Option<usize>,
}

/// A group's limits in engine units (`NONE` / `usize::MAX`: no limit).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Limits {
    grace_ns: u64,
    delay_ns: u64,
    max_items: usize,
    max_bytes: usize,
}

impl Limits {
    fn from_settings(s: &Settings) -> Self {
        Self {
            grace_ns: s.grace.map_or(NONE, saturating_nanos),
            delay_ns: s.max_delay.map_or(NONE, saturating_nanos),
            max_items: s.max_items.unwrap_or(usize::MAX),
            max_bytes: s.max_bytes.unwrap_or(usize::MAX),
        }
    }

    fn with(mut self, over: &GroupConfig) -> Self {
        if let Some(d) = over.grace {
            self.grace_ns = saturating_nanos(d).max(TICK_NANOS);
        }
        if let Some(d) = over.max_delay {
            self.delay_ns = saturating_nanos(d).max(TICK_NANOS);
        }
        if let Some(n) = over.max_items {
            self.max_items = n.max(1);
        }
        if let Some(n) = over.max_bytes {
            self.max_bytes = n.max(1);
        }
        self
    }
}

struct Group<K, T> {
    key: K,
    items: Vec<T>,
    bytes: usize,
    /// Nanoseconds since the batcher's origin.
    opened_ns: u64,
    /// Last add + grace (`NONE` without a grace period): the store an add makes.
    grace_due_ns: u64,
    timer: Option<TimerKey>,
    /// `None`: the batcher's defaults (no allocation for the common case).
    limits: Option<Box<Limits>>,
}

impl<K, T> Group<K, T> {
    /// The deadline that will seal the group, and which trigger it is.
    fn due(&self, limits: &Limits) -> Option<(u64, Trigger)> {
        let delay_due = self.opened_ns.saturating_add(limits.delay_ns);
        match (self.grace_due_ns, limits.delay_ns) {
            (NONE, NONE) => None,
            (grace, _) if grace < delay_due => Some((grace, Trigger::Grace)),
            _ => Some((delay_due, Trigger::MaxDelay)),
        }
    }

    fn full(&self, limits: &Limits) -> Option<Trigger> {
        if self.items.len() >= limits.max_items {
            Some(Trigger::MaxItems)
        } else if self.bytes >= limits.max_bytes {
            Some(Trigger::MaxBytes)
        } else {
            None
        }
    }
}

/// A group taken out of its table, on its way to aggregation.
struct Sealed<K, T> {
    key: K,
    items: Vec<T>,
    id: BatchId,
    opened_ns: u64,
    reason: Trigger,
    late_ns: u64,
}

struct Shard<K, T> {
    table: HashTable<Group<K, T>>,
    /// Value: the group's hash (never zero, so an entry is 32 bytes).
    wheel: Wheel<NonZeroU64>,
    sealed: Vec<Sealed<K, T>>,
    added: u64,
}

type PaddedShard<K, T> = CachePadded<Mutex<Shard<K, T>>>;

struct Partition<K, O> {
    alarm: Alarm,
    /// Batches a driver could not deliver before shutdown began.
    pending: Mutex<Vec<Batch<K, O>>>,
}

#[derive(Default)]
struct Counters {
    sealed: [AtomicU64; 6],
    emitted: AtomicU64,
    empty: AtomicU64,
    failures: AtomicU64,
    panics: AtomicU64,
    dead_letters: AtomicU64,
    dead_letters_dropped: AtomicU64,
    refused_closed: AtomicU64,
    refused_full: AtomicU64,
    /// Sends the spill log refused with a codec or I/O error.
    spill_failed: AtomicU64,
    late_count: AtomicU64,
    late_sum_ns: AtomicU64,
    late_max_ns: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(super) struct Parts<K, T, O, S> {
    pub(super) hasher: S,
    pub(super) settings: Settings,
    pub(super) weigher: Option<Box<WeigherFn<T>>>,
    pub(super) aggregate: Box<AggregateFn<K, T, O>>,
    pub(super) group_config: Option<Box<GroupConfigFn<K>>>,
    pub(super) output_capacity: usize,
    pub(super) on_full: Overflow,
    pub(super) spill_codecs: Option<SpillCodecs<K, O>>,
    pub(super) partitions: usize,
    pub(super) max_groups: Option<usize>,
    pub(super) shards: usize,
    pub(super) clock: SharedClock,
}

pub(super) struct Inner<K, T, O, S> {
    hasher: S,
    defaults: Limits,
    weigher: Option<Box<WeigherFn<T>>>,
    aggregate: Box<AggregateFn<K, T, O>>,
    group_config: Option<Box<GroupConfigFn<K>>>,
    shards: Box<[PaddedShard<K, T>]>,
    shard_mask: u64,
    partitions: Box<[Partition<K, O>]>,
    clock: SharedClock,
    origin: Origin,
    on_full: Overflow,
    receiver: Receiver<Batch<K, O>>,
    output: Mutex<Option<Sender<Batch<K, O>>>>,
    dead_receiver: Receiver<Failed<K, T>>,
    dead_output: Mutex<Option<Sender<Failed<K, T>>>>,
    max_groups: Option<usize>,
    /// Open groups, tracked only with a cap.
    open: CachePadded<AtomicUsize>,
    next_id: AtomicU64,
    closing: AtomicBool,
    shut_down: AtomicBool,
    handles: AtomicUsize,
    counters: CachePadded<Counters>,
    drivers: Mutex<Vec<thread::JoinHandle<()>>>,
    /// Held by `tick` and by `shutdown`.
    ticking: Mutex<()>,
    last_panic: Mutex<Option<String>>,
    /// `Inner::shutdown_on_drop`, captured where the bounds are known.
    on_last_drop: fn(&Self),
}

/// Where a delivery happens, which decides how long it may wait.
#[derive(Clone, Copy)]
enum Mode {
    /// A driver (or `tick`): waits under `Block` until shutdown begins.
    Driver,
    /// Shutdown: waits until the deadline, then hands back.
    Shutdown(Option<Instant>),
}

impl<K, T, O, S> Inner<K, T, O, S>
where
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(super) fn new(parts: Parts<K, T, O, S>) -> Result<Self, ConfigError> {
        let output = channel::builder()
            .capacity(parts.output_capacity)
            .overflow(parts.on_full.clone());
        let (sender, receiver) = match parts.spill_codecs {
            Some((keys, outputs)) => output
                .build_spilling(super::spill::BatchCodec::new(
                    keys,
                    outputs,
                    parts.clock.clone(),
                ))
                .map_err(|e| e.for_setting("on_full"))?,
            None => output.build()?,
        };
        let (dead_sender, dead_receiver) = channel::builder()
            .capacity(parts.output_capacity)
            .overflow(Overflow::DropOldest)
            .build()?;
        let origin = Origin::now(&*parts.clock);
        Ok(Self {
            hasher: parts.hasher,
            defaults: Limits::from_settings(&parts.settings),
            weigher: parts.weigher,
            aggregate: parts.aggregate,
            group_config: parts.group_config,
            shards: (0..parts.shards)
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        table: HashTable::new(),
                        wheel: Wheel::new(),
                        sealed: Vec::new(),
                        added: 0,
                    }))
                })
                .collect(),
            shard_mask: parts.shards as u64 - 1,
            partitions: (0..parts.partitions)
                .map(|_| Partition {
                    alarm: Alarm::new(),
                    pending: Mutex::new(Vec::new()),
                })
                .collect(),
            clock: parts.clock,
            origin,
            on_full: parts.on_full,
            receiver,
            output: Mutex::new(Some(sender)),
            dead_receiver,
            dead_output: Mutex::new(Some(dead_sender)),
            max_groups: parts.max_groups,
            open: CachePadded::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            handles: AtomicUsize::new(1),
            counters: CachePadded::new(Counters::default()),
            drivers: Mutex::new(Vec::new()),
            ticking: Mutex::new(()),
            last_panic: Mutex::new(None),
            on_last_drop: Self::shutdown_on_drop,
        })
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        self.origin.elapsed(&*self.clock)
    }

    /// The key's hash, never zero (the wheel stores it as a `NonZeroU64`).
    #[inline]
    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key).max(1)
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        // Middle bits: hashbrown takes its bucket from the low bits and its
        // control byte from the top seven.
        ((hash >> 32) & self.shard_mask) as usize
    }

    fn partition_of(&self, shard: usize) -> &Partition<K, O> {
        &self.partitions[shard % self.partitions.len()]
    }

    fn record_panic(&self, message: String) {
        bump(&self.counters.panics, 1);
        *self.last_panic.lock() = Some(message);
    }

    fn limits_for(&self, key: &K) -> Option<Box<Limits>> {
        let f = self.group_config.as_ref()?;
        match crate::unwind::catch(|| f(key)) {
            Ok(Some(over)) => {
                let limits = self.defaults.with(&over);
                (limits != self.defaults).then(|| Box::new(limits))
            }
            Ok(None) => None,
            Err(message) => {
                self.record_panic(message);
                None
            }
        }
    }

    fn admit_group(&self) -> bool {
        match self.max_groups {
            None => true,
            Some(max) => {
                if self.open.fetch_add(1, Ordering::Relaxed) < max {
                    true
                } else {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    false
                }
            }
        }
    }

    fn forget_group(&self) {
        if self.max_groups.is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes a group out of service (the caller removed it from its table
    /// and cancelled or consumed its timer).
    fn seal(&self, group: Group<K, T>, reason: Trigger) -> Sealed<K, T> {
        self.forget_group();
        bump(&self.counters.sealed[reason.index()], 1);
        Sealed {
            key: group.key,
            items: group.items,
            id: BatchId(self.next_id.fetch_add(1, Ordering::Relaxed)),
            opened_ns: group.opened_ns,
            reason,
            late_ns: 0,
        }
    }

    pub(super) fn add(&self, key: K, item: T) -> Result<Added, AddError<K, T>> {
        let weight = match &self.weigher {
            None => 0,
            Some(weigher) => match crate::unwind::catch(|| weigher(&item)) {
                Ok(weight) => weight,
                Err(message) => {
                    self.record_panic(message);
                    0
                }
            },
        };
        let hash = self.hash(&key);
        let now_ns = self.now_ns();
        let index = self.shard_of(hash);
        let mut guard = self.shards[index].lock();
        if self.closing.load(Ordering::Acquire) {
            drop(guard);
            bump(&self.counters.refused_closed, 1);
            return Err(AddError::Closed(key, item));
        }
        let Shard {
            table,
            wheel,
            sealed,
            added,
        } = &mut *guard;
        let (outcome, wake) = match table.find_entry(hash, |g| g.key == key) {
            Ok(mut entry) => {
                *added += 1;
                let group = entry.get_mut();
                group.items.push(item);
                group.bytes = group.bytes.saturating_add(weight);
                let limits = *group.limits.as_deref().unwrap_or(&self.defaults);
                match group.full(&limits) {
                    Some(reason) => {
                        let (group, _) = entry.remove();
                        if let Some(timer) = group.timer {
                            wheel.cancel(timer);
                        }
                        sealed.push(self.seal(group, reason));
                        (Added::Sealed, Some(now_ns / TICK_NANOS + 1))
                    }
                    None => {
                        if limits.grace_ns != NONE {
                            // The moving deadline: one store; the wheel
                            // re-checks it when the old deadline fires.
                            group.grace_due_ns = now_ns.saturating_add(limits.grace_ns);
                        }
                        (Added::Joined, None)
                    }
                }
            }
            Err(absent) => {
                if !self.admit_group() {
                    drop(guard);
                    bump(&self.counters.refused_full, 1);
                    return Err(AddError::Full(key, item));
                }
                let table = absent.into_table();
                *added += 1;
                let limits = self.limits_for(&key);
                let l = *limits.as_deref().unwrap_or(&self.defaults);
                let mut group = Group {
                    key,
                    items: vec![item],
                    bytes: weight,
                    opened_ns: now_ns,
                    grace_due_ns: if l.grace_ns == NONE {
                        NONE
                    } else {
                        now_ns.saturating_add(l.grace_ns)
                    },
                    timer: None,
                    limits,
                };
                if let Some(reason) = group.full(&l) {
                    sealed.push(self.seal(group, reason));
                    (Added::Sealed, Some(now_ns / TICK_NANOS + 1))
                } else {
                    let wake = group.due(&l).map(|(due_ns, _)| {
                        let tick = ceil_tick(due_ns);
                        let value = NonZeroU64::new(hash).expect("hashes are at least 1");
                        group.timer = Some(wheel.insert(tick, value));
                        tick
                    });
                    table.insert_unique(hash, group, |g| self.hash(&g.key));
                    (Added::Opened, wake)
                }
            }
        };
        drop(guard);
        if let Some(tick) = wake {
            // A sealed group asks for a pass by the next tick: a driver that
            // wakes by then anyway is not woken for it.
            self.partition_of(index).alarm.request(tick);
        }
        Ok(outcome)
    }

    pub(super) fn receiver(&self) -> Receiver<Batch<K, O>> {
        self.receiver.clone()
    }

    pub(super) fn dead_letter_receiver(&self) -> Receiver<Failed<K, T>> {
        self.dead_receiver.clone()
    }

    pub(super) fn flush(&self, key: &K) -> bool {
        let hash = self.hash(key);
        let index = self.shard_of(hash);
        let mut guard = self.shards[index].lock();
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        let Shard {
            table,
            wheel,
            sealed,
            ..
        } = &mut *guard;
        let Ok(entry) = table.find_entry(hash, |g| g.key == *key) else {
            return false;
        };
        let (group, _) = entry.remove();
        if let Some(timer) = group.timer {
            wheel.cancel(timer);
        }
        sealed.push(self.seal(group, Trigger::Manual));
        drop(guard);
        self.partition_of(index).alarm.request(0);
        true
    }

    pub(super) fn flush_all(&self) -> usize {
        let mut count = 0;
        for (index, shard) in self.shards.iter().enumerate() {
            let mut guard = shard.lock();
            if self.closing.load(Ordering::Acquire) {
                return count;
            }
            let Shard {
                table,
                wheel,
                sealed,
                ..
            } = &mut *guard;
            if table.is_empty() {
                continue;
            }
            for group in table.drain() {
                if let Some(timer) = group.timer {
                    wheel.cancel(timer);
                }
                sealed.push(self.seal(group, Trigger::Manual));
                count += 1;
            }
            drop(guard);
            self.partition_of(index).alarm.request(0);
        }
        count
    }

    fn info(&self, group: &Group<K, T>, now_ns: u64) -> GroupInfo<K>
    where
        K: Clone,
    {
        let limits = group.limits.as_deref().unwrap_or(&self.defaults);
        let due = group.due(limits);
        GroupInfo {
            key: group.key.clone(),
            items: group.items.len(),
            bytes: group.bytes,
            age: Duration::from_nanos(now_ns.saturating_sub(group.opened_ns)),
            next_deadline: due
                .and_then(|(ns, _)| self.origin.instant().checked_add(Duration::from_nanos(ns))),
            trigger: due.map(|(_, t)| t),
        }
    }

    pub(super) fn group(&self, key: &K) -> Option<GroupInfo<K>>
    where
        K: Clone,
    {
        let hash = self.hash(key);
        let now_ns = self.now_ns();
        let guard = self.shards[self.shard_of(hash)].lock();
        guard
            .table
            .find(hash, |g| g.key == *key)
            .map(|g| self.info(g, now_ns))
    }

    pub(super) fn groups(&self) -> Vec<GroupInfo<K>>
    where
        K: Clone,
    {
        let now_ns = self.now_ns();
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let guard = shard.lock();
            out.extend(guard.table.iter().map(|g| self.info(g, now_ns)));
        }
        out
    }

    pub(super) fn stats(&self) -> BatchStats {
        let (mut added, mut groups_open) = (0, 0);
        for shard in self.shards.iter() {
            let guard = shard.lock();
            added += guard.added;
            groups_open += guard.table.len();
        }
        let c = &*self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let channel = self.receiver.stats();
        BatchStats {
            added,
            groups_open,
            sealed: TriggerCounts::load(&c.sealed),
            emitted: load(&c.emitted),
            empty: load(&c.empty),
            failures: load(&c.failures),
            panics: load(&c.panics),
            dead_letters: load(&c.dead_letters),
            dead_letters_dropped: load(&c.dead_letters_dropped),
            refused_closed: load(&c.refused_closed),
            refused_full: load(&c.refused_full),
            dropped_newest: channel.dropped_newest,
            dropped_oldest: channel.dropped_oldest,
            rejected: channel.rejected,
            timed_out: channel.timed_out,
            late_count: load(&c.late_count),
            late_sum: Duration::from_nanos(load(&c.late_sum_ns)),
            late_max: Duration::from_nanos(load(&c.late_max_ns)),
            queued: channel.len,
            spilled: channel.spilled,
            unspilled: channel.unspilled,
            on_disk: channel.on_disk,
            spill_lost: channel.spill_lost,
            spill_failed: load(&c.spill_failed),
        }
    }

    pub(super) fn last_panic(&self) -> Option<String> {
        self.last_panic.lock().clone()
    }

    /// One pass over partition `p`'s shards at the clock's current time:
    /// collects groups sealed by adds and flushes, then seals every group
    /// whose deadline has passed. Returns the partition's next due tick.
    fn collect(&self, p: usize, work: &mut Vec<Sealed<K, T>>) -> Option<Tick> {
        let now_ns = self.now_ns();
        let now = now_ns / TICK_NANOS;
        let mut next: Option<Tick> = None;
        for index in (p..self.shards.len()).step_by(self.partitions.len()) {
            let mut guard = self.shards[index].lock();
            let Shard {
                table,
                wheel,
                sealed,
                ..
            } = &mut *guard;
            // Sealed earlier than anything this pass seals: keep that order.
            work.append(sealed);
            wheel.advance(now, |timer, value| {
                let hash = value.get();
                let Ok(entry) = table.find_entry(hash, |g| g.timer == Some(timer)) else {
                    debug_assert!(false, "a wheel entry without its group");
                    return None;
                };
                let group = entry.get();
                let limits = group.limits.as_deref().unwrap_or(&self.defaults);
                let (due_ns, reason) = group.due(limits)?;
                if due_ns > now_ns {
                    // The deadline moved since the entry was armed: re-arm.
                    return Some((ceil_tick(due_ns), value));
                }
                let late = now_ns - due_ns;
                let c = &self.counters;
                bump(&c.late_count, 1);
                bump(&c.late_sum_ns, late);
                c.late_max_ns.fetch_max(late, Ordering::Relaxed);
                let (group, _) = entry.remove();
                let mut sealed = self.seal(group, reason);
                sealed.late_ns = late;
                work.push(sealed);
                None
            });
            if let Some(due) = wheel.next_due() {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
    }

    /// Aggregates one sealed group: `Ok(batch)`, `Err(dead letter)`, or
    /// `Ok(None)`-style nothing.
    fn aggregate(&self, sealed: Sealed<K, T>) -> Option<Result<Batch<K, O>, Failed<K, T>>> {
        let Sealed {
            key,
            mut items,
            id,
            opened_ns,
            reason,
            late_ns,
        } = sealed;
        let count = items.len();
        let error = match crate::unwind::catch(|| (self.aggregate)(&key, &mut items)) {
            Ok(Ok(Some(output))) => {
                return Some(Ok(Batch {
                    group: key,
                    output,
                    items: count,
                    id,
                    opened_at: self
                        .origin
                        .instant()
                        .checked_add(Duration::from_nanos(opened_ns))
                        .unwrap_or(self.origin.instant()),
                    reason,
                    late: Duration::from_nanos(late_ns),
                }))
            }
            Ok(Ok(None)) => {
                bump(&self.counters.empty, 1);
                return None;
            }
            Ok(Err(error)) => {
                bump(&self.counters.failures, 1);
                error
            }
            Err(message) => {
                let error = format!("panicked: {message}");
                self.record_panic(message);
                error
            }
        };
        Some(Err(Failed {
            group: key,
            items,
            error,
            id,
        }))
    }

    /// Sends a batch under the output policy. `Err` hands it back: shutdown
    /// began while a driver waited, or shutdown's deadline passed, or
    /// (at shutdown) the policy refused it.
    fn deliver(
        &self,
        sender: &Sender<Batch<K, O>>,
        batch: Batch<K, O>,
        mode: Mode,
    ) -> Result<(), Batch<K, O>> {
        let sent = match (&self.on_full, mode) {
            (Overflow::Block, Mode::Driver) => {
                let mut batch = batch;
                loop {
                    if self.closing.load(Ordering::Acquire) {
                        return Err(batch);
                    }
                    match sender.send_timeout(batch, BLOCK_SLICE) {
                        Ok(()) => break Ok(()),
                        Err(SendTimeoutError::Timeout(back)) => batch = back,
                        Err(SendTimeoutError::Disconnected(back)) => return Err(back),
                    }
                }
            }
            (Overflow::Spill(config), _) => {
                return self.deliver_spilling(sender, batch, mode, config)
            }
            (Overflow::Block | Overflow::BlockTimeout(_), Mode::Shutdown(Some(deadline))) => {
                let left = deadline.saturating_duration_since(Instant::now());
                sender.send_timeout(batch, left).map_err(|e| match e {
                    SendTimeoutError::Timeout(b) | SendTimeoutError::Disconnected(b) => b,
                })
            }
            (_, Mode::Shutdown(_)) => match sender.send(batch) {
                Ok(()) => Ok(()),
                Err(back) => Err(back.into_inner()),
            },
            // BlockTimeout, DropNewest, DropOldest, Reject from a driver:
            // the channel applies the policy and counts what it refuses or
            // drops; a driver has nobody to hand a refused batch to.
            (_, Mode::Driver) => {
                if sender.send(batch).is_ok() {
                    bump(&self.counters.emitted, 1);
                }
                return Ok(());
            }
        };
        if sent.is_ok() {
            bump(&self.counters.emitted, 1);
        }
        sent
    }

    /// [`deliver`](Self::deliver) under `Overflow::Spill`: a full output
    /// sends to disk, so only a full disk makes a send wait or fail, under
    /// the spill config's `when_full` policy. A driver waits at the disk
    /// bound under `Block` in slices, re-checking for shutdown; a batch the
    /// policy refuses is counted by the channel (`rejected`, `timed_out`,
    /// `dropped_newest`); one the log could not take (a codec or I/O
    /// error) is counted in `spill_failed` and kept for shutdown, which
    /// tries once more and hands it back if that fails too.
    fn deliver_spilling(
        &self,
        sender: &Sender<Batch<K, O>>,
        batch: Batch<K, O>,
        mode: Mode,
        config: &crate::spill::SpillConfig,
    ) -> Result<(), Batch<K, O>> {
        let sliced = matches!(config.when_full(), Overflow::Block);
        let mut batch = batch;
        let sent = loop {
            let cap = match mode {
                Mode::Driver if sliced => {
                    if self.closing.load(Ordering::Acquire) {
                        return Err(batch);
                    }
                    crate::clock::deadline_after(Instant::now(), BLOCK_SLICE)
                }
                Mode::Driver => None,
                Mode::Shutdown(until) => until,
            };
            match sender.send_spilling(batch, cap) {
                Ok(()) => break Ok(()),
                Err(SpillSendError::Capped(back)) => match mode {
                    Mode::Driver => batch = back,
                    Mode::Shutdown(_) => break Err(back),
                },
                Err(SpillSendError::Full(back)) => match mode {
                    // Refused by the disk-full policy and counted by the
                    // channel; a driver has nobody to hand it to.
                    Mode::Driver => return Ok(()),
                    Mode::Shutdown(_) => break Err(back),
                },
                Err(SpillSendError::Failed(back)) => {
                    bump(&self.counters.spill_failed, 1);
                    break Err(back);
                }
                Err(SpillSendError::Closed(back)) => break Err(back),
            }
        };
        if sent.is_ok() {
            bump(&self.counters.emitted, 1);
        }
        sent
    }

    fn dead_letter(
        &self,
        dead: &Sender<Failed<K, T>>,
        failed: Failed<K, T>,
    ) -> Result<(), Failed<K, T>> {
        match dead.force_send(failed) {
            Ok(evicted) => {
                bump(&self.counters.dead_letters, 1);
                if evicted.is_some() {
                    bump(&self.counters.dead_letters_dropped, 1);
                }
                Ok(())
            }
            Err(back) => Err(back.into_inner()),
        }
    }

    /// Aggregates and delivers `work` from a driver (or `tick`).
    fn deliver_work(&self, p: usize, work: &mut Vec<Sealed<K, T>>) {
        if work.is_empty() {
            return;
        }
        let (Some(sender), Some(dead)) =
            (self.output.lock().clone(), self.dead_output.lock().clone())
        else {
            return;
        };
        for sealed in work.drain(..) {
            match self.aggregate(sealed) {
                None => {}
                Some(Ok(batch)) => {
                    if let Err(batch) = self.deliver(&sender, batch, Mode::Driver) {
                        self.partitions[p].pending.lock().push(batch);
                    }
                }
                Some(Err(failed)) => {
                    // Only fails once every dead-letter receiver is gone,
                    // which cannot happen while the batcher holds one.
                    let _ = self.dead_letter(&dead, failed);
                }
            }
        }
    }

    pub(super) fn tick(&self) {
        // Shutdown holds this lock throughout, so a tick never holds sealed
        // groups while shutdown delivers.
        let _ticking = self.ticking.lock();
        let mut work = Vec::new();
        for p in 0..self.partitions.len() {
            self.collect(p, &mut work);
            self.deliver_work(p, &mut work);
        }
    }

    pub(super) fn settle(&self) {
        if self.drivers.lock().is_empty() {
            if !self.shut_down.load(Ordering::Acquire) {
                self.tick();
            }
            return;
        }
        for partition in self.partitions.iter() {
            partition.alarm.settle();
        }
    }

    fn drive(&self, p: usize) {
        let partition = &self.partitions[p];
        partition.alarm.register_driver();
        let mut work = Vec::new();
        loop {
            let pass = partition.alarm.begin_pass();
            if partition.alarm.is_closed() {
                partition.alarm.end_pass(pass);
                return;
            }
            let next = self.collect(p, &mut work);
            self.deliver_work(p, &mut work);
            partition.alarm.end_pass(pass);
            let wake = partition.alarm.arm(next);
            self.clock
                .park_until(wake.and_then(|tick| tick_instant(self.origin.instant(), tick)));
        }
    }

    pub(super) fn shutdown(&self, deadline: Duration) -> BatchReport<K, T, O> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return BatchReport::empty();
        }
        let until = crate::clock::deadline_after(Instant::now(), deadline);
        self.closing.store(true, Ordering::SeqCst);
        let _ticking = self.ticking.lock();
        for partition in self.partitions.iter() {
            partition.alarm.close();
        }
        let drivers = std::mem::take(&mut *self.drivers.lock());
        for driver in drivers {
            // Drivers catch panics in user code; nothing to hand back from a join error.
            let _ = driver.join();
        }
        let mut work = Vec::new();
        for shard in self.shards.iter() {
            let mut guard = shard.lock();
            let Shard {
                table,
                wheel,
                sealed,
                ..
            } = &mut *guard;
            work.append(sealed);
            drop(wheel.drain());
            for group in table.drain() {
                work.push(self.seal(group, Trigger::Shutdown));
            }
        }
        let sender = self.output.lock().take();
        let dead = self.dead_output.lock().take();
        let mut report = BatchReport::empty();
        let mode = Mode::Shutdown(until);
        let deliver = |batch: Batch<K, O>, report: &mut BatchReport<K, T, O>| match &sender {
            Some(sender) => {
                if let Err(batch) = self.deliver(sender, batch, mode) {
                    report.undelivered.push(batch);
                }
            }
            None => report.undelivered.push(batch),
        };
        for partition in self.partitions.iter() {
            let pending = std::mem::take(&mut *partition.pending.lock());
            for batch in pending {
                deliver(batch, &mut report);
            }
        }
        for sealed in work {
            match self.aggregate(sealed) {
                None => {}
                Some(Ok(batch)) => deliver(batch, &mut report),
                Some(Err(failed)) => match &dead {
                    Some(dead) => {
                        if let Err(failed) = self.dead_letter(dead, failed) {
                            report.failed.push(failed);
                        }
                    }
                    None => report.failed.push(failed),
                },
            }
        }
        drop(sender);
        drop(dead);
        let stats = self.stats();
        let dropped = stats.dropped_newest + stats.dropped_oldest;
        report.delivered = stats.emitted.saturating_sub(dropped);
        report.dropped = dropped + stats.rejected + stats.timed_out;
        report.dead_lettered = stats.dead_letters;
        report.timed_out = !report.undelivered.is_empty() && crate::wait::deadline_passed(until);
        report
    }

    fn shutdown_on_drop(&self) {
        drop(self.shutdown(DROP_DEADLINE));
    }
}

impl<K, T, O, S> Inner<K, T, O, S> {
    pub(super) fn retain_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// The last handle runs shutdown (through `on_last_drop`, which was
    /// captured where the bounds hold).
    pub(super) fn release_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            (self.on_last_drop)(self);
        }
    }
}

/// The tick a nanosecond deadline falls in, rounded up (never early).
#[inline]
fn ceil_tick(ns: u64) -> Tick {
    ns.div_ceil(TICK_NANOS)
}

/// Starts one driver thread per partition, pinned to its own physical core
/// when asked.
pub(super) fn spawn_drivers<K, T, O, S>(
    inner: &crate::sync::Arc<Inner<K, T, O, S>>,
    pin: bool,
) -> Result<(), ConfigError>
where
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    let cores = if pin && !cfg!(sheaf_loom) {
        crate::topology::Topology::detect().one_cpu_per_core()
    } else {
        Vec::new()
    };
    let mut drivers = inner.drivers.lock();
    for p in 0..inner.partitions.len() {
        let cpu = (!cores.is_empty()).then(|| cores[p % cores.len()]);
        let shared = crate::sync::Arc::clone(inner);
        let spawned = thread::Builder::new()
            .name(format!("sheaf-batch-{p}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    crate::topology::pin_current_thread(cpu);
                }
                shared.drive(p);
            });
        match spawned {
            Ok(handle) => drivers.push(handle),
            Err(e) => {
                drop(drivers);
                inner_abort(inner);
                return Err(ConfigError::new(
                    "flush_threads",
                    format!("cannot start a driver thread: {e}; use fewer flush threads"),
                ));
            }
        }
    }
    Ok(())
}

/// Stops the drivers already started when a later one failed to start.
fn inner_abort<K, T, O, S>(inner: &crate::sync::Arc<Inner<K, T, O, S>>)
where
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    drop(inner.shutdown(Duration::ZERO));
}

impl<K, T, O, S> fmt::Debug for Inner<K, T, O, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}
