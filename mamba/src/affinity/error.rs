//! The affinity module's error type.

/// Everything that can go wrong when mapping, binding or scheduling by
/// locality.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AffinityError {
    /// An error of the allocator core (page location, page moves, topology).
    #[error(transparent)]
    Mamba(#[from] crate::Error),
    /// Binding was asked through a topology that describes another machine.
    #[error(
        "cannot bind threads through a simulated topology ({0}): only this machine's \
         topology binds"
    )]
    SimulatedTopology(String),
    /// A CPU set with no CPU in it.
    #[error("the CPU set is empty")]
    EmptyCpuSet,
    /// A CPU that the topology does not have.
    #[error("CPU {0} is not in the topology")]
    UnknownCpu(u32),
    /// A NUMA node that the topology does not have.
    #[error("NUMA node {0} is not in the topology")]
    UnknownNode(u32),
    /// A domain index past the pool's domains.
    #[error("domain {domain} does not exist (there are {count})")]
    UnknownDomain {
        /// The index asked for.
        domain: usize,
        /// How many domains there are.
        count: usize,
    },
    /// A space or memory range with no CPUs near it (a directory tier).
    #[error("{0} has no NUMA locality")]
    NoLocality(String),
    /// Text that is not a list of ids such as `0-3,8`.
    #[error("{0:?} is not an id list (expected e.g. 0-3,8)")]
    BadList(String),
    /// The thread was bound but runs on a CPU outside the set.
    #[error("thread bound to CPUs {set} still runs on CPU {cpu}")]
    BindNotVerified {
        /// The requested set, as a list.
        set: String,
        /// Where the thread runs.
        cpu: u32,
    },
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Os {
        /// The call.
        call: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A task panicked; the payload's message.
    #[error("task panicked: {0}")]
    TaskPanicked(String),
    /// Tasks of a scope panicked.
    #[error("{count} task(s) of the scope panicked; first: {first}")]
    ScopePanicked {
        /// How many panicked.
        count: usize,
        /// The first panic message.
        first: String,
    },
    /// A task was dropped without running (its pool went away).
    #[error("the task was dropped before it ran")]
    TaskLost,
}

impl AffinityError {
    /// Wraps the current `errno` after a failed system call.
    pub(crate) fn last_os(call: &'static str) -> Self {
        AffinityError::Os {
            call,
            source: std::io::Error::last_os_error(),
        }
    }
}

/// `Result` with [`AffinityError`].
pub type Result<T, E = AffinityError> = std::result::Result<T, E>;
