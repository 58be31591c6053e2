//! How kernels run: threads and non-temporal stores.

use crate::kernels::Exec;

/// Whether a copy may use threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Threads {
    /// On the calling thread only.
    Serial,
    /// Split across the threads of the current rayon pool (run inside
    /// `ThreadPool::install` to choose the pool) when the copy is at least
    /// [`ExecOptions::min_parallel_bytes`] long.
    Pool,
}

/// Whether a copy writes with non-temporal stores (around the caches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Streaming {
    /// When the copy writes at least [`ExecOptions::streaming_threshold`]
    /// bytes.
    Auto,
    /// Always (where the target has them).
    Always,
    /// Never.
    Never,
}

/// Execution options of every copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecOptions {
    /// Threads.
    pub threads: Threads,
    /// Non-temporal stores.
    pub streaming: Streaming,
    /// Copies shorter than this run on one thread.
    pub min_parallel_bytes: usize,
    /// With [`Streaming::Auto`], copies at least this long use
    /// non-temporal stores. The default, 32 MiB, is a typical last-level
    /// cache and only a fallback: set it to the machine's (mamba's
    /// `Mamba::exec_options` takes it from the last-level cache size hwloc
    /// reports).
    pub streaming_threshold: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            threads: Threads::Pool,
            streaming: Streaming::Auto,
            min_parallel_bytes: 1 << 20,
            streaming_threshold: 32 << 20,
        }
    }
}

impl ExecOptions {
    /// The defaults on one thread.
    pub fn serial() -> Self {
        ExecOptions {
            threads: Threads::Serial,
            ..Self::default()
        }
    }

    /// The kernel settings for a copy of `bytes` bytes.
    pub(crate) fn exec(&self, bytes: usize) -> Exec {
        Exec {
            parallel: self.threads == Threads::Pool && bytes >= self.min_parallel_bytes,
            nt: match self.streaming {
                Streaming::Auto => bytes >= self.streaming_threshold,
                Streaming::Always => true,
                Streaming::Never => false,
            },
        }
    }
}
