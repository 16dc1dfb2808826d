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
//!   explicit [`Overflow`](channel::Overflow) policy.
//! - [`SerialWriter`]: many threads write records, one
//!   thread owns the sink, with coalescing, hooks, a flush handshake and a
//!   close report.
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
mod error;
pub mod hash;
pub mod merge;
mod overflow;
pub mod ring;
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
pub use table::{Drain, ShardedTable, ShardedTableBuilder, Upsert};
pub use writer::{SerialWriter, SerialWriterBuilder, WriterHandle};

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
