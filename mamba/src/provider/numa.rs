//! Anonymous memory bound to NUMA nodes.

use super::{Chunk, Provider};
use crate::error::Result;
use crate::sys::{self, Advice, NumaMode};
use std::ptr::NonNull;

/// Anonymous `mmap` memory, bound with `mbind` to a set of NUMA nodes (or
/// left to the default policy when the space is simulated), optionally
/// backed by transparent huge pages.
#[derive(Debug)]
pub struct NumaProvider {
    nodes: Option<Vec<u32>>,
    mode: NumaMode,
    huge_pages: bool,
    page: usize,
}

impl NumaProvider {
    /// A provider for `nodes` of the real machine (`None`: default policy).
    pub fn new(nodes: Option<Vec<u32>>, mode: NumaMode, huge_pages: bool) -> Self {
        NumaProvider {
            nodes,
            mode,
            huge_pages,
            page: sys::page_size(),
        }
    }
}

impl Provider for NumaProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let ptr = sys::map_anonymous(len)?;
        let setup = || -> Result<()> {
            if let Some(nodes) = &self.nodes {
                sys::bind_range(ptr, len, nodes, self.mode, false)?;
            }
            if self.huge_pages && len >= 2 << 20 {
                // SAFETY: the fresh mapping holds nothing yet.
                unsafe { sys::advise(ptr, len, Advice::HugePage)? };
            }
            Ok(())
        };
        if let Err(e) = setup() {
            // SAFETY: the mapping was never handed out.
            let _ = unsafe { sys::unmap(ptr, len) };
            return Err(e);
        }
        Ok(Chunk {
            addr: ptr.as_ptr() as usize,
            len,
        })
    }

    unsafe fn release(&self, chunk: Chunk) {
        if let Some(ptr) = NonNull::new(chunk.addr as *mut u8) {
            // SAFETY: the caller guarantees the chunk is ours and unused.
            if let Err(e) = unsafe { sys::unmap(ptr, chunk.len) } {
                tracing::error!(error = %e, "releasing a NUMA chunk");
            }
        }
    }

    fn granule(&self) -> usize {
        self.page
    }

    fn host_accessible(&self) -> bool {
        true
    }

    fn rebind(&self, addr: usize, len: usize, migrate: bool) -> Result<()> {
        let Some(ptr) = NonNull::new(addr as *mut u8) else {
            return Ok(());
        };
        match &self.nodes {
            Some(nodes) => sys::bind_range(ptr, len, nodes, self.mode, migrate),
            None => sys::bind_range(ptr, len, &[], NumaMode::Default, migrate),
        }
    }
}
