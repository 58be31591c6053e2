//! Where the simulation's buffers live: mamba pools chosen by a placement
//! policy, or the process heap.
//!
//! A [`Memory`] hands out [`Buffer`]s of `f64`: the state planes, the
//! workers' band scratch and the in-transit record ring all come from it, so
//! one `--memory` policy places everything the solver streams through.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mamba::{Allocation, Mamba, Policy, SpaceInfo, Tier};

/// Alignment of pooled buffers: a cache line, and an AVX-512 vector.
const ALIGN: usize = 64;
/// Distinct starting offsets of pooled buffers, [`ALIGN`] bytes apart, so
/// that arrays read together do not all start at the same offset modulo
/// the page size (4K aliasing, cache set conflicts).
const STAGGERS: usize = 61;

/// Why memory could not be set up or obtained.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// mamba could not discover the node, resolve the policy or allocate.
    #[error("memory ({policy}): {source}")]
    Mamba {
        /// The placement policy asked for.
        policy: String,
        /// mamba's error.
        source: mamba::Error,
    },
    /// The pooled memory is not addressable by the CPU.
    #[error("memory ({policy}): space {space} is not CPU-addressable")]
    NotHostAccessible {
        /// The placement policy asked for.
        policy: String,
        /// The space the allocation landed in.
        space: String,
    },
}

/// A `--memory` argument: a tier preference chain (`hbm,dram`) or one of
/// the attribute criteria `bandwidth`, `latency`, `capacity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy(pub Policy);

impl Default for MemoryPolicy {
    /// The highest-bandwidth CPU-addressable space first.
    fn default() -> Self {
        MemoryPolicy(Policy::highest_bandwidth())
    }
}

impl fmt::Display for MemoryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MemoryPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "bandwidth" | "highest-bandwidth" => return Ok(MemoryPolicy::default()),
            "latency" | "lowest-latency" => return Ok(MemoryPolicy(Policy::lowest_latency())),
            "capacity" | "largest-capacity" => return Ok(MemoryPolicy(Policy::largest_capacity())),
            _ => {}
        }
        let mut tiers = s.split(',').map(|t| {
            t.parse::<Tier>()
                .map_err(|e| format!("{e} (tiers: dram, hbm, nvdimm, gpu, pinned, ssd)"))
        });
        let first = tiers.next().ok_or("empty memory policy")??;
        tiers
            .try_fold(Policy::prefer(first), |p, t| Ok(p.or(t?)))
            .map(MemoryPolicy)
    }
}

/// A source of `f64` buffers: the heap, or mamba pools by policy.
#[derive(Clone, Default)]
pub struct Memory {
    pooled: Option<(Arc<Mamba>, Policy)>,
    /// Buffers handed out so far (picks each one's stagger).
    count: Arc<AtomicUsize>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pooled {
            None => f.write_str("Memory(heap)"),
            Some((_, policy)) => write!(f, "Memory({policy})"),
        }
    }
}

impl Memory {
    /// Buffers from the process heap.
    pub fn heap() -> Memory {
        Memory::default()
    }

    /// Buffers from `mamba`'s pools, placed by `policy`.
    ///
    /// # Errors
    /// [`MemoryError::Mamba`] when the policy matches no space of the node
    /// (for example a tier it lacks).
    pub fn pooled(mamba: Arc<Mamba>, policy: Policy) -> Result<Memory, MemoryError> {
        if let Err(source) = mamba.placement(&policy) {
            return Err(MemoryError::Mamba {
                policy: policy.to_string(),
                source,
            });
        }
        Ok(Memory {
            pooled: Some((mamba, policy)),
            count: Arc::default(),
        })
    }

    /// The allocator behind pooled memory.
    pub fn mamba(&self) -> Option<&Mamba> {
        self.pooled.as_ref().map(|(m, _)| &**m)
    }

    /// The allocator and placement policy of pooled memory (`None` on the
    /// heap).
    pub fn placement(&self) -> Option<(&Arc<Mamba>, &Policy)> {
        self.pooled.as_ref().map(|(m, p)| (m, p))
    }

    /// The placement policy, or "heap".
    pub fn describe(&self) -> String {
        match &self.pooled {
            None => "heap".into(),
            Some((_, policy)) => policy.to_string(),
        }
    }

    /// A zeroed buffer of `len` values.
    ///
    /// # Errors
    /// mamba's allocation errors (every candidate space full, ...).
    pub fn buffer(&self, len: usize) -> Result<Buffer, MemoryError> {
        let Some((mamba, policy)) = &self.pooled else {
            return Ok(Buffer::from(vec![0.0; len]));
        };
        let err = |source| MemoryError::Mamba {
            policy: policy.to_string(),
            source,
        };
        let offset = self.count.fetch_add(1, Ordering::Relaxed) % STAGGERS * ALIGN;
        let mut allocation = mamba
            .allocate(len * 8 + offset + 8, ALIGN, policy)
            .map_err(err)?;
        if !allocation.space().host_accessible {
            return Err(MemoryError::NotHostAccessible {
                policy: policy.to_string(),
                space: allocation.space().name.clone(),
            });
        }
        allocation.as_typed_mut::<f64>().map_err(err)?.fill(0.0);
        Ok(Buffer {
            storage: Storage::Pooled(Pooled {
                allocation: allocation.into_owned(),
                offset,
                len,
            }),
        })
    }
}

/// `len` values `offset` bytes into a block of a mamba pool, returned to it
/// on drop (the owned allocation keeps the pool alive).
struct Pooled {
    allocation: Allocation<'static>,
    offset: usize,
    len: usize,
}

impl Pooled {
    /// Address of the first value.
    #[inline]
    fn start(&self) -> usize {
        self.allocation.addr() + self.offset
    }

    fn space(&self) -> &SpaceInfo {
        self.allocation.space()
    }
}

enum Storage {
    Heap(Vec<f64>),
    Pooled(Pooled),
}

/// A fixed-length array of `f64` from a [`Memory`]; dereferences to a
/// slice. Clones live on the heap.
pub struct Buffer {
    storage: Storage,
}

impl From<Vec<f64>> for Buffer {
    fn from(values: Vec<f64>) -> Buffer {
        Buffer {
            storage: Storage::Heap(values),
        }
    }
}

impl Buffer {
    /// The mamba space holding the values (`None` on the heap).
    pub fn space(&self) -> Option<&SpaceInfo> {
        match &self.storage {
            Storage::Heap(_) => None,
            Storage::Pooled(p) => Some(p.space()),
        }
    }
}

impl Deref for Buffer {
    type Target = [f64];

    #[inline]
    fn deref(&self) -> &[f64] {
        match &self.storage {
            Storage::Heap(v) => v,
            // SAFETY: the block is owned by this buffer until drop, is
            // CPU-addressable (checked in `Memory::buffer`), 64-byte aligned,
            // holds `len * 8` bytes from `offset` (a multiple of 64) and is
            // initialised (zero-filled on allocation); `&self` excludes
            // writers.
            Storage::Pooled(p) => unsafe {
                std::slice::from_raw_parts(p.start() as *const f64, p.len)
            },
        }
    }
}

impl DerefMut for Buffer {
    #[inline]
    fn deref_mut(&mut self) -> &mut [f64] {
        match &mut self.storage {
            Storage::Heap(v) => v,
            // SAFETY: as in `deref`, and `&mut self` makes the access unique.
            Storage::Pooled(p) => unsafe {
                std::slice::from_raw_parts_mut(p.start() as *mut f64, p.len)
            },
        }
    }
}

impl Clone for Buffer {
    fn clone(&self) -> Buffer {
        Buffer::from(self.to_vec())
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Buffer) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = self.space().map_or("heap", |s| s.name.as_str());
        write!(f, "Buffer({} values in {place})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        let p: MemoryPolicy = "hbm,dram".parse().unwrap();
        assert_eq!(p.0, Policy::prefer(Tier::Hbm).or(Tier::Dram));
        assert_eq!(
            "bandwidth".parse::<MemoryPolicy>().unwrap(),
            MemoryPolicy::default()
        );
        assert!("hbm,flash".parse::<MemoryPolicy>().is_err());
    }

    #[test]
    fn heap_buffers_are_zeroed_and_cloned_to_the_heap() {
        let mut b = Memory::heap().buffer(5).unwrap();
        assert_eq!(&*b, &[0.0; 5]);
        b[2] = 1.5;
        let c = b.clone();
        assert_eq!(c, b);
        assert!(c.space().is_none());
    }
}
