//! Asymmetric fences: a nearly free fence for a thread's own hot path, paid
//! for by a heavy fence on the rare path that must synchronise with it.
//!
//! A [`light`] fence on one thread and a [`heavy`] fence on another order
//! memory like two sequentially consistent fences. With the Linux
//! `membarrier` system call (private expedited command) the light fence only
//! stops the compiler: the heavy one interrupts every running thread of the
//! process, which executes a full barrier on its behalf. Where `membarrier`
//! is missing or refused (and under Miri) both sides are real
//! `SeqCst` fences.

use std::sync::atomic::{compiler_fence, fence, AtomicBool, Ordering};
use std::sync::Once;

/// Whether the process registered for private expedited `membarrier`.
static ASYMMETRIC: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();

/// Chooses the kind of fences once per process; must run before any
/// [`light`] fence that a [`heavy`] one has to pair with (pools call it
/// when they are created, before any thread can use them).
pub(super) fn init() {
    INIT.call_once(|| ASYMMETRIC.store(register(), Ordering::Relaxed));
}

/// `membarrier` commands.
#[cfg(all(target_os = "linux", not(miri)))]
const QUERY: libc::c_long = 0;
#[cfg(all(target_os = "linux", not(miri)))]
const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(all(target_os = "linux", not(miri)))]
const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

#[cfg(all(target_os = "linux", not(miri)))]
fn register() -> bool {
    // SAFETY: membarrier takes no pointers; QUERY only reports support.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    let both = PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED;
    // SAFETY: as above; registering only enables the command for this
    // process.
    let ok = supported >= 0
        && supported & both == both
        && unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0;
    tracing::debug!(membarrier = ok, "asymmetric fences");
    ok
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn register() -> bool {
    false
}

/// The cheap side.
#[inline(always)]
pub(super) fn light() {
    if ASYMMETRIC.load(Ordering::Relaxed) {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The expensive side. False when it could not be issued (the kernel
/// refused `membarrier` after registering the process, which it documents
/// it does not do): the caller must then not rely on the pairing.
#[must_use]
pub(super) fn heavy() -> bool {
    #[cfg(all(target_os = "linux", not(miri)))]
    if ASYMMETRIC.load(Ordering::Relaxed) {
        // SAFETY: membarrier takes no pointers.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
        if rc != 0 {
            tracing::error!(
                error = %std::io::Error::last_os_error(),
                "membarrier failed after registration"
            );
        }
        return rc == 0;
    }
    fence(Ordering::SeqCst);
    true
}
