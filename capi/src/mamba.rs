//! `mamba.h`: the node's memory spaces, placements (a policy resolved
//! once), allocations by placement, and whole-allocation copies between any
//! two tiers (host and GPU memory alike).
//!
//! Call `mamba_init` once, resolve placements with
//! `mamba_placement_prefer` or `mamba_placement_best`, allocate with
//! `mamba_alloc`, give back with `mamba_free` (a pointer mamba did not hand
//! out, or one freed already, is `MAMBA_UNKNOWN_POINTER`, never a crash).
#![allow(non_camel_case_types)]

use crate::guard::{boundary, lock, text};
use mamba::{Array, Config, Mamba, Placement, Policy, SpaceInfo, Tier};
use mamba_transforms::Layout;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};

/// The status of every `mamba_` call (`MAMBA_OK` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mamba_status {
    /// Done.
    MAMBA_OK = 0,
    /// Failed for a reason not listed below (a device error, a panic caught
    /// at the boundary).
    MAMBA_FAILED,
    /// NULL where a value is needed, a zero size, a bad alignment, an
    /// unknown tier or space index, a placement handle that is not one.
    MAMBA_INVALID_ARGUMENT,
    /// `mamba_init` has not been called (or `mamba_finalize` has).
    MAMBA_NOT_INITIALIZED,
    /// `mamba_init` was called already.
    MAMBA_ALREADY_INITIALIZED,
    /// Every space of the placement is full.
    MAMBA_OUT_OF_CAPACITY,
    /// The node has no space the policy accepts.
    MAMBA_NO_SPACE,
    /// A pointer that is not the start of a live mamba allocation.
    MAMBA_UNKNOWN_POINTER,
    /// The configuration (file or `MAMBA_*` variables) is invalid.
    MAMBA_BAD_CONFIG,
}

/// A memory tier.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mamba_tier {
    /// DRAM of a NUMA node.
    MAMBA_TIER_DRAM = 0,
    /// High-bandwidth memory (a NUMA node).
    MAMBA_TIER_HBM,
    /// Persistent memory.
    MAMBA_TIER_NVDIMM,
    /// GPU device memory (not host-accessible).
    MAMBA_TIER_GPU,
    /// Page-locked host memory registered with a GPU runtime.
    MAMBA_TIER_PINNED,
    /// A directory on a solid-state drive.
    MAMBA_TIER_SSD,
}

/// What "best" means for `mamba_placement_best`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mamba_criterion {
    /// Highest bandwidth first.
    MAMBA_HIGHEST_BANDWIDTH = 0,
    /// Lowest latency first.
    MAMBA_LOWEST_LATENCY,
    /// Largest capacity first.
    MAMBA_LARGEST_CAPACITY,
}

/// One memory space of the node (`mamba_space_get`, `mamba_alloc_space`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mamba_space {
    /// Its name (`dram0`, `hbm1`, `gpu0`, ...), NUL-terminated, truncated
    /// to 31 bytes.
    pub name: [c_char; 32],
    /// Its index, for `mamba_space_get`.
    pub index: u32,
    /// Its tier.
    pub tier: mamba_tier,
    /// Its NUMA node, or -1.
    pub numa_node: i32,
    /// Its GPU device, or -1.
    pub device: i32,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes allocated from it now.
    pub in_use: u64,
    /// Whether the CPU can read and write its memory.
    pub host_accessible: bool,
}

/// The opaque object behind a `mamba_placement` handle (never
/// dereferenced: a handle is an id).
#[repr(C)]
pub struct mamba_placement_ {
    _private: [u8; 0],
}

/// A policy resolved into candidate spaces, tried in order.
pub type mamba_placement = *mut mamba_placement_;

/// Between `mamba_init` and `mamba_finalize`.
struct Node {
    /// Leaked while in use, reclaimed by `mamba_finalize`.
    mamba: &'static Mamba,
    placements: HashMap<u64, Placement<'static>>,
    next_placement: u64,
    /// Live allocations by address. Each is an owned array of bytes (it
    /// keeps its pool alive).
    allocations: HashMap<usize, Arc<Mutex<Array<'static>>>>,
}

static NODE: Mutex<Option<Node>> = Mutex::new(None);

type Outcome<T = ()> = Result<T, mamba_status>;

fn done(outcome: Outcome) -> mamba_status {
    outcome.err().unwrap_or(mamba_status::MAMBA_OK)
}

fn error_status(e: &mamba::Error) -> mamba_status {
    use mamba::Error as E;
    match e {
        E::OutOfCapacity { .. } => mamba_status::MAMBA_OUT_OF_CAPACITY,
        E::NoSpace { .. } | E::UnknownTier(_) => mamba_status::MAMBA_NO_SPACE,
        E::ZeroSize
        | E::BadAlignment { .. }
        | E::AlignmentTooLarge { .. }
        | E::SizeTooLarge { .. }
        | E::UnknownSpace(_)
        | E::UnknownNumaNode(_) => mamba_status::MAMBA_INVALID_ARGUMENT,
        _ => mamba_status::MAMBA_FAILED,
    }
}

fn failed(e: mamba::Error) -> mamba_status {
    error_status(&e)
}

fn with_node<T>(f: impl FnOnce(&mut Node) -> Outcome<T>) -> Outcome<T> {
    let mut node = lock(&NODE);
    f(node.as_mut().ok_or(mamba_status::MAMBA_NOT_INITIALIZED)?)
}

fn tier_of(t: mamba_tier) -> Tier {
    match t {
        mamba_tier::MAMBA_TIER_DRAM => Tier::Dram,
        mamba_tier::MAMBA_TIER_HBM => Tier::Hbm,
        mamba_tier::MAMBA_TIER_NVDIMM => Tier::Nvdimm,
        mamba_tier::MAMBA_TIER_GPU => Tier::Gpu,
        mamba_tier::MAMBA_TIER_PINNED => Tier::Pinned,
        mamba_tier::MAMBA_TIER_SSD => Tier::Ssd,
    }
}

/// A C enum value read as a raw integer: values outside the enumeration
/// are refused before becoming the Rust type.
fn tier_from(raw: u32) -> Outcome<mamba_tier> {
    use mamba_tier::*;
    [
        MAMBA_TIER_DRAM,
        MAMBA_TIER_HBM,
        MAMBA_TIER_NVDIMM,
        MAMBA_TIER_GPU,
        MAMBA_TIER_PINNED,
        MAMBA_TIER_SSD,
    ]
    .get(raw as usize)
    .copied()
    .ok_or(mamba_status::MAMBA_INVALID_ARGUMENT)
}

fn c_tier(t: Tier) -> mamba_tier {
    match t {
        Tier::Dram => mamba_tier::MAMBA_TIER_DRAM,
        Tier::Hbm => mamba_tier::MAMBA_TIER_HBM,
        Tier::Nvdimm => mamba_tier::MAMBA_TIER_NVDIMM,
        Tier::Gpu => mamba_tier::MAMBA_TIER_GPU,
        Tier::Pinned => mamba_tier::MAMBA_TIER_PINNED,
        Tier::Ssd => mamba_tier::MAMBA_TIER_SSD,
    }
}

fn describe(mamba: &Mamba, info: &SpaceInfo) -> mamba_space {
    let mut name = [0 as c_char; 32];
    for (dst, src) in name.iter_mut().zip(info.name.bytes().take(31)) {
        *dst = src as c_char;
    }
    let in_use = mamba.pool(info.id).map_or(0, |p| p.stats().in_use);
    mamba_space {
        name,
        index: info.id.0,
        tier: c_tier(info.tier),
        numa_node: info.numa_node.map_or(-1, |n| n as i32),
        device: info.device.map_or(-1, |d| d as i32),
        capacity: info.capacity as u64,
        in_use: in_use as u64,
        host_accessible: info.host_accessible,
    }
}

/// A `mamba_status` as a C caller passes it: the header declares the
/// parameter as `mamba_status`, but C lets any `int` through an enum, and a
/// Rust enum holding a value outside its variants is undefined behaviour,
/// so the value is taken as the integer it is.
pub type mamba_status_value = c_int;

/// A static description of `s` (never NULL; "unknown status" for a value
/// outside the enumeration).
#[no_mangle]
pub extern "C" fn mamba_status_description(s: mamba_status_value) -> *const c_char {
    let text: &'static [u8] = match s {
        0 => b"success\0",
        1 => b"operation failed\0",
        2 => b"invalid argument\0",
        3 => b"mamba_init has not been called\0",
        4 => b"mamba_init was called already\0",
        5 => b"every space of the placement is full\0",
        6 => b"no space of the node matches the policy\0",
        7 => b"not the start of a live mamba allocation\0",
        8 => b"invalid configuration\0",
        _ => b"unknown status\0",
    };
    text.as_ptr().cast()
}

/// Discovers the node: with `config_file` NULL from the `MAMBA_*`
/// environment variables (`MAMBA_CONFIG` names a TOML file), else from
/// that TOML file (the variables still apply on top).
///
/// # Safety
/// `config_file` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn mamba_init(config_file: *const c_char) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        let mut node = lock(&NODE);
        if node.is_some() {
            return mamba_status::MAMBA_ALREADY_INITIALIZED;
        }
        let config = if config_file.is_null() {
            Config::from_env()
        } else {
            // SAFETY: non-NULL and NUL-terminated by the contract.
            match unsafe { text(config_file) } {
                Some(path) => Config::from_file(path.as_ref()),
                None => return mamba_status::MAMBA_INVALID_ARGUMENT,
            }
        };
        let Ok(config) = config else {
            return mamba_status::MAMBA_BAD_CONFIG;
        };
        match Mamba::discover(&config) {
            Ok(mamba) => {
                *node = Some(Node {
                    mamba: Box::leak(Box::new(mamba)),
                    placements: HashMap::new(),
                    next_placement: 1,
                    allocations: HashMap::new(),
                });
                mamba_status::MAMBA_OK
            }
            Err(e) => failed(e),
        }
    })
}

/// Frees every placement and every allocation left, then the node; every
/// pointer and handle of mamba is invalid afterwards.
#[no_mangle]
pub extern "C" fn mamba_finalize() -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        let Some(node) = lock(&NODE).take() else {
            return mamba_status::MAMBA_NOT_INITIALIZED;
        };
        let Node {
            mamba,
            placements,
            allocations,
            ..
        } = node;
        drop(placements);
        drop(allocations);
        // SAFETY: `mamba` came from `Box::leak` in `mamba_init`; the
        // placements that borrowed it are gone, allocations own their pools.
        drop(unsafe { Box::from_raw(std::ptr::from_ref(mamba).cast_mut()) });
        mamba_status::MAMBA_OK
    })
}

/// Sets `*count` to the number of memory spaces.
///
/// # Safety
/// `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mamba_space_count(count: *mut usize) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if count.is_null() {
            return mamba_status::MAMBA_INVALID_ARGUMENT;
        }
        done(with_node(|node| {
            // SAFETY: non-NULL and writable by the contract.
            unsafe { *count = node.mamba.spaces().count() };
            Ok(())
        }))
    })
}

/// Fills `*space` with space number `index` (0 to count - 1).
///
/// # Safety
/// `space` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mamba_space_get(index: usize, space: *mut mamba_space) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if space.is_null() {
            return mamba_status::MAMBA_INVALID_ARGUMENT;
        }
        done(with_node(|node| {
            let info = node
                .mamba
                .spaces()
                .nth(index)
                .ok_or(mamba_status::MAMBA_INVALID_ARGUMENT)?;
            // SAFETY: non-NULL and writable by the contract.
            unsafe { *space = describe(node.mamba, info) };
            Ok(())
        }))
    })
}

fn new_placement(policy: Policy, out: mamba_placement_out) -> mamba_status {
    if out.is_null() {
        return mamba_status::MAMBA_INVALID_ARGUMENT;
    }
    done(with_node(|node| {
        let placement = node.mamba.placement(&policy).map_err(failed)?;
        let id = node.next_placement;
        node.next_placement += 1;
        node.placements.insert(id, placement);
        // SAFETY: non-NULL and writable by the contracts of the callers.
        unsafe { *out = id as usize as mamba_placement };
        Ok(())
    }))
}

type mamba_placement_out = *mut mamba_placement;

fn near(policy: Policy, near_numa_node: i32) -> Policy {
    match u32::try_from(near_numa_node) {
        Ok(n) => policy.near_node(n),
        Err(_) => policy,
    }
}

/// Resolves "the first of `tiers` (`count` of them, in order of preference)
/// with room", local spaces of NUMA node `near_numa_node` first (-1: no
/// preference). Tiers the node lacks are skipped; `MAMBA_NO_SPACE` when it
/// has none of them.
///
/// # Safety
/// `tiers` points to `count` values; `placement` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mamba_placement_prefer(
    tiers: *const u32,
    count: usize,
    near_numa_node: i32,
    placement: *mut mamba_placement,
) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if tiers.is_null() || count == 0 {
            return mamba_status::MAMBA_INVALID_ARGUMENT;
        }
        // SAFETY: `count` readable values by the contract.
        let raw = unsafe { std::slice::from_raw_parts(tiers, count) };
        let tiers = match raw
            .iter()
            .map(|&t| tier_from(t))
            .collect::<Outcome<Vec<_>>>()
        {
            Ok(t) => t,
            Err(s) => return s,
        };
        let mut policy = Policy::prefer(tier_of(tiers[0]));
        for &t in &tiers[1..] {
            policy = policy.or(tier_of(t));
        }
        new_placement(near(policy, near_numa_node), placement)
    })
}

/// Resolves the node's CPU-addressable NUMA spaces ranked by `criterion`
/// (seen from NUMA node `near_numa_node`; -1: no preference).
///
/// # Safety
/// `placement` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mamba_placement_best(
    criterion: u32,
    near_numa_node: i32,
    placement: *mut mamba_placement,
) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        let policy = match criterion {
            0 => Policy::highest_bandwidth(),
            1 => Policy::lowest_latency(),
            2 => Policy::largest_capacity(),
            _ => return mamba_status::MAMBA_INVALID_ARGUMENT,
        };
        new_placement(near(policy, near_numa_node), placement)
    })
}

/// Frees a placement (allocations made through it stay valid).
#[no_mangle]
pub extern "C" fn mamba_placement_free(placement: mamba_placement) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        done(with_node(|node| {
            node.placements
                .remove(&(placement as usize as u64))
                .map(drop)
                .ok_or(mamba_status::MAMBA_INVALID_ARGUMENT)
        }))
    })
}

/// Allocates `len` bytes aligned to `align` (a power of two) from the
/// first space of `placement` with room; `*ptr` is its address (a device
/// address for GPU memory: use it with `mamba_copy` and the device's own
/// API, not from the CPU).
///
/// # Safety
/// `ptr` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mamba_alloc(
    placement: mamba_placement,
    len: usize,
    align: usize,
    ptr: *mut *mut c_void,
) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if ptr.is_null() || len == 0 {
            return mamba_status::MAMBA_INVALID_ARGUMENT;
        }
        done(with_node(|node| {
            let p = node
                .placements
                .get(&(placement as usize as u64))
                .ok_or(mamba_status::MAMBA_INVALID_ARGUMENT)?;
            let allocation = p.allocate(len, align).map_err(failed)?.into_owned();
            let addr = allocation.addr();
            let layout = Layout::row_major(1, &[len]).map_err(|_| mamba_status::MAMBA_FAILED)?;
            let array = Array::from_allocation(allocation, layout).map_err(failed)?;
            node.allocations.insert(addr, Arc::new(Mutex::new(array)));
            // SAFETY: non-NULL and writable by the contract.
            unsafe { *ptr = addr as *mut c_void };
            Ok(())
        }))
    })
}

/// Gives back an allocation of `mamba_alloc` (NULL is a no-op).
#[no_mangle]
pub extern "C" fn mamba_free(ptr: *mut c_void) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if ptr.is_null() {
            return mamba_status::MAMBA_OK;
        }
        done(with_node(|node| {
            node.allocations
                .remove(&(ptr as usize))
                .map(drop)
                .ok_or(mamba_status::MAMBA_UNKNOWN_POINTER)
        }))
    })
}

fn allocation(ptr: *const c_void) -> Outcome<Arc<Mutex<Array<'static>>>> {
    with_node(|node| {
        node.allocations
            .get(&(ptr as usize))
            .cloned()
            .ok_or(mamba_status::MAMBA_UNKNOWN_POINTER)
    })
}

/// Fills `*space` with the space that holds allocation `ptr`, and `*len`
/// (if not NULL) with its length.
///
/// # Safety
/// `space` is NULL or writable; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mamba_alloc_space(
    ptr: *const c_void,
    space: *mut mamba_space,
    len: *mut usize,
) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if space.is_null() {
            return mamba_status::MAMBA_INVALID_ARGUMENT;
        }
        done(allocation(ptr).and_then(|array| {
            let array = lock(&array);
            let a = array.allocation().ok_or(mamba_status::MAMBA_FAILED)?;
            with_node(|node| {
                // SAFETY: non-NULL (checked) and writable by the contract;
                // `len` is written only when non-NULL.
                unsafe {
                    *space = describe(node.mamba, a.space());
                    if !len.is_null() {
                        *len = a.len();
                    }
                }
                Ok(())
            })
        }))
    })
}

/// Copies allocation `src` into allocation `dst` (both of `mamba_alloc`,
/// of the same length, in any tiers: host to device, device to host,
/// between NUMA nodes), waiting until the copy is done.
#[no_mangle]
pub extern "C" fn mamba_copy(dst: *mut c_void, src: *const c_void) -> mamba_status {
    boundary(mamba_status::MAMBA_FAILED, || {
        if dst.cast_const() == src {
            return mamba_status::MAMBA_INVALID_ARGUMENT;
        }
        done((|| {
            let (d, s) = (allocation(dst)?, allocation(src)?);
            // Lock in address order: copies a -> b and b -> a at once
            // cannot wait for each other.
            let (mut d, s) = if (dst as usize) < (src as usize) {
                let d = lock(&d);
                (d, lock(&s))
            } else {
                let s = lock(&s);
                (lock(&d), s)
            };
            if d.layout().len() != s.layout().len() {
                return Err(mamba_status::MAMBA_INVALID_ARGUMENT);
            }
            mamba::copy_array(&s, &mut d).map_err(failed)
        })())
    })
}
