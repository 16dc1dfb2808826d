//! The public counters, the close report and the error history.

use std::fmt;
use std::io;
use std::time::SystemTime;

/// Counters of a [`SerialWriter`](super::SerialWriter); see
/// [`stats`](super::SerialWriter::stats).
///
/// Every accepted record, and every record `recovered` from the spill log
/// at build, is in exactly one of `written`, `failed`, `dropped_oldest`,
/// `unwritten`, `queued` (which counts the records the writer thread holds,
/// the one sink call in progress included), `on_disk` or `spill_lost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Records accepted (into the queue or, under
    /// [`Overflow::Spill`](super::Overflow::Spill), onto the disk).
    pub accepted: u64,
    /// Bytes of the accepted records.
    pub accepted_bytes: u64,
    /// Records whose sink call returned `Ok`.
    pub written: u64,
    /// Bytes of the written records.
    pub written_bytes: u64,
    /// Records whose sink call failed or panicked (for a partial write, the
    /// records after the last byte the sink took).
    pub failed: u64,
    /// Bytes of the failed records.
    pub failed_bytes: u64,
    /// Records queued now, the writer thread's included.
    pub queued: u64,
    /// Bytes queued now.
    pub queued_bytes: u64,
    /// Writes waiting for room now (`Block` and `BlockTimeout`).
    pub waiting: u64,
    /// Bytes of the writes waiting for room now.
    pub waiting_bytes: u64,
    /// Sink write calls made.
    pub sink_calls: u64,
    /// Sink write calls that returned an error.
    pub sink_errors: u64,
    /// Sink calls (write or flush) that panicked.
    pub sink_panics: u64,
    /// Sink flushes made.
    pub sink_flushes: u64,
    /// Sink flushes that failed.
    pub flush_errors: u64,
    /// Records dropped at write under [`Overflow::DropNewest`](super::Overflow::DropNewest)
    /// (or under `DropOldest` when every queued record was already in the
    /// writer thread's hands).
    pub dropped_newest: u64,
    /// Queued records evicted under [`Overflow::DropOldest`](super::Overflow::DropOldest).
    pub dropped_oldest: u64,
    /// Bytes of the evicted records.
    pub dropped_oldest_bytes: u64,
    /// Writes refused under [`Overflow::Reject`](super::Overflow::Reject).
    pub rejected: u64,
    /// Writes refused when [`Overflow::BlockTimeout`](super::Overflow::BlockTimeout) ran out.
    pub timed_out: u64,
    /// Writes refused because the record is larger than the byte capacity.
    pub too_large: u64,
    /// Writes refused because the writer was closed.
    pub refused_closed: u64,
    /// Records written to the spill log (they are in `accepted` too).
    pub spilled: u64,
    /// Bytes of the spilled records.
    pub spilled_bytes: u64,
    /// Records on disk now, waiting for the writer thread.
    pub on_disk: u64,
    /// Bytes of the records on disk now.
    pub on_disk_bytes: u64,
    /// Records a previous run left in the spill directory, found at build
    /// and written first (not in `accepted`).
    pub recovered: u64,
    /// Bytes of the recovered records.
    pub recovered_bytes: u64,
    /// Records on disk found corrupt when read back: counted, never written.
    pub spill_lost: u64,
    /// Bytes of the corrupt records.
    pub spill_lost_bytes: u64,
    /// Writes refused because the spill log failed to take them (an I/O
    /// error; see the log directory).
    pub spill_failed: u64,
    /// Accepted records never handed to the sink: discarded by a close that
    /// ran out of time.
    pub unwritten: u64,
    /// Sync hook runs.
    pub sync_runs: u64,
    /// Sync hook runs that returned an error or panicked.
    pub sync_errors: u64,
    /// Async hook runs started.
    pub async_runs: u64,
    /// Async hook ticks skipped because `max_concurrent` runs were in progress.
    pub async_skipped: u64,
    /// Async hook runs that panicked.
    pub async_panics: u64,
    /// Async hook runs in progress now.
    pub async_running: u64,
    /// Errors recorded in all (the history keeps the most recent).
    pub errors: u64,
}

/// What [`close`](super::SerialWriter::close) did, over the writer's life.
///
/// `accepted + recovered == written + failed + dropped_oldest + unwritten +
/// in_flight + on_disk + spill_lost`, and the same for bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseReport {
    /// Records accepted.
    pub accepted: u64,
    /// Bytes accepted.
    pub accepted_bytes: u64,
    /// Records whose sink call returned `Ok`.
    pub written: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Records whose sink call failed or panicked.
    pub failed: u64,
    /// Bytes failed.
    pub failed_bytes: u64,
    /// Records evicted under `DropOldest`.
    pub dropped_oldest: u64,
    /// Bytes evicted.
    pub dropped_oldest_bytes: u64,
    /// Records dropped at write under `DropNewest` (never accepted; not in `accepted`).
    pub dropped_newest: u64,
    /// Records never handed to the sink: discarded at the deadline.
    pub unwritten: u64,
    /// Bytes never handed to the sink.
    pub unwritten_bytes: u64,
    /// Records in the sink call that had not returned at the deadline:
    /// they may still reach the sink.
    pub in_flight: u64,
    /// Bytes in that sink call.
    pub in_flight_bytes: u64,
    /// Records a previous run left on disk, found at build.
    pub recovered: u64,
    /// Bytes of the recovered records.
    pub recovered_bytes: u64,
    /// Records still in the spill log (the deadline passed first): kept on
    /// disk, and written first by the next writer built on the same
    /// directory.
    pub on_disk: u64,
    /// Bytes of the records left on disk.
    pub on_disk_bytes: u64,
    /// Records on disk found corrupt when read back.
    pub spill_lost: u64,
    /// Bytes of the corrupt records.
    pub spill_lost_bytes: u64,
    /// `true` if the deadline passed before everything was written.
    pub timed_out: bool,
    /// `true` if the final flush of the sink ran and succeeded.
    pub flushed: bool,
}

/// Where an [`ErrorRecord`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorOrigin {
    /// A sink write returned an error.
    SinkWrite,
    /// A sink flush returned an error.
    SinkFlush,
    /// The sink panicked (in a write or a flush).
    SinkPanic,
    /// The sync hook returned an error.
    SyncHook,
    /// The sync hook panicked.
    SyncHookPanic,
    /// The async hook panicked.
    AsyncHookPanic,
    /// An async hook thread could not be started.
    AsyncSpawn,
    /// Reading the spill log back, or saving its read position, failed.
    SpillLog,
}

/// One recorded error; see [`SerialWriter::errors`](super::SerialWriter::errors).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorRecord {
    /// Where it happened.
    pub origin: ErrorOrigin,
    /// The error's (or the panic's) message.
    pub message: String,
    /// The `io::ErrorKind`, for io errors.
    pub kind: Option<io::ErrorKind>,
    /// When it was recorded.
    pub at: SystemTime,
    /// Records that failed with it (0 for a flush or a hook).
    pub records: u64,
}

impl fmt::Display for ErrorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.origin, self.message)?;
        if self.records > 0 {
            write!(f, " ({} records failed)", self.records)?;
        }
        Ok(())
    }
}
