//! Fixtures shared by the crate's tests: the integration tests take them
//! with `mod common;`, the unit tests through `src/lib.rs`.
#![allow(dead_code)]

use mamba_transforms::{Layout, Order};

/// Every permutation of three axes.
pub const PERMUTATIONS_3D: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// The dense row-major layout of `shape`.
pub fn rm(elem: usize, shape: &[usize]) -> Layout {
    Layout::row_major(elem, shape).unwrap()
}

/// A tiled layout of `shape` (row-major tiles of shape `tile`, row-major
/// inside each tile), which the GPU kernels refuse.
pub fn tiled(elem: usize, shape: &[usize], tile: &[usize]) -> Layout {
    Layout::tiled(elem, shape, tile, Order::RowMajor, Order::RowMajor).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
