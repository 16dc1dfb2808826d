//! # sheaf
//!
//! High-throughput in-memory aggregation and flow control.
//!
//! - [`ShardedTable`]: a concurrent upsert-and-merge hash table with an
//!   O(shards) [`drain`](ShardedTable::drain), built on cache-padded shards
//!   and [fast hashing](hash).
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::unnecessary_safety_comment)]

pub mod aggregator;
mod error;
pub mod channel;
pub mod hash;
pub mod merge;
pub mod ring;
mod sync;
pub mod table;
pub mod topology;

pub use aggregator::{AddError, Aggregator, AggregatorBuilder, AggregatorStats, OnFull, ShutdownReport};
pub use error::ConfigError;
pub use table::{Drain, ShardedTable, ShardedTableBuilder, Upsert};
