//! Page-locked host memory placed near a GPU.

use super::{Chunk, Provider};
use crate::error::Result;
use crate::sys::PreferNode;

/// Runs another provider's allocations with the calling thread preferring
/// one NUMA node. GPU runtimes allocate and lock pinned host memory on the
/// calling thread, so its pages come from that node (the GPU's nearest)
/// while it has room; `mamba::locate` shows where they landed.
#[derive(Debug)]
pub struct NearNode {
    inner: Box<dyn Provider>,
    node: u32,
}

impl NearNode {
    /// `inner`'s memory, allocated preferring `node` (an OS index of this
    /// machine).
    pub fn new(inner: Box<dyn Provider>, node: u32) -> Self {
        NearNode { inner, node }
    }
}

impl Provider for NearNode {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let _prefer = PreferNode::set(self.node)?;
        self.inner.acquire(len)
    }

    unsafe fn release(&self, chunk: Chunk) {
        // SAFETY: the chunk came from `inner` through `acquire`; the caller
        // guarantees the rest.
        unsafe { self.inner.release(chunk) }
    }

    fn granule(&self) -> usize {
        self.inner.granule()
    }

    fn host_accessible(&self) -> bool {
        self.inner.host_accessible()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::sys;
    use std::ptr::NonNull;

    /// Maps and touches its memory at once, as a runtime that locks pages
    /// at allocation does.
    #[derive(Debug)]
    struct Touching;

    impl Provider for Touching {
        fn acquire(&self, len: usize) -> Result<Chunk> {
            let ptr = sys::map_anonymous(len)?;
            // SAFETY: the fresh mapping is ours and `len` bytes long.
            unsafe { std::ptr::write_bytes(ptr.as_ptr(), 1, len) };
            Ok(Chunk {
                addr: ptr.as_ptr() as usize,
                len,
            })
        }

        unsafe fn release(&self, chunk: Chunk) {
            let ptr = NonNull::new(chunk.addr as *mut u8).unwrap();
            // SAFETY: the caller guarantees the chunk is ours and unused.
            unsafe { sys::unmap(ptr, chunk.len).unwrap() };
        }

        fn granule(&self) -> usize {
            sys::page_size()
        }

        fn host_accessible(&self) -> bool {
            true
        }
    }

    #[test]
    fn pages_land_on_the_preferred_node_and_bad_nodes_are_typed_errors() {
        let p = NearNode::new(Box::new(Touching), 0);
        let len = 4 * sys::page_size();
        let c = p.acquire(len).unwrap();
        let nodes = sys::page_nodes(c.addr, c.len, None).unwrap();
        assert!(nodes.iter().all(|&n| n == 0), "{nodes:?}");
        // SAFETY: the chunk came from `p` and is not used afterwards.
        unsafe { p.release(c) };
        let far = NearNode::new(Box::new(Touching), 5000);
        assert!(matches!(
            far.acquire(len),
            Err(Error::UnknownNumaNode(5000))
        ));
    }
}
