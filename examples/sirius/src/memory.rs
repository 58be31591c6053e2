//! Where the solver's buffers live: a mamba pool, or one plain heap
//! allocation per buffer (the peer of the benchmark).
//!
//! A [`Memory`] hands out zeroed [`Buf`]s of plain values (`f64`,
//! complex `f64`, bytes). Pooled buffers come from one resolved mamba
//! space, so that a buffer costs one pool allocation and no policy
//! resolution; they go back to the pool on drop. The solver takes its
//! per-call scratch as locals dropped in reverse order of allocation, so
//! the pool sees a LIFO pattern.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faer::c64;
use mamba::{Allocation, Mamba, Policy, SpaceId};

/// Alignment of every buffer: a cache line.
const ALIGN: usize = 64;

/// Why memory could not be set up or obtained.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// mamba could not resolve the policy or allocate.
    #[error("memory: {0}")]
    Mamba(#[from] mamba::Error),
    /// The policy's first space is not addressable by the CPU.
    #[error("memory: space {0} is not CPU-addressable")]
    NotHostAccessible(String),
    /// The requested length overflows the address space.
    #[error("memory: {0} values do not fit in memory")]
    TooLarge(usize),
}

/// Values a [`Buf`] may hold: plain data whose all-zero bit pattern is a
/// valid value.
///
/// # Safety
/// Implementors must be `Copy`, have no padding and be valid when zeroed.
pub unsafe trait Plain: Copy + 'static {}

// SAFETY: f64, Complex<f64> (repr(C), two f64) and u8 have no padding and
// are valid when all bits are zero.
unsafe impl Plain for f64 {}
// SAFETY: as above.
unsafe impl Plain for c64 {}
// SAFETY: as above.
unsafe impl Plain for u8 {}
// SAFETY: as above (any bit pattern is a valid `MaybeUninit`).
unsafe impl Plain for std::mem::MaybeUninit<u8> {}

/// Statistics of one [`Memory`]: buffers handed out and their bytes.
#[derive(Debug, Default)]
struct Counters {
    buffers: AtomicU64,
    live: AtomicU64,
    live_peak: AtomicU64,
}

impl Counters {
    fn take(&self, bytes: u64) {
        self.buffers.fetch_add(1, Ordering::Relaxed);
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.live_peak.fetch_max(live, Ordering::Relaxed);
    }

    fn give(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A source of buffers: one mamba space, or the process heap.
#[derive(Clone)]
pub struct Memory {
    pooled: Option<(Arc<Mamba>, SpaceId)>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Memory {
    /// One plain heap allocation per buffer.
    pub fn heap() -> Memory {
        Memory {
            pooled: None,
            counters: Arc::default(),
        }
    }

    /// Buffers from the pool of the first space `policy` selects.
    ///
    /// # Errors
    /// [`MemoryError::Mamba`] when the policy matches no space,
    /// [`MemoryError::NotHostAccessible`] when that space is device memory.
    pub fn pooled(mamba: Arc<Mamba>, policy: &Policy) -> Result<Memory, MemoryError> {
        let space = {
            let placement = mamba.placement(policy)?;
            let first = placement.spaces().next().ok_or_else(|| {
                MemoryError::Mamba(mamba::Error::NoSpace {
                    policy: policy.to_string(),
                    reason: "no candidate space".into(),
                })
            })?;
            if !first.host_accessible {
                return Err(MemoryError::NotHostAccessible(first.name.clone()));
            }
            first.id
        };
        Ok(Memory {
            pooled: Some((mamba, space)),
            counters: Arc::default(),
        })
    }

    /// The allocator and space of pooled memory (`None` on the heap).
    pub fn pool(&self) -> Option<(&Arc<Mamba>, SpaceId)> {
        self.pooled.as_ref().map(|(m, s)| (m, *s))
    }

    /// The space name, or "heap".
    pub fn describe(&self) -> String {
        match &self.pooled {
            None => "heap".into(),
            Some((mamba, space)) => mamba
                .pool(*space)
                .map_or_else(|_| "?".into(), |p| p.info().name.clone()),
        }
    }

    /// Buffers handed out so far.
    pub fn buffers(&self) -> u64 {
        self.counters.buffers.load(Ordering::Relaxed)
    }

    /// Largest sum of the bytes of live buffers so far.
    pub fn live_peak(&self) -> u64 {
        self.counters.live_peak.load(Ordering::Relaxed)
    }

    /// Bytes of the buffers alive now.
    pub fn live(&self) -> u64 {
        self.counters.live.load(Ordering::Relaxed)
    }

    /// High-water mark of the pool's reserved bytes (0 on the heap).
    pub fn high_water(&self) -> u64 {
        self.pooled
            .as_ref()
            .and_then(|(m, s)| m.pool(*s).ok())
            .map_or(0, |p| p.stats().high_water as u64)
    }

    /// A zeroed buffer of `len` values.
    ///
    /// # Errors
    /// [`MemoryError::TooLarge`] on overflow; mamba's allocation errors
    /// (the space is full, ...).
    pub fn buf<T: Plain>(&self, len: usize) -> Result<Buf<T>, MemoryError> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or(MemoryError::TooLarge(len))?;
        let storage = match &self.pooled {
            None => Storage::Heap(vec![0u64; bytes.div_ceil(8)]),
            Some((mamba, space)) => {
                let allocation = mamba.pool(*space)?.allocate(bytes.max(1), ALIGN)?;
                // SAFETY: the block is CPU-addressable (checked when the
                // memory was built) and holds at least `bytes` bytes.
                unsafe { std::ptr::write_bytes(allocation.as_ptr()?, 0, bytes) };
                Storage::Pooled(allocation.into_owned())
            }
        };
        self.counters.take(bytes as u64);
        Ok(Buf {
            storage,
            len,
            counters: Arc::clone(&self.counters),
            _values: PhantomData,
        })
    }
}

enum Storage {
    /// u64 words: 8-byte aligned, enough for every [`Plain`] type.
    Heap(Vec<u64>),
    Pooled(Allocation<'static>),
}

/// A fixed-length zero-initialised array from a [`Memory`]; dereferences
/// to a slice and returns its memory on drop.
pub struct Buf<T: Plain> {
    storage: Storage,
    len: usize,
    counters: Arc<Counters>,
    _values: PhantomData<T>,
}

impl<T: Plain> Buf<T> {
    fn ptr(&self) -> *mut T {
        match &self.storage {
            Storage::Heap(v) => v.as_ptr() as *mut T,
            Storage::Pooled(a) => a.addr() as *mut T,
        }
    }
}

impl<T: Plain> Deref for Buf<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: the storage is owned by this buffer until drop, is
        // CPU-addressable, aligned to at least 8 bytes (heap words) or 64
        // (pool blocks), holds `len` values, all initialised (zeroed when
        // allocated, `T: Plain`); `&self` excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl<T: Plain> DerefMut for Buf<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl<T: Plain> Drop for Buf<T> {
    fn drop(&mut self) {
        self.counters.give((self.len * size_of::<T>()) as u64);
    }
}

impl<T: Plain> fmt::Debug for Buf<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &self.storage {
            Storage::Heap(_) => "heap",
            Storage::Pooled(a) => a.space().name.as_str(),
        };
        write!(f, "Buf({} values in {place})", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffers_are_zeroed_and_counted() {
        let memory = Memory::heap();
        let mut a = memory.buf::<c64>(5).unwrap();
        assert!(a.iter().all(|z| *z == c64::new(0.0, 0.0)));
        a[4] = c64::new(1.0, -2.0);
        assert_eq!(a[4].im, -2.0);
        let b = memory.buf::<f64>(3).unwrap();
        assert_eq!(memory.live(), 5 * 16 + 3 * 8);
        drop(b);
        drop(a);
        assert_eq!(memory.live(), 0);
        assert_eq!(memory.live_peak(), 5 * 16 + 3 * 8);
        assert_eq!(memory.buffers(), 2);
        assert_eq!(memory.high_water(), 0);
    }

    #[test]
    fn pooled_buffers_come_from_the_space_and_go_back() {
        let mamba = Arc::new(
            Mamba::discover(&mamba::Config {
                gpu: false,
                ..Default::default()
            })
            .unwrap(),
        );
        let memory = Memory::pooled(mamba, &Policy::highest_bandwidth()).unwrap();
        let (mamba, space) = memory.pool().unwrap();
        let before = mamba.pool(space).unwrap().stats();
        let mut a = memory.buf::<f64>(1000).unwrap();
        a[999] = 3.0;
        assert_eq!(a.iter().sum::<f64>(), 3.0);
        assert_eq!(a.as_ptr() as usize % ALIGN, 0);
        let during = mamba.pool(space).unwrap().stats();
        assert_eq!(during.allocations, before.allocations + 1);
        drop(a);
        let after = mamba.pool(space).unwrap().stats();
        assert_eq!(after.frees, before.frees + 1);
        assert!(memory.high_water() >= 8000);
    }
}
