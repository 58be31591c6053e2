//! Locations of memory ranges found by earlier page queries, kept per
//! thread, so that spawning near a range again costs no system call.
//!
//! Each thread keeps a small direct-mapped table from a range (start and
//! length) to the node found for it. One process-wide epoch invalidates
//! every thread's entries at once: [`forget_locations`] moves it on, and
//! every page move of mamba ([`crate::Mamba::move_pages`], `mbind` with
//! migration, `move_pages` with a target) calls it. Only ranges
//! with pages are kept (a range without pages gets its pages at first
//! touch, so it is asked again next time).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a table index: 64 entries per thread.
const INDEX_BITS: u32 = 6;

/// Moved on whenever cached locations may have gone stale.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// A range's location as found in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    addr: usize,
    len: usize,
    epoch: u64,
    node: u32,
}

thread_local! {
    static TABLE: [Cell<Option<Entry>>; 1 << INDEX_BITS] =
        const { [const { Cell::new(None) }; 1 << INDEX_BITS] };
}

/// The table index of a range (Fibonacci hashing of start and length).
fn index(addr: usize, len: usize) -> usize {
    let key = (addr as u64) ^ (len as u64).rotate_left(32);
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - INDEX_BITS)) as usize
}

/// The node cached for `addr..addr + len` by this thread, if it is still
/// valid.
pub(crate) fn lookup(addr: usize, len: usize) -> Option<u32> {
    let epoch = EPOCH.load(Ordering::Acquire);
    TABLE.with(|table| {
        table[index(addr, len)]
            .get()
            .filter(|e| e.addr == addr && e.len == len && e.epoch == epoch)
            .map(|e| e.node)
    })
}

/// Keeps `node` as the location of `addr..addr + len` for this thread,
/// found in `epoch` (read before the query, so that a move during the
/// query leaves the entry already stale); `None` (no pages) drops what was
/// kept for the range.
pub(crate) fn store(addr: usize, len: usize, epoch: u64, node: Option<u32>) {
    TABLE.with(|table| {
        let slot = &table[index(addr, len)];
        match node {
            Some(node) => slot.set(Some(Entry {
                addr,
                len,
                epoch,
                node,
            })),
            None => {
                if slot.get().is_some_and(|e| e.addr == addr && e.len == len) {
                    slot.set(None);
                }
            }
        }
    });
}

/// The current epoch, to pass to [`store`] with the answer of a query
/// started after reading it.
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// Forgets every location cached by spawns near memory ranges, in every
/// thread: the next spawn near a range queries its pages again.
///
/// mamba's own page moves ([`crate::Mamba::move_pages`], migrations) call
/// it themselves. Call it after pages moved by other means: `mbind` or `move_pages` outside mamba, the kernel's NUMA
/// balancing, or memory freed and mapped again at the same address on
/// another node.
pub fn forget_locations() {
    EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// `f`'s answer over a stretch in which no other test moved the epoch on
/// (tests of the crate run side by side, some moving pages).
#[cfg(test)]
pub(crate) fn undisturbed<T>(f: impl Fn() -> T) -> T {
    loop {
        let before = epoch();
        let value = f();
        if epoch() == before {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pages_drops_the_entry_of_its_range_only() {
        let (addr, len) = (0x7000_0030_0000, 4096);
        let kept = undisturbed(|| {
            store(addr, len, epoch(), Some(1));
            store(addr, len + 4096, epoch(), None);
            lookup(addr, len)
        });
        assert_eq!(kept, Some(1));
        store(addr, len, epoch(), None);
        assert_eq!(lookup(addr, len), None);
    }

    #[test]
    fn an_entry_is_found_for_its_exact_range_until_forgotten() {
        let (addr, len) = (0x7000_0000_1000, 1 << 16);
        let found = undisturbed(|| {
            store(addr, len, epoch(), Some(3));
            lookup(addr, len)
        });
        assert_eq!(found, Some(3));
        assert_eq!(lookup(addr, len + 1), None);
        assert_eq!(lookup(addr + 4096, len), None);
        forget_locations();
        assert_eq!(lookup(addr, len), None);
    }

    #[test]
    fn an_answer_found_before_a_move_is_stale_at_once() {
        let (addr, len) = (0x7000_0010_0000, 4096);
        let before = epoch();
        forget_locations();
        store(addr, len, before, Some(1));
        assert_eq!(lookup(addr, len), None);
    }

    #[test]
    fn entries_are_per_thread() {
        let (addr, len) = (0x7000_0020_0000, 8192);
        store(addr, len, epoch(), Some(2));
        let elsewhere = std::thread::spawn(move || lookup(addr, len))
            .join()
            .unwrap();
        assert_eq!(elsewhere, None);
    }
}
