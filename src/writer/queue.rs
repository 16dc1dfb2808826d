//! The sharded byte queue between the handles and the writer thread.
//!
//! Each shard is a list of byte chunks (whole records back to back, plus
//! the end offset of every record), behind its own lock. A thread appends to the shard of its slot, so two
//! producers do not share a lock or a cache line on the hot path; the writer
//! thread swaps a shard's buffers out in one short critical section.
//!
//! # Room
//!
//! The capacity (records and bytes) is a pool of credit. A record consumes
//! one record and `len` bytes of credit; the pool gets them back when the
//! sink call carrying the record returns (or when it is evicted). A shard
//! takes credit from the pool in portions and spends it locally, so the
//! pool's atomics are touched about once per portion, not per record; the
//! writer thread returns a shard's unspent portion whenever it takes the
//! shard, and a writer about to wait or refuse returns its own, so unspent
//! credit never hides in a shard that holds nothing.
//!
//! # Waking the writer thread
//!
//! A producer that makes a shard non-empty sets the shard's bit in `signal`
//! (a SeqCst RMW) and then loads `sleeping`; the writer thread stores
//! `sleeping` (SeqCst) and then loads `signal` before it parks. One of the
//! two sees the other, so a record is never left behind a parked writer.
//! While the writer *lingers* (a short timed sleep after a small cycle, so
//! that records gather into larger sink calls) producers leave it alone:
//! only requests (flush, stop, close) wake it.

use std::collections::VecDeque;
use std::mem;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use super::Overflow;
use crate::sync::atomic::fence;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::thread::{self, Thread};
use crate::sync::{Mutex, MutexGuard};

/// The `signal` bit that asks the writer thread to look at its requests
/// (flush tickets, stop); bits 0..63 are the shards'.
pub(super) const CONTROL: u64 = 1 << 63;

/// A producer whose shard holds this many chunks yields once per new chunk.
const LAG_CHUNKS: usize = 4;
/// Most empty chunks a shard keeps for its producer.
pub(super) const SHARD_FREE_MAX: usize = 8;

/// `Queue::sleeping` states.
pub(super) const AWAKE: usize = 0;
pub(super) const PARKED: usize = 1;
pub(super) const LINGERING: usize = 2;
/// The writer thread is in a sink call (or the sync hook).
pub(super) const IN_SINK: usize = 3;

/// `WriterHandle::last` when the handle has not written yet.
pub(super) const NO_SHARD: u64 = u64::MAX;

/// A fixed-size piece of a shard's buffer: whole records, back to back.
/// Chunks are recycled through the queue's pool, so a running writer
/// neither allocates nor faults in fresh pages.
pub(super) struct Chunk {
    pub(super) bytes: Vec<u8>,
    /// End offset (exclusive) in `bytes` of every record.
    pub(super) ends: Vec<usize>,
}

impl Chunk {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::new(),
        }
    }

    /// Start offset of record `i`.
    #[inline]
    pub(super) fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

pub(super) struct Shard {
    chunks: VecDeque<Chunk>,
    /// Empty chunks this shard's records came in, handed back by the writer
    /// thread: reusing them keeps a producer on memory its core wrote last.
    free: Vec<Chunk>,
    /// Records of `chunks[0]` before `head` were evicted (`DropOldest`).
    head: usize,
    live: usize,
    live_bytes: usize,
    credit_items: usize,
    credit_bytes: usize,
    /// Number of takes by the writer thread that found records.
    gen: u64,
    accepted: u64,
    accepted_bytes: u64,
}

impl Shard {
    fn new() -> Self {
        Self {
            chunks: VecDeque::new(),
            free: Vec::new(),
            head: 0,
            live: 0,
            live_bytes: 0,
            credit_items: 0,
            credit_bytes: 0,
            gen: 0,
            accepted: 0,
            accepted_bytes: 0,
        }
    }

    #[inline]
    fn live(&self) -> usize {
        self.live
    }
}

/// Records taken out of one shard by the writer thread.
#[derive(Default)]
pub(super) struct Batch {
    /// The shard they came from.
    pub(super) shard: usize,
    pub(super) chunks: VecDeque<Chunk>,
    /// Index of the first record of `chunks[0]` (the ones before it were evicted).
    pub(super) head: usize,
}

/// Why a write was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Closed,
    Full,
    TimedOut,
    TooLarge,
}

#[derive(Default)]
pub(super) struct Losses {
    pub(super) dropped_newest: AtomicU64,
    pub(super) dropped_oldest: AtomicU64,
    pub(super) dropped_oldest_bytes: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) too_large: AtomicU64,
    pub(super) refused_closed: AtomicU64,
}

/// Threads waiting for something another thread announces with
/// [`notify_all`](Self::notify_all); `notify_all` costs one load when nobody
/// waits. A waiter registers, re-checks its condition, and only then parks.
#[derive(Default)]
pub(super) struct WaitList {
    count: AtomicUsize,
    list: Mutex<WaitEntries>,
}

#[derive(Default)]
struct WaitEntries {
    next: u64,
    entries: Vec<(u64, Thread)>,
}

impl WaitList {
    pub(super) fn register(&self) -> u64 {
        let mut list = self.list.lock();
        let id = list.next;
        list.next += 1;
        list.entries.push((id, thread::current()));
        self.count.fetch_add(1, Ordering::SeqCst);
        drop(list);
        fence(Ordering::SeqCst);
        id
    }

    pub(super) fn unregister(&self, id: u64) {
        let mut list = self.list.lock();
        if let Some(pos) = list.entries.iter().position(|e| e.0 == id) {
            list.entries.swap_remove(pos);
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Wakes every registered waiter. Call after the state change it announces.
    pub(super) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut list = self.list.lock();
            let woken = mem::take(&mut list.entries);
            self.count.fetch_sub(woken.len(), Ordering::SeqCst);
            woken
        };
        for (_, t) in woken {
            t.unpark();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `cond()` or `deadline`; returns `cond()`'s last answer.
    pub(super) fn wait(&self, deadline: Option<Instant>, mut cond: impl FnMut() -> bool) -> bool {
        loop {
            if cond() {
                return true;
            }
            let id = self.register();
            if cond() {
                self.unregister(id);
                return true;
            }
            let timed_out = match deadline {
                None => {
                    thread::park();
                    false
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        true
                    } else {
                        thread::park_timeout(deadline - now);
                        false
                    }
                }
            };
            self.unregister(id);
            if timed_out {
                return cond();
            }
        }
    }
}

pub(super) struct Queue {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Recycled chunks of `chunk_size` bytes.
    pool: CachePadded<Mutex<Vec<Chunk>>>,
    chunk_size: usize,
    pool_max: usize,
    cap_bytes: usize,
    portion_items: usize,
    portion_bytes: usize,
    pub(super) overflow: Overflow,
    /// Set by close; checked under each shard's lock.
    pub(super) closed: AtomicBool,
    avail_items: CachePadded<AtomicUsize>,
    avail_bytes: CachePadded<AtomicUsize>,
    /// Dirty shard bits and [`CONTROL`].
    pub(super) signal: CachePadded<AtomicU64>,
    /// [`AWAKE`], [`PARKED`] (wake it for records), [`LINGERING`] (it
    /// sleeps a short while to let records gather: wake it only for
    /// requests) or [`IN_SINK`] (awake, in a sink call).
    pub(super) sleeping: CachePadded<AtomicUsize>,
    /// The writer thread, to unpark.
    pub(super) worker: Mutex<Option<Thread>>,
    room: WaitList,
    waiting: AtomicUsize,
    waiting_bytes: AtomicUsize,
    pub(super) losses: CachePadded<Losses>,
}

/// Takes between `need` and `want` from `avail`, as much as there is.
#[inline]
fn take_credit(avail: &AtomicUsize, need: usize, want: usize) -> Option<usize> {
    let mut cur = avail.load(Ordering::SeqCst);
    loop {
        if cur < need {
            return None;
        }
        let take = want.min(cur);
        match avail.compare_exchange_weak(cur, cur - take, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return Some(take),
            Err(now) => cur = now,
        }
    }
}

#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Queue {
    pub(super) fn new(
        shards: usize,
        cap_items: usize,
        cap_bytes: usize,
        overflow: Overflow,
        chunk_size: usize,
    ) -> Self {
        let spread = 4 * shards;
        Self {
            shards: (0..shards)
                .map(|_| CachePadded::new(Mutex::new(Shard::new())))
                .collect(),
            pool: CachePadded::new(Mutex::new(Vec::new())),
            chunk_size,
            pool_max: cap_bytes / chunk_size + 2 * shards + 2,
            cap_bytes,
            portion_items: (cap_items / spread).max(1),
            portion_bytes: (cap_bytes / spread).max(1),
            overflow,
            closed: AtomicBool::new(false),
            avail_items: CachePadded::new(AtomicUsize::new(cap_items)),
            avail_bytes: CachePadded::new(AtomicUsize::new(cap_bytes)),
            signal: CachePadded::new(AtomicU64::new(0)),
            sleeping: CachePadded::new(AtomicUsize::new(AWAKE)),
            worker: Mutex::new(None),
            room: WaitList::default(),
            waiting: AtomicUsize::new(0),
            waiting_bytes: AtomicUsize::new(0),
            losses: CachePadded::new(Losses::default()),
        }
    }

    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub(super) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Appends one record; `last` is the handle's last shard and that
    /// shard's take count at the time (see [`pick`](Self::pick)).
    pub(super) fn push(&self, data: &[u8], last: &AtomicU64) -> Result<(), Refusal> {
        let len = data.len();
        if len > self.cap_bytes {
            bump(&self.losses.too_large, 1);
            return Err(Refusal::TooLarge);
        }
        let (idx, mut shard) = self.pick(last);
        let mut deadline = None;
        loop {
            if self.closed.load(Ordering::Acquire) {
                self.release_idle_credit(&mut shard);
                bump(&self.losses.refused_closed, 1);
                return Err(Refusal::Closed);
            }
            if shard.credit_items >= 1 && shard.credit_bytes >= len {
                break;
            }
            if self.refill(&mut shard, len) {
                continue;
            }
            match self.overflow {
                Overflow::Reject => {
                    self.release_idle_credit(&mut shard);
                    bump(&self.losses.rejected, 1);
                    return Err(Refusal::Full);
                }
                Overflow::DropNewest => {
                    self.release_idle_credit(&mut shard);
                    bump(&self.losses.dropped_newest, 1);
                    return Ok(());
                }
                Overflow::DropOldest => {
                    if shard.live() > 0 {
                        self.evict_head(&mut shard, true);
                        continue;
                    }
                    self.release_idle_credit(&mut shard);
                    drop(shard);
                    let evicted = self.evict_elsewhere(idx, len);
                    if !evicted && !self.has_room(len) {
                        // Every queued record is in the writer thread's hands.
                        bump(&self.losses.dropped_newest, 1);
                        return Ok(());
                    }
                    shard = self.shards[idx].lock();
                }
                Overflow::Block | Overflow::BlockTimeout(_) => {
                    if let Overflow::BlockTimeout(t) = self.overflow {
                        deadline.get_or_insert_with(|| {
                            Instant::now().checked_add(t).unwrap_or_else(far_future)
                        });
                    }
                    self.release_idle_credit(&mut shard);
                    drop(shard);
                    self.wait_room(len, deadline)?;
                    shard = self.shards[idx].lock();
                }
            }
        }
        shard.credit_items -= 1;
        shard.credit_bytes -= len;
        let was_empty = shard.live == 0;
        let fits = shard
            .chunks
            .back()
            .is_some_and(|c| c.bytes.capacity() - c.bytes.len() >= len);
        let mut lagging = false;
        if !fits {
            lagging = shard.chunks.len() >= LAG_CHUNKS;
            let chunk = match shard.free.pop() {
                Some(chunk) if len <= self.chunk_size => chunk,
                other => {
                    shard.free.extend(other);
                    self.chunk_for(len)
                }
            };
            shard.chunks.push_back(chunk);
        }
        let chunk = shard.chunks.back_mut().expect("a chunk with room");
        chunk.bytes.extend_from_slice(data);
        let end = chunk.bytes.len();
        chunk.ends.push(end);
        shard.live += 1;
        shard.live_bytes += len;
        shard.accepted += 1;
        shard.accepted_bytes += len as u64;
        let gen = shard.gen;
        drop(shard);
        last.store((gen << 8) | idx as u64, Ordering::Relaxed);
        if was_empty {
            self.signal_bits(1 << idx);
        }
        if lagging && self.sleeping.load(Ordering::Relaxed) == AWAKE {
            // The writer thread is several chunks behind this producer and
            // neither sleeping nor in the sink: on a machine with fewer
            // cores than busy threads it may be waiting for a CPU. Yield
            // this time slice once per chunk so that it runs, instead of the
            // queue growing out of the caches.
            thread::yield_now();
        }
        Ok(())
    }

    /// The shard to append to: the thread's own, unless the handle's
    /// previous record still sits in another shard (the handle moved
    /// threads), in which case it goes there, behind that record.
    #[inline]
    fn pick(&self, last: &AtomicU64) -> (usize, MutexGuard<'_, Shard>) {
        let n = self.shards.len();
        // Consecutive threads get consecutive slots, so the first `shards`
        // threads to write get a shard each.
        let slot = crate::sync::thread_slot();
        let own = if n.is_power_of_two() {
            slot & (n - 1)
        } else {
            slot % n
        };
        let packed = last.load(Ordering::Relaxed);
        if packed != NO_SHARD {
            let prev = (packed & 0xff) as usize;
            if prev != own {
                let shard = self.shards[prev].lock();
                if shard.gen == packed >> 8 {
                    return (prev, shard);
                }
            }
        }
        (own, self.shards[own].lock())
    }

    /// Moves credit from the pool into `shard` so that a record of `len`
    /// bytes fits; `false` (and nothing taken) when the pool is short.
    fn refill(&self, shard: &mut Shard, len: usize) -> bool {
        let need_items = usize::from(shard.credit_items == 0);
        let need_bytes = len.saturating_sub(shard.credit_bytes);
        let got_items = if need_items > 0 {
            match take_credit(&self.avail_items, need_items, self.portion_items) {
                Some(n) => n,
                None => return false,
            }
        } else {
            0
        };
        let got_bytes = if need_bytes > 0 {
            match take_credit(
                &self.avail_bytes,
                need_bytes,
                self.portion_bytes.max(need_bytes),
            ) {
                Some(n) => n,
                None => {
                    self.give_back(got_items, 0);
                    return false;
                }
            }
        } else {
            0
        };
        shard.credit_items += got_items;
        shard.credit_bytes += got_bytes;
        true
    }

    /// Returns a shard's unspent credit to the pool if it holds no record
    /// (so the writer thread will not take it and return the credit).
    fn release_idle_credit(&self, shard: &mut Shard) {
        if shard.live() == 0 && (shard.credit_items > 0 || shard.credit_bytes > 0) {
            let items = mem::take(&mut shard.credit_items);
            let bytes = mem::take(&mut shard.credit_bytes);
            self.give_back(items, bytes);
        }
    }

    /// Returns credit to the pool and wakes writers waiting for room.
    pub(super) fn give_back(&self, items: usize, bytes: usize) {
        if items > 0 {
            self.avail_items.fetch_add(items, Ordering::SeqCst);
        }
        if bytes > 0 {
            self.avail_bytes.fetch_add(bytes, Ordering::SeqCst);
        }
        if items > 0 || bytes > 0 {
            self.room.notify_all();
        }
    }

    fn has_room(&self, len: usize) -> bool {
        self.avail_items.load(Ordering::SeqCst) >= 1
            && self.avail_bytes.load(Ordering::SeqCst) >= len
    }

    /// Evicts the oldest record of `shard`; its credit goes to the shard
    /// (`to_shard`, for its own writer) or back to the pool.
    fn evict_head(&self, shard: &mut Shard, to_shard: bool) {
        let head = shard.head;
        let first = &shard.chunks[0];
        let n = first.ends[head] - first.start_of(head);
        let emptied = head + 1 == first.ends.len();
        shard.head += 1;
        shard.live -= 1;
        shard.live_bytes -= n;
        if emptied {
            let mut chunk = shard.chunks.pop_front().expect("the evicted chunk");
            shard.head = 0;
            if chunk.bytes.capacity() == self.chunk_size && shard.free.len() < SHARD_FREE_MAX {
                chunk.bytes.clear();
                chunk.ends.clear();
                shard.free.push(chunk);
            } else {
                self.recycle(std::iter::once(chunk));
            }
        }
        bump(&self.losses.dropped_oldest, 1);
        bump(&self.losses.dropped_oldest_bytes, n as u64);
        if to_shard {
            shard.credit_items += 1;
            shard.credit_bytes += n;
        } else {
            self.give_back(1, n);
        }
    }

    /// A chunk that holds at least `len` bytes: a pooled one, or a new one.
    fn chunk_for(&self, len: usize) -> Chunk {
        if len <= self.chunk_size {
            if let Some(chunk) = self.pool.lock().pop() {
                return chunk;
            }
            Chunk::with_capacity(self.chunk_size)
        } else {
            Chunk::with_capacity(len)
        }
    }

    /// Returns written (or discarded) chunks to the pool, up to its bound;
    /// oversized chunks (a record larger than a chunk) are freed.
    pub(super) fn recycle(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut pool = self.pool.lock();
        for mut chunk in chunks {
            if chunk.bytes.capacity() == self.chunk_size && pool.len() < self.pool_max {
                chunk.bytes.clear();
                chunk.ends.clear();
                pool.push(chunk);
            }
        }
    }

    /// Evicts the oldest records of other shards until a record of `len`
    /// bytes fits in the pool; `true` if it evicted anything.
    fn evict_elsewhere(&self, own: usize, len: usize) -> bool {
        let n = self.shards.len();
        let mut evicted = false;
        for i in 1..n {
            let mut shard = self.shards[(own + i) % n].lock();
            if self.closed.load(Ordering::Acquire) {
                return evicted;
            }
            if shard.live() == 0 {
                continue;
            }
            let items = mem::take(&mut shard.credit_items);
            let bytes = mem::take(&mut shard.credit_bytes);
            self.give_back(items, bytes);
            while shard.live() > 0 && !self.has_room(len) {
                self.evict_head(&mut shard, false);
                evicted = true;
            }
            if self.has_room(len) {
                return true;
            }
        }
        evicted
    }

    /// Waits for room for a record of `len` bytes (without taking it).
    fn wait_room(&self, len: usize, deadline: Option<Instant>) -> Result<(), Refusal> {
        if super::worker::on_writer_thread() {
            // Waiting here would wait for ourselves.
            bump(&self.losses.rejected, 1);
            return Err(Refusal::Full);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.waiting_bytes.fetch_add(len, Ordering::Relaxed);
        let ready = self.room.wait(deadline, || {
            self.closed.load(Ordering::SeqCst) || self.has_room(len)
        });
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.waiting_bytes.fetch_sub(len, Ordering::Relaxed);
        if self.closed.load(Ordering::SeqCst) {
            bump(&self.losses.refused_closed, 1);
            Err(Refusal::Closed)
        } else if ready {
            Ok(())
        } else {
            bump(&self.losses.timed_out, 1);
            Err(Refusal::TimedOut)
        }
    }

    /// Tells the writer thread about `bits`, waking it if it sleeps.
    pub(super) fn signal_bits(&self, bits: u64) {
        self.signal.fetch_or(bits, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let state = self.sleeping.load(Ordering::SeqCst);
        let wake = state == PARKED || (state == LINGERING && bits & CONTROL != 0);
        if wake
            && self
                .sleeping
                .compare_exchange(state, AWAKE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            if let Some(worker) = &*self.worker.lock() {
                worker.unpark();
            }
        }
    }

    /// Takes the records of the shards in `bits` (ascending), appending one
    /// batch per shard to `out`; returns the records and bytes taken. The
    /// shards' unspent credit goes back to the pool, and each shard gets
    /// back the empty chunks `stash` holds for it.
    pub(super) fn take(
        &self,
        bits: u64,
        out: &mut Vec<Batch>,
        spares: &mut Vec<Batch>,
        stash: &mut [Vec<Chunk>],
    ) -> (u64, u64) {
        let (mut records, mut bytes) = (0u64, 0u64);
        let (mut hoard_items, mut hoard_bytes) = (0, 0);
        let mut rest = bits & !CONTROL;
        while rest != 0 {
            let idx = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let Some(shard) = self.shards.get(idx) else {
                continue;
            };
            let mut shard = shard.lock();
            if let Some(returned) = stash.get_mut(idx) {
                let room = SHARD_FREE_MAX.saturating_sub(shard.free.len());
                let n = returned.len().min(room);
                shard.free.extend(returned.drain(..n));
            }
            hoard_items += mem::take(&mut shard.credit_items);
            hoard_bytes += mem::take(&mut shard.credit_bytes);
            let live = shard.live;
            if live == 0 {
                let leftovers = mem::take(&mut shard.chunks);
                shard.head = 0;
                drop(shard);
                self.recycle(leftovers);
                continue;
            }
            let live_bytes = shard.live_bytes;
            let spare = spares.pop().unwrap_or_default();
            let batch = Batch {
                shard: idx,
                chunks: mem::replace(&mut shard.chunks, spare.chunks),
                head: mem::take(&mut shard.head),
            };
            shard.live = 0;
            shard.live_bytes = 0;
            shard.gen += 1;
            drop(shard);
            records += live as u64;
            bytes += live_bytes as u64;
            out.push(batch);
        }
        self.give_back(hoard_items, hoard_bytes);
        (records, bytes)
    }

    /// Refuses further writes: sets `closed`, then takes every shard's lock
    /// once, so no append is in progress afterwards; wakes waiting writers.
    pub(super) fn close_barrier(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for shard in self.shards.iter() {
            drop(shard.lock());
        }
        self.room.notify_all();
    }

    /// The bits of every shard.
    pub(super) fn all_shards(&self) -> u64 {
        (1u64 << self.shards.len()) - 1
    }

    /// Drops every queued record; returns how many and their bytes.
    pub(super) fn discard_all(&self) -> (u64, u64) {
        let mut batches = Vec::new();
        let (records, bytes) = self.take(self.all_shards(), &mut batches, &mut Vec::new(), &mut []);
        for batch in batches {
            self.recycle(batch.chunks);
        }
        self.give_back(records as usize, bytes as usize);
        (records, bytes)
    }

    /// Accepted records and bytes, and queued (live) records and bytes.
    pub(super) fn sums(&self) -> (u64, u64, u64, u64) {
        let mut sums = (0, 0, 0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock();
            sums.0 += shard.accepted;
            sums.1 += shard.accepted_bytes;
            sums.2 += shard.live as u64;
            sums.3 += shard.live_bytes as u64;
        }
        sums
    }

    pub(super) fn has_data(&self) -> bool {
        self.shards.iter().any(|s| s.lock().live() > 0)
    }

    pub(super) fn waiting(&self) -> (u64, u64) {
        (
            self.waiting.load(Ordering::Relaxed) as u64,
            self.waiting_bytes.load(Ordering::Relaxed) as u64,
        )
    }

    /// Credit in the pool (for tests).
    #[cfg(test)]
    pub(super) fn available(&self) -> (usize, usize) {
        (
            self.avail_items.load(Ordering::SeqCst),
            self.avail_bytes.load(Ordering::SeqCst),
        )
    }

    /// Threads parked waiting for room.
    #[allow(dead_code)]
    pub(super) fn room_waiters(&self) -> usize {
        self.room.len()
    }
}

pub(super) fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(60 * 60 * 24 * 365)
}
