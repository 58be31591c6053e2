//! Scheduling priority of the consumer threads: below the solver's, so that
//! on a busy node the analyses fill the cores' idle moments instead of
//! delaying the solver's bands.

/// Nice value of consumer threads (0 normal, 19 lowest).
const CONSUMER_NICE: i32 = 19;

/// Lowers the calling thread's priority to nice 19; best effort
/// (logged when refused).
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read their arguments; on Linux
        // PRIO_PROCESS with a thread id sets that thread's nice value.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CONSUMER_NICE)
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the consumer's priority");
        }
    }
}
