//! Fast hashing for the sharded table: bytes a word at a time, integers
//! packed into a pending word, and a finalizer that spreads every input bit over the whole word.
//!
//! Byte strings are hashed the FNV way — xor a piece of input into the
//! state, multiply — but a whole 8-byte word per step instead of one byte,
//! with a *folded* 64×64→128-bit multiply (the low and high halves xored),
//! and over two independent lanes for keys longer than 8 bytes. FNV-1a pays
//! one dependent multiply per byte (about 1 ns per byte); this pays one per
//! 8 bytes per lane, so a 16-byte key costs one multiply's latency, not 16.
//!
//! The table takes its shard from the **top** bits of the 64-bit hash and its
//! bucket from the **low** bits, so both ends must be well mixed. A plain
//! multiply is not: bit *k* of a product depends only on bits `0..=k` of its
//! input (raw FNV-1a has exactly this defect: keys whose bytes agree in their
//! low *k* bits collide in the low *k* bits whatever the seed). The folded
//! multiply's high half depends on every bit of its input, and
//! [`FastHasher::finish`] ends with one more, so both ends are spread.
//!
//! # Collision flooding
//!
//! [`FastBuildHasher`] (the default) uses fixed public constants. It defends
//! against *accidental* structure — sequential or strided integers, keys that
//! differ only in high bits, byte strings that share low bits — and keeps the
//! table from degrading to a scan on such keys. It does **not** defend against
//! an adversary who knows the algorithm: collisions can be computed offline,
//! and a flood of them can make every probe long. For keys an attacker
//! chooses (metric names or labels from the network), use [`SeededBuildHasher`]:
//! a keyed hash whose 128-bit key is drawn at random for each table, so
//! collisions cannot be precomputed and differ from table to table. It is not
//! a cryptographic MAC; where a proven bound matters, give the table std's
//! SipHash (`ShardedTable::with_hasher(std::collections::hash_map::RandomState::new())`).
//!
//! ```
//! use std::hash::BuildHasher;
//! use sheaf::hash::{FastBuildHasher, SeededBuildHasher};
//!
//! let fast = FastBuildHasher::default();
//! assert_eq!(fast.hash_one("metric.0"), fast.hash_one("metric.0"));
//! assert_ne!(fast.hash_one(1u64), fast.hash_one(2u64));
//!
//! // Two seeded hashers almost surely disagree: collisions do not transfer.
//! let (a, b) = (SeededBuildHasher::new(), SeededBuildHasher::new());
//! assert_ne!(a.hash_one("metric.0"), b.hash_one("metric.0"));
//! ```

use std::hash::{BuildHasher, Hasher};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
#[cfg(test)]
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Odd multiplier for integer writes (2^64 / φ).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
/// Odd multiplier for the finalizer.
const FINAL: u64 = 0xd6e8_feb8_6659_fd93;
/// Spreads a byte string's length over the state before its bytes.
const LEN_MIX: u64 = 0xa076_1d64_78bd_642f;
/// Xored into the second 8-byte lane of each multiply of a byte string.
const LANE: u64 = 0xe703_7ed1_a0b4_28db;

/// Multiplies to 128 bits and folds the halves: every output bit depends on
/// every input bit of `a` (through the high half).
#[inline(always)]
const fn fold_mul(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Reads the 8 bytes at `at` as a little-endian word.
#[inline(always)]
fn word8(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Reads the 4 bytes at `at` as a little-endian word.
#[inline(always)]
fn word4(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u64::from(u32::from_le_bytes(word))
}

/// Mixes `bytes` into `state` 16 bytes per multiply: two 8-byte lanes, one
/// xored into the state and one into a constant, multiplied together
/// (folded). Reads overlap rather than pad:
///
/// - up to 3 bytes: the first, middle and last byte as one word;
/// - 4 to 7 bytes: the first and the last 4 bytes;
/// - 8 to 16 bytes: the first and the last 8 bytes;
/// - longer: 16 bytes per step, the last step reading the last 16 bytes
///   (overlapping the step before).
///
/// The reads of each case cover every byte, and the length is mixed in
/// first, so keys of different lengths never collide by construction
/// (`"aaaaaaaaa"` and `"aaaaaaaaaa"` read the same two words).
#[inline(always)]
fn hash_bytes(state: u64, bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let mut state = state ^ (len as u64).wrapping_mul(LEN_MIX);
    let (low, high) = if len >= 8 {
        let mut at = 0;
        while len - at > 16 {
            state = fold_mul(state ^ word8(bytes, at), word8(bytes, at + 8) ^ LANE);
            at += 16;
        }
        (word8(bytes, len.max(16) - 16), word8(bytes, len - 8))
    } else if len >= 4 {
        (word4(bytes, 0), word4(bytes, len - 4))
    } else if len > 0 {
        let spread = u64::from(bytes[0])
            | (u64::from(bytes[len / 2]) << 8)
            | (u64::from(bytes[len - 1]) << 16);
        (spread, 0)
    } else {
        (0, 0)
    };
    fold_mul(state ^ low, high ^ LANE)
}

/// Word-at-a-time multiply-xor over bytes, integers packed into a pending
/// word, and a finalizer.
///
/// Integer writes (a `u64` key, a `str`'s `0xff` terminator, a `u32`
/// field, a `char`) are packed into a pending 64-bit word, which is mixed
/// with one folded multiply when the next write does not fit, or by
/// [`finish`](Hasher::finish). So a `u64` key costs one multiply in all (the
/// finalizer's), and a string key its bytes' multiplies plus the
/// finalizer's, not one more for the terminator.
///
/// Deterministic: the same key hashes the same in every process. See the
/// [module docs](self) for what that means for untrusted keys.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher {
    state: u64,
    /// Narrow integer writes not yet mixed, packed from the low bits up.
    pending: u64,
    /// Bits of `pending` in use.
    pending_bits: u32,
}

impl FastHasher {
    /// A hasher starting from the FNV offset basis.
    #[inline]
    pub const fn new() -> Self {
        Self::with_seed(FNV_OFFSET)
    }

    /// A hasher whose state starts at `seed` instead of the offset basis.
    #[inline]
    pub const fn with_seed(seed: u64) -> Self {
        Self {
            state: seed,
            pending: 0,
            pending_bits: 0,
        }
    }

    /// Packs a `bits`-wide integer into the pending word, mixing the word
    /// into the state first when it has no room left.
    #[inline(always)]
    fn write_narrow(&mut self, n: u64, bits: u32) {
        if self.pending_bits + bits > 64 {
            self.state = fold_mul(self.state ^ self.pending, MIX);
            self.pending = 0;
            self.pending_bits = 0;
        }
        self.pending |= n << self.pending_bits;
        self.pending_bits += bits;
    }
}

impl Default for FastHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher for FastHasher {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        self.state = hash_bytes(self.state, bytes);
    }

    #[inline(always)]
    fn write_u8(&mut self, n: u8) {
        self.write_narrow(u64::from(n), 8);
    }

    #[inline(always)]
    fn write_u16(&mut self, n: u16) {
        self.write_narrow(u64::from(n), 16);
    }

    #[inline(always)]
    fn write_u32(&mut self, n: u32) {
        self.write_narrow(u64::from(n), 32);
    }

    #[inline(always)]
    fn write_u64(&mut self, n: u64) {
        self.write_narrow(n, 64);
    }

    #[inline(always)]
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    #[inline(always)]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        // The pending narrow writes go through the finalizer with the
        // state; their bit count picks the multiplier, so `(a)` and
        // `(a, 0u8)` finish differently.
        fold_mul(
            self.state ^ self.pending,
            FINAL ^ u64::from(self.pending_bits),
        )
    }
}

/// Builds [`FastHasher`]s; the table's default hasher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastBuildHasher;

impl BuildHasher for FastBuildHasher {
    type Hasher = FastHasher;

    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher::new()
    }
}

/// A keyed hasher for untrusted keys: 8-byte chunks folded through a
/// multiply keyed by a per-table random key.
#[derive(Debug, Clone, Copy)]
pub struct SeededHasher {
    state: u64,
    key: u64,
}

impl Hasher for SeededHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut state = self.state ^ (bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
            state = fold_mul(state ^ word, self.key);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            state = fold_mul(state ^ u64::from_le_bytes(last), self.key);
        }
        self.state = state;
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.state = fold_mul(self.state ^ n, self.key);
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.state, FINAL ^ self.key)
    }
}

/// Builds [`SeededHasher`]s from a random per-instance key.
///
/// Every `new()` draws a fresh key, so each table hashes differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeededBuildHasher {
    seed: u64,
    key: u64,
}

impl SeededBuildHasher {
    /// A hasher builder with a fresh random key.
    pub fn new() -> Self {
        let seed: u64 = rand::random();
        let key: u64 = rand::random();
        Self::with_key(seed, key)
    }

    /// A hasher builder with a chosen key: reproducible, for tests.
    pub const fn with_key(seed: u64, key: u64) -> Self {
        // An odd multiplier keeps the keyed multiply a bijection.
        Self { seed, key: key | 1 }
    }
}

impl Default for SeededBuildHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for SeededBuildHasher {
    type Hasher = SeededHasher;

    #[inline]
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher {
            state: self.seed,
            key: self.key,
        }
    }
}

/// Raw FNV-1a with no finalizer, for tests that show why the finalizer exists.
#[cfg(test)]
pub(crate) fn raw_fnv1a(bytes: &[u8]) -> u64 {
    let mut state = FNV_OFFSET;
    for &byte in bytes {
        state ^= u64::from(byte);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_of_every_length_changes_the_hash() {
        // Flipping any one bit of a key of any length up to 80 bytes, or
        // appending a zero byte, changes the hash: the overlapping reads
        // cover every byte and the length is mixed in.
        let b = FastBuildHasher;
        let hash = |bytes: &[u8]| {
            let mut h = b.build_hasher();
            h.write(bytes);
            h.finish()
        };
        let mut seen = std::collections::HashSet::new();
        for len in 0..80usize {
            let key: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let base = hash(&key);
            assert!(
                seen.insert(base),
                "length {len} collides with a shorter key"
            );
            let mut longer = key.clone();
            longer.push(0);
            assert_ne!(base, hash(&longer), "a zero byte appended to {len} bytes");
            for at in 0..len {
                for bit in 0..8 {
                    let mut flipped = key.clone();
                    flipped[at] ^= 1 << bit;
                    assert_ne!(base, hash(&flipped), "len {len}, byte {at}, bit {bit}");
                }
            }
        }
    }

    #[test]
    fn strings_that_differ_in_one_place_spread_over_low_and_high_bits() {
        // Metric names: a shared prefix and a counter, the typical hot keys.
        let b = FastBuildHasher;
        for width in [8usize, 16, 32, 64] {
            let mut low = [0usize; 16];
            let mut high = [0usize; 16];
            for i in 0..4096u32 {
                let key = format!("{i:0>width$}");
                let h = b.hash_one(key.as_str());
                low[(h & 0xf) as usize] += 1;
                high[(h >> 60) as usize] += 1;
            }
            assert!(
                low.iter().all(|&c| (128..=384).contains(&c)),
                "{width}: {low:?}"
            );
            assert!(
                high.iter().all(|&c| (128..=384).contains(&c)),
                "{width}: {high:?}"
            );
        }
    }

    #[test]
    fn raw_fnv_reference_vector() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c: the helper the flooding
        // test uses to build its keys is the real FNV-1a.
        assert_eq!(raw_fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn low_and_high_bits_spread_on_fnv_hostile_keys() {
        // Every byte has low nibble 0: raw FNV-1a puts all keys in one low-4-bit bucket.
        let keys: Vec<Vec<u8>> = (0..4096u32)
            .map(|i| {
                (0..4)
                    .map(|s| (((i >> (3 * s)) & 0x7) as u8 + 1) << 4)
                    .collect()
            })
            .collect();
        let raw_low: std::collections::HashSet<u64> =
            keys.iter().map(|k| raw_fnv1a(k) & 0xf).collect();
        assert_eq!(raw_low.len(), 1, "raw FNV-1a low bits collapse");
        let b = FastBuildHasher;
        let mut low = [0usize; 16];
        let mut high = [0usize; 16];
        for k in &keys {
            let h = b.hash_one(k.as_slice());
            low[(h & 0xf) as usize] += 1;
            high[(h >> 60) as usize] += 1;
        }
        // 4096 keys over 16 buckets: 256 expected each; allow wide slack.
        assert!(low.iter().all(|&c| (128..=384).contains(&c)), "{low:?}");
        assert!(high.iter().all(|&c| (128..=384).contains(&c)), "{high:?}");
    }

    #[test]
    fn integers_spread_on_strides() {
        let b = FastBuildHasher;
        let mut low = [0usize; 64];
        let mut narrow_low = [0usize; 64];
        let mut narrow_high = [0usize; 64];
        for i in 0..6400u64 {
            low[(b.hash_one(i * 1024) & 63) as usize] += 1;
            let narrow = b.hash_one(i as u32 * 1024);
            narrow_low[(narrow & 63) as usize] += 1;
            narrow_high[(narrow >> 58) as usize] += 1;
        }
        for spread in [low, narrow_low, narrow_high] {
            assert!(
                spread.iter().all(|&c| (50..=150).contains(&c)),
                "{spread:?}"
            );
        }
    }

    #[test]
    fn narrow_writes_are_order_and_count_sensitive() {
        let b = FastBuildHasher;
        assert_ne!(b.hash_one((1u8, 2u8)), b.hash_one((2u8, 1u8)));
        assert_ne!(b.hash_one(7u64), b.hash_one((7u64, 0u8)));
        // More narrow writes than one pending word holds.
        let many: Vec<(u32, u32, u32)> = (0..1000).map(|i| (i, i + 1, i * 3)).collect();
        let hashes: std::collections::HashSet<u64> = many.iter().map(|k| b.hash_one(k)).collect();
        assert_eq!(hashes.len(), many.len());
        assert_ne!(b.hash_one("ab"), b.hash_one(("a", "b")));
    }

    #[test]
    fn seeded_is_deterministic_per_key_and_differs_across_keys() {
        let a = SeededBuildHasher::with_key(1, 2);
        let b = SeededBuildHasher::with_key(1, 4);
        assert_eq!(
            a.hash_one("x"),
            SeededBuildHasher::with_key(1, 2).hash_one("x")
        );
        assert_ne!(a.hash_one("x"), b.hash_one("x"));
        assert_ne!(a.hash_one("abcdefgh1"), a.hash_one("abcdefgh2"));
    }
}
