//! # sheaf
//!
//! High-throughput in-memory aggregation and flow control.
//!
//! - [`Aggregator`]: keyed aggregation end to end — `add(key, value)` merges
//!   into a sharded table (per core for commutative merges), flushed into a
//!   bounded [`channel`] under an [`OnFull`] policy, with a
//!   [shutdown report](Aggregator::shutdown).
//! - [`ShardedTable`]: the concurrent upsert-and-merge hash table under it,
//!   with an O(shards) [`drain`](ShardedTable::drain), cache-padded shards
//!   and [fast hashing](hash).
//! - [`ring::Ring`] and [`channel`]: a bounded lock-free MPMC ring with batch
//!   claims and drop-oldest, and blocking/async channels over it with an
//!   explicit [`Overflow`] policy.
//! - [`SerialWriter`]: many threads write records, one
//!   thread owns the sink, with coalescing, hooks, a flush handshake and a
//!   close report.
//! - [`limit`]: GCRA rate limiter, leaky bucket, concurrency limiter and
//!   keyed limiters whose memory follows the keys in use.
//! - [`pool::WorkerPool`]: worker threads on the channel, with task
//!   handles, caught panics, cooperative timeouts and a reported shutdown.
//! - [`schedule::Scheduler`]: one-shot, fixed-rate and cron jobs (time
//!   zones, retries with jitter, windows) on a pool, timed by a timer wheel.
//! - `metrics` (feature `metrics`): every component's counters and
//!   gauges through the `metrics` facade, by sampling their stats.
//! - [`spill`]: a crash-safe segment log on disk that a full channel
//!   spills to under [`Overflow::Spill`].
//! - [`topology`]: CPUs, physical cores and NUMA nodes; per-core pinning.
//!
//! ```
//! use std::time::Duration;
//! use sheaf::{merge::Sum, Aggregator};
//!
//! let agg = Aggregator::<&str, u64>::builder().merge_with(Sum).build()?;
//! for _ in 0..3 {
//!     agg.add("hits", 1).unwrap();
//! }
//! agg.flush();
//! assert_eq!(agg.receiver().recv(), Ok(("hits", 3)));
//! let report = agg.shutdown(Duration::from_secs(1));
//! assert_eq!(report.delivered, 1);
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::unnecessary_safety_comment)]

pub mod aggregator;
pub mod batch;
pub mod channel;
pub mod clock;
pub mod codec;
mod error;
pub mod hash;
pub mod limit;
pub mod merge;
#[cfg(feature = "metrics")]
pub mod metrics;
mod overflow;
pub mod pool;
#[cfg(feature = "redis")]
mod redis_link;
pub mod ring;
pub mod schedule;
pub mod spill;
mod sync;
pub mod table;
pub mod timer;
pub mod topology;
mod unwind;
mod wait;
pub mod writer;

pub use aggregator::{
    AddError, Aggregator, AggregatorBuilder, AggregatorStats, OnFull, ShutdownReport,
};
pub use error::ConfigError;
pub use overflow::Overflow;
pub use pool::{Task, WorkerPool};
pub use table::{Drain, ShardedTable, ShardedTableBuilder, Upsert};
pub use writer::{SerialWriter, SerialWriterBuilder, WriterHandle};

/// What the types forbid, checked by `compile_fail` doctests.
///
/// A `Receiver` (or `Sender`) is a handle, not a value: it is not `Copy`,
/// so using it after moving it away does not compile.
///
/// ```compile_fail
/// let (_tx, rx) = sheaf::channel::bounded::<u8>(1);
/// let moved = rx;
/// let _ = rx.try_recv(); // use after move
/// # drop(moved);
/// ```
///
/// A channel of `Rc`s cannot cross threads (`Rc` is not `Send`).
///
/// ```compile_fail
/// let (tx, _rx) = sheaf::channel::bounded::<std::rc::Rc<u8>>(1);
/// std::thread::spawn(move || drop(tx));
/// ```
///
/// The table's merge gets the value by `&mut` and the added value by
/// move: a merge cannot keep a reference into the table.
///
/// ```compile_fail
/// let table = sheaf::ShardedTable::<u8, u64>::new();
/// let mut kept: Option<&mut u64> = None;
/// table.upsert(1, 1, |held, _| kept = Some(held));
/// ```
///
/// A `Drain` borrows its table: the table cannot be dropped while draining.
///
/// ```compile_fail
/// let table = sheaf::ShardedTable::<u8, u64>::new();
/// let drain = table.drain();
/// drop(table);
/// drop(drain);
/// ```
///
/// A `Permit` borrows its limiter: it cannot outlive it (an `OwnedPermit`,
/// from a limiter in an `Arc`, can).
///
/// ```compile_fail
/// let limiter = sheaf::limit::ConcurrencyLimiter::new(1).unwrap();
/// let permit = limiter.acquire().unwrap();
/// drop(limiter);
/// drop(permit);
/// ```
///
/// Builders return `Result`: a config error cannot be ignored into a value.
///
/// ```compile_fail
/// let (tx, rx): (sheaf::channel::Sender<u8>, sheaf::channel::Receiver<u8>) =
///     sheaf::channel::builder().capacity(0).build();
/// ```
#[cfg(doctest)]
pub struct CompileFailDoctests;

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
