//! The narrow contract between the dispatch logic and a GPU API.

use cudarc::driver::sys::CUstream;

use crate::error::KernelError;
use crate::plan::Launch;

/// What the dispatch logic needs from a GPU API: launching a planned
/// kernel and zeroing bytes, both ordered on a caller's stream. The CUDA
/// and HIP backends implement it; the unit tests implement it on host
/// memory.
pub(crate) trait Backend: Send + Sync {
    /// Which API this is.
    fn api(&self) -> crate::Api;

    /// Enqueues `launch` on `stream`.
    fn launch(&self, launch: &Launch, stream: CUstream) -> Result<(), KernelError>;

    /// Enqueues zeroing `bytes` bytes at device address `ptr` on `stream`.
    fn zero(&self, ptr: u64, bytes: usize, stream: CUstream) -> Result<(), KernelError>;
}
