//! Rust allocator adapters: a [`Placement`] as the [`Allocator`] of
//! allocator-api2's collections, and [`TierHeap`], a [`GlobalAlloc`] that
//! puts a whole program's heap in a chosen tier.
//!
//! ```
//! use allocator_api2::vec::Vec;
//! use mamba::{Config, Mamba, Policy, Tier};
//!
//! let mamba = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
//! let fast = mamba.placement(&Policy::prefer(Tier::Hbm).or(Tier::Dram))?;
//! let mut v: Vec<f64, _> = Vec::new_in(&fast);
//! v.extend((0..1000).map(f64::from));
//! assert_eq!(v.iter().sum::<f64>(), 499_500.0);
//! # Ok::<(), mamba::Error>(())
//! ```
//!
//! A program's heap in HBM, falling back to DRAM when HBM is full:
//!
//! ```no_run
//! use mamba::{adapters::TierHeap, Policy, Tier};
//!
//! #[global_allocator]
//! static HEAP: TierHeap = TierHeap::new(|| Policy::prefer(Tier::Hbm).or(Tier::Dram));
//!
//! fn main() {
//!     let v = vec![0u8; 1 << 20]; // in HBM where the node has it
//!     assert!(HEAP.is_active());
//!     drop(v);
//! }
//! ```
//!
//! Every block carries a small header in front of the caller's memory: the
//! [`Allocation`] it belongs to, so freeing needs nothing but the pointer
//! (at least 16 bytes, or the alignment when larger, per block).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use allocator_api2::alloc::{AllocError, Allocator};

use crate::{Allocation, Config, Mamba, Placement, Policy};

/// What sits right in front of every block handed out here.
struct Header<'m> {
    /// The block's allocation; `None` for the system allocator's blocks.
    allocation: Option<Allocation<'m>>,
}

/// The layout actually requested for `layout` (header in front, the
/// caller's alignment kept) and the offset of the caller's memory in it.
fn outer(layout: Layout) -> Option<(Layout, usize)> {
    let align = layout.align().max(align_of::<Header<'_>>()).max(16);
    let offset = size_of::<Header<'_>>().next_multiple_of(align);
    let size = offset.checked_add(layout.size())?;
    Some((Layout::from_size_align(size, align).ok()?, offset))
}

/// Takes a block for `layout` from `placement`, or `None` when it has no
/// room or its memory is not host-accessible.
fn place<'m>(placement: &Placement<'m>, layout: Layout) -> Option<NonNull<u8>> {
    let (outer, offset) = outer(layout)?;
    let allocation = placement.allocate(outer.size(), outer.align()).ok()?;
    let base = allocation.as_ptr().ok()?;
    // SAFETY: the allocation has `offset + layout.size()` bytes from `base`;
    // `offset >= size_of::<Header>()` and both `offset` and the header's
    // size are multiples of its alignment, so the header slot right before
    // the caller's memory is inside the block and aligned.
    unsafe {
        let user = base.add(offset);
        user.sub(size_of::<Header<'m>>())
            .cast::<Header<'m>>()
            .write(Header {
                allocation: Some(allocation),
            });
        NonNull::new(user)
    }
}

/// Takes a block for `layout` from the system allocator (with a header
/// that says so).
fn system(layout: Layout) -> *mut u8 {
    let Some((outer, offset)) = outer(layout) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `outer` has a non-zero size (the header).
    let base = unsafe { System.alloc(outer) };
    if base.is_null() {
        return base;
    }
    // SAFETY: as in `place`: the header slot lies inside the block, aligned.
    unsafe {
        let user = base.add(offset);
        user.sub(size_of::<Header<'_>>())
            .cast::<Header<'_>>()
            .write(Header { allocation: None });
        user
    }
}

/// Gives back a block of [`place`] or [`system`].
///
/// # Safety
/// `ptr` came from [`place`] or [`system`] for `layout`, its pool still
/// exists, and it is not used afterwards.
unsafe fn release(ptr: *mut u8, layout: Layout) {
    // SAFETY: by the contract, a header written by `place` or `system`
    // sits right before `ptr`; reading it moves the allocation out once.
    let header = unsafe { ptr.sub(size_of::<Header<'_>>()).cast::<Header<'_>>().read() };
    match header.allocation {
        Some(allocation) => drop(allocation),
        None => {
            let (outer, offset) = outer(layout).expect("the layout was accepted when allocating");
            // SAFETY: `system` allocated `outer` at `ptr - offset`.
            unsafe { System.dealloc(ptr.sub(offset), outer) }
        }
    }
}

// SAFETY: blocks are allocations of the placement's pools, valid until
// deallocated here (a pool lives as long as the `Mamba` the placement
// borrows), aligned as asked, and never handed out twice; a clone of the
// placement resolves to the same pools, so it frees the blocks of the
// original (the header names the pool).
unsafe impl Allocator for Placement<'_> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let ptr = place(self, layout).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated by `allocate` above for `layout`.
        unsafe { release(ptr.as_ptr(), layout) }
    }
}

thread_local! {
    /// Set while this thread is inside [`TierHeap`]: the allocations of
    /// mamba itself then go to the system allocator.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    /// Set when this thread's destructors have started: the pools then
    /// flush their thread caches, allocating under their own locks, so
    /// every allocation from here on goes to the system allocator.
    static EXITING: Cell<bool> = const { Cell::new(false) };
    /// Sets [`EXITING`] when destroyed. Registered after the pools' thread
    /// caches (thread-local destructors run in reverse order of
    /// registration), so it runs before them.
    static EXIT_WATCH: ExitWatch = const { ExitWatch };
}

/// See [`EXIT_WATCH`].
struct ExitWatch;

impl Drop for ExitWatch {
    fn drop(&mut self) {
        let _ = EXITING.try_with(|exiting| exiting.set(true));
    }
}

/// Marks this thread as inside [`TierHeap`] until dropped; `None` when it
/// already is (a nested allocation of mamba itself) or is exiting.
struct Inside;

impl Inside {
    fn enter() -> Option<Inside> {
        if EXITING.try_with(Cell::get).unwrap_or(true) {
            return None;
        }
        let entered = INSIDE
            .try_with(|inside| !inside.replace(true))
            .unwrap_or(false);
        // Lazily: a guard made and dropped here would clear the flag.
        entered.then(|| Inside)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|inside| inside.set(false));
    }
}

/// A [`GlobalAlloc`] that serves the program's heap from the placement of a
/// policy, on the node [`Config::from_env`] describes (without GPU spaces).
///
/// The node is discovered at the first allocation. Until then, during it,
/// and for mamba's own bookkeeping, blocks come from the system allocator;
/// if discovery fails or the policy matches nothing, the whole heap stays
/// there ([`TierHeap::is_active`] tells). When every space of the policy is
/// full, an allocation fails (the program aborts as out of memory): give
/// the policy a fallback (`Policy::prefer(Tier::Hbm).or(Tier::Dram)`).
pub struct TierHeap {
    policy: fn() -> Policy,
    placement: OnceLock<Option<Placement<'static>>>,
    in_tier: AtomicU64,
    in_system: AtomicU64,
}

/// How many blocks a [`TierHeap`] has handed out, by origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierHeapCounts {
    /// Blocks taken from the policy's spaces.
    pub in_tier: u64,
    /// Blocks taken from the system allocator.
    pub in_system: u64,
}

impl TierHeap {
    /// A heap in the spaces of `policy` (called once, at the first
    /// allocation).
    pub const fn new(policy: fn() -> Policy) -> Self {
        TierHeap {
            policy,
            placement: OnceLock::new(),
            in_tier: AtomicU64::new(0),
            in_system: AtomicU64::new(0),
        }
    }

    /// Whether blocks come from the policy's spaces (discovery done and
    /// the policy resolved).
    pub fn is_active(&self) -> bool {
        matches!(self.placement.get(), Some(Some(_)))
    }

    /// The resolved placement, once active.
    pub fn placement(&self) -> Option<&Placement<'static>> {
        self.placement.get().and_then(Option::as_ref)
    }

    /// Blocks handed out so far, by origin.
    pub fn counts(&self) -> TierHeapCounts {
        TierHeapCounts {
            in_tier: self.in_tier.load(Ordering::Relaxed),
            in_system: self.in_system.load(Ordering::Relaxed),
        }
    }

    fn resolve(policy: fn() -> Policy) -> Option<Placement<'static>> {
        let config = Config {
            gpu: false,
            ..Config::from_env().ok()?
        };
        let mamba = Mamba::discover(&config).ok()?;
        // The heap lives as long as the program: so does its node.
        let mamba: &'static Mamba = Box::leak(Box::new(mamba));
        mamba.placement(&policy()).ok()
    }
}

impl std::fmt::Debug for TierHeap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierHeap")
            .field("placement", &self.placement())
            .field("counts", &self.counts())
            .finish()
    }
}

// SAFETY: blocks come from `place` (pool memory, valid until freed, aligned
// as asked) or from the system allocator, each with a header saying which,
// and go back through `release`, which reads that header; mamba's own
// allocations inside these calls are served by the system allocator (the
// `Inside` guard), so the pools never re-enter themselves.
unsafe impl GlobalAlloc for TierHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(_inside) = Inside::enter() else {
            self.in_system.fetch_add(1, Ordering::Relaxed);
            return system(layout);
        };
        match self.placement.get_or_init(|| Self::resolve(self.policy)) {
            Some(placement) => match place(placement, layout) {
                Some(ptr) => {
                    // The pool's thread cache exists now: watch for exit.
                    let _ = EXIT_WATCH.try_with(|_| ());
                    self.in_tier.fetch_add(1, Ordering::Relaxed);
                    ptr.as_ptr()
                }
                None => std::ptr::null_mut(),
            },
            None => {
                self.in_system.fetch_add(1, Ordering::Relaxed);
                system(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _inside = Inside::enter();
        // SAFETY: `alloc` handed out `ptr` for `layout` through `place`
        // (whose pools live for the program) or `system`.
        unsafe { release(ptr, layout) }
    }
}
