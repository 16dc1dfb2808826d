//! [`SpillConfig`] and its builder.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{monotonic, Clock, SharedClock};
use crate::error::ConfigError;
use crate::overflow::Overflow;

use super::segment::{HEADER_LEN, RECORD_HEADER_LEN};

/// When appended records (and the read position) are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fsync {
    /// Never `fsync` on the way (only on [`sync`](super::SpillLog::sync),
    /// segment rotation is not synced either): the OS writes back when it
    /// likes, and a power loss may lose any record. A killed process loses
    /// only what was still in the log's user-space buffer.
    Never,
    /// `fsync` after every N appended records (1: each push is durable
    /// when it returns).
    EveryRecords(u64),
    /// `fsync` at the first append after the interval has passed on the
    /// config's clock since the last one. An idle log is synced at its next
    /// append, its next [`sync`](super::SpillLog::sync), or its drop.
    Every(Duration),
}

/// Where and how items spill to disk: directory, segment size, disk bound
/// and its policy, [`Fsync`] policy and clock. Cheap to clone (shared).
///
/// ```
/// use sheaf::spill::{Fsync, SpillConfig};
/// use sheaf::Overflow;
///
/// let config = SpillConfig::builder("/tmp/spill")
///     .segment_bytes(1 << 20)
///     .max_bytes(64 << 20)
///     .when_full(Overflow::Reject)
///     .fsync(Fsync::EveryRecords(100))
///     .build()?;
/// assert_eq!(config.max_bytes(), 64 << 20);
/// assert!(SpillConfig::builder("/tmp/spill").segment_bytes(8).build().is_err());
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SpillConfig {
    inner: Arc<Settings>,
}

struct Settings {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    when_full: Overflow,
    fsync: Fsync,
    clock: SharedClock,
}

/// Builds a [`SpillConfig`]; see [`SpillConfig::builder`].
#[derive(Debug)]
pub struct SpillConfigBuilder {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    when_full: Overflow,
    fsync: Fsync,
    clock: SharedClock,
}

impl SpillConfig {
    /// A builder for a log in `dir` (created on open if missing).
    ///
    /// Defaults: 64 MiB segments, a 1 GiB disk bound that blocks when
    /// reached, `fsync` every 1000 records, the monotonic clock.
    pub fn builder(dir: impl AsRef<Path>) -> SpillConfigBuilder {
        SpillConfigBuilder {
            dir: dir.as_ref().to_path_buf(),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            when_full: Overflow::Block,
            fsync: Fsync::EveryRecords(1000),
            clock: monotonic(),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The most bytes one segment file holds (header included).
    pub fn segment_bytes(&self) -> u64 {
        self.inner.segment_bytes
    }

    /// The most bytes the live segment files hold together.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// What an append does when the disk bound is reached.
    pub fn when_full(&self) -> &Overflow {
        &self.inner.when_full
    }

    /// The fsync policy.
    pub fn fsync(&self) -> Fsync {
        self.inner.fsync
    }

    /// The largest payload one record can carry in this configuration.
    pub fn max_record_payload(&self) -> u64 {
        (self.inner.segment_bytes - HEADER_LEN - RECORD_HEADER_LEN).min(u64::from(u32::MAX))
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }
}

impl SpillConfigBuilder {
    /// The most bytes one segment file holds, header included (default
    /// 64 MiB; at least 64 bytes). A record must fit in one segment.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// The disk bound: the most bytes the live segment files hold together
    /// (default 1 GiB; at least one segment).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// What an append does when the disk bound is reached: [`Overflow::Block`]
    /// or [`Overflow::BlockTimeout`] (a channel waits for a receiver to free
    /// a segment; a [`SpillLog`](super::SpillLog) alone returns
    /// [`PushError::Full`](super::PushError::Full)), [`Overflow::DropNewest`]
    /// (dropped and counted) or [`Overflow::Reject`] (handed back and
    /// counted). Default `Block`.
    pub fn when_full(mut self, policy: Overflow) -> Self {
        self.when_full = policy;
        self
    }

    /// The fsync policy (default `EveryRecords(1000)`).
    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// The clock [`Fsync::Every`] reads (default monotonic).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the config. Nothing touches the disk
    /// until a log is opened.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty directory path, segments under 64
    /// bytes, a bound under one segment, `EveryRecords(0)`, a zero
    /// interval, or a `when_full` policy other than `Block`,
    /// `BlockTimeout`, `DropNewest` and `Reject`.
    pub fn build(self) -> Result<SpillConfig, ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::new("dir", "the spill directory path is empty"));
        }
        if self.segment_bytes < 64 {
            return Err(ConfigError::new(
                "segment_bytes",
                format!("{} is too small: give at least 64", self.segment_bytes),
            ));
        }
        if self.max_bytes < self.segment_bytes {
            return Err(ConfigError::new(
                "max_bytes",
                format!(
                    "{} is under one segment ({} bytes): raise it or shrink the segments",
                    self.max_bytes, self.segment_bytes
                ),
            ));
        }
        match self.fsync {
            Fsync::EveryRecords(0) => {
                return Err(ConfigError::new(
                    "fsync",
                    "EveryRecords(0): give at least 1, or Fsync::Never",
                ))
            }
            Fsync::Every(d) if d.is_zero() => {
                return Err(ConfigError::new(
                    "fsync",
                    "Every(0): use EveryRecords(1) to sync each record",
                ))
            }
            _ => {}
        }
        match self.when_full {
            Overflow::Block | Overflow::BlockTimeout(_) | Overflow::DropNewest | Overflow::Reject => {}
            ref other => {
                return Err(ConfigError::new(
                    "when_full",
                    format!("{other:?} is not a disk-full policy: use Block, BlockTimeout, DropNewest or Reject"),
                ))
            }
        }
        Ok(SpillConfig {
            inner: Arc::new(Settings {
                dir: self.dir,
                segment_bytes: self.segment_bytes,
                max_bytes: self.max_bytes,
                when_full: self.when_full,
                fsync: self.fsync,
                clock: self.clock,
            }),
        })
    }
}

impl fmt::Debug for SpillConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpillConfig")
            .field("dir", &self.inner.dir)
            .field("segment_bytes", &self.inner.segment_bytes)
            .field("max_bytes", &self.inner.max_bytes)
            .field("when_full", &self.inner.when_full)
            .field("fsync", &self.inner.fsync)
            .finish()
    }
}

/// Two configs are equal when they are the same shared config.
impl PartialEq for SpillConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for SpillConfig {}
