//! Pinning threads to CPU sets (`sched_setaffinity`), verified with
//! `sched_getcpu`, with a guard that restores the previous mask.

use super::cpuset::CpuSet;
use super::error::{AffinityError, Result};
use super::locality::Locality;
use std::marker::PhantomData;

/// Largest CPU index a `cpu_set_t` holds, plus one.
const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;
/// How often to yield while waiting for the kernel to move the thread.
const VERIFY_TRIES: usize = 100;

/// The CPU the calling thread runs on now.
pub fn current_cpu() -> Option<u32> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).ok()
}

/// The CPUs the calling thread may run on.
///
/// # Errors
/// [`AffinityError::Os`] when the kernel refuses.
pub fn thread_affinity() -> Result<CpuSet> {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into
    // our mask; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&mask), &mut mask) };
    if rc != 0 {
        return Err(AffinityError::last_os("sched_getaffinity"));
    }
    // SAFETY: CPU_ISSET reads one bit of the mask; every index is below
    // CPU_SETSIZE.
    Ok((0..MAX_CPUS)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &mask) })
        .map(|c| c as u32)
        .collect())
}

fn set_thread_affinity(cpus: &CpuSet) -> Result<()> {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus.iter() {
        if cpu as usize >= MAX_CPUS {
            return Err(AffinityError::UnknownCpu(cpu));
        }
        // SAFETY: the index was checked against CPU_SETSIZE just above.
        unsafe { libc::CPU_SET(cpu as usize, &mut mask) };
    }
    // SAFETY: the kernel reads size_of::<cpu_set_t>() bytes of our mask;
    // pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&mask), &mask) };
    if rc != 0 {
        return Err(AffinityError::last_os("sched_setaffinity"));
    }
    Ok(())
}

/// The calling thread's binding; dropping it restores the mask the thread
/// had before. Not `Send`: it belongs to the thread it bound.
#[derive(Debug)]
#[must_use = "dropping the guard unbinds the thread at once"]
pub struct BindGuard {
    previous: CpuSet,
    bound: CpuSet,
    cpu: u32,
    _thread: PhantomData<*const ()>,
}

impl BindGuard {
    /// The CPUs the thread is bound to.
    pub fn bound(&self) -> &CpuSet {
        &self.bound
    }

    /// The mask restored on drop.
    pub fn previous(&self) -> &CpuSet {
        &self.previous
    }

    /// The CPU the thread ran on right after binding (inside the set).
    pub fn verified_cpu(&self) -> u32 {
        self.cpu
    }
}

impl Drop for BindGuard {
    fn drop(&mut self) {
        if let Err(e) = set_thread_affinity(&self.previous) {
            tracing::warn!(error = %e, "restoring the thread's CPU mask");
        }
    }
}

/// Binds the calling thread to `cpus` and checks that it then runs inside
/// them; on failure the previous mask is back.
pub(crate) fn bind_verified(cpus: &CpuSet) -> Result<BindGuard> {
    let previous = thread_affinity()?;
    set_thread_affinity(cpus)?;
    let mut cpu = current_cpu();
    for _ in 0..VERIFY_TRIES {
        if cpu.is_some_and(|c| cpus.contains(c)) {
            break;
        }
        std::thread::yield_now();
        cpu = current_cpu();
    }
    match cpu {
        Some(c) if cpus.contains(c) => Ok(BindGuard {
            previous,
            bound: cpus.clone(),
            cpu: c,
            _thread: PhantomData,
        }),
        other => {
            // Best effort: the error below is the one that matters.
            let _ = set_thread_affinity(&previous);
            Err(AffinityError::BindNotVerified {
                set: cpus.to_string(),
                cpu: other.unwrap_or(u32::MAX),
            })
        }
    }
}

/// A thread started by [`Locality::spawn_pinned`].
#[derive(Debug)]
pub struct PinnedThread<T> {
    handle: std::thread::JoinHandle<Option<T>>,
    cpu: u32,
}

impl<T> PinnedThread<T> {
    /// The CPU the thread ran on right after binding.
    pub fn verified_cpu(&self) -> u32 {
        self.cpu
    }

    /// Waits for the thread.
    ///
    /// # Errors
    /// [`AffinityError::TaskPanicked`] when it panicked.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(value)) => Ok(value),
            // Only a thread whose binding failed returns None, and no
            // PinnedThread is made for it.
            Ok(None) => Err(AffinityError::TaskLost),
            Err(p) => Err(AffinityError::TaskPanicked(super::job::panic_message(&*p))),
        }
    }
}

impl Locality {
    fn check_binding(&self, cpus: &CpuSet) -> Result<()> {
        if !self.is_real() {
            return Err(AffinityError::SimulatedTopology(format!(
                "{:?}",
                self.source()
            )));
        }
        self.check_cpus(cpus)
    }

    /// Binds the calling thread to `cpus` until the guard drops, and checks
    /// that the thread then runs on one of them.
    ///
    /// # Errors
    /// [`AffinityError::SimulatedTopology`] unless this is this machine's
    /// topology; [`AffinityError::EmptyCpuSet`],
    /// [`AffinityError::UnknownCpu`]; [`AffinityError::Os`],
    /// [`AffinityError::BindNotVerified`] (the mask is restored).
    pub fn bind_current_thread(&self, cpus: &CpuSet) -> Result<BindGuard> {
        self.check_binding(cpus)?;
        bind_verified(cpus)
    }

    /// Starts a thread bound to `cpus` for its whole life; returns once the
    /// binding is verified.
    ///
    /// # Errors
    /// As [`Locality::bind_current_thread`]; [`AffinityError::Os`] when the
    /// thread cannot start.
    pub fn spawn_pinned<F, T>(&self, cpus: &CpuSet, f: F) -> Result<PinnedThread<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.check_binding(cpus)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let set = cpus.clone();
        let handle = std::thread::Builder::new()
            .name(format!("pinned-{set}"))
            .spawn(move || match bind_verified(&set) {
                Ok(guard) => {
                    // The spawner waits for this message: it is there.
                    let _ = tx.send(Ok(guard.verified_cpu()));
                    let value = f();
                    drop(guard);
                    Some(value)
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    None
                }
            })
            .map_err(|source| AffinityError::Os {
                call: "pthread_create",
                source,
            })?;
        match rx.recv() {
            Ok(Ok(cpu)) => Ok(PinnedThread { handle, cpu }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err(AffinityError::TaskLost),
        }
    }
}
