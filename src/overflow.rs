//! [`Overflow`]: what a full buffer does with one more item, the one policy
//! type every buffering component takes (channel, serialized writer, group
//! batcher output, worker pool queue).
//!
//! Whatever the policy, nothing is lost silently: an item either goes in,
//! comes back to the caller in an error, or is counted in a named loss
//! counter of the component.

use std::time::Duration;

use crate::spill::SpillConfig;

/// What a send does when the buffer is full.
///
/// `Duration::MAX` (or any timeout too large to add to the current instant)
/// in [`BlockTimeout`](Overflow::BlockTimeout) means "wait forever", as
/// [`Block`](Overflow::Block) does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for room (the default).
    #[default]
    Block,
    /// Wait for room up to the duration, then refuse: the item comes back
    /// in the error and is counted in `timed_out`.
    BlockTimeout(Duration),
    /// Drop the item being sent and count it in `dropped_newest`.
    DropNewest,
    /// Evict the oldest queued item to make room and count it in `dropped_oldest`.
    DropOldest,
    /// Refuse at once: the item comes back in the error and is counted in `rejected`.
    Reject,
    /// Append the item to a crash-safe log on disk ([`crate::spill`]) and
    /// hand it back, in order, when there is room. Needs a codec, so only
    /// the spilling constructors take it ([`crate::channel::spilling`], a
    /// group batcher with
    /// [`spill_codecs`](crate::batch::GroupBatcherBuilder::spill_codecs)),
    /// and the serialized writer (its records are bytes, so it needs
    /// none); the others return a `ConfigError`. Not `Copy`: the policy
    /// type is `Clone` (the config inside is shared, cheap to clone).
    Spill(SpillConfig),
}

impl Overflow {
    /// `true` for the policies under which a send may wait.
    pub fn may_wait(&self) -> bool {
        matches!(self, Overflow::Block | Overflow::BlockTimeout(_))
    }
}
