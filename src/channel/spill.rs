//! The spilling side of a channel built by [`spilling`](super::spilling):
//! when the ring is full, sends go to a [`SpillLog`] on disk, and receivers
//! take them back, in order, once the ring is empty.
//!
//! FIFO across memory and disk: every send of a spilling channel takes the
//! log's lock, and pushes into the ring only while the log is empty; while
//! anything is on disk, sends append behind it. A receiver takes from the
//! ring without the lock; only when the ring is empty does it take the lock,
//! pop the ring once more (an item pushed before the lock was taken is older
//! than anything on disk), and then read the oldest record from the log.

use std::time::Instant;

use crate::codec::Codec;
use crate::error::ConfigError;
use crate::overflow::Overflow;
use crate::spill::{Lost, PushError, Pushed, RecoveryReport, SpillConfig, SpillLog};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;

use super::{Chan, Outcome, WaitError};
use crate::ring::NoSlot;

pub(super) struct SpillSide<T> {
    log: Mutex<SpillLog<T>>,
    /// Items written to disk.
    spilled: AtomicU64,
    /// Items read back from disk.
    unspilled: AtomicU64,
    /// Records on disk now (mirrors the log's length for `stats`).
    on_disk: AtomicU64,
    /// Records lost reading the log back (undecodable or corrupt).
    lost: AtomicU64,
    recovery: RecoveryReport,
    when_full: Overflow,
}

impl<T> SpillSide<T> {
    pub(super) fn open(
        config: SpillConfig,
        codec: impl Codec<T> + 'static,
    ) -> Result<Self, ConfigError> {
        let when_full = config.when_full().clone();
        let log = SpillLog::open_for_overflow(config, codec)?;
        Ok(SpillSide {
            recovery: log.recovery(),
            on_disk: AtomicU64::new(log.len()),
            log: Mutex::new(log),
            spilled: AtomicU64::new(0),
            unspilled: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            when_full,
        })
    }

    pub(super) fn recovery(&self) -> RecoveryReport {
        self.recovery
    }

    pub(super) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.spilled.load(Ordering::Relaxed),
            self.unspilled.load(Ordering::Relaxed),
            self.on_disk.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }
}

/// Why a spilling send did not take the item.
pub(crate) enum SpillSendError<T> {
    /// Every receiver is gone.
    Closed(T),
    /// The disk bound is reached and the disk-full policy refused the item
    /// (counted in `rejected` or `timed_out`), or a send that may not wait
    /// found no room.
    Full(T),
    /// The caller's cap passed while waiting at the disk bound under
    /// `Block`/`BlockTimeout` (not counted: the caller decides).
    Capped(T),
    /// The log could not take the item: a codec or I/O error (not counted).
    Failed(T),
}

impl<T> SpillSendError<T> {
    pub(crate) fn into_inner(self) -> T {
        match self {
            Self::Closed(t) | Self::Full(t) | Self::Capped(t) | Self::Failed(t) => t,
        }
    }
}

impl<T> Chan<T> {
    /// One try: into the ring if nothing is on disk and it has room, else
    /// onto the disk. `item` stays in place when neither took it.
    fn spill_push(&self, spill: &SpillSide<T>, item: &mut Option<T>) -> Outcome<()> {
        if self.ring.is_closed() {
            return Outcome::Closed;
        }
        let mut log = spill.log.lock();
        if log.is_empty() {
            match self.push(item) {
                Outcome::NotReady(_) => {}
                done => return done,
            }
        }
        let value = item.take().expect("an item to push");
        match log.push(value) {
            Ok(Pushed::Stored) | Err(PushError::Io(_, None)) => {
                spill.on_disk.store(log.len(), Ordering::Relaxed);
                spill.spilled.fetch_add(1, Ordering::Relaxed);
                drop(log);
                self.readers.notify_one();
                Outcome::Ready(())
            }
            Ok(Pushed::Dropped) => {
                self.losses.dropped_newest.fetch_add(1, Ordering::Relaxed);
                Outcome::Ready(())
            }
            Err(e) => {
                let failed = !matches!(e, PushError::Full(_));
                *item = e.into_inner();
                if failed {
                    // Not a full disk: waiting would not help.
                    Outcome::Closed
                } else {
                    Outcome::NotReady(NoSlot::Settled)
                }
            }
        }
    }

    /// A send on a spilling channel, waiting at the disk bound under
    /// `Block`/`BlockTimeout` (`wait`: false never waits), but never past
    /// `cap` when one is given.
    pub(super) fn spill_send(
        &self,
        item: T,
        wait: bool,
        cap: Option<Instant>,
    ) -> Result<(), SpillSendError<T>> {
        let spill = self.spill.as_deref().expect("a spilling channel");
        let mut slot = Some(item);
        // The policy's own deadline (inner `None`: forever), then the cap.
        let policy = match spill.when_full {
            Overflow::BlockTimeout(t) if wait => {
                Some(crate::clock::deadline_after(Instant::now(), t))
            }
            Overflow::Block if wait => Some(None),
            _ => None,
        };
        let (deadline, capped) = match (policy, cap) {
            (Some(None), Some(cap)) => (Some(Some(cap)), true),
            (Some(Some(own)), Some(cap)) if cap < own => (Some(Some(cap)), true),
            (policy, _) => (policy, false),
        };
        let mut failed = false;
        match deadline {
            Some(deadline) => {
                match self.wait(&self.writers, deadline, || {
                    self.spill_push(spill, &mut slot)
                }) {
                    Ok(()) => return Ok(()),
                    Err(WaitError::Closed) => failed = true,
                    Err(WaitError::Timeout) if capped => {
                        return Err(SpillSendError::Capped(slot.take().expect("item kept")));
                    }
                    Err(WaitError::Timeout) => {
                        self.losses.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            None => match self.spill_push(spill, &mut slot) {
                Outcome::Ready(()) => return Ok(()),
                Outcome::Closed => failed = true,
                Outcome::NotReady(_) => {
                    if wait && matches!(spill.when_full, Overflow::Reject) {
                        self.losses.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
        }
        // `Closed` from a try or a wait is a closed ring or a log that
        // refused the item for another reason than a full disk (an I/O or
        // codec error): the ring tells them apart.
        let item = slot.take().expect("item kept");
        if self.ring.is_closed() {
            Err(SpillSendError::Closed(item))
        } else if failed {
            Err(SpillSendError::Failed(item))
        } else {
            Err(SpillSendError::Full(item))
        }
    }

    /// The receiver's side once the ring is empty: under the log's lock,
    /// the ring once more, then the oldest record on disk.
    pub(super) fn spill_pop(&self, spill: &SpillSide<T>) -> Option<T> {
        let mut log = spill.log.lock();
        if let Ok(item) = self.ring.pop_or_status() {
            drop(log);
            self.writers.notify_one();
            return Some(item);
        }
        let mut lost = Lost::default();
        let popped = log.pop_readable(&mut lost);
        spill.lost.fetch_add(lost.records, Ordering::Relaxed);
        spill.on_disk.store(log.len(), Ordering::Relaxed);
        // An I/O error consumed nothing: report empty for now.
        let item = popped.ok().flatten()?;
        spill.unspilled.fetch_add(1, Ordering::Relaxed);
        drop(log);
        // Room on disk for a sender blocked at the bound.
        self.writers.notify_one();
        Some(item)
    }
}
