//! Fast hashing for the sharded table: FNV-1a for bytes, one multiply for
//! integers, and a finalizer that spreads every input bit over the whole word.
//!
//! The table takes its shard from the **top** bits of the 64-bit hash and its
//! bucket from the **low** bits, so both ends must be well mixed. Raw FNV-1a is
//! not: bit *k* of its state depends only on bits `0..=k` of every input byte,
//! so keys whose bytes agree in their low *k* bits collide in the low *k* bits
//! whatever the seed. [`FastHasher::finish`] therefore ends with a folded
//! 64×64→128-bit multiply, whose high half depends on every bit of the state.
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
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Odd multiplier for integer writes (2^64 / φ).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
/// Odd multiplier for the finalizer.
const FINAL: u64 = 0xd6e8_feb8_6659_fd93;

/// Multiplies to 128 bits and folds the halves: every output bit depends on
/// every input bit of `a` (through the high half).
#[inline(always)]
const fn fold_mul(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// FNV-1a over bytes, a single multiply-mix over integers, and a finalizer.
///
/// Deterministic: the same key hashes the same in every process. See the
/// [module docs](self) for what that means for untrusted keys.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher {
    state: u64,
}

impl FastHasher {
    /// A hasher starting from the FNV offset basis.
    #[inline]
    pub const fn new() -> Self {
        Self { state: FNV_OFFSET }
    }

    /// A hasher whose state starts at `seed` instead of the offset basis.
    #[inline]
    pub const fn with_seed(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Default for FastHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut state = self.state;
        for &byte in bytes {
            state ^= u64::from(byte);
            state = state.wrapping_mul(FNV_PRIME);
        }
        self.state = state;
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
    fn write_u64(&mut self, n: u64) {
        self.state = fold_mul(self.state ^ n, MIX);
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.state, FINAL)
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
    fn fnv_bytes_match_reference_before_finalizing() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (reference vector).
        let mut h = FastHasher::new();
        h.write(b"a");
        assert_eq!(h.state, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(raw_fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(h.finish(), fold_mul(0xaf63_dc4c_8601_ec8c, FINAL));
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
        for i in 0..6400u64 {
            low[(b.hash_one(i * 1024) & 63) as usize] += 1;
        }
        assert!(low.iter().all(|&c| (50..=150).contains(&c)), "{low:?}");
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
