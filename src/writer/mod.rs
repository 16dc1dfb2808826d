//! [`SerialWriter`]: many threads write records, one thread owns the sink.
//!
//! ```
//! use std::io::Write;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use sheaf::writer::SerialWriter;
//!
//! let out = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&out);
//! let writer = SerialWriter::builder_fn(move |bytes: &[u8]| {
//!     sink.lock().unwrap().extend_from_slice(bytes);
//!     Ok(())
//! })
//! .build()
//! .unwrap();
//!
//! let mut handle = writer.handle(); // io::Write + Clone + Send + Sync
//! handle.write_all(b"one record\n").unwrap();
//! writeln!(handle, "another, formatted: {}", 42).unwrap(); // also one record
//! handle.flush().unwrap(); // both reached the sink
//! assert_eq!(&*out.lock().unwrap(), b"one record\nanother, formatted: 42\n");
//!
//! let report = writer.close(Duration::from_secs(1));
//! assert_eq!((report.accepted, report.written, report.unwritten), (2, 2, 0));
//! assert!(handle.write_all(b"late\n").is_err()); // closed: the write fails
//! ```
//!
//! # Records
//!
//! One `write` call on a [`WriterHandle`] is one record (so is one
//! `write_vectored`, and one `write!`/`writeln!`): its bytes are copied into
//! the queue and reach the sink in one piece, never interleaved with another
//! record. Records of one handle reach the sink in the order they were
//! written, also when the handle moves between threads; so do the records a
//! thread writes through handles that live on it (one handle cloned per
//! event, as a `tracing_subscriber` `MakeWriter` does). Records of different
//! threads through different handles are not ordered with each other.
//!
//! # Queue
//!
//! The queue is a set of shards, each a list of fixed-size byte chunks
//! behind its own lock. A thread appends to its own shard, so producers do
//! not contend with each other, and a record costs one copy into the
//! current chunk: no allocation, since chunks are recycled (a shard gets
//! back the chunks its own records came in, which its core wrote last). The
//! writer thread swaps a shard's chunks out in one short critical section,
//! cuts them into sink calls of up to
//! [`coalesce`](SerialWriterBuilder::coalesce) bytes at record boundaries
//! (small pieces are gathered into one reused buffer), and hands each to the
//! sink in one `write_all`. A channel of one boxed record per item (what
//! `tracing-appender` does) would cost an allocation and a cross-thread free
//! per record, which is what this layout avoids.
//!
//! After a cycle that found less than one sink call's worth of records the
//! writer thread [lingers](SerialWriterBuilder::linger) (100 µs by default)
//! before it looks again, so that a steady stream of small records becomes
//! few large sink calls instead of a wake-up every few records. A producer
//! that finds its shard four chunks ahead of the writer thread yields its
//! time slice once per new chunk: on a machine with fewer cores than busy
//! threads that is what lets the writer thread run.
//!
//! The queue is bounded in records ([`capacity_items`](SerialWriterBuilder::capacity_items))
//! and bytes ([`capacity_bytes`](SerialWriterBuilder::capacity_bytes)); a
//! record counts until the sink call that carries it returns, so the bound
//! covers what the writer thread holds too. When it is full, the
//! [`Overflow`] policy decides: wait (the default), wait up to a timeout,
//! drop the new record, evict the oldest queued records, or refuse. A record
//! larger than the byte capacity is refused at once
//! ([`WriteError::TooLarge`]), never waited for. Room is handed to shards in
//! portions (a quarter of the capacity spread over the shards), so a writer
//! may find the queue full while up to a quarter of it is reserved by other
//! shards that hold records; the capacity itself is never exceeded. Under
//! `DropOldest`, records already in the writer thread's hands cannot be
//! evicted: when every queued record is, the new one is dropped instead
//! (counted in `dropped_newest`).
//!
//! # Nothing silently lost
//!
//! Every accepted record is, in the end, written (the sink call returned
//! `Ok`), failed (the sink returned an error or panicked: counted, recorded
//! in [`errors`](SerialWriter::errors), and the writer goes on), evicted by
//! [`Overflow::DropOldest`] (counted), or reported by
//! [`close`](SerialWriter::close) as unwritten or still in a sink call at
//! the deadline. A record that is not accepted is refused with an error
//! (its bytes handed back by [`WriterHandle::try_write_record`]) or, under
//! [`Overflow::DropNewest`], counted in `dropped_newest`.

mod handle;
mod lifecycle;
mod queue;
mod stats;
mod worker;

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, Instant};

pub use crate::channel::Overflow;
pub use handle::{WriteError, WriterHandle};
pub use stats::{CloseReport, ErrorOrigin, ErrorRecord, WriterStats};

use crate::sync::atomic::Ordering;
use crate::sync::{thread, Arc};
use crate::ConfigError;
use queue::Queue;
use worker::{Inner, Settings, SinkOps, Typed};

/// Default [`capacity_items`](SerialWriterBuilder::capacity_items): 1 Mi records.
pub const DEFAULT_CAPACITY_ITEMS: usize = 1 << 20;
/// Default [`capacity_bytes`](SerialWriterBuilder::capacity_bytes): 32 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 32 << 20;
/// Default [`coalesce`](SerialWriterBuilder::coalesce) size: 64 KiB.
pub const DEFAULT_COALESCE: usize = 64 << 10;
/// Default [`errors_kept`](SerialWriterBuilder::errors_kept).
pub const DEFAULT_ERRORS_KEPT: usize = 32;
/// Default [`linger`](SerialWriterBuilder::linger): 100 µs (zero in loom
/// models, which have no clock).
pub const DEFAULT_LINGER: Duration = if cfg!(sheaf_loom) {
    Duration::ZERO
} else {
    Duration::from_micros(100)
};
/// Default [`drop_deadline`](SerialWriterBuilder::drop_deadline).
pub const DEFAULT_DROP_DEADLINE: Duration = Duration::from_secs(1);
/// Most shards a queue can have.
pub const MAX_SHARDS: usize = 63;

/// A sink made of a closure; see [`SerialWriter::builder_fn`].
///
/// Its `write` hands the whole buffer to the closure (so one sink call is
/// one closure call) and its `flush` does nothing.
pub struct FnSink<F>(pub F);

impl<F: FnMut(&[u8]) -> io::Result<()>> Write for FnSink<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (self.0)(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F> fmt::Debug for FnSink<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnSink(..)")
    }
}

type SyncHook<W> = Box<dyn FnMut(&mut W) -> io::Result<()> + Send>;
/// Shared with each hook run's thread; a plain `std` `Arc` (loom's cannot
/// hold a `dyn` value, and the async hook is not part of the loom models).
type AsyncHook = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Configures a [`SerialWriter`]; see [`SerialWriter::builder`].
pub struct SerialWriterBuilder<W> {
    sink: W,
    capacity_items: usize,
    capacity_bytes: usize,
    overflow: Overflow,
    coalesce: usize,
    sync: Option<(Duration, SyncHook<W>)>,
    async_hook: Option<(Duration, Option<usize>, AsyncHook)>,
    errors_kept: usize,
    flush_when_idle: bool,
    linger: Duration,
    drop_deadline: Duration,
    shards: Option<usize>,
    thread_name: String,
}

impl<W> fmt::Debug for SerialWriterBuilder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialWriterBuilder")
            .field("capacity_items", &self.capacity_items)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("overflow", &self.overflow)
            .field("coalesce", &self.coalesce)
            .field("sync_every", &self.sync.as_ref().map(|s| s.0))
            .field("async_every", &self.async_hook.as_ref().map(|a| (a.0, a.1)))
            .field("errors_kept", &self.errors_kept)
            .field("flush_when_idle", &self.flush_when_idle)
            .field("linger", &self.linger)
            .field("drop_deadline", &self.drop_deadline)
            .field("shards", &self.shards)
            .field("thread_name", &self.thread_name)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> SerialWriterBuilder<W> {
    /// Most records queued (default [`DEFAULT_CAPACITY_ITEMS`]).
    pub fn capacity_items(mut self, records: usize) -> Self {
        self.capacity_items = records;
        self
    }

    /// Most bytes queued (default [`DEFAULT_CAPACITY_BYTES`]); also the
    /// largest record accepted.
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    /// What a write does when the queue is full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Gather queued records into sink calls of up to `max_bytes` (default
    /// [`DEFAULT_COALESCE`]); a record larger than that goes alone. `0`
    /// turns coalescing off: one sink call per record.
    pub fn coalesce(mut self, max_bytes: usize) -> Self {
        self.coalesce = max_bytes;
        self
    }

    /// Runs `hook` on the writer thread every `period`, between two sink
    /// calls, with `&mut` access to the sink (an `fsync`, a commit). An error
    /// it returns is recorded; a panic in it is caught and recorded. It also
    /// runs at [`SerialWriter::sync_now`] and once more at
    /// [`close`](SerialWriter::close) and [`stop`](SerialWriter::stop).
    pub fn sync_every(
        mut self,
        period: Duration,
        hook: impl FnMut(&mut W) -> io::Result<()> + Send + 'static,
    ) -> Self {
        self.sync = Some((period, Box::new(hook)));
        self
    }

    /// Runs `hook` every `period` on a thread of its own (off the writer
    /// thread), with at most `max_concurrent` runs at once (`None`: no
    /// limit). A tick that finds the limit reached is skipped and counted
    /// in `async_skipped`; a panic in the hook is caught and recorded.
    pub fn async_every(
        mut self,
        period: Duration,
        max_concurrent: Option<usize>,
        hook: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.async_hook = Some((period, max_concurrent, std::sync::Arc::new(hook)));
        self
    }

    /// How many recent errors [`SerialWriter::errors`] keeps (default
    /// [`DEFAULT_ERRORS_KEPT`]; every error is counted either way).
    pub fn errors_kept(mut self, errors: usize) -> Self {
        self.errors_kept = errors;
        self
    }

    /// Flush the sink whenever the queue runs empty (default `true`), so a
    /// buffered sink does not sit on the last records until the next flush.
    pub fn flush_when_idle(mut self, on: bool) -> Self {
        self.flush_when_idle = on;
        self
    }

    /// How long the writer thread sleeps after a cycle that found less than
    /// one sink call's worth of records (default [`DEFAULT_LINGER`]), so
    /// that under a steady trickle of records it makes fewer, larger sink
    /// calls and does not contend with the producers for every few records.
    /// Producers do not wake it meanwhile; a flush, stop or close does.
    /// After an idle period the first record wakes it at once. `ZERO`: never
    /// linger.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Deadline of the [`close`](SerialWriter::close) run when the
    /// `SerialWriter` is dropped without one (default [`DEFAULT_DROP_DEADLINE`]).
    pub fn drop_deadline(mut self, deadline: Duration) -> Self {
        self.drop_deadline = deadline;
        self
    }

    /// Number of queue shards, 1 to [`MAX_SHARDS`] (default: four per CPU,
    /// at least 8, at most 32). A thread appends to shard `slot % shards`.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Name of the writer thread (default `"sheaf-writer"`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Builds the writer and starts its thread.
    ///
    /// # Errors
    /// [`ConfigError`] when a capacity is 0, a hook period is zero, the
    /// async limit is `Some(0)`, the shard count is out of range, or the
    /// writer thread could not be started.
    pub fn build(self) -> Result<SerialWriter, ConfigError> {
        if self.capacity_items == 0 {
            return Err(ConfigError::new(
                "capacity_items",
                "0 cannot hold a record; use 1 or more",
            ));
        }
        if self.capacity_bytes == 0 {
            return Err(ConfigError::new(
                "capacity_bytes",
                "0 cannot hold a record; use 1 or more",
            ));
        }
        if self.sync.as_ref().is_some_and(|s| s.0.is_zero()) {
            return Err(ConfigError::new(
                "sync_every",
                "a zero period would run the hook in a busy loop; use a positive duration",
            ));
        }
        if let Some((period, max, _)) = &self.async_hook {
            if period.is_zero() {
                return Err(ConfigError::new(
                    "async_every",
                    "a zero period would start hooks in a busy loop; use a positive duration",
                ));
            }
            if *max == Some(0) {
                return Err(ConfigError::new(
                    "async_every",
                    "max_concurrent Some(0) never runs the hook; use Some(1) or more, or None",
                ));
            }
        }
        let shards = self.shards.unwrap_or_else(default_shards);
        if shards == 0 || shards > MAX_SHARDS {
            return Err(ConfigError::new(
                "shards",
                format!("{shards} is out of range; use 1 to {MAX_SHARDS}"),
            ));
        }
        let (sync_period, hook) = match self.sync {
            Some((period, hook)) => (Some(period), Some(hook)),
            None => (None, None),
        };
        let sink: Box<dyn SinkOps> = Box::new(Typed {
            sink: self.sink,
            sync: hook,
        });
        let settings = Settings {
            coalesce: self.coalesce,
            sync_period,
            async_hook: self.async_hook,
            errors_kept: self.errors_kept,
            flush_when_idle: self.flush_when_idle,
            linger: self.linger,
            thread_name: self.thread_name,
        };
        let chunk = if self.coalesce == 0 {
            DEFAULT_COALESCE
        } else {
            self.coalesce.clamp(4 << 10, 1 << 20)
        };
        let queue = Queue::new(
            shards,
            self.capacity_items,
            self.capacity_bytes,
            self.overflow,
            chunk,
        );
        let inner = Arc::new(Inner::new(queue, settings, sink));
        match Inner::start(&inner) {
            Ok(()) => Ok(SerialWriter {
                inner,
                drop_deadline: self.drop_deadline,
            }),
            Err(e) => Err(ConfigError::new(
                "thread",
                format!("could not start the writer thread: {e}"),
            )),
        }
    }
}

fn default_shards() -> usize {
    (crate::sync::available_cpus() * 4).clamp(8, 32)
}

/// Why a lifecycle call ([`start`](SerialWriter::start),
/// [`stop`](SerialWriter::stop), [`restart`](SerialWriter::restart)) did
/// nothing or did not finish.
#[derive(Debug)]
#[non_exhaustive]
pub enum LifecycleError {
    /// `start` while the writer runs.
    AlreadyRunning,
    /// `stop` while the writer is not running.
    NotRunning,
    /// The writer was closed; it cannot start again.
    Closed,
    /// The previous writer thread has not finished yet (it is still
    /// draining, or stuck in the sink), so it still owns the sink.
    StillStopping,
    /// `stop` ran out of time: the writer thread is still draining (or
    /// stuck in the sink); it stops on its own once done.
    TimedOut,
    /// The writer thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for LifecycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyRunning => f.write_str("the writer is already running"),
            Self::NotRunning => f.write_str("the writer is not running"),
            Self::Closed => f.write_str("the writer is closed"),
            Self::StillStopping => f.write_str("the previous writer thread has not finished (draining, or stuck in the sink)"),
            Self::TimedOut => f.write_str("the writer thread did not finish by the deadline; it stops once its sink call returns"),
            Self::Spawn(e) => write!(f, "could not start the writer thread: {e}"),
        }
    }
}

impl std::error::Error for LifecycleError {}

/// Many writers, one sink: see the [module docs](self).
///
/// The owner of the writer thread. Get writers with [`handle`](Self::handle);
/// dropping the `SerialWriter` closes it (with the
/// [`drop_deadline`](SerialWriterBuilder::drop_deadline)), after which the
/// handles' writes fail.
pub struct SerialWriter {
    inner: Arc<Inner>,
    drop_deadline: Duration,
}

impl SerialWriter {
    /// A builder for a writer into any `io::Write` sink (a `File`, a
    /// `TcpStream`, a `BufWriter`, ...).
    pub fn builder<W: Write + Send + 'static>(sink: W) -> SerialWriterBuilder<W> {
        SerialWriterBuilder {
            sink,
            capacity_items: DEFAULT_CAPACITY_ITEMS,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            overflow: Overflow::Block,
            coalesce: DEFAULT_COALESCE,
            sync: None,
            async_hook: None,
            errors_kept: DEFAULT_ERRORS_KEPT,
            flush_when_idle: true,
            linger: DEFAULT_LINGER,
            drop_deadline: DEFAULT_DROP_DEADLINE,
            shards: None,
            thread_name: "sheaf-writer".to_string(),
        }
    }

    /// A builder for a writer into a closure: each sink call is one call of
    /// `f` with the bytes of one or more whole records.
    pub fn builder_fn<F>(f: F) -> SerialWriterBuilder<FnSink<F>>
    where
        F: FnMut(&[u8]) -> io::Result<()> + Send + 'static,
    {
        Self::builder(FnSink(f))
    }

    /// A new writer into the queue. Cheap; every handle (and clone) writes
    /// independently.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle::new(Arc::clone(&self.inner))
    }

    /// Starts the writer thread again after [`stop`](Self::stop).
    ///
    /// # Errors
    /// [`LifecycleError::AlreadyRunning`], [`LifecycleError::Closed`],
    /// [`LifecycleError::StillStopping`] when the previous thread still owns
    /// the sink, or [`LifecycleError::Spawn`].
    pub fn start(&self) -> Result<(), LifecycleError> {
        Inner::start(&self.inner)
    }

    /// Stops the writer thread: it writes what is queued when it sees the
    /// request, flushes the sink, runs the sync hook, and exits. Writes go
    /// on being accepted (and queue up, under the overflow policy) until
    /// [`start`](Self::start) or [`close`](Self::close); flushes fail
    /// meanwhile. Returns within `deadline`.
    ///
    /// # Errors
    /// [`LifecycleError::NotRunning`], or [`LifecycleError::TimedOut`] when
    /// the thread had not finished by the deadline (it stops on its own).
    pub fn stop(&self, deadline: Duration) -> Result<(), LifecycleError> {
        self.inner.stop(deadline)
    }

    /// [`stop`](Self::stop) then [`start`](Self::start).
    ///
    /// # Errors
    /// Those of `stop` (except `NotRunning`, which is ignored) and `start`.
    pub fn restart(&self, deadline: Duration) -> Result<(), LifecycleError> {
        match self.inner.stop(deadline) {
            Ok(()) | Err(LifecycleError::NotRunning) => Inner::start(&self.inner),
            Err(e) => Err(e),
        }
    }

    /// `true` while the writer thread runs (between start and stop or close).
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// Time since the last start; zero when not running.
    pub fn uptime(&self) -> Duration {
        self.inner.uptime()
    }

    /// Refuses further writes, writes everything accepted to the sink,
    /// flushes it and runs the sync hook, until `deadline` has passed.
    /// Returns what happened to every record accepted over the writer's
    /// life.
    ///
    /// Never hangs: when the sink is stuck, `close` returns at the deadline
    /// and reports the records it never handed over (`unwritten`) and those
    /// in the sink call that had not returned (`in_flight`); the writer
    /// thread is left to leave that call on its own and makes no further
    /// sink calls. Idempotent: a later call returns the first report (a
    /// concurrent one waits for it up to its own deadline).
    pub fn close(&self, deadline: Duration) -> CloseReport {
        Inner::close(&self.inner, deadline)
    }

    /// Returns once every record accepted before the call (through any
    /// handle) reached the sink and the sink was flushed.
    ///
    /// # Errors
    /// When the writer is not running or is closed, when the sink's flush
    /// or one of its writes failed meanwhile (see [`errors`](Self::errors)),
    /// or when called from the writer thread (inside the sink or a hook).
    pub fn flush(&self) -> io::Result<()> {
        self.inner.request(worker::TicketKind::Flush, None)
    }

    /// Like [`flush`](Self::flush), then runs the sync hook (if one was
    /// set with [`sync_every`](SerialWriterBuilder::sync_every)) on the
    /// writer thread and returns its result.
    ///
    /// # Errors
    /// Those of `flush`, and the hook's error or panic.
    pub fn sync_now(&self) -> io::Result<()> {
        self.inner.request(worker::TicketKind::Sync, None)
    }

    /// Counters; see [`WriterStats`].
    pub fn stats(&self) -> WriterStats {
        self.inner.stats()
    }

    /// The most recent error (sink, flush, hook or panic), if any.
    pub fn last_error(&self) -> Option<ErrorRecord> {
        self.inner.errors.lock().back().cloned()
    }

    /// The most recent errors, oldest first, at most
    /// [`errors_kept`](SerialWriterBuilder::errors_kept) of them.
    pub fn errors(&self) -> Vec<ErrorRecord> {
        self.inner.errors.lock().iter().cloned().collect()
    }
}

impl Drop for SerialWriter {
    fn drop(&mut self) {
        if !self.inner.queue.closed.load(Ordering::Acquire) {
            Inner::close(&self.inner, self.drop_deadline);
        }
    }
}

impl fmt::Debug for SerialWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialWriter")
            .field("running", &self.is_running())
            .field("shards", &self.inner.queue.shard_count())
            .field("overflow", &self.inner.queue.overflow)
            .finish_non_exhaustive()
    }
}

/// Sleeps on `thread::park` until `done()` or `deadline`; `false` on timeout.
/// Callers register themselves where the waking side looks before calling.
fn park_until(deadline: Option<Instant>, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return done();
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SerialWriter>();
    assert_send_sync::<WriterHandle>();
};

#[cfg(test)]
mod tests;
