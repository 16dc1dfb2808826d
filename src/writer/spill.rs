//! The writer's disk side under [`Overflow::Spill`]: records that find the
//! queue full go to a [`SpillLog`], and the writer thread reads them back.
//!
//! # Order
//!
//! `gate` counts the records on disk plus those the writer thread has read
//! back and not yet handed to the sink. While it is above zero every write
//! goes to disk, behind them, so a producer's records never overtake each
//! other: one that went to memory was accepted while nothing was on disk
//! (or behind nothing of its producer's on disk), and the writer thread
//! takes the memory shards *after* reading from the log and writes them
//! *before* the records it read. The read happens-after the append (the
//! log's lock), which happens-after the producer's earlier memory record
//! set its shard's signal bit, so the take sees that record.

use std::io::ErrorKind;
use std::time::Instant;

use super::queue::{bump, Queue};
use crate::clock::deadline_after;
use crate::error::ConfigError;
use crate::overflow::Overflow;
use crate::spill::{Lost, PushError, Pushed, RecoveryReport, SpillConfig, SpillLog};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;
use crate::wait::Waiters;

pub(super) struct SpillSide {
    log: Mutex<SpillLog<Vec<u8>>>,
    /// Records on disk, plus those read back and not yet through a sink
    /// call; see the module docs.
    gate: AtomicU64,
    /// Records stored since open, the recovered ones included.
    stored: AtomicU64,
    /// Records read back or lost since open.
    taken: AtomicU64,
    pub(super) spilled: AtomicU64,
    pub(super) spilled_bytes: AtomicU64,
    pub(super) on_disk: AtomicU64,
    pub(super) on_disk_bytes: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) lost_bytes: AtomicU64,
    pub(super) recovered: u64,
    pub(super) recovered_bytes: u64,
    pub(super) recovery: RecoveryReport,
    when_full: Overflow,
    /// Writes waiting for room on disk (`Block`, `BlockTimeout`).
    room: Waiters,
}

/// Records read back from the log for one sink call.
#[derive(Default)]
pub(super) struct Unspilled {
    pub(super) bytes: Vec<u8>,
    /// End offset of every record in `bytes`.
    pub(super) ends: Vec<usize>,
    /// An I/O error stopped the read (nothing was consumed by it).
    pub(super) error: Option<String>,
}

impl SpillSide {
    pub(super) fn open(config: &SpillConfig) -> Result<Self, ConfigError> {
        let when_full = config.when_full().clone();
        let log = SpillLog::open_for_overflow(config.clone(), crate::codec::Raw)?;
        let (records, bytes) = (log.len(), log.payload_bytes());
        Ok(Self {
            recovery: log.recovery(),
            log: Mutex::new(log),
            gate: AtomicU64::new(records),
            stored: AtomicU64::new(records),
            taken: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            spilled_bytes: AtomicU64::new(0),
            on_disk: AtomicU64::new(records),
            on_disk_bytes: AtomicU64::new(bytes),
            lost: AtomicU64::new(0),
            lost_bytes: AtomicU64::new(0),
            recovered: records,
            recovered_bytes: bytes,
            when_full,
            room: Waiters::default(),
        })
    }

    /// `true` while anything is on disk or on its way from it to the sink.
    #[inline]
    pub(super) fn engaged(&self) -> bool {
        self.gate.load(Ordering::SeqCst) > 0
    }

    /// Records stored so far: a flush waits until that many were taken.
    pub(super) fn stored(&self) -> u64 {
        self.stored.load(Ordering::SeqCst)
    }

    pub(super) fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Reads records back, oldest first, into `out` (emptied first), up to
    /// `max_bytes` (at least one record). Returns how many were read; lost
    /// ones (corrupt on disk) are counted and out of the gate already.
    pub(super) fn read(&self, max_bytes: usize, out: &mut Unspilled) -> u64 {
        out.bytes.clear();
        out.ends.clear();
        out.error = None;
        let mut log = self.log.lock();
        let (mut read, mut lost) = (0, Lost::default());
        while out.ends.is_empty() || out.bytes.len() < max_bytes {
            match log.pop_readable(&mut lost) {
                Ok(Some(record)) => {
                    out.bytes.extend_from_slice(&record);
                    out.ends.push(out.bytes.len());
                    read += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e.to_string());
                    break;
                }
            }
        }
        self.on_disk.store(log.len(), Ordering::Relaxed);
        self.on_disk_bytes
            .store(log.payload_bytes(), Ordering::Relaxed);
        drop(log);
        self.lost.fetch_add(lost.records, Ordering::Relaxed);
        self.lost_bytes.fetch_add(lost.bytes, Ordering::Relaxed);
        self.gate.fetch_sub(lost.records, Ordering::SeqCst);
        self.taken.fetch_add(read + lost.records, Ordering::SeqCst);
        if read + lost.records > 0 {
            self.room.notify_all();
        }
        read
    }

    /// `records` read back went through their sink call (or were counted
    /// unwritten): later writes may go to memory again once the gate is 0.
    pub(super) fn done(&self, records: u64) {
        self.gate.fetch_sub(records, Ordering::SeqCst);
    }

    /// Makes buffered appends durable on close, whatever the fsync policy
    /// says for single records (what stays on disk is replayed next open).
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.log.lock().sync()
    }

    /// Takes the log's lock once: an append in progress has finished.
    pub(super) fn barrier(&self) {
        drop(self.log.lock());
        self.room.notify_all();
    }
}

impl Queue {
    /// Appends a record to the spill log (the queue is full, or records
    /// are on disk already). Refusals as for [`push`](Queue::push).
    pub(super) fn spill_push(&self, spill: &SpillSide, data: &[u8]) -> Result<(), ErrorKind> {
        let mut deadline = None;
        loop {
            let mut log = spill.log.lock();
            if self.closed.load(Ordering::SeqCst) {
                bump(&self.losses.refused_closed, 1);
                return Err(ErrorKind::BrokenPipe);
            }
            let seen = spill.taken.load(Ordering::SeqCst);
            let error = match log.push(data.to_vec()) {
                // `Io(_, None)`: stored, only its fsync failed.
                Ok(Pushed::Stored) | Err(PushError::Io(_, None)) => {
                    spill.gate.fetch_add(1, Ordering::SeqCst);
                    spill.stored.fetch_add(1, Ordering::SeqCst);
                    spill.on_disk.store(log.len(), Ordering::Relaxed);
                    spill
                        .on_disk_bytes
                        .store(log.payload_bytes(), Ordering::Relaxed);
                    spill.spilled.fetch_add(1, Ordering::Relaxed);
                    spill
                        .spilled_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    drop(log);
                    self.records.notify_one();
                    return Ok(());
                }
                Ok(Pushed::Dropped) => {
                    bump(&self.losses.dropped_newest, 1);
                    return Ok(());
                }
                Err(e) => e,
            };
            drop(log);
            match (error, &spill.when_full) {
                (PushError::Full(_), Overflow::Block | Overflow::BlockTimeout(_)) => {
                    let deadline = *deadline.get_or_insert_with(|| match spill.when_full {
                        Overflow::BlockTimeout(t) => deadline_after(Instant::now(), t),
                        _ => None,
                    });
                    if super::queue::on_writer_thread() {
                        bump(&self.losses.rejected, 1);
                        return Err(ErrorKind::WouldBlock);
                    }
                    let moved = self.counted_wait(data.len(), || {
                        spill.room.wait_until(deadline, || {
                            self.closed.load(Ordering::SeqCst)
                                || spill.taken.load(Ordering::SeqCst) != seen
                        })
                    });
                    if !moved {
                        bump(&self.losses.timed_out, 1);
                        return Err(ErrorKind::TimedOut);
                    }
                }
                (PushError::Full(_), _) => {
                    bump(&self.losses.rejected, 1);
                    return Err(ErrorKind::WouldBlock);
                }
                (PushError::TooLarge(_), _) => {
                    bump(&self.losses.too_large, 1);
                    return Err(ErrorKind::InvalidInput);
                }
                (PushError::Codec(..) | PushError::Io(..), _) => {
                    bump(&self.losses.spill_failed, 1);
                    return Err(ErrorKind::WouldBlock);
                }
            }
        }
    }
}
