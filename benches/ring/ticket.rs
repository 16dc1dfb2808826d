//! A fetch-and-add ticket ring (the turn-sequencer design of folly's
//! `MPMCQueue` and rigtorp's `MPMCQueue`), kept here only as the comparison
//! specimen for `ring/algorithm`: the family SCQ and LCRQ build on, against
//! sheaf's stamped slots claimed by compare-and-swap.
//!
//! A producer takes ticket `t = tail.fetch_add(1)` — one atomic that never
//! fails and never retries — and waits until slot `t % cap` has
//! turn `2 * (t / cap)`; a consumer takes `h = head.fetch_add(1)` and waits
//! for turn `2 * (h / cap) + 1`. No operation ever retries, but every
//! ticket is a promise: a thread that took one must wait for its turn, so a
//! stalled peer blocks the threads queued behind it on that slot, and a
//! non-blocking `try_push` cannot be built on the ticket alone (rigtorp's
//! uses a CAS on the counter for it). Values are `u64` in atomics, ordered
//! by the turn's release/acquire pair, so the specimen needs no `unsafe`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use super::Backoff;

struct Slot {
    turn: AtomicUsize,
    value: AtomicU64,
}

/// A bounded ring of `u64` with ticketed, waiting `push` and `pop`.
/// `PADDED` spaces slots 128 bytes apart, as folly and rigtorp do.
pub struct TicketRing<const PADDED: bool> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Slot]>,
    /// log2 of the capacity (a power of two).
    cap_bits: u32,
}

impl<const PADDED: bool> TicketRing<PADDED> {
    /// Slots per logical slot: 8 × 16 bytes = 128 when padded.
    const STRIDE: usize = if PADDED { 8 } else { 1 };

    /// A ring of `cap` slots; `cap` must be a power of two.
    pub fn new(cap: usize) -> Self {
        assert!(cap.is_power_of_two());
        Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..cap * Self::STRIDE)
                .map(|_| Slot {
                    turn: AtomicUsize::new(0),
                    value: AtomicU64::new(0),
                })
                .collect(),
            cap_bits: cap.trailing_zeros(),
        }
    }

    #[inline]
    fn slot(&self, ticket: usize) -> &Slot {
        let index = ticket & ((1 << self.cap_bits) - 1);
        &self.slots[index * Self::STRIDE]
    }

    /// Waits (spin, then yield) until `slot` reaches `turn`.
    #[inline]
    fn await_turn(slot: &Slot, turn: usize) {
        let mut backoff = Backoff::new();
        while slot.turn.load(Ordering::Acquire) != turn {
            backoff.snooze();
        }
    }

    /// Pushes `value`, waiting for its slot's turn.
    #[inline]
    pub fn push(&self, value: u64) {
        let ticket = self.tail.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(ticket);
        let turn = (ticket >> self.cap_bits) * 2;
        Self::await_turn(slot, turn);
        slot.value.store(value, Ordering::Relaxed);
        slot.turn.store(turn + 1, Ordering::Release);
    }

    /// Pops the value of its ticket, waiting for the slot's turn.
    #[inline]
    pub fn pop(&self) -> u64 {
        let ticket = self.head.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(ticket);
        let turn = (ticket >> self.cap_bits) * 2 + 1;
        Self::await_turn(slot, turn);
        let value = slot.value.load(Ordering::Relaxed);
        slot.turn.store(turn + 1, Ordering::Release);
        value
    }
}
