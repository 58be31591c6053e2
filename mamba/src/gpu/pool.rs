//! A stream-ordered device memory pool: [`DevicePool`].

use super::device::{DevicePtr, DeviceRuntime, EventId, StreamId};
use crate::error::{Error, Result};
use crate::provider::{Chunk, Provider};
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// Sizes up to this are rounded to [`SMALL_ROUND`].
const SMALL_LIMIT: usize = 1 << 20;
/// Rounding of small sizes (the runtimes' own alignment is 256 or 512).
const SMALL_ROUND: usize = 512;
/// Rounding of sizes above [`SMALL_LIMIT`].
const LARGE_ROUND: usize = 128 << 10;

/// How a [`DevicePool`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePoolSettings {
    /// Most bytes the pool holds from the runtime (in use plus cached).
    pub capacity: usize,
    /// A request of `n` (rounded) bytes may take a cached block of up to
    /// `split_bound * n` bytes, splitting off the rest; at least 1 (only
    /// blocks of the exact rounded size).
    pub split_bound: usize,
}

impl Default for DevicePoolSettings {
    fn default() -> Self {
        DevicePoolSettings {
            capacity: usize::MAX,
            split_bound: 4,
        }
    }
}

/// What a [`DevicePool`] holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevicePoolStats {
    /// Bytes of blocks handed out and not freed (rounded sizes).
    pub in_use: usize,
    /// Bytes of freed blocks kept for reuse.
    pub cached: usize,
    /// The most bytes the pool ever held from the runtime (in use plus
    /// cached).
    pub high_water: usize,
    /// Allocations served from the cache.
    pub hits: u64,
    /// Allocations that went to the runtime.
    pub misses: u64,
    /// Trims that gave memory back to the runtime.
    pub trims: u64,
    /// Bytes those trims gave back.
    pub trimmed: usize,
    /// Runtime allocations the pool holds now.
    pub segments: usize,
}

/// Hashing of the pool's keys, device addresses and stream handles: plain
/// integers the runtime chose, not an adversary, so one multiply (its high
/// bits folded onto the low ones, which aligned addresses leave zero)
/// replaces SipHash on the allocation hot path.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by addresses or handles.
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A block handed out.
#[derive(Debug, Clone, Copy)]
struct Live {
    size: usize,
    segment: u64,
}

/// A freed block kept for reuse.
#[derive(Debug, Clone, Copy)]
struct Cached {
    size: usize,
    segment: u64,
    stream: StreamId,
    /// The stream's free count when it was freed.
    seq: u64,
}

/// A runtime allocation, carved into blocks.
#[derive(Debug, Clone, Copy)]
struct Segment {
    size: usize,
    /// Its blocks in use.
    live: usize,
}

/// Per stream: how many frees it saw, and the event that tells when they
/// are behind it.
#[derive(Debug, Default)]
struct Clock {
    frees: u64,
    fence: Option<EventId>,
    /// The free count when the fence was last recorded (0: never).
    fenced: u64,
}

#[derive(Debug, Default)]
struct State {
    segments: IdMap<u64, Segment>,
    live: IdMap<u64, Live>,
    cached: IdMap<u64, Cached>,
    /// Cached blocks by the stream that freed them, as (size, address).
    free_lists: IdMap<StreamId, BTreeSet<(usize, u64)>>,
    clocks: IdMap<StreamId, Clock>,
    stats: DevicePoolStats,
}

impl State {
    fn take_cached(&mut self, addr: u64) -> Cached {
        let block = self.cached.remove(&addr).expect("listed blocks are cached");
        if let Some(list) = self.free_lists.get_mut(&block.stream) {
            list.remove(&(block.size, addr));
        }
        self.stats.cached -= block.size;
        block
    }

    fn put_cached(&mut self, addr: u64, block: Cached) {
        self.free_lists
            .entry(block.stream)
            .or_default()
            .insert((block.size, addr));
        self.cached.insert(addr, block);
        self.stats.cached += block.size;
    }

    fn reserved(&self) -> usize {
        self.stats.in_use + self.stats.cached
    }
}

/// A stream-ordered pool of one device's memory.
///
/// Device allocations are expensive (`cuMemAlloc`/`cuMemFree` cost tens of
/// microseconds and `cuMemFree` synchronizes the device), so the pool keeps
/// freed blocks cached and hands them out again:
///
/// - **Same stream at once.** A block freed on stream `S` is reusable by the
///   next allocation on `S` immediately, with no runtime call: work on `S`
///   runs in order, so that work comes after every earlier use of the block.
/// - **Other streams after an event.** Another stream `T` may take it only
///   once an event recorded on `S` after the free has completed. The event
///   (one per stream, recorded lazily, only when `T` asks) is queried, never
///   waited on: a block whose event is still pending stays cached and `T`
///   gets another one.
/// - **Rounding and splitting.** Sizes are rounded up (to 512 bytes up to
///   1 MiB, then to 128 KiB). A request may take a cached block up to
///   [`DevicePoolSettings::split_bound`] times its size; the rest of the
///   block stays cached as a block of its own. The runtime's allocations
///   ("segments") go back to the runtime whole, once none of their blocks
///   is in use.
/// - **Release on pressure.** When the runtime refuses memory
///   ([`Error::Exhausted`]) or the pool's capacity would be exceeded, the
///   pool trims (gives every unused segment back, after synchronizing the
///   device) and retries once; then the allocation fails with
///   [`Error::Exhausted`].
/// - **Statistics** ([`DevicePoolStats`]): bytes in use and cached, high
///   water, hits, misses, trims.
///
/// Misses go to the runtime's stream-ordered allocator
/// ([`DeviceRuntime::alloc_async`]: `cuMemAllocAsync` from the device's
/// memory pool where the driver has them, CUDA 11.2 and later). The cache
/// and its statistics are the pool's own, so that a hit costs no runtime
/// call and the numbers are exact.
///
/// A [`DevicePool`] is also a [`Provider`], so a space can be backed by it
/// and a full device falls back by placement policy like any other tier.
///
/// ```
/// use mamba::gpu::{DevicePool, DevicePoolSettings, DeviceRuntime, SimDevice};
/// use std::sync::Arc;
/// let device = Arc::new(SimDevice::new());
/// let stream = device.create_stream()?;
/// let pool = DevicePool::new(device, DevicePoolSettings::default())?;
/// let a = pool.alloc(1 << 20, stream)?;
/// // SAFETY: nothing uses `a` after the free.
/// unsafe { pool.free(a, stream)? };
/// assert_eq!(pool.alloc(1 << 20, stream)?, a); // reused at once
/// assert_eq!(pool.stats().hits, 1);
/// # Ok::<(), mamba::Error>(())
/// ```
#[derive(Debug)]
pub struct DevicePool {
    runtime: Arc<dyn DeviceRuntime>,
    settings: DevicePoolSettings,
    /// The pool's own stream: trims free on it, [`Provider`] chunks come
    /// from it.
    stream: StreamId,
    state: Mutex<State>,
}

/// `len` rounded up to the pool's sizes.
fn round(len: usize) -> Result<usize> {
    if len == 0 {
        return Err(Error::ZeroSize);
    }
    let unit = if len <= SMALL_LIMIT {
        SMALL_ROUND
    } else {
        LARGE_ROUND
    };
    len.checked_next_multiple_of(unit)
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or(Error::SizeTooLarge { size: len })
}

fn exhausted(reason: String) -> Error {
    Error::Exhausted {
        call: "DevicePool::alloc",
        reason,
    }
}

impl DevicePool {
    /// A pool of `runtime`'s memory. Creates one stream of its own.
    ///
    /// # Errors
    /// [`Error::Config`] for a `split_bound` of 0; the runtime's refusal to
    /// create a stream.
    pub fn new(runtime: Arc<dyn DeviceRuntime>, settings: DevicePoolSettings) -> Result<Self> {
        if settings.split_bound == 0 {
            return Err(Error::Config(
                "a device pool's split_bound is at least 1".into(),
            ));
        }
        let stream = runtime.create_stream()?;
        Ok(DevicePool {
            runtime,
            settings,
            stream,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update of the state is completed before anything that can
        // fail or panic: a poisoned lock still guards a consistent state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The runtime the pool allocates from.
    pub fn runtime(&self) -> &Arc<dyn DeviceRuntime> {
        &self.runtime
    }

    /// The pool's settings.
    pub fn settings(&self) -> DevicePoolSettings {
        self.settings
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> DevicePoolStats {
        self.state().stats
    }

    /// `len` bytes of device memory for work enqueued on `stream` from now
    /// on: a cached block when one is free for `stream`, else a new one from
    /// the runtime (trimming and retrying once when memory runs short).
    ///
    /// # Errors
    /// [`Error::ZeroSize`], [`Error::SizeTooLarge`]; [`Error::Exhausted`]
    /// when neither the cache, nor the runtime after a trim, has room; the
    /// runtime's other errors (an unknown stream). The pool is unchanged by
    /// a failed allocation, except for what a trim gave back.
    pub fn alloc(&self, len: usize, stream: StreamId) -> Result<DevicePtr> {
        let size = round(len)?;
        let mut state = self.state();
        if let Some(addr) = self.cached_block(&mut state, size, stream) {
            return Ok(self.hand_out(&mut state, addr, size));
        }
        let addr = match self.new_segment(&mut state, size, stream) {
            Err(e @ Error::Exhausted { .. }) => {
                let released = self.trim_locked(&mut state)?;
                tracing::debug!(size, released, error = %e, "device pool trimmed under pressure");
                if released == 0 {
                    return Err(e);
                }
                self.new_segment(&mut state, size, stream)?
            }
            other => other?,
        };
        state.stats.misses += 1;
        state.live.insert(
            addr,
            Live {
                size,
                segment: addr,
            },
        );
        state.stats.in_use += size;
        state.stats.high_water = state.stats.high_water.max(state.reserved());
        Ok(DevicePtr(addr))
    }

    /// A new segment of `size` bytes from the runtime, within capacity, as
    /// one block in use.
    fn new_segment(&self, state: &mut State, size: usize, stream: StreamId) -> Result<u64> {
        let reserved = state.reserved();
        if reserved.saturating_add(size) > self.settings.capacity {
            return Err(exhausted(format!(
                "{size} bytes asked, {reserved} of the pool's {} held",
                self.settings.capacity
            )));
        }
        let ptr = self.runtime.alloc_async(size, stream)?;
        state.segments.insert(ptr.0, Segment { size, live: 1 });
        state.stats.segments += 1;
        Ok(ptr.0)
    }

    /// The address of a cached block that `stream` may use for `size`
    /// bytes: its own smallest fitting one, else the smallest fitting one
    /// of another stream whose fence has completed.
    fn cached_block(&self, state: &mut State, size: usize, stream: StreamId) -> Option<u64> {
        let largest = size.saturating_mul(self.settings.split_bound);
        let fitting = (size, 0)..=(largest, u64::MAX);
        if let Some(&(_, addr)) = state
            .free_lists
            .get(&stream)
            .and_then(|list| list.range(fitting.clone()).next())
        {
            return Some(addr);
        }
        let mut others: Vec<(usize, u64, StreamId)> = state
            .free_lists
            .iter()
            .filter(|(s, _)| **s != stream)
            .flat_map(|(s, list)| list.range(fitting.clone()).map(move |&(z, a)| (z, a, *s)))
            .collect();
        others.sort_unstable_by_key(|&(size, addr, _)| (size, addr));
        let mut ready: IdMap<StreamId, u64> = IdMap::default();
        others.into_iter().find_map(|(_, addr, owner)| {
            let done = *ready
                .entry(owner)
                .or_insert_with(|| self.completed_frees(state, owner));
            (state.cached[&addr].seq <= done).then_some(addr)
        })
    }

    /// How many of `stream`'s frees are known to be behind the device now:
    /// records the stream's fence if frees came since it was last recorded,
    /// then queries it. A stream the runtime no longer knows counts as
    /// having none behind it (its blocks wait for a trim).
    fn completed_frees(&self, state: &mut State, stream: StreamId) -> u64 {
        let clock = state.clocks.entry(stream).or_default();
        let fenced = (|| -> Result<u64> {
            let fence = match clock.fence {
                Some(e) => e,
                None => *clock.fence.insert(self.runtime.create_event()?),
            };
            if clock.fenced < clock.frees {
                self.runtime.record_event(fence, stream)?;
                clock.fenced = clock.frees;
            }
            Ok(if self.runtime.query_event(fence)? {
                clock.fenced
            } else {
                0
            })
        })();
        fenced.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "a stream's fence cannot be used: its blocks stay cached");
            0
        })
    }

    /// Hands out cached block `addr` for `size` bytes, splitting
    /// off and caching the rest.
    fn hand_out(&self, state: &mut State, addr: u64, size: usize) -> DevicePtr {
        let block = state.take_cached(addr);
        if block.size > size {
            let rest = Cached {
                size: block.size - size,
                ..block
            };
            state.put_cached(addr + size as u64, rest);
        }
        state.stats.hits += 1;
        state.stats.in_use += size;
        state.live.insert(
            addr,
            Live {
                size,
                segment: block.segment,
            },
        );
        if let Some(seg) = state.segments.get_mut(&block.segment) {
            seg.live += 1;
        }
        DevicePtr(addr)
    }

    /// Gives a block back to the pool, as of the current end of `stream`:
    /// the next allocation on `stream` may reuse it at once, others once
    /// the work enqueued on `stream` so far has completed.
    ///
    /// # Safety
    /// No work enqueued after this call, on `stream` or on a stream not
    /// ordered after it, may use the block; work already enqueued on other
    /// streams must be finished or ordered before this point of `stream`.
    ///
    /// # Errors
    /// [`Error::Gpu`] for an address the pool did not hand out (or already
    /// took back); the pool is unchanged.
    pub unsafe fn free(&self, ptr: DevicePtr, stream: StreamId) -> Result<()> {
        let mut state = self.state();
        let Some(live) = state.live.remove(&ptr.0) else {
            return Err(Error::Gpu {
                call: "DevicePool::free",
                message: format!("{:#x} is not a block in use of this pool", ptr.0),
            });
        };
        let clock = state.clocks.entry(stream).or_default();
        clock.frees += 1;
        let seq = clock.frees;
        state.stats.in_use -= live.size;
        if let Some(seg) = state.segments.get_mut(&live.segment) {
            seg.live -= 1;
        }
        state.put_cached(
            ptr.0,
            Cached {
                size: live.size,
                segment: live.segment,
                stream,
                seq,
            },
        );
        Ok(())
    }

    /// Gives every segment with no block in use back to the runtime, after
    /// synchronizing the device (so that no pending work uses them); the
    /// bytes given back.
    ///
    /// # Errors
    /// The runtime's errors synchronizing or freeing; what was freed before
    /// an error stays freed and counted.
    pub fn trim(&self) -> Result<usize> {
        let mut state = self.state();
        self.trim_locked(&mut state)
    }

    fn trim_locked(&self, state: &mut State) -> Result<usize> {
        let unused: Vec<u64> = state
            .segments
            .iter()
            .filter(|(_, s)| s.live == 0)
            .map(|(&base, _)| base)
            .collect();
        if unused.is_empty() {
            return Ok(0);
        }
        self.runtime.synchronize()?;
        let mut released = 0;
        let mut result = Ok(());
        for base in unused {
            let pieces: Vec<u64> = state
                .cached
                .iter()
                .filter(|(_, c)| c.segment == base)
                .map(|(&addr, _)| addr)
                .collect();
            // SAFETY: the segment came from alloc_async of this runtime, no
            // block of it is in use and the device is synchronized, so no
            // work uses it; it leaves the pool's tables right after.
            if let Err(e) = unsafe { self.runtime.free_async(DevicePtr(base), self.stream) } {
                result = Err(e);
                break;
            }
            for addr in pieces {
                state.take_cached(addr);
            }
            let seg = state.segments.remove(&base).expect("listed segment");
            state.stats.segments -= 1;
            released += seg.size;
        }
        if released > 0 {
            state.stats.trims += 1;
            state.stats.trimmed += released;
        }
        result?;
        self.runtime.synchronize_stream(self.stream)?;
        Ok(released)
    }
}

impl Drop for DevicePool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let leaked = state.stats.in_use;
        if leaked > 0 {
            tracing::error!(
                leaked,
                "device pool dropped with blocks in use: their segments stay allocated"
            );
        }
        let mut state = std::mem::take(state);
        if let Err(e) = self.trim_locked(&mut state) {
            tracing::error!(error = %e, "giving a device pool's memory back");
        }
        for fence in state.clocks.values().filter_map(|c| c.fence) {
            let _ = self.runtime.destroy_event(fence);
        }
        if let Err(e) = self.runtime.destroy_stream(self.stream) {
            tracing::error!(error = %e, "destroying a device pool's stream");
        }
    }
}

impl Provider for DevicePool {
    /// A block on the pool's own stream, synchronized so that any thread
    /// and stream may use it at once.
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let ptr = self.alloc(len, self.stream)?;
        if let Err(e) = self.runtime.synchronize_stream(self.stream) {
            // SAFETY: the block was just handed out and never used.
            let _ = unsafe { self.free(ptr, self.stream) };
            return Err(e);
        }
        Ok(Chunk {
            addr: ptr.0 as usize,
            len,
        })
    }

    unsafe fn release(&self, chunk: Chunk) {
        // SAFETY: the caller guarantees nothing uses the chunk any more.
        if let Err(e) = unsafe { self.free(DevicePtr(chunk.addr as u64), self.stream) } {
            tracing::error!(error = %e, "releasing a device pool chunk");
        }
    }

    fn granule(&self) -> usize {
        SMALL_ROUND
    }

    fn host_accessible(&self) -> bool {
        false
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
