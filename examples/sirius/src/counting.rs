//! A global allocator that counts the heap allocations of each thread, so
//! that a binary or a test can show that the SCF loop allocates nothing
//! outside mamba's pools once it runs.
//!
//! Install it with `#[global_allocator] static A: CountingAllocator =
//! CountingAllocator;` (the `sirius` binary and the tests do); without it
//! [`thread_allocations`] returns `None`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// [`System`], counting allocations (and reallocations) per thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    INSTALLED.store(true, Ordering::Relaxed);
    // A const-initialised Cell without destructor: no allocation, usable
    // until the thread ends (`try_with` covers its teardown).
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds
// the `GlobalAlloc` contract; the counter neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`, with the caller's `realloc` contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations made by the calling thread so far, when the process
/// runs on [`CountingAllocator`].
pub fn thread_allocations() -> Option<u64> {
    let n = COUNT.try_with(Cell::get).ok()?;
    INSTALLED.load(Ordering::Relaxed).then_some(n)
}
