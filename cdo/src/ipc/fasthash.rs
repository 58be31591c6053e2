//! A fast hasher for the maps on the request path (names, request and
//! segment ids).
//!
//! Each 8-byte word is folded in with a rotate, an xor and a multiplication
//! by the 64-bit golden ratio, and the result goes through a 64-bit
//! avalanche finalizer (xor-shift-multiply). It is not resistant to crafted collisions;
//! that is acceptable here because only clients of the same uid that know
//! the workflow token can send keys, and SipHash cost a quarter of the
//! manager's time per request.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The hasher; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiplications above leave the low bits depending only on
        // the low bits of the input (the first bytes of a name), and hash
        // tables index by the low bits: mix every bit into every bit.
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        z ^ (z >> 33)
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_bits_spread_names_that_differ_at_the_end() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<FastHasher>::default();
        let buckets: FastSet<u64> = (0..4096)
            .map(|i| build.hash_one(format!("c17-{i}")) & 4095)
            .collect();
        // A random function fills about 63% of the buckets.
        assert!(buckets.len() > 2300, "{} of 4096 buckets", buckets.len());
    }

    #[test]
    fn distinguishes_close_keys() {
        let set: FastSet<String> = (0..10_000).map(|i| format!("obj-{i}")).collect();
        assert_eq!(set.len(), 10_000);
        let mut a = FastHasher::default();
        a.write(b"abc");
        let mut b = FastHasher::default();
        b.write(b"abd");
        assert_ne!(a.finish(), b.finish());
    }
}
