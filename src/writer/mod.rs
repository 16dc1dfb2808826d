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
//! Under `tracing` (feature `tracing`), a handle is the subscriber's
//! `MakeWriter` and the [`SerialWriter`] the guard that drains on drop:
//!
#![cfg_attr(feature = "tracing", doc = "```")]
#![cfg_attr(not(feature = "tracing"), doc = "```ignore")]
//! let (handle, _guard) = sheaf::SerialWriter::builder(std::io::stdout()).build_pair()?;
//! tracing_subscriber::fmt().with_writer(handle).init();
//! tracing::info!("written by the writer thread");
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
//!
//! # Records and order
//!
//! One `write` call on a [`WriterHandle`] is one record (so is one
//! `write_vectored`, and one `write!`): its bytes reach the sink in one
//! piece, never interleaved with another record. Records of one handle reach
//! the sink in the order written, also when the handle moves between
//! threads; so do the records of one thread through handles that live on it
//! (a clone per event, as a `MakeWriter` does). Records of different
//! threads through different handles are not ordered with each other.
//!
//! # Queue and writer thread
//!
//! Each thread appends to its own shard: a list of recycled byte chunks
//! behind its own lock, so producers share no lock, a record costs one copy
//! and no allocation, and a producer never waits for the writer thread while
//! there is room. The writer thread swaps a shard's chunks out in one short
//! critical section, cuts them into sink calls of up to
//! [`coalesce`](SerialWriterBuilder::coalesce) bytes at record boundaries
//! (small pieces gathered into one reused buffer), and after a cycle that
//! found less than one sink call's worth it [lingers](SerialWriterBuilder::linger)
//! so a stream of small records becomes few large sink calls. Periods (the
//! hooks, the linger) run on the builder's [`Clock`].
//!
//! The queue is bounded in records ([`capacity_items`](SerialWriterBuilder::capacity_items))
//! and bytes ([`capacity_bytes`](SerialWriterBuilder::capacity_bytes)); a
//! record counts until the sink call carrying it returns. When it is full
//! the [`Overflow`] policy decides. A record larger than the byte capacity
//! is refused at once ([`WriteError::TooLarge`]). Room is handed to shards
//! in portions (a quarter of the capacity spread over the shards), so a
//! writer may find the queue full while up to a quarter of it is reserved
//! by shards that hold records; the capacity itself is never exceeded.
//! Under `DropOldest`, records in the writer thread's hands cannot be
//! evicted: when every queued record is, the new one is dropped instead
//! (counted in `dropped_newest`).
//!
//! # Spilling to disk
//!
//! Under [`Overflow::Spill`] a record that finds the queue full goes to a
//! crash-safe [spill log](crate::spill) in the configured directory, and
//! while anything is on disk every record goes there, behind it, so the
//! order above still holds across memory and disk. The writer thread reads
//! the log back between its passes over the queue; a flush also covers
//! the records on disk. Records a previous run left in the directory (a
//! crash, or a close that ran out of time) are written first
//! ([`WriterStats::recovered`]). The disk bound has its own policy
//! ([`SpillConfigBuilder::when_full`](crate::spill::SpillConfigBuilder::when_full)).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use sheaf::spill::SpillConfig;
//! use sheaf::writer::{Overflow, SerialWriter};
//!
//! let dir = std::env::temp_dir().join(format!("sheaf-doc-writer-spill-{}", std::process::id()));
//! let out = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&out);
//! let writer = SerialWriter::builder_fn(move |bytes: &[u8]| {
//!     sink.lock().unwrap().extend_from_slice(bytes);
//!     Ok(())
//! })
//! .capacity_items(2) // tiny, so most records go to disk
//! .overflow(Overflow::Spill(SpillConfig::builder(&dir).build()?))
//! .build()?;
//! let handle = writer.handle();
//! for i in 0..100 {
//!     handle.write_record(format!("{i:03}\n").as_bytes())?;
//! }
//! let report = writer.close(Duration::from_secs(10));
//! assert_eq!((report.accepted, report.written, report.on_disk), (100, 100, 0));
//! let expected: String = (0..100).map(|i| format!("{i:03}\n")).collect();
//! assert_eq!(String::from_utf8(out.lock().unwrap().clone()).unwrap(), expected);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Nothing silently lost
//!
//! Every accepted record is, in the end, written (the sink call returned
//! `Ok`), failed (the sink returned an error or panicked: counted, recorded
//! in [`errors`](SerialWriter::errors), and the writer goes on), evicted by
//! [`Overflow::DropOldest`] (counted), or reported by
//! [`close`](SerialWriter::close) as unwritten, still in a sink call, or
//! still on disk (spilled) at the deadline. A record that is not accepted is refused with an error
//! (its bytes handed back by [`WriterHandle::try_write_record`]) or, under
//! [`Overflow::DropNewest`], counted in `dropped_newest`.

mod handle;
mod hooks;
mod queue;
mod shared;
mod spill;
mod stats;
mod worker;

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

pub use crate::overflow::Overflow;
pub use handle::{WriteError, WriterHandle};
pub use stats::{CloseReport, ErrorOrigin, ErrorRecord, WriterStats};

use crate::clock::{Clock, MonotonicClock};
use crate::error::ConfigError;
use crate::sync::Arc;
pub use shared::LifecycleError;
use shared::{AsyncHook, Settings, Shared};
use worker::SyncHook;

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

/// A sink made of a closure; see [`SerialWriter::builder_fn`]. Its `write`
/// hands the whole buffer to the closure (one sink call, one closure call);
/// its `flush` does nothing.
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

/// Configures a [`SerialWriter`]; see [`SerialWriter::builder`].
pub struct SerialWriterBuilder<W> {
    sink: W,
    capacity_items: usize,
    capacity_bytes: usize,
    overflow: Overflow,
    sync: Option<(Duration, SyncHook<W>)>,
    async_hook: Option<AsyncHook>,
    settings: Settings,
    drop_deadline: Duration,
    shards: Option<usize>,
    clock: Box<dyn Clock>,
}

impl<W> fmt::Debug for SerialWriterBuilder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialWriterBuilder")
            .field("capacity_items", &self.capacity_items)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("overflow", &self.overflow)
            .field("shards", &self.shards)
            .field("thread_name", &self.settings.thread_name)
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
    /// [`Overflow::Spill`] opens its log at [`build`](Self::build); see
    /// [Spilling to disk](self#spilling-to-disk).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Gather queued records into sink calls of up to `max_bytes` (default
    /// [`DEFAULT_COALESCE`]); a larger record goes alone. `0`: one sink call
    /// per record.
    pub fn coalesce(mut self, max_bytes: usize) -> Self {
        self.settings.coalesce = max_bytes;
        self
    }

    /// Runs `hook` on the writer thread every `period`, between two sink
    /// calls, with `&mut` access to the sink (an `fsync`, a commit). Its
    /// errors and panics are recorded. It also runs at
    /// [`SerialWriter::sync_now`], [`stop`](SerialWriter::stop) and
    /// [`close`](SerialWriter::close).
    pub fn sync_every(
        mut self,
        period: Duration,
        hook: impl FnMut(&mut W) -> io::Result<()> + Send + 'static,
    ) -> Self {
        self.sync = Some((period, Box::new(hook)));
        self
    }

    /// Runs `hook` every `period` off the writer thread, at most
    /// `max_concurrent` runs at once (`None`: no limit). A tick that finds
    /// the limit reached is skipped and counted in `async_skipped`; a panic
    /// is caught and recorded. One ticker thread hands runs to hook threads,
    /// started as concurrent runs need them and then reused.
    pub fn async_every(
        mut self,
        period: Duration,
        max_concurrent: Option<usize>,
        hook: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        self.async_hook = Some((period, max_concurrent, Box::new(hook)));
        self
    }

    /// How many recent errors [`SerialWriter::errors`] keeps (default
    /// [`DEFAULT_ERRORS_KEPT`]; every error is counted either way).
    pub fn errors_kept(mut self, errors: usize) -> Self {
        self.settings.errors_kept = errors;
        self
    }

    /// Flush the sink whenever the queue runs empty (default `true`), so a
    /// buffered sink does not sit on the last records.
    pub fn flush_when_idle(mut self, on: bool) -> Self {
        self.settings.flush_when_idle = on;
        self
    }

    /// How long the writer thread sleeps after a cycle that found less than
    /// one sink call's worth of records (default [`DEFAULT_LINGER`]), so a
    /// steady trickle becomes fewer, larger sink calls. Producers do not
    /// wake it meanwhile; a flush, stop or close does. After an idle period
    /// the first record wakes it at once. `ZERO`: never linger.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.settings.linger = linger;
        self
    }

    /// Deadline of the [`close`](SerialWriter::close) run when the
    /// `SerialWriter` is dropped (default [`DEFAULT_DROP_DEADLINE`]).
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

    /// Name of the writer thread (default `"sheaf-writer"`; the async hook's
    /// threads get `-ticker` and `-hook` appended).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.settings.thread_name = name.into();
        self
    }

    /// The clock the hook periods and the linger run on (default
    /// [`MonotonicClock`]); a [`ManualClock`](crate::clock::ManualClock)
    /// makes them exact in tests. Deadlines of waiting callers
    /// (`close`, `stop`, `flush_timeout`, `BlockTimeout`) are real time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Builds the writer and starts its thread.
    ///
    /// # Errors
    /// [`ConfigError`] when a capacity is 0, a hook period is zero, the
    /// async limit is `Some(0)`, the shard count is out of range, the spill
    /// log cannot be opened (an I/O error, named in the message), or a
    /// thread could not be started.
    pub fn build(self) -> Result<SerialWriter, ConfigError> {
        let zero = "0 cannot hold a record; use 1 or more";
        let busy = "a zero period would run the hook in a busy loop; use a positive duration";
        let shards = self.shards.unwrap_or_else(default_shards);
        let check = [
            (self.capacity_items == 0, "capacity_items", zero.to_string()),
            (self.capacity_bytes == 0, "capacity_bytes", zero.to_string()),
            (
                self.sync.as_ref().is_some_and(|s| s.0.is_zero()),
                "sync_every",
                busy.to_string(),
            ),
            (
                self.async_hook.as_ref().is_some_and(|a| a.0.is_zero()),
                "async_every",
                busy.to_string(),
            ),
            (
                self.async_hook.as_ref().is_some_and(|a| a.1 == Some(0)),
                "async_every",
                "max_concurrent Some(0) never runs the hook; use Some(1) or more, or None".into(),
            ),
            (
                shards == 0 || shards > MAX_SHARDS,
                "shards",
                format!("{shards} is out of range; use 1 to {MAX_SHARDS}"),
            ),
        ];
        if let Some((_, setting, message)) = check.into_iter().find(|c| c.0) {
            return Err(ConfigError::new(setting, message));
        }
        let (items, bytes, co) = (
            self.capacity_items,
            self.capacity_bytes,
            self.settings.coalesce,
        );
        let chunk = if co == 0 {
            DEFAULT_COALESCE
        } else {
            co.clamp(4 << 10, 1 << 20)
        };
        let spill = match &self.overflow {
            Overflow::Spill(config) => Some(spill::SpillSide::open(config)?),
            _ => None,
        };
        let queue = queue::Queue::new(shards, items, bytes, self.overflow, chunk, spill);
        let (mut settings, sink) = (self.settings, self.sink);
        let (sync_period, sync_hook) = self.sync.unzip();
        settings.sync_period = sync_period;
        settings.linger_bytes = co.clamp(1, DEFAULT_COALESCE) as u64;
        let name = settings.thread_name.clone();
        let has_async = self.async_hook.is_some();
        let shared = Arc::new(Shared::new(queue, settings, self.clock, self.async_hook));
        let writer = SerialWriter {
            shared: Arc::clone(&shared),
            drop_deadline: self.drop_deadline,
        };
        let started = |e: io::Error| {
            let message = format!("could not start the writer's threads: {e}");
            ConfigError::new("thread", message)
        };
        let body = move |shared: &Arc<Shared>| worker::run(Arc::clone(shared), sink, sync_hook);
        if let Err(e) = Shared::spawn(&shared, name.clone(), body) {
            // Nothing to drain: close only marks it closed.
            shared.close(Duration::ZERO);
            return Err(started(e));
        }
        if has_async {
            let body = |shared: &Arc<Shared>| hooks::run_ticker(Arc::clone(shared));
            Shared::spawn(&shared, format!("{name}-ticker"), body).map_err(started)?;
        }
        Ok(writer)
    }

    /// [`build`](Self::build), as a `(handle, guard)` pair (what
    /// `tracing_appender::non_blocking` returns): the [`SerialWriter`] is
    /// the guard. Keep it alive; dropping it closes the writer, draining
    /// within the [`drop_deadline`](Self::drop_deadline). (`let (h, _) =`
    /// drops it at once.)
    ///
    /// # Errors
    /// Those of `build`.
    pub fn build_pair(self) -> Result<(WriterHandle, SerialWriter), ConfigError> {
        let writer = self.build()?;
        Ok((writer.handle(), writer))
    }
}

fn default_shards() -> usize {
    (crate::sync::available_cpus() * 4).clamp(8, 32)
}

/// Many writers, one sink: see the [module docs](self).
///
/// The owner of the writer thread. Get writers with [`handle`](Self::handle);
/// dropping the `SerialWriter` closes it (with the
/// [`drop_deadline`](SerialWriterBuilder::drop_deadline)), after which the
/// handles' writes fail.
pub struct SerialWriter {
    shared: Arc<Shared>,
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
            sync: None,
            async_hook: None,
            settings: Settings {
                coalesce: DEFAULT_COALESCE,
                sync_period: None,
                errors_kept: DEFAULT_ERRORS_KEPT,
                flush_when_idle: true,
                linger: DEFAULT_LINGER,
                linger_bytes: DEFAULT_COALESCE as u64,
                thread_name: "sheaf-writer".to_string(),
            },
            drop_deadline: DEFAULT_DROP_DEADLINE,
            shards: None,
            clock: Box::new(MonotonicClock),
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
        WriterHandle::new(Arc::clone(&self.shared))
    }

    /// Lets the writer thread write again after [`stop`](Self::stop).
    ///
    /// # Errors
    /// [`LifecycleError::AlreadyRunning`] or [`LifecycleError::Closed`].
    pub fn start(&self) -> Result<(), LifecycleError> {
        self.shared.start()
    }

    /// Stops writing: the writer thread writes what is queued when it sees
    /// the request, flushes the sink, runs the sync hook, and idles; the
    /// async hook pauses. Writes go on being accepted (and queue up, under
    /// the overflow policy) until [`start`](Self::start) or
    /// [`close`](Self::close); flushes fail meanwhile. Returns within
    /// `deadline`.
    ///
    /// # Errors
    /// [`LifecycleError::NotRunning`], or [`LifecycleError::TimedOut`] when
    /// the writer thread had not finished by the deadline.
    pub fn stop(&self, deadline: Duration) -> Result<(), LifecycleError> {
        self.shared.stop(deadline)
    }

    /// [`stop`](Self::stop) then [`start`](Self::start).
    ///
    /// # Errors
    /// Those of `stop` (except `NotRunning`, which is ignored) and `start`.
    pub fn restart(&self, deadline: Duration) -> Result<(), LifecycleError> {
        match self.shared.stop(deadline) {
            Ok(()) | Err(LifecycleError::NotRunning) => self.shared.start(),
            Err(e) => Err(e),
        }
    }

    /// `true` while the writer writes (between start and stop or close).
    pub fn is_running(&self) -> bool {
        self.shared.is_running()
    }

    /// Time since the last start, on the writer's clock; zero when not running.
    pub fn uptime(&self) -> Duration {
        self.shared.uptime()
    }

    /// Refuses further writes, writes everything accepted to the sink,
    /// flushes it and runs the sync hook, until `deadline` has passed.
    /// Returns what happened to every record accepted over the writer's
    /// life.
    ///
    /// Never hangs: when the sink is stuck, `close` returns at the deadline
    /// and reports the records it never handed over (`unwritten`) and those
    /// in the sink call that had not returned (`in_flight`); the writer
    /// thread leaves that call on its own and makes no further sink calls.
    /// Idempotent: a later call returns the first report (a concurrent one
    /// waits for it up to its own deadline).
    pub fn close(&self, deadline: Duration) -> CloseReport {
        self.shared.close(deadline)
    }

    /// Returns once every record accepted before the call (through any
    /// handle) reached the sink and the sink was flushed.
    ///
    /// # Errors
    /// When the writer is stopped or closed, when the sink's flush or one of
    /// its writes failed meanwhile (see [`errors`](Self::errors)), or when
    /// called from the writer thread (inside the sink or a hook).
    pub fn flush(&self) -> io::Result<()> {
        self.shared.request(false, None)
    }

    /// Like [`flush`](Self::flush), then runs the sync hook (if one was
    /// set with [`sync_every`](SerialWriterBuilder::sync_every)) on the
    /// writer thread and returns its result.
    ///
    /// # Errors
    /// Those of `flush`, and the hook's error or panic.
    pub fn sync_now(&self) -> io::Result<()> {
        self.shared.request(true, None)
    }

    /// What opening the spill log found and cut, for a writer built with
    /// [`Overflow::Spill`]; `None` otherwise.
    pub fn spill_recovery(&self) -> Option<crate::spill::RecoveryReport> {
        self.shared.queue.spill.as_ref().map(|s| s.recovery)
    }

    /// Counters; see [`WriterStats`].
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }

    /// The most recent error (sink, flush, hook or panic), if any.
    pub fn last_error(&self) -> Option<ErrorRecord> {
        self.shared.last_error()
    }

    /// The most recent errors, oldest first, at most
    /// [`errors_kept`](SerialWriterBuilder::errors_kept) of them.
    pub fn errors(&self) -> Vec<ErrorRecord> {
        self.shared.errors()
    }
}

impl Drop for SerialWriter {
    fn drop(&mut self) {
        self.shared.close(self.drop_deadline);
    }
}

impl fmt::Debug for SerialWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialWriter")
            .field("running", &self.is_running())
            .field("shards", &self.shared.queue.shard_count())
            .field("overflow", &self.shared.queue.overflow)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SerialWriter>();
    assert_send_sync::<WriterHandle>();
};

#[cfg(test)]
mod tests;
