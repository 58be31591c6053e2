//! A tier the system has no memory left for is full: placement falls back
//! as for a configured cap.

mod common;

use mamba::provider::{Chunk, Provider};
use mamba::{Backing, Error, Mamba, Policy, Pool, PoolSettings, SpaceId, SpaceInfo, Tier};
use std::alloc::Layout;
use std::sync::Mutex;

/// Heap memory up to a budget, then the error of a system out of memory.
#[derive(Debug)]
struct BudgetProvider {
    /// Bytes the "system" still has.
    left: Mutex<usize>,
}

const PAGE: usize = 4096;

impl Provider for BudgetProvider {
    fn acquire(&self, len: usize) -> mamba::Result<Chunk> {
        let mut left = self.left.lock().unwrap();
        if len > *left {
            return Err(Error::Exhausted {
                call: "test acquire",
                reason: format!("{len} bytes asked, {} left", *left),
            });
        }
        let layout = Layout::from_size_align(len, PAGE).unwrap();
        // SAFETY: `len` is non-zero (pools never ask for empty chunks).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        *left -= len;
        Ok(Chunk {
            addr: ptr as usize,
            len,
        })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let layout = Layout::from_size_align(chunk.len, PAGE).unwrap();
        // SAFETY: the chunk came from `acquire` with this layout.
        unsafe { std::alloc::dealloc(chunk.addr as *mut u8, layout) };
        *self.left.lock().unwrap() += chunk.len;
    }

    fn granule(&self) -> usize {
        PAGE
    }

    fn host_accessible(&self) -> bool {
        true
    }
}

fn space(id: u32, name: &str, tier: Tier) -> SpaceInfo {
    SpaceInfo {
        id: SpaceId(id),
        name: name.into(),
        tier,
        // No configured cap: only the system limits the space.
        capacity: usize::MAX / 4,
        numa_node: None,
        device: None,
        cpus: Vec::new(),
        bandwidth_mib_s: None,
        latency_ns: None,
        host_accessible: true,
        persistent: false,
        backing: Backing::Unbound,
    }
}

fn pool(id: u32, name: &str, tier: Tier, system_bytes: usize) -> Pool {
    Pool::new(
        space(id, name, tier),
        Box::new(BudgetProvider {
            left: Mutex::new(system_bytes),
        }),
        PoolSettings {
            chunk_size: 1 << 20,
            ..PoolSettings::default()
        },
    )
}

#[test]
fn a_tier_the_system_cannot_grow_falls_back_by_policy() {
    // HBM: the system has 256 KiB left, less than one chunk.
    let m = Mamba::from_pools(vec![
        pool(0, "hbm0", Tier::Hbm, 256 << 10),
        pool(1, "dram0", Tier::Dram, 64 << 20),
    ])
    .unwrap();
    let policy = Policy::prefer(Tier::Hbm).or(Tier::Dram);
    // The chunk is refused, the request alone fits.
    let a = m.allocate(128 << 10, 4096, &policy).unwrap();
    assert_eq!(a.space().name, "hbm0");
    // Now the system has 128 KiB for HBM: this one falls back.
    let b = m.allocate(200 << 10, 4096, &policy).unwrap();
    assert_eq!(b.space().name, "dram0");
    // Small blocks too: 300 KiB of them do not fit in the 128 KiB left.
    let small: Vec<_> = (0..300)
        .map(|_| m.allocate(1000, 8, &policy).unwrap())
        .collect();
    let hbm = m.pool(SpaceId(0)).unwrap().stats();
    assert!(hbm.reserved <= 256 << 10, "{hbm:?}");
    assert!(small.iter().any(|s| s.space().name == "dram0"));
    // Required HBM: a typed error saying the space is full.
    match m.allocate(200 << 10, 4096, &Policy::require(Tier::Hbm)) {
        Err(Error::OutOfCapacity {
            name, available: 0, ..
        }) => assert_eq!(name, "hbm0"),
        other => panic!("expected OutOfCapacity, got {other:?}"),
    }
    drop((a, b, small));
    for p in m.pools() {
        p.trim();
        assert_eq!(p.stats().reserved, 0, "{}", p.info().name);
    }
}

#[test]
fn pools_must_be_assembled_in_space_order() {
    let err = Mamba::from_pools(vec![pool(1, "dram0", Tier::Dram, 1 << 20)]).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

/// A tiny tmpfs unmounted (lazily) on drop.
struct TinyTmpfs(tempfile::TempDir);

impl TinyTmpfs {
    /// Mounts `size` bytes of tmpfs, or `None` where mounting is not
    /// allowed.
    fn mount(size: usize) -> Option<TinyTmpfs> {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().ok()?;
        let target = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        let options = std::ffi::CString::new(format!("size={size}")).ok()?;
        // SAFETY: NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        (rc == 0).then_some(TinyTmpfs(dir))
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(self.0.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; detaching affects only our mount.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn a_full_disk_is_an_allocation_error_and_falls_back() {
    let Some(disk) = TinyTmpfs::mount(1 << 20) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
        return;
    };
    // A cap far above what the file system holds: only the disk limits.
    let config = mamba::Config::from_toml_str(&format!(
        "gpu = false\n[[ssd]]\npath = {:?}\ncapacity = \"64MiB\"\n",
        disk.0.path()
    ))
    .unwrap();
    let m = Mamba::discover(&config).unwrap();
    let policy = Policy::prefer(Tier::Ssd).or(Tier::Dram);
    let mut a = m.allocate(512 << 10, 4096, &policy).unwrap();
    assert_eq!(a.tier(), Tier::Ssd);
    // Every byte is backed: writing cannot fault.
    a.as_mut_slice().unwrap().fill(1);
    let b = m.allocate(768 << 10, 4096, &policy).unwrap();
    assert_eq!(b.tier(), Tier::Dram, "the disk is full: DRAM takes it");
    assert!(matches!(
        m.allocate(768 << 10, 4096, &Policy::require(Tier::Ssd)),
        Err(Error::OutOfCapacity { available: 0, .. })
    ));
    drop((a, b));
    drop(m);
}
