//! Size classes of the small-block path.
//!
//! Sizes up to 128 bytes go in steps of 16; above that, four classes per
//! doubling up to [`MAX_SMALL`]. A block of class `c` has size
//! `CLASS_SIZES[c]`, and blocks are carved from page-aligned slabs, so a
//! block's address is a multiple of the largest power of two dividing its
//! size.

/// The largest size served by size classes; larger blocks go to the
/// best-fit arena.
pub const MAX_SMALL: usize = 32 * 1024;

/// Number of size classes.
pub const NUM_CLASSES: usize = 8 + 4 * 8;

/// Block size of each class.
pub const CLASS_SIZES: [usize; NUM_CLASSES] = class_sizes();

const fn class_sizes() -> [usize; NUM_CLASSES] {
    let mut sizes = [0; NUM_CLASSES];
    let mut i = 0;
    while i < 8 {
        sizes[i] = 16 * (i + 1);
        i += 1;
    }
    let mut base = 128;
    while i < NUM_CLASSES {
        let step = base / 4;
        let mut k = 1;
        while k <= 4 {
            sizes[i] = base + k * step;
            i += 1;
            k += 1;
        }
        base *= 2;
    }
    sizes
}

/// The smallest class whose blocks hold `size` bytes (`1..=MAX_SMALL`),
/// by shifts only (no division).
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size > 0 && size <= MAX_SMALL);
    let s = size - 1;
    if s < 128 {
        return s >> 4;
    }
    // Doubling d covers (128 << d, 256 << d]: four steps of 32 << d, so
    // the step within it is the two bits below the leading one of `s`.
    let top = (usize::BITS - 1 - s.leading_zeros()) as usize;
    let d = top - 7;
    8 + 4 * d + ((s >> (top - 2)) & 3)
}

/// The smallest class holding `size` bytes at alignment `align` (a power of
/// two up to a page), or `None` when the block must come from the arena.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if size > MAX_SMALL {
        return None;
    }
    let mut c = class_of(size);
    // Class sizes below 128 are multiples of 16; a class is aligned to the
    // largest power of two dividing its size.
    while CLASS_SIZES[c] & (align - 1) != 0 {
        c += 1;
        if c == NUM_CLASSES {
            return None;
        }
    }
    Some(c)
}

/// Blocks moved between a thread cache and the central list at once, per
/// class.
const BATCHES: [usize; NUM_CLASSES] = batches();

const fn batches() -> [usize; NUM_CLASSES] {
    let mut b = [0; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        let n = 32 * 1024 / CLASS_SIZES[i];
        b[i] = if n < 4 {
            4
        } else if n > 64 {
            64
        } else {
            n
        };
        i += 1;
    }
    b
}

/// Blocks moved between a thread cache and the central list at once.
#[inline]
pub fn batch(class: usize) -> usize {
    BATCHES[class]
}

/// Size of the slabs a class is carved from (a multiple of the page size).
pub fn slab_size(class: usize, page: usize) -> usize {
    (CLASS_SIZES[class] * 16)
        .max(64 * 1024)
        .next_multiple_of(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_class_that_holds_it() {
        assert_eq!(CLASS_SIZES[NUM_CLASSES - 1], MAX_SMALL);
        assert!(CLASS_SIZES.windows(2).all(|w| w[0] < w[1]));
        for size in 1..=MAX_SMALL {
            let c = class_of(size);
            assert!(CLASS_SIZES[c] >= size, "size {size} class {c}");
            assert!(c == 0 || CLASS_SIZES[c - 1] < size, "size {size} class {c}");
        }
    }

    #[test]
    fn aligned_requests_get_a_class_whose_blocks_are_aligned() {
        for align in [1, 2, 4, 8, 16, 32, 64, 256, 4096] {
            for size in [1, 17, 100, 129, 1000, 5000] {
                let c = class_for(size, align).unwrap();
                assert!(CLASS_SIZES[c] >= size);
                assert_eq!(CLASS_SIZES[c] % align, 0, "size {size} align {align}");
            }
        }
        assert_eq!(class_for(MAX_SMALL + 1, 8), None);
        // The largest class is 32 KiB: a multiple of every page alignment.
        assert!(class_for(MAX_SMALL, 4096).is_some());
    }
}
