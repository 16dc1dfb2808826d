//! [`WriterHandle`]: the `io::Write` end of a [`SerialWriter`](super::SerialWriter).

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::time::Duration;

use super::queue::{Refusal, NO_SHARD};
use super::worker::{Inner, TicketKind};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Arc;

/// A writer into a [`SerialWriter`](super::SerialWriter): `io::Write`,
/// `Clone`, `Send` and `Sync`.
///
/// Each `write` (or `write_vectored`, or `write!`) is one record; see the
/// [module docs](super) for ordering. A clone is a new, independent handle.
pub struct WriterHandle {
    inner: Arc<Inner>,
    /// The shard of this handle's last record and that shard's take count
    /// then (`(gen << 8) | shard`), or `NO_SHARD`.
    last: AtomicU64,
}

/// Why [`WriterHandle::try_write_record`] did not take a record; every
/// variant hands the bytes back.
#[derive(PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The writer is closed.
    Closed(Vec<u8>),
    /// The queue is full and the policy is [`Overflow::Reject`](super::Overflow::Reject)
    /// (or the write came from the writer thread itself, which must not wait).
    Full(Vec<u8>),
    /// The queue stayed full for the [`Overflow::BlockTimeout`](super::Overflow::BlockTimeout) duration.
    TimedOut(Vec<u8>),
    /// The record is larger than the byte capacity; it can never fit.
    TooLarge(Vec<u8>),
}

impl WriteError {
    /// The record that was not written.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Closed(b) | Self::Full(b) | Self::TimedOut(b) | Self::TooLarge(b) => b,
        }
    }

    fn new(refusal: Refusal, bytes: Vec<u8>) -> Self {
        match refusal {
            Refusal::Closed => Self::Closed(bytes),
            Refusal::Full => Self::Full(bytes),
            Refusal::TimedOut => Self::TimedOut(bytes),
            Refusal::TooLarge => Self::TooLarge(bytes),
        }
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Closed(_) => io::ErrorKind::BrokenPipe,
            Self::Full(_) => io::ErrorKind::WouldBlock,
            Self::TimedOut(_) => io::ErrorKind::TimedOut,
            Self::TooLarge(_) => io::ErrorKind::InvalidInput,
        }
    }
}

impl fmt::Debug for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, bytes) = match self {
            Self::Closed(b) => ("Closed", b),
            Self::Full(b) => ("Full", b),
            Self::TimedOut(b) => ("TimedOut", b),
            Self::TooLarge(b) => ("TooLarge", b),
        };
        write!(f, "{name}({} bytes)", bytes.len())
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("the writer is closed; the record was handed back"),
            Self::Full(_) => {
                f.write_str("the queue is full (Reject policy); the record was handed back")
            }
            Self::TimedOut(_) => {
                f.write_str("the queue stayed full until the timeout; the record was handed back")
            }
            Self::TooLarge(b) => write!(
                f,
                "the record ({} bytes) is larger than the writer's byte capacity",
                b.len()
            ),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        io::Error::new(e.kind(), e.to_string())
    }
}

fn io_error(refusal: Refusal, len: usize) -> io::Error {
    let message = match refusal {
        Refusal::Closed => "the writer is closed".to_string(),
        Refusal::Full => "the writer's queue is full (Reject policy)".to_string(),
        Refusal::TimedOut => "the writer's queue stayed full until the timeout".to_string(),
        Refusal::TooLarge => {
            format!("a record of {len} bytes is larger than the writer's byte capacity")
        }
    };
    let kind = WriteError::new(refusal, Vec::new()).kind();
    io::Error::new(kind, message)
}

impl WriterHandle {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            last: AtomicU64::new(NO_SHARD),
        }
    }

    /// Queues `record` as one record, without going through `io::Error`.
    ///
    /// # Errors
    /// A [`WriteError`] that hands `record` back.
    pub fn try_write_record(&self, record: Vec<u8>) -> Result<(), WriteError> {
        if record.is_empty() {
            return Ok(());
        }
        match self.inner.queue.push(&record, &self.last) {
            Ok(()) => Ok(()),
            Err(refusal) => Err(WriteError::new(refusal, record)),
        }
    }

    /// Queues `record` (copied) as one record; `&self`, so a shared handle
    /// needs no lock.
    ///
    /// # Errors
    /// As [`Write::write`]: `BrokenPipe` when closed, `WouldBlock` when full
    /// under `Reject`, `TimedOut` under `BlockTimeout`, `InvalidInput` when
    /// larger than the byte capacity.
    pub fn write_record(&self, record: &[u8]) -> io::Result<()> {
        if record.is_empty() {
            return Ok(());
        }
        self.inner
            .queue
            .push(record, &self.last)
            .map_err(|r| io_error(r, record.len()))
    }

    /// Like [`flush`](Write::flush), giving up after `timeout`.
    ///
    /// # Errors
    /// Those of `flush`, and `TimedOut`.
    pub fn flush_timeout(&self, timeout: Duration) -> io::Result<()> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        self.inner.request(TicketKind::Flush, deadline)
    }

    /// `true` once the writer is closed (writes fail from then on).
    pub fn is_closed(&self) -> bool {
        self.inner.queue.closed.load(Ordering::Acquire)
    }

    fn flush_inner(&self) -> io::Result<()> {
        self.inner.request(TicketKind::Flush, None)
    }

    fn write_vectored_inner(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let nonempty = bufs.iter().filter(|b| !b.is_empty()).count();
        if nonempty <= 1 {
            let only = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            self.write_record(only)?;
            return Ok(total);
        }
        let mut record = Vec::with_capacity(total);
        for buf in bufs {
            record.extend_from_slice(buf);
        }
        self.write_record(&record)?;
        Ok(total)
    }

    fn write_fmt_inner(&self, args: fmt::Arguments<'_>) -> io::Result<()> {
        match args.as_str() {
            Some(s) => self.write_record(s.as_bytes()),
            None => self.write_record(fmt::format(args).as_bytes()),
        }
    }
}

impl Clone for WriterHandle {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.inner))
    }
}

impl fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterHandle")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// One call, one record. `flush` returns once every record accepted before
/// it reached the sink and the sink was flushed.
impl Write for WriterHandle {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_record(buf)?;
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored_inner(bufs)
    }

    /// One record for the whole buffer (the default would loop on `write`,
    /// which takes everything at once anyway).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_record(buf)
    }

    /// The formatted text is one record, never one per piece.
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        self.write_fmt_inner(args)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_inner()
    }
}

impl Write for &WriterHandle {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_record(buf)?;
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored_inner(bufs)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_record(buf)
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        self.write_fmt_inner(args)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_inner()
    }
}
