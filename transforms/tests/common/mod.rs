//! Shared test helpers: a naive reference copy and random layouts.

#![allow(dead_code)]

use mamba_transforms::{Layout, Order};

/// Every index of `shape`, row-major.
pub fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &n in shape {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..n).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

/// Element-by-element copy through `Layout::byte_offset`.
pub fn reference_copy(src: &[u8], sl: &Layout, dst: &mut [u8], dl: &Layout) {
    let e = sl.elem_size();
    for idx in indices(sl.shape()) {
        let s = sl.byte_offset(&idx).unwrap();
        let d = dl.byte_offset(&idx).unwrap();
        dst[d..d + e].copy_from_slice(&src[s..s + e]);
    }
}

/// The logical contents of an array, element by element.
pub fn logical(buf: &[u8], l: &Layout) -> Vec<u8> {
    let e = l.elem_size();
    indices(l.shape())
        .iter()
        .flat_map(|idx| {
            let o = l.byte_offset(idx).unwrap();
            buf[o..o + e].to_vec()
        })
        .collect()
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn perm(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
    pub fn order(&mut self) -> Order {
        if self.below(2) == 0 {
            Order::RowMajor
        } else {
            Order::ColumnMajor
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A random layout of `shape`: permuted, padded, reversed, tiled, a view of
/// a larger one, a strided view, or (sources only) with replicated
/// dimensions.
pub fn random_layout(rng: &mut Rng, elem: usize, shape: &[usize], source: bool) -> Layout {
    let rank = shape.len();
    let kinds = if source { 7 } else { 6 };
    match rng.below(kinds) {
        0 => Layout::permuted(elem, shape, &rng.perm(rank)).unwrap(),
        1 => {
            let order = rng.perm(rank);
            let mut strides = vec![0isize; rank];
            let mut stride = 1isize;
            for &d in order.iter().rev() {
                strides[d] = stride;
                stride *= (shape[d] + rng.below(3)) as isize;
            }
            Layout::from_strides(elem, shape, &strides, rng.below(4)).unwrap()
        }
        2 => {
            let mut l = Layout::permuted(elem, shape, &rng.perm(rank)).unwrap();
            for d in 0..rank {
                if rng.below(2) == 0 {
                    l = l.reversed(d).unwrap();
                }
            }
            l
        }
        3 => {
            let tile: Vec<usize> = (0..rank).map(|_| 1 + rng.below(5)).collect();
            let (a, b) = (rng.order(), rng.order());
            Layout::tiled(elem, shape, &tile, a, b).unwrap()
        }
        4 => {
            let big: Vec<usize> = shape.iter().map(|&n| n + rng.below(4)).collect();
            let start: Vec<usize> = big
                .iter()
                .zip(shape)
                .map(|(b, n)| rng.below(b - n + 1))
                .collect();
            random_layout(rng, elem, &big, source)
                .view(&start, shape)
                .unwrap()
        }
        5 => {
            let step: Vec<usize> = (0..rank).map(|_| 1 + rng.below(3)).collect();
            let big: Vec<usize> = shape
                .iter()
                .zip(&step)
                .map(|(&n, &s)| (n - 1) * s + 1 + rng.below(2))
                .collect();
            let base = Layout::permuted(elem, &big, &rng.perm(rank)).unwrap();
            let start: Vec<usize> = big
                .iter()
                .zip(shape.iter().zip(&step))
                .map(|(&b, (&n, &s))| rng.below(b - ((n - 1) * s + 1) + 1))
                .collect();
            base.strided_view(&start, shape, &step).unwrap()
        }
        _ => {
            let dense = Layout::permuted(elem, shape, &rng.perm(rank)).unwrap();
            let mut strides = dense.byte_strides().unwrap();
            for s in &mut strides {
                if rng.below(3) == 0 {
                    *s = 0;
                }
            }
            Layout::from_byte_strides(elem, shape, &strides, rng.below(3) * elem).unwrap()
        }
    }
}
