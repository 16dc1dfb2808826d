//! The ring's engine: stamped slots, CAS-claimed head and tail.

use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::error::ConfigError;
use crate::sync::atomic::{fence, AtomicUsize, Ordering};
use crate::sync::AtomicUsizeExt;
use crate::sync::{spin_loop, UnsafeCell};

/// How many times an operation re-reads a slot held by an in-flight peer,
/// backing off between reads, before it reports full/empty instead (see
/// "Progress" in the module docs): at most about 770 spin hints in all.
const STALL_SPINS: u32 = if cfg!(sheaf_loom) { 1 } else { 16 };

/// Cap on the exponent of [`backoff`]: 64 spin hints per wait at most.
const BACKOFF_CAP: u32 = 6;

struct Slot<T> {
    /// `lap | index`: equal to the tail position when free for that push,
    /// to the position + 1 once published.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// Where consecutive positions' slots lie in memory: a choice between memory
/// and false sharing, made once in [`Ring::with_layout`].
///
/// Measured in `benches/ring.rs` (groups `ring/algorithm` and
/// `ring/blocking`); DESIGN.md ("Slot layout") has the figures and why
/// [`Packed`](SlotLayout::Packed) is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlotLayout {
    /// Slots side by side: the least memory, and batch operations touch
    /// whole cache lines. Neighbouring slots share a line, so a producer
    /// publishing slot `i` and a consumer emptying slot `i - 1` contend on it.
    #[default]
    Packed,
    /// Each slot starts its own 128-byte span (a line and its prefetch
    /// pair), so no two slots share a line. Costs up to 128 bytes per slot.
    Padded,
    /// Index remapping (as in SCQ's `cache_remap`): consecutive positions
    /// land on different cache lines, round-robin over the lines, so
    /// neighbours in time are apart in memory without padding. The slot
    /// array is rounded up to a power of two; batches lose their locality.
    Spread,
}

/// Position index -> slot in the array: `((i & low_mask) << low_shift) |
/// (i >> high_shift)`, which is the identity, a stride, or a transpose of
/// a `lines x per_line` matrix (see [`SlotLayout`]).
#[derive(Clone, Copy)]
pub(super) struct SlotMap {
    layout: SlotLayout,
    low_mask: usize,
    low_shift: u32,
    high_shift: u32,
    /// Length of the slot array.
    slots: usize,
}

impl SlotMap {
    /// The map for `capacity` slots of `slot_size` bytes, or `None` when the
    /// array would not fit in the address space.
    pub(super) fn new(layout: SlotLayout, capacity: usize, slot_size: usize) -> Option<Self> {
        // `i >> (BITS - 1)` is 0 for every index (capacity <= usize::MAX / 4).
        let none = usize::BITS - 1;
        let map = match layout {
            SlotLayout::Packed => Self {
                layout,
                low_mask: usize::MAX,
                low_shift: 0,
                high_shift: none,
                slots: capacity,
            },
            SlotLayout::Padded => {
                let stride = 128usize.div_ceil(slot_size.max(1)).next_power_of_two();
                let low_shift = stride.trailing_zeros();
                Self {
                    layout,
                    low_mask: usize::MAX,
                    low_shift,
                    high_shift: none,
                    slots: (capacity - 1).checked_mul(stride)?.checked_add(1)?,
                }
            }
            SlotLayout::Spread => {
                let per_line = 1usize << (64 / slot_size.max(1)).max(1).ilog2();
                let slots = capacity.checked_next_power_of_two()?;
                let lines = (slots / per_line).max(1);
                if lines == 1 {
                    // Fits in one line: nothing to spread.
                    return Self::new(SlotLayout::Packed, capacity, slot_size)
                        .map(|map| Self { layout, ..map });
                }
                Self {
                    layout,
                    low_mask: lines - 1,
                    low_shift: per_line.trailing_zeros(),
                    high_shift: lines.trailing_zeros(),
                    slots,
                }
            }
        };
        // The array must be allocatable.
        map.slots
            .checked_mul(slot_size)?
            .le(&(isize::MAX as usize))
            .then_some(map)
    }

    /// Length of the slot array.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    #[inline(always)]
    pub(super) fn slot(&self, index: usize) -> usize {
        ((index & self.low_mask) << self.low_shift) | (index >> self.high_shift)
    }
}

/// A bounded lock-free MPMC ring of `T`; see the [module docs](crate::ring).
pub struct Ring<T> {
    /// Next position to pop: `lap | index`.
    head: CachePadded<AtomicUsize>,
    /// Next position to push: `lap | index`.
    tail: CachePadded<AtomicUsize>,
    /// Slots, placed by `map`; unmapped ones (padding) are never touched.
    buffer: Box<[Slot<T>]>,
    map: SlotMap,
    cap: usize,
    /// Smallest power of two above `cap`; set in `tail` once the ring is closed.
    mark: usize,
    /// `2 * mark`: adding it to a position moves one lap on.
    one_lap: usize,
}

// SAFETY: values move between threads through the ring (so `T: Send`), and a
// slot's value is only touched by the one thread whose CAS claimed it, with
// the stamp's release/acquire pair ordering the handover.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; `&Ring` only moves `T`s in and out, never shares `&T`.
unsafe impl<T: Send> Sync for Ring<T> {}

/// Test hook: runs between a claim and its publish, to stall a peer there.
#[cfg(all(test, not(sheaf_loom)))]
pub(crate) mod stall {
    use std::cell::RefCell;

    thread_local! {
        pub(crate) static HOOK: RefCell<Option<Box<dyn FnMut()>>> = const { RefCell::new(None) };
    }

    pub(crate) fn point() {
        HOOK.with(|hook| {
            if let Some(hook) = hook.borrow_mut().as_mut() {
                hook();
            }
        });
    }
}

#[inline(always)]
fn stall_point() {
    #[cfg(all(test, not(sheaf_loom)))]
    stall::point();
}

/// Spins `2^step` times (step capped at [`BACKOFF_CAP`]; once under loom)
/// after a lost CAS or a look at a busy slot, so that contending threads
/// spread out instead of fighting over the line again at once.
#[inline]
fn backoff(step: &mut u32) {
    let spins = if cfg!(sheaf_loom) {
        1
    } else {
        1u32 << (*step).min(BACKOFF_CAP)
    };
    for _ in 0..spins {
        spin_loop();
    }
    *step += 1;
}

/// Why an operation found no slot to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoSlot {
    /// Really full (push) or empty (pop).
    Settled,
    /// The slot next in line is claimed by a peer that has not finished.
    InFlight,
    /// The ring was closed: pushes are refused (pops drain what is left).
    Closed,
}

/// What a producer found at the tail slot.
enum PushSlot {
    /// Claimed position `tail` (and the slots up to `count` after it).
    Claimed { tail: usize, count: usize },
    /// Really full: head is one lap behind tail.
    Full { tail: usize },
    /// A stalled peer holds the slot.
    Stalled,
    /// Closed: no more pushes.
    Closed,
}

impl<T> Ring<T> {
    /// A ring holding up to `capacity` items, its slots
    /// [`Packed`](SlotLayout::Packed). The capacity is exact (not rounded
    /// up); the slot array is `capacity` long.
    ///
    /// # Errors
    /// [`ConfigError`] if `capacity` is 0 or above `usize::MAX / 4`.
    pub fn with_capacity(capacity: usize) -> Result<Self, ConfigError> {
        Self::with_layout(capacity, SlotLayout::Packed)
    }

    /// A ring holding up to `capacity` items (exact, not rounded up), its
    /// slots placed as `layout` says.
    ///
    /// ```
    /// use sheaf::ring::{Ring, SlotLayout};
    ///
    /// let ring = Ring::with_layout(1000, SlotLayout::Spread).unwrap();
    /// assert_eq!(ring.capacity(), 1000);
    /// assert_eq!(ring.layout(), SlotLayout::Spread);
    /// for i in 0..1000 {
    ///     ring.try_push(i).unwrap();
    /// }
    /// assert_eq!(ring.try_push(1000), Err(1000));
    /// assert_eq!(ring.try_pop(), Some(0)); // still FIFO
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`] if `capacity` is 0 or above `usize::MAX / 4`, or if
    /// the slot array `layout` needs would not fit in memory's address space
    /// or cannot be allocated.
    pub fn with_layout(capacity: usize, layout: SlotLayout) -> Result<Self, ConfigError> {
        if capacity == 0 || capacity > usize::MAX / 4 {
            return Err(ConfigError::new(
                "capacity",
                format!(
                    "{capacity} is out of range; a ring holds between 1 and usize::MAX / 4 items"
                ),
            ));
        }
        let map =
            SlotMap::new(layout, capacity, std::mem::size_of::<Slot<T>>()).ok_or_else(|| {
                ConfigError::new(
                    "capacity",
                    format!("{capacity} slots laid out {layout:?} do not fit in memory"),
                )
            })?;
        let too_big = || {
            ConfigError::new(
                "capacity",
                format!(
                    "{capacity} slots of {} bytes cannot be allocated; use a smaller capacity",
                    std::mem::size_of::<Slot<T>>()
                ),
            )
        };
        // Fallible allocation: a capacity that passed the range check may
        // still be more memory than there is; that is a ConfigError too.
        let mut stamps: Vec<usize> = Vec::new();
        stamps.try_reserve_exact(map.slots).map_err(|_| too_big())?;
        stamps.resize(map.slots, usize::MAX);
        for index in 0..capacity {
            stamps[map.slot(index)] = index;
        }
        let mut buffer: Vec<Slot<T>> = Vec::new();
        buffer.try_reserve_exact(map.slots).map_err(|_| too_big())?;
        buffer.extend(stamps.into_iter().map(|stamp| Slot {
            stamp: AtomicUsize::new(stamp),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }));
        let buffer = buffer.into_boxed_slice();
        let mark = (capacity + 1).next_power_of_two();
        Ok(Self {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            buffer,
            map,
            cap: capacity,
            mark,
            one_lap: mark * 2,
        })
    }

    /// The most items it holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// How its slots are placed in memory.
    pub fn layout(&self) -> SlotLayout {
        self.map.layout
    }

    /// The index (`0..cap`) of a position within its lap.
    #[inline(always)]
    fn index(&self, pos: usize) -> usize {
        pos & (self.mark - 1)
    }

    /// The slot for an index.
    #[inline(always)]
    fn slot(&self, index: usize) -> &Slot<T> {
        // Packed is the identity: a predictable branch is cheaper than the
        // general formula, which cost `ring/batch64` 1p1c a fifth of its
        // throughput (its claim loop reads 64 stamps in a row).
        if self.map.layout == SlotLayout::Packed {
            &self.buffer[index]
        } else {
            &self.buffer[self.map.slot(index)]
        }
    }

    /// Position after `pos` advanced by `n` slots within its lap (`index + n <= cap`).
    #[inline(always)]
    fn advance(&self, pos: usize, n: usize) -> usize {
        let index = self.index(pos);
        if index + n < self.cap {
            pos + n
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Items ever pushed, from a tail (or popped, from a head) position.
    #[inline]
    pub(crate) fn count_of(&self, pos: usize) -> u64 {
        let laps = (pos / self.one_lap) as u64;
        laps * self.cap as u64 + self.index(pos) as u64
    }

    /// Items pushed so far (wraps at `u64::MAX`), derived from the tail.
    pub(crate) fn pushed(&self) -> u64 {
        self.count_of(self.tail.load(Ordering::Relaxed) & !self.mark)
    }

    /// Items popped or evicted so far, derived from the head.
    pub(crate) fn popped(&self) -> u64 {
        self.count_of(self.head.load(Ordering::Relaxed))
    }

    /// Looks at the tail slot and claims up to `want` free slots from it.
    ///
    /// Gives up with `Stalled` after `STALL_SPINS` re-reads that saw neither
    /// the tail nor the slot move: a peer holds the slot mid-operation.
    #[inline]
    fn claim_push(&self, want: usize) -> PushSlot {
        let mut tail = self.tail.load(Ordering::Relaxed);
        let mut stuck = 0;
        let mut contended = 0;
        loop {
            if tail & self.mark != 0 {
                return PushSlot::Closed;
            }
            let index = self.index(tail);
            let stamp = self.slot(index).stamp.load(Ordering::Acquire);
            if stamp == tail {
                // Free for this lap: count the free run behind it (batch).
                let room = want.min(self.cap - index);
                let mut count = 1;
                while count < room
                    && self.slot(index + count).stamp.load(Ordering::Acquire) == tail + count
                {
                    count += 1;
                }
                let new_tail = self.advance(tail, count);
                match self.tail.compare_exchange_weak(
                    tail,
                    new_tail,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return PushSlot::Claimed { tail, count },
                    Err(current) => {
                        // Lost a race: back off briefly so the winners'
                        // line transfers are not fought over at once.
                        backoff(&mut contended);
                        tail = current;
                        continue;
                    }
                }
            }
            if stamp.wrapping_add(self.one_lap) == tail + 1 {
                // The slot holds last lap's item: full, unless a consumer claimed it.
                fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed);
                if head.wrapping_add(self.one_lap) == tail {
                    return PushSlot::Full { tail };
                }
            }
            // Stale tail, or a peer mid-operation on this slot (last lap's
            // producer not yet published, or its consumer not yet done).
            backoff(&mut stuck);
            let current = self.tail.load(Ordering::Relaxed);
            if current == tail {
                if stuck > STALL_SPINS {
                    return PushSlot::Stalled;
                }
            } else {
                stuck = 0;
                tail = current;
            }
        }
    }

    /// Writes `value` into the claimed slot at `pos` and publishes it.
    ///
    /// # Safety
    /// - The caller claimed position `pos` for pushing: a successful CAS (or
    ///   add) on `tail` moved it past `pos`, and the slot's stamp read `pos`
    ///   (free for this lap) when it claimed it — so the slot holds no value.
    /// - `pos` is published at most once: no other call passes the same `pos`
    ///   in this lap (the claim is exclusive).
    #[inline(always)]
    unsafe fn publish(&self, pos: usize, value: T) {
        let slot = self.slot(self.index(pos));
        stall_point();
        // SAFETY: by the caller's claim (see `# Safety`) this thread alone
        // owns the slot's empty value until the stamp store below publishes it.
        slot.value
            .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
        slot.stamp.store(pos + 1, Ordering::Release);
    }

    /// Pushes `item`, or hands it back when the ring is full.
    ///
    /// # Errors
    /// `Err(item)` when the ring is full, or when the slot next in line is
    /// held by a stalled consumer (see "Progress" in the module docs).
    #[inline]
    pub fn try_push(&self, item: T) -> Result<(), T> {
        match self.claim_push(1) {
            PushSlot::Claimed { tail, .. } => {
                // SAFETY: `claim_push` claimed `tail` for this thread alone.
                unsafe { self.publish(tail, item) };
                Ok(())
            }
            PushSlot::Full { .. } | PushSlot::Stalled | PushSlot::Closed => Err(item),
        }
    }

    /// [`try_push`](Self::try_push) that says why it failed.
    #[inline]
    pub(crate) fn push_or_status(&self, item: T) -> Result<(), (T, NoSlot)> {
        match self.claim_push(1) {
            PushSlot::Claimed { tail, .. } => {
                // SAFETY: `claim_push` claimed `tail` for this thread alone.
                unsafe { self.publish(tail, item) };
                Ok(())
            }
            PushSlot::Full { .. } => Err((item, NoSlot::Settled)),
            PushSlot::Stalled => Err((item, NoSlot::InFlight)),
            PushSlot::Closed => Err((item, NoSlot::Closed)),
        }
    }

    /// Pushes `item`, evicting the oldest item when the ring is full
    /// (drop-oldest).
    ///
    /// Returns `Ok(None)` when there was room, `Ok(Some(oldest))` with the
    /// evicted item when there was not.
    ///
    /// # Errors
    /// `Err(item)` hands the item back, not pushed, when the ring is closed,
    /// or when the slot it needs is held by a stalled peer (see "Progress" in
    /// the module docs) — a consumer mid-way through taking the oldest item,
    /// which means the ring is about to have room: retry.
    pub fn force_push(&self, item: T) -> Result<Option<T>, T> {
        self.force_push_or_status(item).map_err(|(item, _)| item)
    }

    /// [`force_push`](Self::force_push) that says why it refused.
    pub(crate) fn force_push_or_status(&self, item: T) -> Result<Option<T>, (T, NoSlot)> {
        loop {
            match self.claim_push(1) {
                PushSlot::Claimed { tail, .. } => {
                    // SAFETY: `claim_push` claimed `tail` for this thread alone.
                    unsafe { self.publish(tail, item) };
                    return Ok(None);
                }
                PushSlot::Stalled => return Err((item, NoSlot::InFlight)),
                PushSlot::Closed => return Err((item, NoSlot::Closed)),
                PushSlot::Full { tail } => {
                    // Full: the tail slot holds the oldest item. Take it over by
                    // moving head past it, then refill it and move tail.
                    let head = tail.wrapping_sub(self.one_lap);
                    let new_tail = self.advance(tail, 1);
                    let new_head = new_tail.wrapping_sub(self.one_lap);
                    if self
                        .head
                        .compare_exchange(head, new_head, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        // No producer can claim `tail` (its stamp is not `tail`),
                        // so nobody else moves it; an add (not a store) keeps a
                        // concurrent close's mark bit.
                        let before = self
                            .tail
                            .fetch_add(new_tail.wrapping_sub(tail), Ordering::SeqCst);
                        let slot = self.slot(self.index(tail));
                        stall_point();
                        if before & self.mark != 0 {
                            // Closed between our look at the tail and the
                            // claim: the push is refused. The oldest item
                            // stays where it was (re-published at the new
                            // position), as every queued item of a closed
                            // ring does, and `item` goes back.
                            slot.stamp.store(tail + 1, Ordering::Release);
                            return Err((item, NoSlot::Closed));
                        }
                        // SAFETY: the head CAS made this thread the consumer of
                        // the published item in this slot and the tail add its
                        // producer; no other thread reads or writes it until the
                        // stamp store below.
                        let old = slot.value.with_mut(|p| unsafe {
                            p.replace(MaybeUninit::new(item)).assume_init()
                        });
                        slot.stamp.store(tail + 1, Ordering::Release);
                        return Ok(Some(old));
                    }
                    // A consumer made room meanwhile: try again.
                }
            }
        }
    }

    /// Pushes items in order from `items`, claiming runs of free slots with
    /// one CAS each, until the ring is full; returns the items that did not
    /// fit, in order.
    ///
    /// Given a `Vec`, it hands back that same allocation (emptied of what it
    /// pushed), so a producer that refills and resubmits one buffer
    /// allocates nothing per batch:
    ///
    /// ```
    /// use sheaf::ring::Ring;
    ///
    /// let ring = Ring::with_capacity(4).unwrap();
    /// let mut buffer = Vec::with_capacity(64);
    /// buffer.extend(0..3);
    /// buffer = ring.push_batch(buffer);
    /// assert!(buffer.is_empty() && buffer.capacity() >= 64);
    /// buffer.extend(3..6);
    /// assert_eq!(ring.push_batch(buffer), vec![4, 5]); // one slot was left
    /// ```
    pub fn push_batch(&self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        // Buffer first: a claim must never exceed the items in hand, and an
        // iterator's size_hint is not a promise. (A Vec is taken as is.)
        let mut items = items.into_iter().collect::<Vec<T>>();
        while !items.is_empty() {
            match self.claim_push(items.len()) {
                PushSlot::Claimed { tail, count } => {
                    for (i, item) in items.drain(..count).enumerate() {
                        // SAFETY: `claim_push` claimed `tail..tail + count`
                        // (within one lap) for this thread alone.
                        unsafe { self.publish(tail + i, item) };
                    }
                }
                PushSlot::Full { .. } | PushSlot::Stalled | PushSlot::Closed => break,
            }
        }
        items
    }

    /// Pops the oldest item, if any.
    ///
    /// Returns `None` when empty, or when the oldest claimed item's producer
    /// is stalled before publishing (see "Progress" in the module docs).
    #[inline]
    pub fn try_pop(&self) -> Option<T> {
        self.pop_or_status().ok()
    }

    /// [`try_pop`](Self::try_pop) that says why it found nothing.
    #[inline]
    pub(crate) fn pop_or_status(&self) -> Result<T, NoSlot> {
        let (head, count) = self.claim_pop(1)?;
        debug_assert_eq!(count, 1);
        // SAFETY: `claim_pop` claimed the published `head` for this thread alone.
        Ok(unsafe { self.take(head) })
    }

    /// Pops up to `max` items into `out`, oldest first, claiming runs of
    /// published slots with one CAS each; returns how many it appended.
    pub fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut taken = 0;
        while taken < max {
            let Ok((head, count)) = self.claim_pop(max - taken) else {
                break;
            };
            out.reserve(count);
            for i in 0..count {
                // SAFETY: `claim_pop` claimed the published `head..head +
                // count` (within one lap) for this thread alone.
                out.push(unsafe { self.take(head + i) });
            }
            taken += count;
        }
        taken
    }

    /// [`pop_batch`](Self::pop_batch) that says why it stopped when it took nothing.
    pub(crate) fn pop_batch_or_status(
        &self,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, NoSlot> {
        if max == 0 {
            return Ok(0);
        }
        let (head, count) = self.claim_pop(max)?;
        out.reserve(count);
        for i in 0..count {
            // SAFETY: `claim_pop` claimed the published `head..head + count`
            // (within one lap) for this thread alone.
            out.push(unsafe { self.take(head + i) });
        }
        Ok(count
            + if count < max {
                self.pop_batch(out, max - count)
            } else {
                0
            })
    }

    /// Claims up to `want` published slots from the head.
    #[inline]
    fn claim_pop(&self, want: usize) -> Result<(usize, usize), NoSlot> {
        let mut head = self.head.load(Ordering::Relaxed);
        let mut stuck = 0;
        let mut contended = 0;
        loop {
            let index = self.index(head);
            let stamp = self.slot(index).stamp.load(Ordering::Acquire);
            if stamp == head + 1 {
                let room = want.min(self.cap - index);
                let mut count = 1;
                while count < room
                    && self.slot(index + count).stamp.load(Ordering::Acquire) == head + count + 1
                {
                    count += 1;
                }
                let new_head = self.advance(head, count);
                match self.head.compare_exchange_weak(
                    head,
                    new_head,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok((head, count)),
                    Err(current) => {
                        backoff(&mut contended);
                        head = current;
                        continue;
                    }
                }
            }
            if stamp == head {
                // Not yet published: empty, unless a producer claimed it.
                fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed) & !self.mark;
                if tail == head {
                    return Err(NoSlot::Settled);
                }
            }
            // Stale head, or a peer mid-operation on this slot.
            backoff(&mut stuck);
            let current = self.head.load(Ordering::Relaxed);
            if current == head {
                if stuck > STALL_SPINS {
                    return Err(NoSlot::InFlight);
                }
            } else {
                stuck = 0;
                head = current;
            }
        }
    }

    /// `true` if some item behind the head slot is already published: an
    /// "empty" answer now would hide an item whose push has returned (the
    /// head slot's producer is merely in flight).
    pub(crate) fn published_behind_head(&self) -> bool {
        let head = self.head.load(Ordering::SeqCst);
        let tail = self.tail.load(Ordering::SeqCst) & !self.mark;
        let mut pos = head;
        let mut seen = 0;
        while pos != tail && seen < self.cap {
            if pos != head && self.slot(self.index(pos)).stamp.load(Ordering::Acquire) == pos + 1 {
                return true;
            }
            pos = self.advance(pos, 1);
            seen += 1;
        }
        false
    }

    /// Moves the value out of the claimed slot at `pos` and frees the slot.
    ///
    /// # Safety
    /// - The caller claimed position `pos` for popping: a successful CAS on
    ///   `head` moved it past `pos` after an acquire load of the slot's stamp
    ///   read `pos + 1` (published) — so the slot holds an initialized value
    ///   whose write happens-before this read.
    /// - `pos` is taken at most once (the claim is exclusive).
    #[inline(always)]
    unsafe fn take(&self, pos: usize) -> T {
        let slot = self.slot(self.index(pos));
        stall_point();
        // SAFETY: by the caller's claim (see `# Safety`) the value is
        // initialized and this thread alone reads it, exactly once, before
        // the stamp store below frees the slot for the next lap.
        let value = slot.value.with(|p| unsafe { p.read().assume_init() });
        slot.stamp
            .store(pos.wrapping_add(self.one_lap), Ordering::Release);
        value
    }

    /// Items in the ring now (a moment's view under concurrency).
    pub fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                let tail = tail & !self.mark;
                let hix = self.index(head);
                let tix = self.index(tail);
                return if hix < tix {
                    tix - hix
                } else if hix > tix {
                    self.cap - hix + tix
                } else if tail == head {
                    0
                } else {
                    self.cap
                };
            }
        }
    }

    /// `true` when it holds no item (a moment's view).
    pub fn is_empty(&self) -> bool {
        let head = self.head.load(Ordering::SeqCst);
        let tail = self.tail.load(Ordering::SeqCst) & !self.mark;
        tail == head
    }

    /// `true` when it holds `capacity` items (a moment's view).
    pub fn is_full(&self) -> bool {
        let tail = self.tail.load(Ordering::SeqCst) & !self.mark;
        let head = self.head.load(Ordering::SeqCst);
        head.wrapping_add(self.one_lap) == tail
    }

    /// Closes the ring: every later push is refused (`try_push` hands the
    /// item back), while pops go on draining what was pushed before. A push
    /// either completed its claim before the close (its item stays, to be
    /// popped or dropped with the ring) or is refused: there is no third
    /// outcome. Returns `true` if this call closed it.
    pub fn close(&self) -> bool {
        self.tail.fetch_or(self.mark, Ordering::SeqCst) & self.mark == 0
    }

    /// `true` once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.tail.load(Ordering::SeqCst) & self.mark != 0
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no claim is in flight, so every slot from head to tail
        // holds a published value.
        let mut head = self.head.load_mut();
        let tail = self.tail.load_mut() & !self.mark;
        // A panicking `T::drop` must not abort the process (a second panic
        // while unwinding would): each drop is caught, the rest are still
        // dropped, and the first panic is resumed afterwards — unless this
        // drop already runs during an unwind, where it is swallowed.
        let mut first_panic = None;
        while head != tail {
            let slot = self.slot(self.index(head));
            let drop_one = || {
                // SAFETY: positions head..tail hold published values owned by
                // the ring, each dropped exactly once as head advances past it.
                slot.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
            };
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(drop_one)) {
                first_panic.get_or_insert(panic);
            }
            head = self.advance(head, 1);
        }
        if let Some(panic) = first_panic {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.cap)
            .field("len", &self.len())
            .finish()
    }
}
