//! The sharded record queue between the handles and the writer thread.
//!
//! Each shard is a list of byte chunks (whole records back to back, plus
//! the end offset of every record) behind its own lock. A thread appends to
//! the shard of its slot, so producers share no lock and no cache line; the
//! writer thread swaps a shard's chunks out in one short critical section.
//!
//! Room is a pool of credit (records and bytes). A record spends one record
//! and `len` bytes of it, and the pool gets them back when the sink call
//! carrying the record returns (or when it is evicted). A shard takes credit
//! in portions and spends it locally, so the pool's atomics are touched
//! about once per portion; unspent credit goes back whenever the writer
//! thread takes the shard, or a writer is about to wait or refuse.
//!
//! A producer that makes its shard non-empty sets the shard's bit in
//! `signal` and rings `records` (a [`Waiters`] list: a fence and a load
//! when the writer thread is awake or lingering, which is almost always).

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::mem;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::clock::deadline_after;
use crate::overflow::Overflow;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Mutex, MutexGuard};
use crate::wait::Waiters;

use super::spill::SpillSide;

/// The `signal` bit that asks the writer thread to look at its requests;
/// bits 0..63 are the shards'.
pub(super) const CONTROL: u64 = 1 << 63;
/// `WriterHandle`'s ordering state before its first record.
pub(super) const NO_SHARD: u64 = u64::MAX;
/// A producer whose shard holds this many chunks yields once per new chunk.
const LAG_CHUNKS: usize = 4;

/// A fixed-size piece of a shard's buffer: whole records, back to back.
#[derive(Default)]
pub(super) struct Chunk {
    pub(super) bytes: Vec<u8>,
    /// End offset (exclusive) of every record.
    pub(super) ends: Vec<usize>,
}

impl Chunk {
    /// A chunk of `size` bytes whose pages are already faulted in: one slow
    /// write per chunk rather than one per 4 KiB page of records.
    fn new(size: usize) -> Self {
        let mut chunk = Chunk {
            bytes: vec![1; size],
            ends: vec![1; size / 64],
        };
        chunk.bytes.clear();
        chunk.ends.clear();
        chunk
    }

    /// Start offset of record `i`.
    pub(super) fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

#[derive(Default)]
struct Shard {
    chunks: VecDeque<Chunk>,
    /// Records of `chunks[0]` before `head` were evicted (`DropOldest`).
    head: usize,
    live: usize,
    live_bytes: usize,
    credit_items: usize,
    credit_bytes: usize,
    /// Takes by the writer thread that found records (orders a handle's
    /// records when it moves threads).
    gen: u64,
    accepted: u64,
    accepted_bytes: u64,
}

/// Records taken out of one shard by the writer thread.
pub(super) struct Batch {
    pub(super) chunks: VecDeque<Chunk>,
    /// Index of the first live record of `chunks[0]`.
    pub(super) head: usize,
}

/// Records not accepted, or accepted and then evicted, by reason.
#[derive(Default)]
pub(super) struct Losses {
    pub(super) dropped_newest: AtomicU64,
    pub(super) dropped_oldest: AtomicU64,
    pub(super) dropped_oldest_bytes: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) too_large: AtomicU64,
    pub(super) refused_closed: AtomicU64,
    /// Writes the spill log could not take (an I/O error).
    pub(super) spill_failed: AtomicU64,
}

pub(super) struct Queue {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Empty chunks: every chunk is reused, so a running writer neither
    /// allocates nor faults in fresh pages (a page fault per 4 KiB of
    /// records was the producers' latency tail).
    pool: CachePadded<Mutex<Vec<Chunk>>>,
    pool_max: usize,
    chunk_size: usize,
    cap_bytes: usize,
    portion_items: usize,
    portion_bytes: usize,
    pub(super) overflow: Overflow,
    /// Set by close; checked under each shard's lock.
    pub(super) closed: AtomicBool,
    avail_items: CachePadded<AtomicUsize>,
    avail_bytes: CachePadded<AtomicUsize>,
    /// Shards with records, and [`CONTROL`].
    pub(super) signal: CachePadded<AtomicU64>,
    /// The writer thread, when it waits for records.
    pub(super) records: Waiters,
    /// Writers waiting for room.
    room: Waiters,
    waiting: AtomicUsize,
    waiting_bytes: AtomicUsize,
    pub(super) losses: CachePadded<Losses>,
    /// The disk side, under [`Overflow::Spill`].
    pub(super) spill: Option<SpillSide>,
}

/// Takes between `need` and `want` from `avail`, as much as there is.
fn take_credit(avail: &AtomicUsize, need: usize, want: usize) -> Option<usize> {
    if want == 0 {
        return Some(0);
    }
    let take = |cur: usize| (cur >= need).then(|| cur - want.min(cur));
    let before = avail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take);
    before.ok().map(|cur| want.min(cur))
}

pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Queue {
    pub(super) fn new(
        shards: usize,
        cap_items: usize,
        cap_bytes: usize,
        overflow: Overflow,
        chunk_size: usize,
        spill: Option<SpillSide>,
    ) -> Self {
        let spread = 4 * shards;
        Self {
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
            pool: CachePadded::default(),
            pool_max: cap_bytes / chunk_size + 2 * shards + 2,
            chunk_size,
            cap_bytes,
            portion_items: (cap_items / spread).max(1),
            portion_bytes: (cap_bytes / spread).max(1),
            overflow,
            closed: AtomicBool::new(false),
            avail_items: CachePadded::new(AtomicUsize::new(cap_items)),
            avail_bytes: CachePadded::new(AtomicUsize::new(cap_bytes)),
            signal: CachePadded::default(),
            records: Waiters::default(),
            room: Waiters::default(),
            waiting: AtomicUsize::new(0),
            waiting_bytes: AtomicUsize::new(0),
            losses: CachePadded::default(),
            spill,
        }
    }

    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The bits of every shard.
    pub(super) fn all_shards(&self) -> u64 {
        (1u64 << self.shards.len()) - 1
    }

    /// Returns written or evicted chunks to the pool (a chunk made for
    /// one oversized record is freed).
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

    /// Appends one record; `last` is the handle's last shard and that
    /// shard's take count then (see [`pick`](Self::pick)). Refusals:
    /// `BrokenPipe` (closed), `WouldBlock` (full under `Reject`, or on the
    /// writer thread), `TimedOut`, `InvalidInput` (larger than the capacity).
    pub(super) fn push(&self, data: &[u8], last: &AtomicU64) -> Result<(), ErrorKind> {
        let len = data.len();
        if len > self.cap_bytes {
            bump(&self.losses.too_large, 1);
            return Err(ErrorKind::InvalidInput);
        }
        if let Some(spill) = self.spill.as_ref().filter(|s| s.engaged()) {
            // Behind what is on disk.
            return self.spill_push(spill, data);
        }
        let (idx, mut shard) = self.pick(last);
        let mut deadline = None;
        loop {
            if self.closed.load(Ordering::Acquire) {
                self.release_idle_credit(&mut shard);
                bump(&self.losses.refused_closed, 1);
                return Err(ErrorKind::BrokenPipe);
            }
            if shard.credit_items >= 1 && shard.credit_bytes >= len {
                break;
            }
            if self.refill(&mut shard, len) {
                continue;
            }
            self.release_idle_credit(&mut shard);
            match self.overflow {
                Overflow::Spill(_) => {
                    drop(shard);
                    return match &self.spill {
                        Some(spill) => self.spill_push(spill, data),
                        // The builder opens the log for this policy.
                        None => {
                            bump(&self.losses.rejected, 1);
                            Err(ErrorKind::WouldBlock)
                        }
                    };
                }
                Overflow::Reject => {
                    bump(&self.losses.rejected, 1);
                    return Err(ErrorKind::WouldBlock);
                }
                Overflow::DropNewest => {
                    bump(&self.losses.dropped_newest, 1);
                    return Ok(());
                }
                Overflow::DropOldest if shard.live > 0 => self.evict_head(&mut shard, true),
                Overflow::DropOldest => {
                    drop(shard);
                    if !self.evict_elsewhere(idx, len) && !self.has_room(len) {
                        // Every queued record is in the writer thread's hands.
                        bump(&self.losses.dropped_newest, 1);
                        return Ok(());
                    }
                    shard = self.shards[idx].lock();
                }
                Overflow::Block | Overflow::BlockTimeout(_) => {
                    let deadline = *deadline.get_or_insert_with(|| match self.overflow {
                        Overflow::BlockTimeout(t) => deadline_after(Instant::now(), t),
                        _ => None,
                    });
                    drop(shard);
                    self.wait_room(len, deadline)?;
                    shard = self.shards[idx].lock();
                }
            }
        }
        shard.credit_items -= 1;
        shard.credit_bytes -= len;
        let was_empty = shard.live == 0;
        let fits = (shard.chunks.back()).is_some_and(|c| c.bytes.capacity() - c.bytes.len() >= len);
        // A shard several chunks ahead of the writer thread: on a machine
        // with fewer cores than busy threads the writer thread may be
        // waiting for a CPU; give it this time slice once per chunk.
        let lagging = !fits && shard.chunks.len() >= LAG_CHUNKS;
        if !fits {
            let pooled = (len <= self.chunk_size).then(|| self.pool.lock().pop());
            let chunk = pooled
                .flatten()
                .unwrap_or_else(|| Chunk::new(len.max(self.chunk_size)));
            shard.chunks.push_back(chunk);
        }
        let chunk = shard.chunks.back_mut().expect("a chunk with room");
        chunk.bytes.extend_from_slice(data);
        chunk.ends.push(chunk.bytes.len());
        shard.live += 1;
        shard.live_bytes += len;
        shard.accepted += 1;
        shard.accepted_bytes += len as u64;
        let gen = shard.gen;
        drop(shard);
        last.store((gen << 8) | idx as u64, Ordering::Relaxed);
        if lagging {
            crate::sync::thread::yield_now();
        }
        if was_empty {
            self.signal.fetch_or(1 << idx, Ordering::SeqCst);
            self.records.notify_one();
        }
        Ok(())
    }

    /// The shard to append to: the thread's own, unless the handle's
    /// previous record still sits in another shard (the handle moved
    /// threads): then that one, behind that record.
    fn pick(&self, last: &AtomicU64) -> (usize, MutexGuard<'_, Shard>) {
        let n = self.shards.len();
        let slot = crate::sync::thread_slot();
        let own = if n.is_power_of_two() {
            slot & (n - 1)
        } else {
            slot % n
        };
        let packed = last.load(Ordering::Relaxed);
        let prev = (packed & 0xff) as usize;
        if packed != NO_SHARD && prev != own {
            let shard = self.shards[prev].lock();
            if shard.gen == packed >> 8 {
                return (prev, shard);
            }
        }
        (own, self.shards[own].lock())
    }

    /// Moves credit from the pool into `shard` so that `len` bytes fit;
    /// `false` (and nothing taken) when the pool is short.
    fn refill(&self, shard: &mut Shard, len: usize) -> bool {
        let need_items = usize::from(shard.credit_items == 0);
        let need_bytes = len.saturating_sub(shard.credit_bytes);
        let want_bytes = if need_bytes > 0 {
            self.portion_bytes.max(need_bytes)
        } else {
            0
        };
        let items = take_credit(
            &self.avail_items,
            need_items,
            need_items * self.portion_items,
        );
        let Some(items) = items else {
            return false;
        };
        let Some(bytes) = take_credit(&self.avail_bytes, need_bytes, want_bytes) else {
            self.give_back(items, 0);
            return false;
        };
        shard.credit_items += items;
        shard.credit_bytes += bytes;
        true
    }

    /// Returns a shard's unspent credit to the pool if it holds no record
    /// (the writer thread, which returns it otherwise, will not visit it).
    fn release_idle_credit(&self, shard: &mut Shard) {
        if shard.live == 0 {
            let items = mem::take(&mut shard.credit_items);
            let bytes = mem::take(&mut shard.credit_bytes);
            self.give_back(items, bytes);
        }
    }

    /// Returns credit to the pool and wakes writers waiting for room.
    pub(super) fn give_back(&self, items: usize, bytes: usize) {
        if items == 0 && bytes == 0 {
            return;
        }
        self.avail_items.fetch_add(items, Ordering::SeqCst);
        self.avail_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.room.notify_all();
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
            shard.head = 0;
            self.recycle(shard.chunks.pop_front());
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

    /// Evicts the oldest records of other shards until `len` bytes fit in
    /// the pool; `true` if it evicted anything.
    fn evict_elsewhere(&self, own: usize, len: usize) -> bool {
        let n = self.shards.len();
        let mut evicted = false;
        for i in 1..n {
            let mut shard = self.shards[(own + i) % n].lock();
            if self.closed.load(Ordering::Acquire) {
                return evicted;
            }
            if shard.live == 0 {
                continue;
            }
            let items = mem::take(&mut shard.credit_items);
            let bytes = mem::take(&mut shard.credit_bytes);
            self.give_back(items, bytes);
            while shard.live > 0 && !self.has_room(len) {
                self.evict_head(&mut shard, false);
                evicted = true;
            }
            if self.has_room(len) {
                return true;
            }
        }
        evicted
    }

    /// Waits for room for `len` bytes (without taking it).
    fn wait_room(&self, len: usize, deadline: Option<Instant>) -> Result<(), ErrorKind> {
        if on_writer_thread() {
            // Waiting here would wait for ourselves.
            bump(&self.losses.rejected, 1);
            return Err(ErrorKind::WouldBlock);
        }
        let ready = self.counted_wait(len, || {
            self.room.wait_until(deadline, || {
                self.closed.load(Ordering::SeqCst) || self.has_room(len)
            })
        });
        if self.closed.load(Ordering::SeqCst) {
            bump(&self.losses.refused_closed, 1);
            Err(ErrorKind::BrokenPipe)
        } else if ready {
            Ok(())
        } else {
            bump(&self.losses.timed_out, 1);
            Err(ErrorKind::TimedOut)
        }
    }

    /// Runs `wait` counted in `waiting` (a write of `len` bytes).
    pub(super) fn counted_wait(&self, len: usize, wait: impl FnOnce() -> bool) -> bool {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.waiting_bytes.fetch_add(len, Ordering::Relaxed);
        let ready = wait();
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.waiting_bytes.fetch_sub(len, Ordering::Relaxed);
        ready
    }

    /// Takes the records of the shards in `bits` (ascending), one batch per
    /// shard into `out`; returns the records and bytes taken. Unspent credit
    /// goes back to the pool; a shard gets an empty chunk list from `spares`.
    pub(super) fn take(
        &self,
        bits: u64,
        out: &mut Vec<Batch>,
        spares: &mut Vec<VecDeque<Chunk>>,
    ) -> (u64, u64) {
        let (mut records, mut bytes, mut credit_items, mut credit_bytes) = (0, 0, 0, 0);
        let mut rest = bits & !CONTROL;
        while rest != 0 {
            let idx = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let Some(shard) = self.shards.get(idx) else {
                continue;
            };
            let mut shard = shard.lock();
            credit_items += mem::take(&mut shard.credit_items);
            credit_bytes += mem::take(&mut shard.credit_bytes);
            if shard.live == 0 {
                continue;
            }
            records += shard.live as u64;
            bytes += shard.live_bytes as u64;
            let chunks = mem::replace(&mut shard.chunks, spares.pop().unwrap_or_default());
            out.push(Batch {
                chunks,
                head: mem::take(&mut shard.head),
            });
            shard.live = 0;
            shard.live_bytes = 0;
            shard.gen += 1;
        }
        self.give_back(credit_items, credit_bytes);
        (records, bytes)
    }

    /// Refuses further writes: sets `closed`, then takes every shard's lock
    /// once, so no append is in progress afterwards; wakes waiting writers.
    pub(super) fn close_barrier(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for shard in self.shards.iter() {
            drop(shard.lock());
        }
        if let Some(spill) = &self.spill {
            spill.barrier();
        }
        self.room.notify_all();
    }

    /// Drops every queued record; returns how many and their bytes.
    pub(super) fn discard_all(&self) -> (u64, u64) {
        let mut batches = Vec::new();
        let (records, bytes) = self.take(self.all_shards(), &mut batches, &mut Vec::new());
        self.give_back(records as usize, bytes as usize);
        (records, bytes)
    }

    /// Accepted records and bytes, and queued (live) records and bytes.
    pub(super) fn sums(&self) -> [u64; 4] {
        let mut sums = [0; 4];
        for shard in self.shards.iter() {
            let shard = shard.lock();
            sums[0] += shard.accepted;
            sums[1] += shard.accepted_bytes;
            sums[2] += shard.live as u64;
            sums[3] += shard.live_bytes as u64;
        }
        if let Some(spill) = &self.spill {
            sums[0] += spill.spilled.load(Ordering::Relaxed);
            sums[1] += spill.spilled_bytes.load(Ordering::Relaxed);
        }
        sums
    }

    /// Writes waiting for room, and their bytes.
    pub(super) fn waiting(&self) -> (u64, u64) {
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
        (load(&self.waiting), load(&self.waiting_bytes))
    }

    /// Credit in the pool (for tests).
    #[cfg(test)]
    pub(super) fn available(&self) -> (usize, usize) {
        let load = |a: &AtomicUsize| a.load(Ordering::SeqCst);
        (load(&self.avail_items), load(&self.avail_bytes))
    }
}

#[cfg(not(sheaf_loom))]
std::thread_local! {
    static ON_WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `true` on a writer thread (inside the sink or the sync hook), where
/// waiting for the writer thread would wait forever.
pub(super) fn on_writer_thread() -> bool {
    #[cfg(not(sheaf_loom))]
    return ON_WRITER_THREAD.try_with(|c| c.get()).unwrap_or(false);
    #[cfg(sheaf_loom)]
    return false;
}

/// Marks the calling thread as the writer thread.
pub(super) fn mark_writer_thread() {
    #[cfg(not(sheaf_loom))]
    let _ = ON_WRITER_THREAD.try_with(|c| c.set(true));
}
