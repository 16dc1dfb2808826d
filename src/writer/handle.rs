//! [`WriterHandle`]: the `io::Write` end of a [`SerialWriter`](super::SerialWriter).

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use super::queue::NO_SHARD;
use super::shared::Shared;
use crate::clock::deadline_after;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Arc;

/// A writer into a [`SerialWriter`](super::SerialWriter): `io::Write`,
/// `Clone`, `Send` and `Sync`.
///
/// Each `write` (or `write_vectored`, or `write!`) is one record; see the
/// [module docs](super) for ordering. A clone is a new, independent handle.
/// With the `tracing` feature it is a `tracing_subscriber::fmt::MakeWriter`
/// (a fresh clone per event, so each thread's events keep their order).
pub struct WriterHandle {
    shared: Arc<Shared>,
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

    fn new(kind: io::ErrorKind, bytes: Vec<u8>) -> Self {
        match kind {
            io::ErrorKind::BrokenPipe => Self::Closed(bytes),
            io::ErrorKind::WouldBlock => Self::Full(bytes),
            io::ErrorKind::TimedOut => Self::TimedOut(bytes),
            _ => Self::TooLarge(bytes),
        }
    }

    fn parts(&self) -> (io::ErrorKind, &[u8]) {
        match self {
            Self::Closed(b) => (io::ErrorKind::BrokenPipe, b),
            Self::Full(b) => (io::ErrorKind::WouldBlock, b),
            Self::TimedOut(b) => (io::ErrorKind::TimedOut, b),
            Self::TooLarge(b) => (io::ErrorKind::InvalidInput, b),
        }
    }
}

/// What a refusal of `kind` (see `Queue::push`) says about a record of `len` bytes.
fn describe(kind: io::ErrorKind, len: usize) -> String {
    match kind {
        io::ErrorKind::BrokenPipe => "the writer is closed".into(),
        io::ErrorKind::WouldBlock => "the writer's queue is full (Reject policy)".into(),
        io::ErrorKind::TimedOut => "the writer's queue stayed full until the timeout".into(),
        _ => format!("a record of {len} bytes is larger than the writer's byte capacity (or, spilling, than a spill segment)"),
    }
}

impl fmt::Debug for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Closed(_) => "Closed",
            Self::Full(_) => "Full",
            Self::TimedOut(_) => "TimedOut",
            Self::TooLarge(_) => "TooLarge",
        };
        write!(f, "{name}({} bytes)", self.parts().1.len())
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, bytes) = self.parts();
        write!(
            f,
            "{}; the record was handed back",
            describe(kind, bytes.len())
        )
    }
}

impl std::error::Error for WriteError {}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        io::Error::new(e.parts().0, e.to_string())
    }
}

impl WriterHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let last = AtomicU64::new(NO_SHARD);
        Self { shared, last }
    }

    /// Queues `record` as one record, without going through `io::Error`.
    ///
    /// # Errors
    /// A [`WriteError`] that hands `record` back.
    pub fn try_write_record(&self, record: Vec<u8>) -> Result<(), WriteError> {
        if record.is_empty() {
            return Ok(());
        }
        (self.shared.queue.push(&record, &self.last)).map_err(|kind| WriteError::new(kind, record))
    }

    /// Queues `record` (copied) as one record; `&self`, so a shared handle
    /// needs no lock.
    ///
    /// # Errors
    /// As [`Write::write`]: `BrokenPipe` when closed, `WouldBlock` when full
    /// under `Reject`, `TimedOut` under `BlockTimeout`, `InvalidInput` when
    /// larger than the byte capacity.
    #[inline]
    pub fn write_record(&self, record: &[u8]) -> io::Result<()> {
        if record.is_empty() {
            return Ok(());
        }
        let refused = |kind| io::Error::new(kind, describe(kind, record.len()));
        self.shared.queue.push(record, &self.last).map_err(refused)
    }

    /// Like [`flush`](Write::flush), giving up after `timeout`
    /// (`Duration::MAX`: never).
    ///
    /// # Errors
    /// Those of `flush`, and `TimedOut`.
    pub fn flush_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.shared
            .request(false, deadline_after(Instant::now(), timeout))
    }

    /// `true` once the writer is closed (writes fail from then on).
    pub fn is_closed(&self) -> bool {
        self.shared.queue.closed.load(Ordering::Acquire)
    }

    fn write_vectored_record(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        match (parts.next(), parts.next()) {
            (only, None) => self.write_record(only.map_or(&[][..], |b| &b[..]))?,
            _ => {
                let mut record = Vec::with_capacity(total);
                bufs.iter().for_each(|b| record.extend_from_slice(b));
                self.write_record(&record)?;
            }
        }
        Ok(total)
    }

    fn write_fmt_record(&self, args: fmt::Arguments<'_>) -> io::Result<()> {
        match args.as_str() {
            Some(s) => self.write_record(s.as_bytes()),
            None => self.write_record(fmt::format(args).as_bytes()),
        }
    }
}

impl Clone for WriterHandle {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.shared))
    }
}

impl fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterHandle")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// One call, one record (`write_all` and `write!` too, never one record per
/// piece). `flush` returns once every record accepted before it reached the
/// sink and the sink was flushed.
macro_rules! record_writer {
    ($($ty:ty),*) => {$(
        impl Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.write_record(buf)?;
                Ok(buf.len())
            }

            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.write_vectored_record(bufs)
            }

            fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
                self.write_record(buf)
            }

            fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
                self.write_fmt_record(args)
            }

            fn flush(&mut self) -> io::Result<()> {
                self.flush_timeout(Duration::MAX)
            }
        }
    )*};
}

record_writer!(WriterHandle, &WriterHandle);

/// A fresh clone per event: each thread's events reach the sink in order.
#[cfg(feature = "tracing")]
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for WriterHandle {
    type Writer = WriterHandle;

    fn make_writer(&'a self) -> WriterHandle {
        self.clone()
    }
}
