//! Flushing: draining the tables into the output under the `OnFull` policy,
//! the periodic flusher threads, and shutdown.

use std::hash::{BuildHasher, Hash};
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::{Counters, Inner, OnFull, Partition, ShutdownReport, DROP_DEADLINE};
use crate::channel::{SendTimeoutError, Sender, TrySendError};
use crate::clock::deadline_after;
use crate::error::ConfigError;
use crate::sync::atomic::Ordering;
use crate::sync::{thread, Arc, MutexGuard};
use crate::table::{Counting, Owned, Refused};
use crate::topology::{pin_current_thread, Topology};

/// How long a blocked flush waits before it looks at the closing flag again.
const BLOCK_SLICE: Duration = Duration::from_millis(5);

/// The outcome of handing one entry to the output (the crate says
/// `Outcome` for the result of one try throughout).
enum Outcome<K, V> {
    Delivered,
    Dropped,
    /// Not delivered; the caller keeps it (back in the table, or pending).
    Kept(K, V),
}

/// Who asked for a flush: a periodic tick is skipped when the partition is
/// busy, a manual flush waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    Tick,
    Manual,
}

impl<K, V, S> Inner<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Flushes every partition in the calling thread.
    pub(super) fn flush_all(&self) -> usize {
        (0..self.partitions.len())
            .map(|p| self.flush_partition(p, Trigger::Manual).unwrap_or(0))
            .sum()
    }

    /// Flushes the shards of partition `p`. A periodic tick that finds the
    /// partition being flushed (by a manual flush) is skipped: `None`.
    pub(super) fn flush_partition(&self, p: usize, trigger: Trigger) -> Option<usize> {
        let tick = trigger == Trigger::Tick;
        let mut part = if tick {
            match self.partitions[p].try_lock() {
                Some(part) => part,
                None => {
                    Counters::bump(&self.counters.ticks_skipped, 1);
                    return None;
                }
            }
        } else {
            self.partitions[p].lock()
        };
        if tick {
            Counters::bump(&self.counters.ticks_run, 1);
        }
        let sender = self.output.lock().clone()?;
        let start = Instant::now();
        let mut delivered = 0;
        for (k, v) in mem::take(&mut part.pending) {
            delivered += self.deliver_or_keep(&sender, k, v, &mut part);
        }
        // With OnFull::Retain and a full output, draining would only put
        // everything back: leave the tables alone until there is room.
        let output_full = self.on_full == OnFull::Retain && sender.len() >= sender.capacity();
        if !output_full {
            let shards = self.partials[0].shards();
            for shard in (p..shards).step_by(self.partitions.len()) {
                delivered += self.flush_shard(shard, &sender, &mut part);
            }
        }
        drop(sender);
        let took = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        Counters::bump(&self.counters.flushes, 1);
        self.counters.last_flush_ns.store(took, Ordering::Relaxed);
        self.counters
            .longest_flush_ns
            .fetch_max(took, Ordering::Relaxed);
        Some(delivered)
    }

    fn flush_shard(
        &self,
        shard: usize,
        sender: &Sender<(K, V)>,
        part: &mut MutexGuard<'_, Partition<K, V>>,
    ) -> usize {
        let mut delivered = 0;
        if self.partials.len() == 1 {
            let table = &self.partials[0];
            let mut storage = table.take_shard(shard);
            self.forget_keys(storage.len());
            while let Some((k, v)) = storage.pop() {
                delivered += self.deliver_or_keep(sender, k, v, part);
            }
            table.recycle(shard, storage);
        } else {
            let mut fold = mem::take(&mut part.fold);
            for table in self.partials.iter() {
                let mut storage = table.take_shard(shard);
                self.forget_keys(storage.len());
                while let Some((k, v)) = storage.pop() {
                    self.fold_into(&mut fold, k, v);
                }
                table.recycle(shard, storage);
            }
            for (k, v) in fold.drain() {
                delivered += self.deliver_or_keep(sender, k, v, part);
            }
            part.fold = fold;
        }
        delivered
    }

    /// Delivers one entry under the policy; an entry not delivered goes back
    /// into the table (Retain) or to the partition's pending list (Block
    /// while shutting down). Returns 1 if it reached the output.
    fn deliver_or_keep(
        &self,
        sender: &Sender<(K, V)>,
        k: K,
        v: V,
        part: &mut Partition<K, V>,
    ) -> usize {
        match self.deliver(sender, k, v) {
            Outcome::Delivered => 1,
            Outcome::Dropped => 0,
            Outcome::Kept(k, v) => {
                if self.on_full == OnFull::Retain {
                    match self.retain(k, v) {
                        Ok(()) => Counters::bump(&self.counters.retained, 1),
                        Err((k, v)) => part.pending.push((k, v)),
                    }
                } else {
                    part.pending.push((k, v));
                }
                0
            }
        }
    }

    /// Hands one entry to the output under the policy. `flushed` is counted
    /// *before* the entry becomes visible to a consumer (and taken back if
    /// it does not go), so a consumer that has received `n` entries always
    /// reads `flushed >= n`.
    fn deliver(&self, sender: &Sender<(K, V)>, k: K, v: V) -> Outcome<K, V> {
        Counters::bump(&self.counters.flushed, 1);
        let delivery = self.send(sender, k, v);
        if !matches!(delivery, Outcome::Delivered) {
            self.counters.flushed.fetch_sub(1, Ordering::Relaxed);
        }
        delivery
    }

    fn send(&self, sender: &Sender<(K, V)>, k: K, v: V) -> Outcome<K, V> {
        match self.on_full {
            OnFull::Retain => match sender.try_send((k, v)) {
                Ok(()) => Outcome::Delivered,
                Err(TrySendError::Full((k, v)) | TrySendError::Disconnected((k, v))) => {
                    Outcome::Kept(k, v)
                }
            },
            OnFull::Block => {
                let mut item = (k, v);
                loop {
                    if self.closing.load(Ordering::Acquire) {
                        return Outcome::Kept(item.0, item.1);
                    }
                    match sender.send_timeout(item, BLOCK_SLICE) {
                        Ok(()) => return Outcome::Delivered,
                        Err(
                            SendTimeoutError::Timeout(back) | SendTimeoutError::Disconnected(back),
                        ) => item = back,
                    }
                }
            }
            OnFull::DropNewest => match sender.try_send((k, v)) {
                Ok(()) => Outcome::Delivered,
                Err(TrySendError::Full(_)) => {
                    Counters::bump(&self.counters.dropped_newest, 1);
                    Outcome::Dropped
                }
                Err(TrySendError::Disconnected((k, v))) => Outcome::Kept(k, v),
            },
            OnFull::DropOldest => match sender.force_send((k, v)) {
                Ok(evicted) => {
                    if evicted.is_some() {
                        Counters::bump(&self.counters.dropped_oldest, 1);
                    }
                    Outcome::Delivered
                }
                Err(back) => Outcome::Kept(back.0 .0, back.0 .1),
            },
        }
    }

    /// Puts a flushed entry back into the table, merging any value added
    /// since in *after* it (so order-sensitive merges keep add order).
    pub(super) fn retain(&self, k: K, v: V) -> Result<(), (K, V)> {
        let table = &self.partials[0];
        let merge = &*self.merge;
        // As in `add`: tells a merge panic (entry removed) from a `Hash` or
        // `Eq` panic (table unchanged).
        let merging = std::cell::Cell::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            table.try_upsert(
                Owned(k),
                v,
                |present, retained| {
                    merging.set(true);
                    let newer = mem::replace(present, retained);
                    merge.merge(present, newer);
                },
                || {
                    if self.max_keys.is_some() {
                        self.keys.fetch_add(1, Ordering::Relaxed);
                    }
                    true
                },
                Counting::Skip,
            )
        }));
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(Refused::Closed(k, v) | Refused::Full(k, v))) => Err((k, v)),
            Err(panic) => {
                if merging.get() {
                    // The entry (retained and newer values) was removed.
                    self.forget_keys(1);
                    self.record_panic(panic.as_ref(), 2);
                } else {
                    self.record_panic(panic.as_ref(), 1);
                }
                Ok(())
            }
        }
    }

    pub(super) fn shutdown(&self, deadline: Duration) -> ShutdownReport<K, V> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return ShutdownReport::empty();
        }
        let end = deadline_after(Instant::now(), deadline);
        self.closing.store(true, Ordering::Release);
        // Stop the flushers: each wakes, sees `closing`, and leaves.
        let flushers = mem::take(&mut *self.flushers.lock());
        for flusher in &flushers {
            flusher.thread().unpark();
        }
        for flusher in flushers {
            let _ = flusher.join();
        }
        // No flush runs while we hold every partition.
        let mut parts: Vec<_> = self.partitions.iter().map(|p| p.lock()).collect();
        let mut items: Vec<(K, V)> = Vec::new();
        for part in parts.iter_mut() {
            items.append(&mut part.pending);
        }
        // Closing each shard and taking its storage is one critical section:
        // an add either got in before (and is taken here) or sees `closed`.
        if self.partials.len() == 1 {
            for mut storage in self.partials[0].close_and_drain() {
                while let Some(pair) = storage.pop() {
                    items.push(pair);
                }
            }
        } else {
            let mut fold = mem::take(&mut parts[0].fold);
            for table in self.partials.iter() {
                for mut storage in table.close_and_drain() {
                    while let Some((k, v)) = storage.pop() {
                        self.fold_into(&mut fold, k, v);
                    }
                }
            }
            items.extend(fold.drain());
        }
        let sender = self.output.lock().take();
        let mut undelivered = Vec::new();
        let mut timed_out = false;
        if let Some(sender) = sender {
            for (k, v) in items {
                if timed_out {
                    undelivered.push((k, v));
                    continue;
                }
                match self.deliver_final(&sender, k, v, end) {
                    Outcome::Kept(k, v) => {
                        timed_out = true;
                        undelivered.push((k, v));
                    }
                    Outcome::Delivered | Outcome::Dropped => {}
                }
            }
            // Dropping the last sender disconnects the output: receivers get
            // what is queued, then the end.
        } else {
            undelivered = items;
        }
        drop(parts);
        let c = &self.counters;
        let load = |a: &crate::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ShutdownReport {
            delivered: load(&c.flushed) - load(&c.dropped_oldest),
            dropped: load(&c.dropped_newest)
                + load(&c.dropped_oldest)
                + load(&c.dropped_merge_panic),
            undelivered,
            timed_out,
        }
    }

    /// Outcome during shutdown: Retain and Block wait for room until the deadline.
    fn deliver_final(
        &self,
        sender: &Sender<(K, V)>,
        k: K,
        v: V,
        end: Option<Instant>,
    ) -> Outcome<K, V> {
        match self.on_full {
            OnFull::Retain | OnFull::Block => {
                // `None`: a deadline too far to represent, i.e. forever.
                let left = end.map_or(Duration::MAX, |end| {
                    end.saturating_duration_since(Instant::now())
                });
                Counters::bump(&self.counters.flushed, 1);
                match sender.send_timeout((k, v), left) {
                    Ok(()) => Outcome::Delivered,
                    Err(
                        SendTimeoutError::Timeout((k, v)) | SendTimeoutError::Disconnected((k, v)),
                    ) => {
                        self.counters.flushed.fetch_sub(1, Ordering::Relaxed);
                        Outcome::Kept(k, v)
                    }
                }
            }
            OnFull::DropNewest | OnFull::DropOldest => self.deliver(sender, k, v),
        }
    }

    pub(super) fn shutdown_on_drop(&self) {
        let report = self.shutdown(DROP_DEADLINE);
        Counters::bump(&self.counters.lost_at_drop, report.undelivered.len() as u64);
    }
}

/// Starts one flusher thread per partition, each pinned to its own physical
/// core when a topology is given.
pub(super) fn spawn_flushers<K, V, S>(
    inner: &Arc<Inner<K, V, S>>,
    period: Duration,
    pin: Option<&Topology>,
) -> Result<(), ConfigError>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    let cores = pin.map(Topology::one_cpu_per_core).unwrap_or_default();
    let mut handles = inner.flushers.lock();
    for p in 0..inner.partitions.len() {
        let inner = Arc::clone(inner);
        let cpu = (!cores.is_empty()).then(|| cores[p % cores.len()]);
        let spawned = thread::Builder::new()
            .name(format!("sheaf-flush-{p}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_current_thread(cpu);
                }
                run_flusher(&inner, p, period);
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                return Err(ConfigError::new(
                    "flush_threads",
                    format!("could not start a flusher thread: {e}"),
                ))
            }
        }
    }
    Ok(())
}

fn run_flusher<K, V, S>(inner: &Inner<K, V, S>, p: usize, period: Duration)
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    // A period too long to add to an instant never ticks.
    let Some(mut next) = deadline_after(Instant::now(), period) else {
        while !inner.closing.load(Ordering::Acquire) {
            thread::park();
        }
        return;
    };
    while !inner.closing.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            thread::park_timeout(next - now);
            continue;
        }
        // Every user callback inside a flush is already caught; this is the
        // last line, so that nothing can end periodic flushing for good.
        if let Err(panic) =
            catch_unwind(AssertUnwindSafe(|| inner.flush_partition(p, Trigger::Tick)))
        {
            inner.record_panic(panic.as_ref(), 0);
        }
        next = next.checked_add(period).unwrap_or(next);
        let after = Instant::now();
        if after > next {
            // The flush overran whole periods: those ticks found it running.
            let missed = ((after - next).as_nanos() / period.as_nanos().max(1)) as u64 + 1;
            Counters::bump(&inner.counters.ticks_skipped, missed);
            next = deadline_after(after, period).unwrap_or(next);
        }
    }
}
