//! The registry of movable data and the rebalancing pass.
//!
//! Lock order: the pass lock, then the list of entries (held only to copy
//! it), then an entry's lock. Passes only ever *try* an entry's lock, so a
//! pinned or busy entry is skipped instead of waited for; the statistics
//! lock is taken last and alone.

use super::stats::{Direction, PassReport, TieringStats, Totals};
use super::{level, Movable, Watermarks};
use crate::allocation::Allocation;
use crate::allocator::Placement;
use crate::copy::copy_bytes;
use crate::error::{Error, Result};
use crate::placement::move_pages_to;
use crate::pool::Pool;
use crate::tier::{SpaceId, Tier};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError, Weak};
use std::time::{Duration, Instant};

/// Heat halves every this long (checked at each pass), so that it counts
/// recent accesses whatever the interval between passes.
pub(super) const HEAT_HALF_LIFE: Duration = Duration::from_secs(1);

/// Accesses (decayed) that make data worth promoting: two accesses within
/// about a half-life; data read once, a cold scan, stays where it is.
pub(super) const PROMOTE_HEAT: u64 = 2;

/// Locks a mutex, ignoring poisoning (the data under these locks stays
/// consistent at every step).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One space as the tiering sees it.
struct Slot {
    pool: Pool,
    level: Option<usize>,
    marks: Mutex<Watermarks>,
}

impl Slot {
    /// Whether the space is a GPU's device memory.
    fn is_gpu(&self) -> bool {
        self.pool.info().tier == Tier::Gpu
    }

    /// Bytes held in the space now: live blocks, plus pages moved in, less
    /// pages moved out.
    fn used(&self) -> usize {
        let s = self.pool.stats();
        (s.in_use_blocks + s.moved_in).saturating_sub(s.moved_out)
    }

    fn high(&self) -> usize {
        lock(&self.marks).high_bytes(self.pool.info().capacity)
    }

    fn low(&self) -> usize {
        lock(&self.marks).low_bytes(self.pool.info().capacity)
    }
}

/// One movable allocation.
pub(super) struct Entry {
    /// The block holding the data now; locked while data is accessed,
    /// pinned or moved.
    pub(super) block: Mutex<Allocation<'static>>,
    /// Bytes of data.
    pub(super) len: usize,
    /// Alignment asked for every block it lives in.
    pub(super) align: usize,
    /// Accesses, halved every [`HEAT_HALF_LIFE`].
    heat: AtomicU64,
    /// Stamp of the last access (a counter of the registry).
    last: AtomicU64,
    /// The space holding it (updated under the lock).
    pub(super) space: AtomicU32,
    /// The GPU space it was allocated in, the only GPU space it may be
    /// promoted to; `None` for data allocated in host memory, which never
    /// goes to a GPU.
    home_gpu: Option<usize>,
    /// Whether a [`super::Pinned`] guard holds it.
    pub(super) pinned: AtomicBool,
}

/// The tiering state of one allocator.
pub(crate) struct Tiering {
    slots: Vec<Slot>,
    entries: Mutex<Vec<Weak<Entry>>>,
    /// One pass at a time.
    pass: Mutex<()>,
    totals: Mutex<Totals>,
    clock: AtomicU64,
    /// When heat was last halved.
    decayed_at: Mutex<Instant>,
    /// Whether a mover was asked to run a pass early.
    pending: Mutex<bool>,
    wake: Condvar,
}

impl std::fmt::Debug for Tiering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiering")
            .field("spaces", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// A movable allocation as one pass sees it.
struct Seen {
    entry: Arc<Entry>,
    space: usize,
    heat: u64,
    last: u64,
    /// Moved by this pass already (it moves at most once per pass).
    moved: bool,
}

impl Seen {
    fn coldness(&self) -> (u64, u64) {
        (self.heat, self.last)
    }
}

/// The outcome of one attempted move.
enum Moved {
    Done,
    Busy,
    Failed,
}

impl Tiering {
    /// The state over these pools (pool `i` serving space `i`), each with
    /// its watermarks.
    pub(crate) fn new(pools: impl IntoIterator<Item = (Pool, Watermarks)>) -> Self {
        Tiering {
            slots: pools
                .into_iter()
                .map(|(pool, marks)| Slot {
                    level: level(pool.info().tier),
                    pool,
                    marks: Mutex::new(marks),
                })
                .collect(),
            entries: Mutex::new(Vec::new()),
            pass: Mutex::new(()),
            totals: Mutex::new(Totals::default()),
            clock: AtomicU64::new(0),
            decayed_at: Mutex::new(Instant::now()),
            pending: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    fn slot(&self, space: SpaceId) -> Result<&Slot> {
        self.slots
            .get(space.0 as usize)
            .ok_or(Error::UnknownSpace(space))
    }

    pub(super) fn watermarks(&self, space: SpaceId) -> Result<Watermarks> {
        Ok(*lock(&self.slot(space)?.marks))
    }

    pub(super) fn set_watermarks(&self, space: SpaceId, marks: Watermarks) -> Result<()> {
        *lock(&self.slot(space)?.marks) = marks;
        Ok(())
    }

    pub(super) fn movable_bytes(&self, space: SpaceId) -> usize {
        self.live()
            .iter()
            .filter(|e| e.space.load(Relaxed) == space.0)
            .map(|e| e.len)
            .sum()
    }

    pub(super) fn stats(&self) -> TieringStats {
        lock(&self.totals).snapshot()
    }

    /// Counts an access to `entry`.
    pub(super) fn touch(&self, entry: &Entry) {
        entry.heat.fetch_add(1, Relaxed);
        entry
            .last
            .store(self.clock.fetch_add(1, Relaxed) + 1, Relaxed);
    }

    /// Allocates movable data through a resolved placement.
    pub(super) fn movable(
        self: &Arc<Self>,
        placement: Placement<'_>,
        len: usize,
    ) -> Result<Movable> {
        let align = if len >= crate::sys::page_size() {
            crate::sys::page_size()
        } else {
            64
        };
        let block = placement.allocate(len, align)?;
        let index = block.space().id.0 as usize;
        let slot = &self.slots[index];
        // Data must be reachable for a move: by the CPU, or by the
        // provider's reads and writes (spill files, GPU device memory).
        let reachable = slot.pool.info().host_accessible || slot.pool.block_io().is_some();
        if slot.level.is_none() || !reachable {
            let info = block.space();
            return Err(Error::Unsupported {
                operation: "movable data",
                space: info.id,
                tier: info.tier,
            });
        }
        let entry = Arc::new(Entry {
            space: AtomicU32::new(block.space().id.0),
            home_gpu: slot.is_gpu().then_some(index),
            block: Mutex::new(block.into_owned()),
            len,
            align,
            heat: AtomicU64::new(0),
            last: AtomicU64::new(0),
            pinned: AtomicBool::new(false),
        });
        {
            let mut entries = lock(&self.entries);
            entries.retain(|w| w.strong_count() > 0);
            entries.push(Arc::downgrade(&entry));
        }
        if slot.used() > slot.high() {
            self.request_pass();
        }
        Ok(Movable::new(entry, Arc::clone(self)))
    }

    /// Asks a waiting [`super::Mover`] to run a pass now.
    pub(super) fn request_pass(&self) {
        *lock(&self.pending) = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for [`Tiering::request_pass`] (or a spurious
    /// wake-up).
    pub(super) fn wait_for_request(&self, timeout: Duration) {
        let mut pending = lock(&self.pending);
        if !*pending {
            pending = self
                .wake
                .wait_timeout(pending, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *pending = false;
    }

    fn live(&self) -> Vec<Arc<Entry>> {
        lock(&self.entries)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// One rebalancing pass: demotion above the high watermarks, then
    /// promotion of data touched since the last pass.
    pub(super) fn rebalance(&self) -> PassReport {
        let _pass = lock(&self.pass);
        let start = Instant::now();
        let mut report = PassReport::default();
        let live = self.live();
        let mut seen = self.snapshot(&live, None, &mut report);
        self.demote_overfull(&mut seen, &mut report);
        self.promote_hot(&mut seen, &mut report);
        self.decay(&live);
        report.time = start.elapsed();
        lock(&self.totals).add_time(report.time, true);
        report
    }

    /// The unpinned entries of `live` but `except`, coldest first (pinned
    /// ones counted as busy in `report`).
    fn snapshot(
        &self,
        live: &[Arc<Entry>],
        except: Option<&Entry>,
        report: &mut PassReport,
    ) -> Vec<Seen> {
        let mut seen: Vec<Seen> = Vec::new();
        for entry in live {
            if except.is_some_and(|e| std::ptr::eq(e, &**entry)) {
                continue;
            }
            if entry.pinned.load(Relaxed) {
                report.busy += 1;
                continue;
            }
            seen.push(Seen {
                space: entry.space.load(Relaxed) as usize,
                heat: entry.heat.load(Relaxed),
                last: entry.last.load(Relaxed),
                entry: Arc::clone(entry),
                moved: false,
            });
        }
        seen.sort_by_key(Seen::coldness);
        seen
    }

    /// Halves the heat of every entry once per [`HEAT_HALF_LIFE`] gone by.
    fn decay(&self, live: &[Arc<Entry>]) {
        let mut at = lock(&self.decayed_at);
        let halvings = (at.elapsed().as_nanos() / HEAT_HALF_LIFE.as_nanos()) as u32;
        if halvings == 0 {
            return;
        }
        *at += HEAT_HALF_LIFE * halvings;
        for entry in live {
            // Halving never fails: the closure always returns Some.
            let _ = entry.heat.fetch_update(Relaxed, Relaxed, |h| {
                Some(h.checked_shr(halvings).unwrap_or(0))
            });
        }
    }

    /// Whether the data of `entry` may go to space `to`: any space in the
    /// tier order but GPUs, and its own GPU.
    fn may_hold(&self, entry: &Entry, to: usize) -> bool {
        !self.slots[to].is_gpu() || entry.home_gpu == Some(to)
    }

    /// Whether at least two levels of the tier order are present, so that
    /// movable data has somewhere to move.
    pub(super) fn is_tiered(&self) -> bool {
        self.levels().len() > 1
    }

    /// The levels present, fastest first, with the slots of each.
    fn levels(&self) -> Vec<Vec<usize>> {
        let mut levels: Vec<Vec<usize>> = Vec::new();
        let mut present: Vec<usize> = self.slots.iter().filter_map(|s| s.level).collect();
        present.sort_unstable();
        present.dedup();
        for l in present {
            levels.push(
                (0..self.slots.len())
                    .filter(|&i| self.slots[i].level == Some(l))
                    .collect(),
            );
        }
        levels
    }

    /// Demotes the coldest data of every space above its high watermark
    /// until it is at its low watermark, fastest tiers first (so that data
    /// pushed down can cascade further in the same pass).
    fn demote_overfull(&self, seen: &mut [Seen], report: &mut PassReport) {
        for slots in self.levels() {
            for from in slots {
                let slot = &self.slots[from];
                if slot.used() <= slot.high() {
                    continue;
                }
                let low = slot.low();
                for s in seen.iter_mut() {
                    if slot.used() <= low {
                        break;
                    }
                    if s.space == from && !s.moved {
                        self.demote(s, report);
                    }
                }
            }
        }
    }

    /// Moves one allocation to the first slower space with room under its
    /// high watermark. Returns whether it moved.
    fn demote(&self, s: &mut Seen, report: &mut PassReport) -> bool {
        let Some(from_level) = self.slots[s.space].level else {
            return false;
        };
        let mut targets: Vec<usize> = (0..self.slots.len())
            .filter(|&t| self.slots[t].level.is_some_and(|l| l > from_level))
            .filter(|&t| self.may_hold(&s.entry, t))
            .collect();
        targets.sort_by_key(|&t| self.slots[t].level);
        for to in targets {
            let slot = &self.slots[to];
            if slot.used() + s.entry.len > slot.high() {
                continue;
            }
            match self.try_move(s, to, report) {
                Moved::Done => return true,
                Moved::Busy => return false,
                Moved::Failed => continue,
            }
        }
        false
    }

    /// Promotes hot data ([`PROMOTE_HEAT`], not moved by this pass),
    /// hottest first, to the fastest space with room under its low
    /// watermark, demoting colder data there to make room.
    fn promote_hot(&self, seen: &mut [Seen], report: &mut PassReport) {
        let mut hot: Vec<usize> = (0..seen.len())
            .filter(|&i| seen[i].heat >= PROMOTE_HEAT && !seen[i].moved)
            .collect();
        hot.reverse(); // `seen` is coldest first
        for i in hot {
            let Some(at) = self.slots[seen[i].space].level else {
                continue;
            };
            let mut targets: Vec<usize> = (0..self.slots.len())
                .filter(|&t| self.slots[t].level.is_some_and(|l| l < at))
                .filter(|&t| self.may_hold(&seen[i].entry, t))
                .collect();
            targets.sort_by_key(|&t| self.slots[t].level);
            for to in targets {
                if self.make_room(seen, to, i, report)
                    && matches!(self.try_move(&mut seen[i], to, report), Moved::Done)
                {
                    break;
                }
            }
        }
    }

    /// Whether space `to` has room under its low watermark for `seen[i]`,
    /// after demoting data colder than it from there if needed.
    fn make_room(&self, seen: &mut [Seen], to: usize, i: usize, report: &mut PassReport) -> bool {
        let slot = &self.slots[to];
        let need = seen[i].entry.len;
        let room = |slot: &Slot| slot.low().saturating_sub(slot.used());
        if room(slot) >= need {
            return true;
        }
        let heat = seen[i].heat;
        let victims: Vec<usize> = (0..seen.len())
            .filter(|&v| seen[v].space == to && seen[v].heat < heat && !seen[v].moved)
            .collect();
        let colder: usize = victims.iter().map(|&v| seen[v].entry.len).sum();
        if room(slot) + colder < need {
            return false;
        }
        for v in victims {
            if room(slot) >= need {
                break;
            }
            self.demote(&mut seen[v], report);
        }
        room(slot) >= need
    }

    /// Moves one allocation to space `to` unless it is pinned or busy.
    fn try_move(&self, s: &mut Seen, to: usize, report: &mut PassReport) -> Moved {
        let mut block = match s.entry.block.try_lock() {
            Ok(b) => b,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                report.busy += 1;
                return Moved::Busy;
            }
        };
        let from = block.resident_space().id.0 as usize;
        if from == to {
            // Moved there since the pass looked (to be pinned).
            s.space = to;
            s.moved = true;
            return Moved::Done;
        }
        match self.move_block(&s.entry, &mut block, to) {
            Ok(()) => {
                s.space = to;
                s.moved = true;
                report.moves += 1;
                let bytes = s.entry.len as u64;
                match self.direction(from, to) {
                    Direction::Demotion => report.demoted_bytes += bytes,
                    Direction::Promotion => report.promoted_bytes += bytes,
                }
                Moved::Done
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    from = %self.slots[from].pool.info().name,
                    to = %self.slots[to].pool.info().name,
                    "moving movable data"
                );
                report.failed += 1;
                Moved::Failed
            }
        }
    }

    fn direction(&self, from: usize, to: usize) -> Direction {
        if self.slots[to].level > self.slots[from].level {
            Direction::Demotion
        } else {
            Direction::Promotion
        }
    }

    /// Moves the data of a locked entry to space `to`: in place between
    /// NUMA spaces, by copy otherwise (through the providers' reads and
    /// writes where the CPU cannot load a side: spill files, GPU device
    /// memory); records the move. On error the data
    /// is where and as it was.
    pub(super) fn move_block(
        &self,
        entry: &Entry,
        block: &mut Allocation<'static>,
        to: usize,
    ) -> Result<()> {
        let target = &self.slots[to].pool;
        let from = block.resident_space().id.0 as usize;
        let both_numa = block.pool().info().is_node_memory() && target.info().is_node_memory();
        let mut in_place = false;
        if both_numa {
            move_pages_to(block, target)?;
            // A block without a whole page of its own stays: copy it.
            in_place = block.resident_space().id == target.info().id;
        }
        if !in_place {
            let mut fresh = target.allocate(entry.len, entry.align)?.into_owned();
            copy_bytes(block, &mut fresh)?;
            // The old block (and any page move of it) goes back to its pool.
            drop(std::mem::replace(block, fresh));
        }
        entry.space.store(to as u32, Relaxed);
        let (f, t) = (self.slots[from].pool.info(), target.info());
        lock(&self.totals).record(
            (f.id, f.tier),
            (t.id, t.tier),
            self.direction(from, to),
            entry.len,
            in_place,
        );
        Ok(())
    }

    /// Brings a locked entry up to the fastest CPU-addressable space with
    /// room (under its high watermark if any has, else wherever a block
    /// fits), for pinning.
    pub(super) fn bring_to_host(
        &self,
        entry: &Entry,
        block: &mut Allocation<'static>,
    ) -> Result<()> {
        let start = Instant::now();
        let mut hosts: Vec<usize> = (0..self.slots.len())
            .filter(|&t| self.slots[t].level.is_some() && self.slots[t].pool.info().host_accessible)
            .collect();
        hosts.sort_by_key(|&t| self.slots[t].level);
        let under_high = hosts
            .iter()
            .filter(|&&t| self.slots[t].used() + entry.len <= self.slots[t].high());
        let mut result = Err(Error::NotHostAccessible(block.space().id));
        for &to in under_high.chain(hosts.iter()) {
            result = self.move_block(entry, block, to);
            if result.is_ok() {
                break;
            }
        }
        if result.is_err() {
            result = self.evict_for(entry, block, &hosts).or(result);
        }
        lock(&self.totals).add_time(start.elapsed(), false);
        result
    }

    /// Demotes the coldest unpinned movable data of the CPU-addressable
    /// spaces `hosts` (fastest first), one allocation at a time, until the
    /// locked `entry` fits in one of them.
    fn evict_for(
        &self,
        entry: &Entry,
        block: &mut Allocation<'static>,
        hosts: &[usize],
    ) -> Result<()> {
        // Passes never wait for an entry's lock, so waiting for the pass
        // lock while holding one cannot deadlock.
        let _pass = lock(&self.pass);
        let mut report = PassReport::default();
        let mut seen = self.snapshot(&self.live(), Some(entry), &mut report);
        let mut result = Err(Error::NotHostAccessible(block.space().id));
        for &to in hosts {
            for s in seen.iter_mut().filter(|s| s.space == to) {
                if !self.demote(s, &mut report) {
                    continue;
                }
                result = self.move_block(entry, block, to);
                if result.is_ok() {
                    return result;
                }
            }
        }
        result
    }
}
