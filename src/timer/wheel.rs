//! The engine: a hierarchical timer wheel over [`Tick`]s,
//! single-threaded (callers put it behind a lock).

use std::fmt;
use std::num::NonZeroU32;

use super::Tick;

/// Slots per level (one `u64` occupancy word each).
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// Levels: level `l` has slots of `64^l` ticks and spans `64^(l+1)` ticks,
/// so six levels reach 64^6 ticks (about 79 days at 100 µs); later deadlines wait in
/// the top level and are re-placed when they come within reach.
const LEVELS: usize = 6;
/// Ticks the wheel can place without clamping.
const SPAN: u64 = 1 << (SLOT_BITS as u64 * LEVELS as u64);
/// Width of a top-level slot.
const TOP_SLOT: u64 = 1 << (SLOT_BITS as u64 * (LEVELS as u64 - 1));
/// No entry (free-list end).
const NIL: u32 = u32::MAX;
/// The list of entries already due when inserted (deadline at or before `elapsed`).
const DUE_LIST: u16 = (LEVELS * SLOTS) as u16;
/// Marks an entry that is in no list (free, or being handed to a callback).
const UNLINKED: u16 = u16::MAX;

/// Names one entry of a [`Wheel`] (or a [`Timer`](super::Timer)) for
/// [`cancel`](Wheel::cancel) and [`reschedule`](Wheel::reschedule).
///
/// A key stays valid while its entry is pending, also across lazy re-arms
/// (see [`Wheel::advance`]); once the entry has fired or been cancelled the
/// key matches nothing, even if its storage is reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    /// Never zero, so `Option<TimerKey>` is 8 bytes.
    generation: NonZeroU32,
}

impl fmt::Debug for TimerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerKey({}v{})", self.index, self.generation)
    }
}

struct Entry<T> {
    /// `None` while free or while lent to an `advance` callback.
    value: Option<T>,
    deadline: Tick,
    /// Position in its slot's index vector; the next free entry while free.
    pos: u32,
    generation: u32,
    /// Which list the entry is linked into: `level * 64 + slot`, `DUE_LIST`, or `UNLINKED`.
    list: u16,
}

/// A hierarchical timer wheel: `insert`, `cancel` and `reschedule` in O(1),
/// `advance` in O(entries due + levels), with deadlines in [`Tick`]s
/// (units of the caller's choosing since its origin; a [`Timer`](super::Timer)
/// uses [`RESOLUTION`](super::RESOLUTION)).
///
/// Six levels of 64 slots: an entry sits in the level whose slot width
/// matches how far away its deadline is, and moves down a level when its
/// slot's time comes ("cascading"), so each entry is touched at most six
/// times however long it waits. Entries live in one slab; each slot is a
/// vector of entry indices (an entry knows its position, so a cancel is a
/// `swap_remove`). Walking a slot reads the indices in sequence and the
/// entries independently, so the cache misses of a large wheel overlap
/// instead of chaining as they would through linked lists. Nothing is
/// allocated per operation once the slab and slots have grown.
///
/// An entry never fires early: it fires in the first `advance(now)` with
/// `now >= deadline`.
///
/// ```
/// use sheaf::timer::Wheel;
///
/// let mut wheel = Wheel::new();
/// let soon = wheel.insert(5, "soon");
/// wheel.insert(70_000, "later");
/// assert_eq!(wheel.next_due(), Some(5));
///
/// let mut fired = Vec::new();
/// wheel.advance(4, |_, v| { fired.push(v); None });
/// assert!(fired.is_empty()); // not early
/// assert_eq!(wheel.deadline(soon), Some(5));
/// wheel.advance(5, |_, v| { fired.push(v); None });
/// assert_eq!(fired, ["soon"]);
/// assert_eq!(wheel.deadline(soon), None); // fired: the key is spent
/// assert_eq!(wheel.len(), 1);
/// ```
pub struct Wheel<T> {
    entries: Vec<Entry<T>>,
    free: u32,
    slots: Box<[Vec<u32>]>,
    occupied: [u64; LEVELS],
    /// Every entry with `deadline <= elapsed` has been handed out.
    elapsed: Tick,
    len: usize,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("len", &self.len)
            .field("elapsed", &self.elapsed)
            .field("next_due", &self.next_due())
            .finish()
    }
}

impl<T> Wheel<T> {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    /// An empty wheel whose time starts at `now`.
    pub fn starting_at(now: Tick) -> Self {
        Self {
            entries: Vec::new(),
            free: NIL,
            slots: (0..=LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            elapsed: now,
            len: 0,
        }
    }

    /// Pending entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick the wheel has advanced to.
    pub fn elapsed(&self) -> Tick {
        self.elapsed
    }

    /// Bytes the wheel holds on the heap besides the values' own allocations.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<T>>()
            + self
                .slots
                .iter()
                .map(|slot| slot.capacity() * std::mem::size_of::<u32>())
                .sum::<usize>()
    }

    /// Adds `value`, due at `deadline`; a deadline at or before
    /// [`elapsed`](Self::elapsed) is due at the next `advance`.
    ///
    /// # Panics
    /// When more than `u32::MAX - 1` entries are pending at once.
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerKey {
        let index = if self.free != NIL {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            self.free = entry.pos;
            entry.value = Some(value);
            entry.deadline = deadline;
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("timer wheel holds at most u32::MAX - 1 entries");
            self.entries.push(Entry {
                value: Some(value),
                deadline,
                pos: 0,
                generation: 1,
                list: UNLINKED,
            });
            index
        };
        self.len += 1;
        self.link(index);
        self.key(index)
    }

    /// The deadline of a pending entry.
    pub fn deadline(&self, key: TimerKey) -> Option<Tick> {
        self.pending(key).map(|i| self.entries[i].deadline)
    }

    /// A pending entry's value.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        let i = self.pending(key)?;
        self.entries[i].value.as_mut()
    }

    /// Removes a pending entry and returns its value; `None` if it already
    /// fired or was cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let i = self.pending(key)?;
        self.unlink(i as u32);
        self.len -= 1;
        let value = self.entries[i].value.take();
        self.release(i as u32);
        value
    }

    /// Moves a pending entry to a new deadline (earlier or later); `false`
    /// if the key matches no pending entry. For deadlines that only move
    /// later, the cheaper way is to leave the entry where it is and re-arm it
    /// lazily when it comes due (see [`advance`](Self::advance)).
    pub fn reschedule(&mut self, key: TimerKey, deadline: Tick) -> bool {
        let Some(i) = self.pending(key) else {
            return false;
        };
        self.unlink(i as u32);
        self.entries[i].deadline = deadline;
        self.link(i as u32);
        true
    }

    /// The tick at which [`advance`](Self::advance) next has work: the
    /// earliest deadline if it sits in the finest level, else the start of
    /// the coarser slot holding it (where it cascades down). Never later
    /// than the earliest deadline; `None` when empty.
    pub fn next_due(&self) -> Option<Tick> {
        if !self.slots[DUE_LIST as usize].is_empty() {
            return Some(self.elapsed);
        }
        self.next_slot().map(|(_, _, start)| start)
    }

    /// Moves time to `now` and hands every entry whose deadline is at or
    /// before `now` to `on_due(key, value)`, in deadline order (ties in no
    /// set order; entries already due when inserted first).
    ///
    /// `on_due` returns `None` to let the entry go (its key is spent), or
    /// `Some((later, value))` to re-arm it in place under the same key: the
    /// lazy re-check that makes a moving deadline cost only a store (keep the
    /// new deadline beside the value; when the old one fires, re-arm if it
    /// moved). A re-arm at or before `now` is handed out again in this call.
    /// Returns the number of entries let go.
    ///
    /// `now` earlier than [`elapsed`](Self::elapsed) is treated as `elapsed`.
    pub fn advance(
        &mut self,
        now: Tick,
        mut on_due: impl FnMut(TimerKey, T) -> Option<(Tick, T)>,
    ) -> usize {
        let mut fired = 0;
        loop {
            fired += self.fire_list(&mut on_due);
            match self.next_slot() {
                Some((level, slot, start)) if start <= now => {
                    self.elapsed = self.elapsed.max(start);
                    let list = (level * SLOTS + slot) as u16;
                    // Detach the slot, then place each entry again: due
                    // ones go to the due list, the rest one level down.
                    let mut taken = std::mem::take(&mut self.slots[list as usize]);
                    self.clear_bit(list);
                    for &index in &taken {
                        self.entries[index as usize].list = UNLINKED;
                        self.link(index);
                    }
                    if self.slots[list as usize].is_empty() {
                        // Keep the slot's capacity for its next turn.
                        taken.clear();
                        self.slots[list as usize] = taken;
                    }
                }
                _ => break,
            }
        }
        self.elapsed = self.elapsed.max(now);
        fired
    }

    /// Hands out every entry of the due list (see `advance`).
    fn fire_list(&mut self, on_due: &mut impl FnMut(TimerKey, T) -> Option<(Tick, T)>) -> usize {
        let mut fired = 0;
        while let Some(index) = self.slots[DUE_LIST as usize].pop() {
            let entry = &mut self.entries[index as usize];
            entry.list = UNLINKED;
            let value = entry.value.take().expect("a linked entry holds its value");
            let key = self.key(index);
            match on_due(key, value) {
                Some((deadline, value)) => {
                    let entry = &mut self.entries[index as usize];
                    entry.value = Some(value);
                    entry.deadline = deadline;
                    // Placed by its deadline: one already passed is handed
                    // out again in this call.
                    self.link(index);
                }
                None => {
                    self.len -= 1;
                    fired += 1;
                    self.release(index);
                }
            }
        }
        fired
    }

    fn key(&self, index: u32) -> TimerKey {
        let generation = self.entries[index as usize].generation;
        TimerKey {
            index,
            generation: NonZeroU32::new(generation).expect("generations skip zero"),
        }
    }

    fn pending(&self, key: TimerKey) -> Option<usize> {
        let entry = self.entries.get(key.index as usize)?;
        (entry.generation == key.generation.get() && entry.value.is_some())
            .then_some(key.index as usize)
    }

    fn release(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1).max(1);
        entry.value = None;
        entry.list = UNLINKED;
        entry.pos = self.free;
        self.free = index;
    }

    /// Links an unlinked entry into the list its deadline belongs to.
    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        if deadline <= self.elapsed {
            self.push(DUE_LIST, index);
            return;
        }
        // Far deadlines are placed at most 63 top-level slots ahead (the top
        // level wraps into its next turn); the entry keeps its real deadline
        // and is placed again when that slot comes.
        let placed = deadline.min(self.elapsed.saturating_add(SPAN - TOP_SLOT));
        let level = level_for(self.elapsed, placed).min(LEVELS - 1);
        let slot = ((placed >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
        self.occupied[level] |= 1 << slot;
        self.push((level * SLOTS + slot) as u16, index);
    }

    fn push(&mut self, list: u16, index: u32) {
        let slot = &mut self.slots[list as usize];
        let entry = &mut self.entries[index as usize];
        entry.list = list;
        entry.pos = slot.len() as u32;
        slot.push(index);
    }

    fn unlink(&mut self, index: u32) {
        let (list, pos) = {
            let e = &self.entries[index as usize];
            (e.list, e.pos as usize)
        };
        debug_assert_ne!(list, UNLINKED);
        let slot = &mut self.slots[list as usize];
        slot.swap_remove(pos);
        if let Some(&moved) = slot.get(pos) {
            self.entries[moved as usize].pos = pos as u32;
        }
        if slot.is_empty() && list != DUE_LIST {
            self.clear_bit(list);
        }
        self.entries[index as usize].list = UNLINKED;
    }

    fn clear_bit(&mut self, list: u16) {
        let (level, slot) = (list as usize / SLOTS, list as usize % SLOTS);
        self.occupied[level] &= !(1 << slot);
    }

    /// The first occupied slot at or after `elapsed`, finest level first:
    /// `(level, slot, start tick)`. An entry's level is chosen so that every
    /// finer level's window lies before its slot, so the first level with
    /// anything holds the earliest slot.
    fn next_slot(&self) -> Option<(usize, usize, Tick)> {
        (0..LEVELS).find_map(|level| {
            let occupied = self.occupied[level];
            if occupied == 0 {
                return None;
            }
            let shift = level as u32 * SLOT_BITS;
            let slot_width = 1u64 << shift;
            let span = slot_width << SLOT_BITS;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            let distance = occupied.rotate_right(now_slot as u32).trailing_zeros() as usize;
            let slot = (now_slot + distance) & (SLOTS - 1);
            let window = self.elapsed & !(span - 1);
            let mut start = window + slot as u64 * slot_width;
            if start + slot_width <= self.elapsed {
                // The slot lies in the next turn of this level (only the
                // top level wraps: see `link`).
                start += span;
            }
            Some((level, slot, start.max(self.elapsed)))
        })
    }
}

impl<T> Wheel<T> {
    /// Removes every pending entry, earliest first, and returns
    /// `(deadline, value)` pairs.
    pub fn drain(&mut self) -> Vec<(Tick, T)> {
        let mut out: Vec<(Tick, T)> = Vec::with_capacity(self.len);
        for index in 0..self.entries.len() {
            if self.entries[index].value.is_some() {
                let index = index as u32;
                self.unlink(index);
                let deadline = self.entries[index as usize].deadline;
                let value = self.entries[index as usize].value.take();
                self.release(index);
                out.extend(value.map(|v| (deadline, v)));
            }
        }
        self.len = 0;
        out.sort_by_key(|(deadline, _)| *deadline);
        out
    }
}

/// The level whose slots separate `elapsed` from `deadline`: the highest
/// 6-bit digit in which they differ.
#[inline]
fn level_for(elapsed: Tick, deadline: Tick) -> usize {
    let differing = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - differing.leading_zeros();
    (significant / SLOT_BITS) as usize
}
