//! [`Ring`]: a bounded, non-blocking MPMC ring with batch operations and
//! drop-oldest.
//!
//! Every slot carries a stamp `lap | index` (after Vyukov): a producer may
//! fill the slot at tail position `t` when its stamp is `t`, and publishes
//! with stamp `t + 1`; a consumer may empty it at head position `h` when its
//! stamp is `h + 1`, and frees it with stamp `h + one_lap`. Head and tail are
//! claimed with a compare-and-swap, `k` slots at a time for the batch calls.
//!
//! # Progress
//!
//! Claiming is lock-free: a failed CAS means another thread made progress.
//! What no array ring can avoid is a peer **stalled between its claim and
//! its publish** (preempted, or stopped in a debugger): the slot it holds is
//! neither full nor free. Where crossbeam and std spin or `sched_yield` on
//! such a slot for as long as the stall lasts (freenet-core#3959,
//! rust#114851), sheaf waits a bounded number of spins and then answers:
//!
//! - [`try_push`](Ring::try_push) returns `Err(item)` — the ring is *full
//!   at that slot* — while the consumer of the previous lap at that slot is
//!   stalled, even though other slots may be free;
//! - [`try_pop`](Ring::try_pop) returns `None` — *empty up to that slot* —
//!   while the producer of the oldest claimed item is stalled, even though
//!   later items may already be published (FIFO order forbids skipping it).
//!
//! Both clear as soon as the stalled thread runs again. The blocking
//! [`channel`](crate::channel) layer turns them into waits, never spins.
//!
//! # Slot layout
//!
//! Slots are packed by default; [`Ring::with_layout`] can pad each to 128
//! bytes or spread consecutive positions over different cache lines (index
//! remapping). See [`SlotLayout`] — on the machines measured, packed was
//! the fastest or within noise of the others.
//!
//! ```
//! use sheaf::ring::Ring;
//!
//! let ring = Ring::with_capacity(3).unwrap();
//! assert_eq!(ring.try_push(1), Ok(()));
//! assert_eq!(ring.push_batch(vec![2, 3, 4]), vec![4]); // 4 did not fit
//! assert_eq!(ring.force_push(5), Ok(Some(1))); // drop-oldest evicts 1
//! let mut out = Vec::new();
//! assert_eq!(ring.pop_batch(&mut out, 10), 3);
//! assert_eq!(out, [2, 3, 5]);
//! ```

pub(crate) mod raw;

pub(crate) use raw::NoSlot;
pub use raw::{Ring, SlotLayout};

#[cfg(test)]
mod tests;
