//! Blocking and async MPMC channels over the [`Ring`],
//! with an explicit overflow policy.
//!
//! ```
//! use sheaf::channel::{self, Overflow};
//!
//! let (tx, rx) = channel::bounded::<u64>(2);
//! tx.send(1).unwrap();
//! tx.try_send(2).unwrap();
//! assert!(tx.try_send(3).is_err()); // full: the item comes back
//! drop(tx);
//! assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]); // ends at disconnection
//!
//! // Drop-oldest: a full channel evicts its oldest item, and counts it.
//! let (tx, rx) = channel::bounded_with::<u64>(2, Overflow::DropOldest);
//! for i in 0..5 {
//!     tx.send(i).unwrap();
//! }
//! assert_eq!(rx.try_recv(), Ok(3));
//! assert_eq!(rx.stats().dropped_oldest, 3);
//! ```
//!
//! # Waiting
//!
//! A blocked call first retries for about a microsecond and a half (a time
//! budget, not a count of pause instructions), then registers as a waiter and
//! parks. A send or receive wakes a waiter only when one is registered: when
//! nobody sleeps, the notification costs one load. There are no
//! `sched_yield` loops, so threads beyond the core count do not burn it.

mod errors;
#[cfg(feature = "async")]
mod futures;
mod spill;

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

pub use errors::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
#[cfg(feature = "async")]
pub use futures::{RecvFuture, SendFuture};

pub(crate) use spill::SpillSendError;

use crate::clock::deadline_after;
use crate::codec::Codec;
use crate::error::ConfigError;
pub use crate::overflow::Overflow;
use crate::ring::{NoSlot, Ring, SlotLayout};
use crate::spill::{RecoveryReport, SpillConfig};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{thread, Arc};
use crate::wait::{deadline_passed, park_until, Waiters, Wake};

/// Counters of a channel. `sent` and `received` are derived from the ring's
/// positions, so counting them costs nothing on the hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Items accepted into the channel.
    pub sent: u64,
    /// Items taken out by receivers (evictions excluded).
    pub received: u64,
    /// Items dropped on send under [`Overflow::DropNewest`].
    pub dropped_newest: u64,
    /// Queued items evicted under [`Overflow::DropOldest`] (or by [`Sender::force_send`]).
    pub dropped_oldest: u64,
    /// Items handed back on send under [`Overflow::Reject`].
    pub rejected: u64,
    /// Items handed back on send when [`Overflow::BlockTimeout`] ran out.
    pub timed_out: u64,
    /// Items queued now.
    pub len: usize,
    /// The channel's capacity.
    pub capacity: usize,
    /// Threads or tasks waiting to send now.
    pub waiting_senders: usize,
    /// Threads or tasks waiting to receive now.
    pub waiting_receivers: usize,
    /// Items written to the spill log (counted in `sent` too); 0 unless
    /// the channel was built by [`spilling`].
    pub spilled: u64,
    /// Items read back from the spill log (counted in `received` too).
    pub unspilled: u64,
    /// Items on disk now (not counted in `len`), recovered ones included.
    pub on_disk: u64,
    /// Spilled records lost reading them back (undecodable or corrupt).
    pub spill_lost: u64,
}

#[derive(Default)]
struct LossCounters {
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
}

struct Chan<T> {
    ring: Ring<T>,
    overflow: Overflow,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Set when the last sender is gone. (When the last receiver goes, the
    /// ring itself is closed, so that a push and the close are atomic.)
    senders_gone: AtomicBool,
    /// Receivers waiting for an item. Padded: every send reads its count,
    /// and registering writes it (and its lock) — keep that off the lines
    /// the other side reads.
    readers: CachePadded<Waiters>,
    /// Senders waiting for room (padded likewise).
    writers: CachePadded<Waiters>,
    losses: CachePadded<LossCounters>,
    /// The disk side of a channel built by [`spilling`].
    spill: Option<Box<spill::SpillSide<T>>>,
}

/// How long a blocked call spins before it yields the CPU once, and then
/// parks.
const SPIN_BUDGET: Duration = Duration::from_nanos(1_500);
/// How long a registered waiter keeps re-checking a slot that a peer is
/// mid-way through before it falls back to timed parks.
const IN_FLIGHT_SPIN: Duration = Duration::from_micros(20);

/// The outcome of one try at a send or receive (the crate says `Outcome`
/// for the result of one try throughout).
enum Outcome<R> {
    Ready(R),
    NotReady(NoSlot),
    Closed,
}

impl<T> Chan<T> {
    /// Every sender is gone (receivers drain, then see the end).
    #[inline]
    fn is_disconnected(&self) -> bool {
        self.senders_gone.load(Ordering::SeqCst)
    }

    fn disconnect_senders(&self) {
        self.senders_gone.store(true, Ordering::SeqCst);
        self.readers.notify_all();
    }

    /// Every receiver is gone: refuse pushes atomically, wake blocked
    /// senders, and drop what is queued (what a sender still publishes after
    /// its claim is dropped with the channel).
    ///
    /// A queued item whose `Drop` panics does not abort the process: the
    /// rest are still dropped and the first panic is resumed afterwards
    /// (or swallowed when this already runs during an unwind).
    fn disconnect_receivers(&self) {
        self.ring.close();
        self.writers.notify_all();
        let mut first_panic = None;
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.ring.pop_or_status().is_ok()
            })) {
                Ok(true) => {}
                Ok(false) => break,
                Err(panic) => {
                    first_panic.get_or_insert(panic);
                }
            }
        }
        if let Some(panic) = first_panic {
            if !std::thread::panicking() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    #[inline]
    fn pop(&self) -> Outcome<T> {
        match self.ring.pop_or_status() {
            Ok(item) => {
                self.writers.notify_one();
                Outcome::Ready(item)
            }
            Err(blocked) => {
                if let Some(spill) = &self.spill {
                    if blocked != NoSlot::InFlight {
                        if let Some(item) = self.spill_pop(spill) {
                            return Outcome::Ready(item);
                        }
                    }
                }
                if self.is_disconnected() {
                    // Senders are gone: drain what they left, then report.
                    return match self.ring.pop_or_status() {
                        Ok(item) => Outcome::Ready(item),
                        Err(NoSlot::InFlight) => Outcome::NotReady(NoSlot::InFlight),
                        Err(NoSlot::Settled | NoSlot::Closed) => Outcome::Closed,
                    };
                }
                Outcome::NotReady(blocked)
            }
        }
    }

    #[inline]
    fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> Outcome<usize> {
        match self.ring.pop_batch_or_status(out, max) {
            Ok(n) => {
                if n == 1 {
                    self.writers.notify_one();
                } else {
                    self.writers.notify_all();
                }
                Outcome::Ready(n)
            }
            Err(blocked) => {
                if let Some(spill) = &self.spill {
                    if blocked != NoSlot::InFlight {
                        if let Some(item) = self.spill_pop(spill) {
                            out.push(item);
                            return Outcome::Ready(1);
                        }
                    }
                }
                if self.is_disconnected() {
                    return match self.ring.pop_batch_or_status(out, max) {
                        Ok(n) => Outcome::Ready(n),
                        Err(NoSlot::InFlight) => Outcome::NotReady(NoSlot::InFlight),
                        Err(NoSlot::Settled | NoSlot::Closed) => Outcome::Closed,
                    };
                }
                Outcome::NotReady(blocked)
            }
        }
    }

    /// One push attempt; `item` is left in place when it did not go in.
    #[inline]
    fn push(&self, item: &mut Option<T>) -> Outcome<()> {
        match self
            .ring
            .push_or_status(item.take().expect("an item to push"))
        {
            Ok(()) => {
                self.readers.notify_one();
                Outcome::Ready(())
            }
            Err((back, blocked)) => {
                *item = Some(back);
                if blocked == NoSlot::Closed {
                    Outcome::Closed
                } else {
                    Outcome::NotReady(blocked)
                }
            }
        }
    }

    /// Retries `attempt` for the spin budget and once after a yield, then
    /// parks on `waiters` until it succeeds, the channel closes, or
    /// `deadline` passes (`None` = never).
    fn wait<R>(
        &self,
        waiters: &Waiters,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Outcome<R>,
    ) -> Result<R, WaitError> {
        match attempt() {
            Outcome::Ready(r) => return Ok(r),
            Outcome::Closed => return Err(WaitError::Closed),
            Outcome::NotReady(_) => {}
        }
        if !cfg!(sheaf_loom) {
            // Spin for a time budget (`PAUSE` lengths differ 14× across
            // CPUs), then yield once: on a busy machine the peer that would
            // unblock us may be waiting for this very core, and a park
            // costs both sides a system call and usually two context
            // switches. One yield, not several: more kept blocked threads
            // cycling through the run queue (measured in DESIGN.md).
            let start = Instant::now();
            let mut spins = 0u32;
            loop {
                for _ in 0..8 {
                    crate::sync::spin_loop();
                }
                match attempt() {
                    Outcome::Ready(r) => return Ok(r),
                    Outcome::Closed => return Err(WaitError::Closed),
                    Outcome::NotReady(_) => {}
                }
                spins += 1;
                if spins % 4 == 0 && start.elapsed() >= SPIN_BUDGET {
                    break;
                }
            }
            thread::yield_now();
            match attempt() {
                Outcome::Ready(r) => return Ok(r),
                Outcome::Closed => return Err(WaitError::Closed),
                Outcome::NotReady(_) => {}
            }
        }
        loop {
            let ticket = waiters.register(Wake::current_thread());
            let mut blocked = match attempt() {
                Outcome::Ready(r) => {
                    waiters.unregister(ticket, false);
                    return Ok(r);
                }
                Outcome::Closed => {
                    waiters.unregister(ticket, false);
                    return Err(WaitError::Closed);
                }
                Outcome::NotReady(blocked) => blocked,
            };
            if blocked == NoSlot::InFlight && !cfg!(sheaf_loom) {
                // The peer is normally nanoseconds from finishing: spin a
                // little (time-bounded) before parking. Parking is sound
                // either way: the peer's notify comes after its stamp store
                // and a SeqCst fence, our re-check after `register`'s fence.
                let until = Instant::now() + IN_FLIGHT_SPIN;
                while blocked == NoSlot::InFlight && Instant::now() < until {
                    for _ in 0..16 {
                        crate::sync::spin_loop();
                    }
                    match attempt() {
                        Outcome::Ready(r) => {
                            waiters.unregister(ticket, false);
                            return Ok(r);
                        }
                        Outcome::Closed => {
                            waiters.unregister(ticket, false);
                            return Err(WaitError::Closed);
                        }
                        Outcome::NotReady(now) => blocked = now,
                    }
                }
            }
            let notified = park_until(&ticket, deadline);
            if !notified && deadline_passed(deadline) {
                waiters.unregister(ticket, false);
                return match attempt() {
                    Outcome::Ready(r) => Ok(r),
                    Outcome::Closed => Err(WaitError::Closed),
                    Outcome::NotReady(_) => Err(WaitError::Timeout),
                };
            }
            waiters.unregister(ticket, notified);
        }
    }
}

/// Waiting for a peer that is mid-operation: spin, then yield the CPU
/// (the peer may be preempted on this very core).
#[derive(Default)]
struct Snooze {
    step: u32,
}

impl Snooze {
    fn snooze(&mut self) {
        if self.step < 6 {
            for _ in 0..(1u32 << self.step) {
                crate::sync::spin_loop();
            }
        } else {
            thread::yield_now();
        }
        self.step = self.step.saturating_add(1);
    }
}

enum WaitError {
    Closed,
    Timeout,
}

/// Why [`Sender::send_telling`] handed an item back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// Every receiver is gone, or the channel was closed to senders.
    Disconnected,
    /// Full under [`Overflow::Reject`] (or at a spilling channel's disk bound).
    Full,
    /// Still full when [`Overflow::BlockTimeout`] ran out.
    TimedOut,
}

/// The sending half of a channel. Clone it for more producers.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of a channel. Clone it for more consumers.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

/// Builds a channel; see [`builder`].
#[derive(Debug, Clone)]
pub struct ChannelBuilder {
    capacity: usize,
    overflow: Overflow,
    layout: SlotLayout,
}

/// A builder for a channel with a chosen capacity and [`Overflow`] policy.
///
/// ```
/// use sheaf::channel::{self, Overflow};
/// let (tx, rx) = channel::builder().capacity(8).overflow(Overflow::Reject).build::<u32>().unwrap();
/// assert_eq!(tx.capacity(), 8);
/// assert!(channel::builder().capacity(0).build::<u32>().is_err());
/// # drop(rx);
/// ```
pub fn builder() -> ChannelBuilder {
    ChannelBuilder {
        capacity: 1024,
        overflow: Overflow::Block,
        layout: SlotLayout::Packed,
    }
}

impl ChannelBuilder {
    /// Items the channel holds (default 1024). Exact, not rounded.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What [`Sender::send`] does when the channel is full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How the ring's slots are placed in memory (default
    /// [`SlotLayout::Packed`]); see [`Ring::with_layout`].
    pub fn slot_layout(mut self, layout: SlotLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Creates the channel.
    ///
    /// # Errors
    /// [`ConfigError`] if the capacity is 0 (or absurdly large).
    pub fn build<T>(self) -> Result<(Sender<T>, Receiver<T>), ConfigError> {
        if matches!(self.overflow, Overflow::Spill(_)) {
            return Err(ConfigError::new(
                "overflow",
                "Overflow::Spill needs a codec: use channel::spilling or ChannelBuilder::build_spilling",
            ));
        }
        self.build_with(None)
    }

    /// Creates a channel whose overflow policy is [`Overflow::Spill`]: when
    /// the ring is full, items are encoded with `codec` and appended to the
    /// spill log, and receivers get them back in order. Items a previous run
    /// left in the log come first ([`Receiver::spill_recovery`] says what
    /// was recovered). When the last receiver goes, what is on disk stays
    /// there for the next run.
    ///
    /// # Errors
    /// [`ConfigError`] if the policy is not `Overflow::Spill`, the capacity
    /// is 0, or the log cannot be opened (an I/O error, named in the message).
    pub fn build_spilling<T>(
        self,
        codec: impl Codec<T> + 'static,
    ) -> Result<(Sender<T>, Receiver<T>), ConfigError> {
        let Overflow::Spill(config) = &self.overflow else {
            return Err(ConfigError::new(
                "overflow",
                "build_spilling needs Overflow::Spill(config)",
            ));
        };
        let side = spill::SpillSide::open(config.clone(), codec)?;
        self.build_with(Some(Box::new(side)))
    }

    fn build_with<T>(
        self,
        spill: Option<Box<spill::SpillSide<T>>>,
    ) -> Result<(Sender<T>, Receiver<T>), ConfigError> {
        let ring = Ring::with_layout(self.capacity, self.layout)?;
        let chan = Arc::new(Chan {
            ring,
            overflow: self.overflow,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            senders_gone: AtomicBool::new(false),
            readers: CachePadded::new(Waiters::default()),
            writers: CachePadded::new(Waiters::default()),
            losses: CachePadded::new(LossCounters::default()),
            spill,
        });
        Ok((
            Sender {
                chan: Arc::clone(&chan),
            },
            Receiver { chan },
        ))
    }
}

/// A channel holding up to `capacity` items; `send` blocks while it is full.
///
/// # Panics
/// If `capacity` is 0. Use [`builder`] to get a [`ConfigError`] instead.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    bounded_with(capacity, Overflow::Block)
}

/// A channel holding up to `capacity` items with the given [`Overflow`] policy.
///
/// # Panics
/// If `capacity` is 0. Use [`builder`] to get a [`ConfigError`] instead.
pub fn bounded_with<T>(capacity: usize, overflow: Overflow) -> (Sender<T>, Receiver<T>) {
    match builder().capacity(capacity).overflow(overflow).build() {
        Ok(pair) => pair,
        Err(e) => panic!("sheaf::channel::bounded: {e}"),
    }
}

/// A channel of `capacity` items in memory that spills to the log `config`
/// describes when full, encoding items with `codec`: see
/// [`ChannelBuilder::build_spilling`].
///
/// ```
/// use sheaf::channel;
/// use sheaf::codec::LittleEndian;
/// use sheaf::spill::{Fsync, SpillConfig};
///
/// let dir = std::env::temp_dir().join(format!("sheaf-chan-doc-{}", std::process::id()));
/// let config = SpillConfig::builder(&dir).fsync(Fsync::Never).build()?;
/// let (tx, rx) = channel::spilling::<u64>(2, config, LittleEndian)?;
/// for i in 0..5 {
///     tx.send(i).unwrap(); // 2 in memory, 3 on disk
/// }
/// assert_eq!(rx.stats().on_disk, 3);
/// drop(tx);
/// assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
/// # drop(rx);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
///
/// # Errors
/// Those of [`ChannelBuilder::build_spilling`].
pub fn spilling<T>(
    capacity: usize,
    config: SpillConfig,
    codec: impl Codec<T> + 'static,
) -> Result<(Sender<T>, Receiver<T>), ConfigError> {
    builder()
        .capacity(capacity)
        .overflow(Overflow::Spill(config))
        .build_spilling(codec)
}

impl<T> Sender<T> {
    /// Sends `item`, applying the channel's [`Overflow`] policy when it is full.
    ///
    /// # Errors
    /// `Err(SendError(item))` hands the item back when it was not accepted:
    /// every receiver is gone, or the policy is [`Overflow::Reject`] (full) or
    /// [`Overflow::BlockTimeout`] (still full at the timeout). Use
    /// [`try_send`](Self::try_send) or [`send_timeout`](Self::send_timeout)
    /// to tell the reasons apart. Under `DropNewest` and `DropOldest` a send
    /// succeeds and a dropped item is counted in [`stats`](Self::stats).
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_telling(item).map_err(|(item, _)| SendError(item))
    }

    /// [`send`](Self::send), saying why an item came back (for the pool,
    /// which tells its shutdown from a full queue).
    pub(crate) fn send_telling(&self, item: T) -> Result<(), (T, Unsent)> {
        let chan = &*self.chan;
        match chan.overflow {
            Overflow::Block => self
                .send_deadline(item, None)
                .map_err(|e| (e.into_inner(), Unsent::Disconnected)),
            Overflow::BlockTimeout(timeout) => match self.send_timeout(item, timeout) {
                Ok(()) => Ok(()),
                Err(SendTimeoutError::Timeout(item)) => {
                    chan.losses.timed_out.fetch_add(1, Ordering::Relaxed);
                    Err((item, Unsent::TimedOut))
                }
                Err(SendTimeoutError::Disconnected(item)) => Err((item, Unsent::Disconnected)),
            },
            Overflow::DropNewest => match self.try_send(item) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(item)) => {
                    chan.losses.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    drop(item);
                    Ok(())
                }
                Err(TrySendError::Disconnected(item)) => Err((item, Unsent::Disconnected)),
            },
            Overflow::DropOldest => self
                .force_send(item)
                .map(drop)
                .map_err(|SendError(item)| (item, Unsent::Disconnected)),
            Overflow::Reject => match self.try_send(item) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(item)) => {
                    chan.losses.rejected.fetch_add(1, Ordering::Relaxed);
                    Err((item, Unsent::Full))
                }
                Err(TrySendError::Disconnected(item)) => Err((item, Unsent::Disconnected)),
            },
            Overflow::Spill(_) => chan.spill_send(item, true, None).map_err(|e| match e {
                spill::SpillSendError::Closed(item) => (item, Unsent::Disconnected),
                e => (e.into_inner(), Unsent::Full),
            }),
        }
    }

    /// Closes the channel to every sender while receivers remain: later
    /// sends come back as disconnected, blocked senders wake and get their
    /// item back, and receivers take what was accepted (a push mid-way
    /// included) before they see the end. `true` if this call closed it.
    ///
    /// Crate-private: the pool stops taking tasks this way, with no
    /// per-send check of its own. Not for spilling channels (the disk side
    /// has its own close).
    pub(crate) fn close(&self) -> bool {
        let chan = &*self.chan;
        debug_assert!(chan.spill.is_none(), "close is for ring-only channels");
        // The ring's mark first: a push either claimed its slot before it
        // (receivers wait for that slot) or fails. Then the flag receivers
        // read once the ring is empty, then the wake-ups.
        let closed_now = chan.ring.close();
        chan.writers.notify_all();
        chan.disconnect_senders();
        closed_now
    }

    /// Sends without waiting, whatever the policy.
    ///
    /// # Errors
    /// [`TrySendError::Full`] when there is no room (including the rare case
    /// of a slot held by a stalled receiver, see [`crate::ring`]),
    /// [`TrySendError::Disconnected`] when every receiver is gone; both hand
    /// the item back.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.chan.spill.is_some() {
            return self
                .chan
                .spill_send(item, false, None)
                .map_err(|e| match e {
                    spill::SpillSendError::Closed(item) => TrySendError::Disconnected(item),
                    e => TrySendError::Full(e.into_inner()),
                });
        }
        let mut slot = Some(item);
        match self.chan.push(&mut slot) {
            Outcome::Ready(()) => Ok(()),
            Outcome::NotReady(_) => Err(TrySendError::Full(slot.take().expect("item kept"))),
            Outcome::Closed => Err(TrySendError::Disconnected(slot.take().expect("item kept"))),
        }
    }

    /// Sends, waiting up to `timeout` for room, whatever the policy.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// both handing the item back.
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        if self.chan.spill.is_some() {
            // Spilling: the wait, if any, is the disk bound's policy.
            return self.chan.spill_send(item, true, None).map_err(|e| match e {
                spill::SpillSendError::Closed(item) => SendTimeoutError::Disconnected(item),
                e => SendTimeoutError::Timeout(e.into_inner()),
            });
        }
        self.send_deadline(item, deadline_after(Instant::now(), timeout))
    }

    fn send_deadline(&self, item: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let chan = &*self.chan;
        let mut slot = Some(item);
        match chan.wait(&chan.writers, deadline, || chan.push(&mut slot)) {
            Ok(()) => Ok(()),
            Err(WaitError::Closed) => Err(SendTimeoutError::Disconnected(
                slot.take().expect("item kept"),
            )),
            Err(WaitError::Timeout) => {
                Err(SendTimeoutError::Timeout(slot.take().expect("item kept")))
            }
        }
    }

    /// A send on a channel built by [`spilling`] under its disk-full
    /// policy, except that a wait at the disk bound ends at `cap` (then
    /// [`SpillSendError::Capped`], uncounted), and that a codec or I/O error
    /// is told apart ([`SpillSendError::Failed`]). For components layered on
    /// a spilling channel that must keep checking for their own shutdown.
    pub(crate) fn send_spilling(
        &self,
        item: T,
        cap: Option<Instant>,
    ) -> Result<(), SpillSendError<T>> {
        self.chan.spill_send(item, true, cap)
    }

    /// Sends, evicting the oldest queued item if the channel is full, and
    /// returns the evicted item (counted in `dropped_oldest`).
    ///
    /// When the oldest item is being taken by a receiver at that moment, the
    /// channel is about to have room: the send waits for that receiver
    /// (nanoseconds, unless it was preempted) rather than evict anything.
    ///
    /// # Errors
    /// `Err(SendError(item))` when every receiver is gone (also when the
    /// last one goes while this call runs): the item comes back.
    pub fn force_send(&self, item: T) -> Result<Option<T>, SendError<T>> {
        let chan = &*self.chan;
        if chan.spill.is_some() {
            // A spilling channel never evicts: the item goes to disk.
            return self.send(item).map(|()| None);
        }
        let mut item = item;
        let mut snooze = Snooze::default();
        loop {
            match chan.ring.force_push_or_status(item) {
                Ok(evicted) => {
                    if evicted.is_some() {
                        chan.losses.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    }
                    chan.readers.notify_one();
                    return Ok(evicted);
                }
                Err((back, NoSlot::Closed)) => return Err(SendError(back)),
                Err((back, _)) => {
                    // A receiver is mid-way through taking the oldest item:
                    // room is coming. Wait for that receiver, not for a
                    // notification another sender could take.
                    item = back;
                    snooze.snooze();
                }
            }
        }
    }

    /// Sends many items with one claim per run of free slots, waking
    /// receivers once; returns the items that did not fit (no waiting), in
    /// the same allocation, so one buffer can be refilled and resent.
    ///
    /// # Errors
    /// `Err(SendError(items))` when every receiver is gone.
    pub fn try_send_batch(&self, items: Vec<T>) -> Result<Vec<T>, SendError<Vec<T>>> {
        let chan = &*self.chan;
        if chan.spill.is_some() {
            let mut rest = Vec::new();
            for item in items {
                if !rest.is_empty() {
                    rest.push(item);
                    continue;
                }
                match self.try_send(item) {
                    Ok(()) => {}
                    Err(TrySendError::Full(item)) => rest.push(item),
                    Err(TrySendError::Disconnected(item)) => {
                        rest.push(item);
                        return Err(SendError(rest));
                    }
                }
            }
            return Ok(rest);
        }
        if chan.ring.is_closed() {
            return Err(SendError(items));
        }
        let total = items.len();
        let rest = chan.ring.push_batch(items);
        match total - rest.len() {
            0 => {}
            1 => chan.readers.notify_one(),
            _ => chan.readers.notify_all(),
        }
        Ok(rest)
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.chan.ring.len()
    }

    /// `true` when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.chan.ring.is_empty()
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> usize {
        self.chan.ring.capacity()
    }

    /// `true` once every receiver is gone.
    pub fn is_disconnected(&self) -> bool {
        self.chan.ring.is_closed()
    }

    /// The channel's counters.
    pub fn stats(&self) -> ChannelStats {
        self.chan.stats()
    }
}

impl<T> Receiver<T> {
    /// Receives the oldest item, waiting for one.
    ///
    /// # Errors
    /// [`RecvError`] once every sender is gone and the channel is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(None).map_err(|_| RecvError)
    }

    /// Receives, waiting up to `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Disconnected`]
    /// once every sender is gone and the channel is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline_after(Instant::now(), timeout))
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let chan = &*self.chan;
        chan.wait(&chan.readers, deadline, || chan.pop())
            .map_err(|e| match e {
                WaitError::Closed => RecvTimeoutError::Disconnected,
                WaitError::Timeout => RecvTimeoutError::Timeout,
            })
    }

    /// Receives without waiting for a sender.
    ///
    /// Linearizable: it never reports `Empty` while an item whose `send`
    /// has returned is queued. When the oldest slot is claimed by a sender
    /// that has not finished writing it (preempted, say) and a later item is
    /// already published, FIFO order forbids taking the later one, so the
    /// call waits for that sender (spinning, then yielding) instead of
    /// answering `Empty`. When nothing behind it is published, the
    /// in-flight send has not returned yet and `Empty` is the truth.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] once every
    /// sender is gone and the channel is empty.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let chan = &*self.chan;
        let mut snooze = Snooze::default();
        loop {
            match chan.pop() {
                Outcome::Ready(item) => return Ok(item),
                Outcome::Closed => return Err(TryRecvError::Disconnected),
                Outcome::NotReady(NoSlot::InFlight) if chan.ring.published_behind_head() => {
                    snooze.snooze();
                }
                Outcome::NotReady(_) => return Err(TryRecvError::Empty),
            }
        }
    }

    /// Waits for at least one item, then appends up to `max` items to `out`
    /// with one claim per run of published slots; returns how many.
    ///
    /// # Errors
    /// [`RecvError`] once every sender is gone and the channel is empty.
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        let chan = &*self.chan;
        chan.wait(&chan.readers, None, || chan.pop_batch(out, max))
            .map_err(|_| RecvError)
    }

    /// Appends up to `max` queued items to `out` without waiting for a
    /// sender; returns how many (0 when `max` is 0). Like
    /// [`try_recv`](Self::try_recv), it does not answer 0 while a completed
    /// send's item is queued.
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let chan = &*self.chan;
        let mut snooze = Snooze::default();
        loop {
            match chan.pop_batch(out, max) {
                Outcome::Ready(n) => return n,
                Outcome::NotReady(NoSlot::InFlight) if chan.ring.published_behind_head() => {
                    snooze.snooze();
                }
                _ => return 0,
            }
        }
    }

    /// A blocking iterator that ends once every sender is gone and the
    /// channel is drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { receiver: self }
    }

    /// A non-blocking iterator over the items queued now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { receiver: self }
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.chan.ring.len()
    }

    /// `true` when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.chan.ring.is_empty()
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> usize {
        self.chan.ring.capacity()
    }

    /// `true` once every sender is gone (items may still be queued).
    pub fn is_disconnected(&self) -> bool {
        self.chan.is_disconnected()
    }

    /// The channel's counters.
    pub fn stats(&self) -> ChannelStats {
        self.chan.stats()
    }

    /// What opening the spill log found and cut, for a channel built by
    /// [`spilling`]; `None` otherwise.
    pub fn spill_recovery(&self) -> Option<RecoveryReport> {
        self.chan.spill.as_ref().map(|s| s.recovery())
    }
}

impl<T> Chan<T> {
    fn stats(&self) -> ChannelStats {
        let dropped_oldest = self.losses.dropped_oldest.load(Ordering::Relaxed);
        let (spilled, unspilled, on_disk, spill_lost) =
            self.spill.as_ref().map_or((0, 0, 0, 0), |s| s.counts());
        ChannelStats {
            sent: self.ring.pushed() + spilled,
            received: self.ring.popped().saturating_sub(dropped_oldest) + unspilled,
            spilled,
            unspilled,
            on_disk,
            spill_lost,
            dropped_newest: self.losses.dropped_newest.load(Ordering::Relaxed),
            dropped_oldest,
            rejected: self.losses.rejected.load(Ordering::Relaxed),
            timed_out: self.losses.timed_out.load(Ordering::Relaxed),
            len: self.ring.len(),
            capacity: self.ring.capacity(),
            waiting_senders: self.writers.len(),
            waiting_receivers: self.readers.len(),
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Self {
            chan: Arc::clone(&self.chan),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.disconnect_senders();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.disconnect_receivers();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Blocking iterator from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

/// Non-blocking iterator from [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }
}

/// Owning blocking iterator from `Receiver::into_iter`.
#[derive(Debug)]
pub struct IntoIter<T> {
    receiver: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { receiver: self }
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests;
