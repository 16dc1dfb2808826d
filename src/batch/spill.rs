//! The record format of a spilling batcher output: [`BatchCodec`] frames a
//! whole [`Batch`] for the spill log, with the user's codecs for the key and
//! the output.
//!
//! Layout (little-endian): a version byte (1), `items` (u64), `id` (u64),
//! `reason` (u8, [`Trigger::index`]), `late` (u64 nanoseconds), `opened_at`
//! as wall-clock nanoseconds since the Unix epoch (u64), then the key and
//! the output, each as a u32 length and the codec's bytes. Decoding checks
//! every length and rejects trailing bytes: bad input is a [`CodecError`],
//! never a panic.
//!
//! An [`Instant`] means nothing in another process, so `opened_at` is
//! written as the wall-clock time it stands for (the clock's wall time now,
//! minus the batch's age) and read back as the clock's instant now, minus
//! the wall time elapsed since then. A wall clock that stepped between the
//! two moves the reconstructed instant by as much.

use std::time::{Duration, Instant, SystemTime};

use super::{Batch, BatchId, Trigger};
use crate::clock::{saturating_nanos, SharedClock};
use crate::codec::{Codec, CodecError};

/// The first byte of every record: bump it when the layout changes.
const VERSION: u8 = 1;

pub(super) struct BatchCodec<K, O> {
    keys: Box<dyn Codec<K>>,
    outputs: Box<dyn Codec<O>>,
    /// The batcher's clock, whose instants `opened_at` is on.
    clock: SharedClock,
}

impl<K, O> BatchCodec<K, O> {
    pub(super) fn new(
        keys: Box<dyn Codec<K>>,
        outputs: Box<dyn Codec<O>>,
        clock: SharedClock,
    ) -> Self {
        Self {
            keys,
            outputs,
            clock,
        }
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn wall_nanos(wall: SystemTime) -> u64 {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, saturating_nanos)
}

/// Appends a u32 length placeholder, lets `encode` append the bytes, then
/// writes their length into the placeholder.
fn framed(
    out: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    encode(out)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| CodecError::new("batch: a key or output over 4 GiB"))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Checked reads from the front of a record.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or_else(|| CodecError::new(format!("batch: truncated at the {what}")))?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N, what)?;
        // `take` returned exactly N bytes.
        bytes
            .try_into()
            .map_err(|_| CodecError::new(format!("batch: truncated at the {what}")))
    }

    fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u64(&mut self, what: &str) -> Result<u64, CodecError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn framed(&mut self, what: &str) -> Result<&'a [u8], CodecError> {
        let len = u32::from_le_bytes(self.array(what)?);
        let len = usize::try_from(len)
            .map_err(|_| CodecError::new(format!("batch: the {what} is too long")))?;
        self.take(len, what)
    }
}

impl<K, O> Codec<Batch<K, O>> for BatchCodec<K, O> {
    fn encode(&self, batch: &Batch<K, O>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let age = self.clock.now().saturating_duration_since(batch.opened_at);
        let opened_wall = wall_nanos(self.clock.wall()).saturating_sub(saturating_nanos(age));
        out.push(VERSION);
        out.extend_from_slice(&(batch.items as u64).to_le_bytes());
        out.extend_from_slice(&batch.id.0.to_le_bytes());
        // At most 5: the cast keeps every value.
        out.push(batch.reason.index() as u8);
        out.extend_from_slice(&saturating_nanos(batch.late).to_le_bytes());
        out.extend_from_slice(&opened_wall.to_le_bytes());
        framed(out, |out| self.keys.encode(&batch.group, out))?;
        framed(out, |out| self.outputs.encode(&batch.output, out))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Batch<K, O>, CodecError> {
        let mut r = Reader { rest: bytes };
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(CodecError::new(format!(
                "batch: format version {version}, this build reads {VERSION}"
            )));
        }
        let items = usize::try_from(r.u64("items")?)
            .map_err(|_| CodecError::new("batch: the item count does not fit a usize"))?;
        let id = BatchId(r.u64("id")?);
        let reason = r.u8("reason")?;
        let reason = Trigger::from_index(reason)
            .ok_or_else(|| CodecError::new(format!("batch: no trigger {reason}")))?;
        let late = Duration::from_nanos(r.u64("lateness")?);
        let opened_wall = r.u64("opening time")?;
        let key = r.framed("key")?;
        let output = r.framed("output")?;
        if !r.rest.is_empty() {
            return Err(CodecError::new(format!(
                "batch: {} bytes after the output",
                r.rest.len()
            )));
        }
        let group = self.keys.decode(key)?;
        let output = self.outputs.decode(output)?;
        let now = self.clock.now();
        let age = wall_nanos(self.clock.wall()).saturating_sub(opened_wall);
        Ok(Batch {
            group,
            output,
            items,
            id,
            opened_at: earlier(now, Duration::from_nanos(age)),
            reason,
            late,
        })
    }
}

/// `now - age`; `now` when that is below what an `Instant` can hold (a
/// batch written before this machine booted: its age is unknown here).
fn earlier(now: Instant, age: Duration) -> Instant {
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::codec::{LittleEndian, Utf8};

    const ALL: [Trigger; 6] = [
        Trigger::Grace,
        Trigger::MaxDelay,
        Trigger::MaxItems,
        Trigger::MaxBytes,
        Trigger::Manual,
        Trigger::Shutdown,
    ];

    fn codec(clock: &ManualClock) -> BatchCodec<u32, String> {
        BatchCodec::new(
            Box::new(LittleEndian),
            Box::new(Utf8),
            std::sync::Arc::new(clock.clone()),
        )
    }

    fn batch(clock: &ManualClock, reason: Trigger) -> Batch<u32, String> {
        Batch {
            group: 7,
            output: "héllo".to_string(),
            items: 3,
            id: BatchId(u64::MAX - reason.index() as u64),
            opened_at: clock.now(),
            reason,
            late: Duration::from_nanos(1_234_567),
        }
    }

    #[test]
    fn every_trigger_round_trips_and_opened_at_keeps_its_age() {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(5));
        let codec = codec(&clock);
        for reason in ALL {
            let want = batch(&clock, reason);
            let mut bytes = Vec::new();
            codec.encode(&want, &mut bytes).unwrap();
            // Wall and monotonic time move together on a manual clock, so
            // the reconstructed instant is exact.
            clock.advance(Duration::from_millis(250));
            assert_eq!(codec.decode(&bytes), Ok(want));
        }
    }

    #[test]
    fn truncated_extended_and_garbage_input_is_an_error() {
        let clock = ManualClock::new();
        let codec = codec(&clock);
        let mut bytes = Vec::new();
        codec
            .encode(&batch(&clock, Trigger::MaxItems), &mut bytes)
            .unwrap();
        for len in 0..bytes.len() {
            assert!(codec.decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(codec.decode(&longer).is_err());
        let mut bad = bytes.clone();
        bad[0] = VERSION + 1;
        assert!(codec.decode(&bad).is_err());
        let mut bad = bytes.clone();
        bad[17] = 6; // the reason byte: no such trigger
        assert!(codec.decode(&bad).is_err());
        let mut bad = bytes.clone();
        let key_len = 1 + 8 + 8 + 1 + 8 + 8;
        bad[key_len..key_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(codec.decode(&bad).is_err());
        let mut bad = bytes.clone();
        bad[key_len..key_len + 4].copy_from_slice(&3u32.to_le_bytes());
        assert!(codec.decode(&bad).is_err()); // the key codec wants 4 bytes
                                              // Every byte flipped in turn, and pseudo-random garbage: errors or
                                              // values, never a panic.
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            let _ = codec.decode(&flipped);
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = codec.decode(&garbage);
        }
    }

    #[test]
    fn an_age_beyond_the_instant_floor_saturates() {
        // A fixed instant: nothing here depends on time passing.
        let now = crate::clock::ManualClock::new().now();
        assert_eq!(
            earlier(now, Duration::from_secs(1)),
            now - Duration::from_secs(1)
        );
        assert_eq!(earlier(now, Duration::MAX), now);
    }
}
