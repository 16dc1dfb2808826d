//! The door submitters pass through: closed once by a shutdown, which then
//! waits until no submitter is between its check and its enqueue.
//!
//! Submitters count themselves in per-thread shards (cache-padded), so
//! concurrent submits do not bounce one counter line between cores. The
//! check is a Dekker handshake: a submitter increments its shard, then
//! reads `closed`; a shutdown sets `closed`, then reads the shards, each
//! side with a SeqCst fence between its write and its read (the
//! store-buffering pattern: SeqCst accesses alone do not order a write
//! before a later read of another location for loom, nor on weakly ordered
//! CPUs). Either the submitter sees `closed` (and backs out), or the
//! shutdown sees its count (and waits for it).

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use crate::wait::Waiters;

pub(super) struct Gate {
    closed: AtomicBool,
    shards: Box<[CachePadded<AtomicUsize>]>,
}

impl Gate {
    pub(super) fn new() -> Self {
        let shards = if cfg!(sheaf_loom) { 2 } else { 16 };
        Self {
            closed: AtomicBool::new(false),
            shards: (0..shards)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
        }
    }

    /// Enters; `None` if the gate is closed (nothing is held then).
    #[inline]
    pub(super) fn enter(&self, changed: &Waiters) -> Option<usize> {
        let shard = crate::sync::thread_slot() % self.shards.len();
        self.shards[shard].fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.leave(shard, changed);
            return None;
        }
        Some(shard)
    }

    /// Leaves; wakes a waiting shutdown once the gate is closed.
    #[inline]
    pub(super) fn leave(&self, shard: usize, changed: &Waiters) {
        self.shards[shard].fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            changed.notify_all();
        }
    }

    /// Closes the gate; `true` if it was open.
    pub(super) fn close(&self) -> bool {
        let was_open = !self.closed.swap(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        was_open
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// `true` when no submitter is inside.
    pub(super) fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.load(Ordering::SeqCst) == 0)
    }
}
