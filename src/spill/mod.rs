//! Spill to disk: an append-only, crash-safe segment log of encoded items
//! ([`SpillLog`]), and the configuration ([`SpillConfig`]) that
//! [`Overflow::Spill`] carries.
//!
//! Items go through a [`Codec`]; each becomes one record. Records are
//! appended to fixed-size segment files in a directory the caller names,
//! read back in FIFO order, and a segment is deleted once every record in it
//! has been read. A disk bound caps the bytes of the live segments, with its
//! own policy when it is reached.
//!
//! ```
//! use sheaf::codec::LittleEndian;
//! use sheaf::spill::{Fsync, SpillConfig, SpillLog};
//!
//! let dir = std::env::temp_dir().join(format!("sheaf-spill-doc-{}", std::process::id()));
//! let config = SpillConfig::builder(&dir).fsync(Fsync::Never).build()?;
//! {
//!     let mut log = SpillLog::open(config.clone(), LittleEndian).unwrap();
//!     for i in 0..3u64 {
//!         log.push(i).unwrap();
//!     }
//!     assert_eq!(log.pop().unwrap(), Some(0));
//! } // dropped: buffered records are written and the read position saved
//! let mut log = SpillLog::<u64>::open(config, LittleEndian).unwrap();
//! assert_eq!(log.recovery().records_recovered, 2);
//! assert_eq!(log.pop().unwrap(), Some(1));
//! assert_eq!(log.pop().unwrap(), Some(2));
//! assert_eq!(log.pop().unwrap(), None);
//! # drop(log);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
//!
//! # Format
//!
//! A segment file `<id, 20 digits>.seg` starts with a 16-byte header
//! (`SHEAFSP1` and the segment id, little-endian) followed by records:
//! a `u32` little-endian payload length, a `u32` little-endian CRC-32
//! (the IEEE polynomial of `crc32fast`, *not* CRC-32C) over the length
//! bytes and the payload, and the payload. The read position lives in the
//! file `cursor` (segment id, byte offset, CRC-32 of both).
//!
//! # Durability
//!
//! A record is durable once its segment has been `fsync`ed
//! ([`Fsync`]: after every N records, when an interval has passed at an
//! append, or never — then only at [`sync`](SpillLog::sync) and drop, and
//! the OS decides). Reads are made durable under the same policy by
//! rewriting the cursor, so delivery across a crash is **at least once**:
//! records read after the last cursor write are read again after a
//! restart; records before it are not. Deleting a fully read segment is
//! itself durable progress.
//!
//! # Recovery
//!
//! [`SpillLog::open`] scans every segment with a bounded buffer (never the
//! whole log in memory), cuts each at its first torn or corrupt record, and
//! reports what it cut in a [`RecoveryReport`]. It never refuses to start
//! over bad data: only an I/O error (no permission, say) fails it.
//!
//! [`Codec`]: crate::codec::Codec
//! [`Overflow::Spill`]: crate::Overflow::Spill

mod config;
mod log;
mod segment;

pub use config::{Fsync, SpillConfig, SpillConfigBuilder};
pub(crate) use log::Lost;
pub use log::{PopError, PushError, Pushed, RecoveryReport, SpillLog, SpillStats};

#[cfg(test)]
mod tests;
