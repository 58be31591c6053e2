//! [`PoolStats`]: what a pool has done, counted the same way in either
//! deployment.

use super::{pool_error, Inner, Pool};
use crate::error::Result;

/// A pool's counters as an application sees them: those of the in-process
/// pool since it was made, or of the pool manager since it started (every
/// application's operations included in both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Objects on offer now.
    pub objects: u64,
    /// Offers made.
    pub offered: u64,
    /// Data handed to consumers: demands served and consumer-group records
    /// given to a member (counted when given, before the member takes it;
    /// a record given back and given again counts again).
    pub views: u64,
    /// Bytes of those views.
    pub view_bytes: u64,
}

impl PoolStats {
    /// The counters of the in-process pool `pool`.
    pub(super) fn of_local(pool: &crate::Pool) -> Result<PoolStats> {
        let s = pool.stats();
        Ok(PoolStats {
            objects: pool.offers("")?.len() as u64,
            offered: s.offered,
            views: s.demanded + s.streamed,
            view_bytes: s.bytes_zero_copy + s.bytes_copied,
        })
    }
}

impl Pool {
    /// A snapshot of the pool's counters.
    ///
    /// # Errors
    /// [`Error::PoolManager`](crate::Error::PoolManager) when the manager
    /// cannot be asked.
    pub fn stats(&self) -> Result<PoolStats> {
        match &self.inner {
            Inner::Local(p) => PoolStats::of_local(p),
            Inner::Remote(r) => {
                let s = r.call(|c| c.stats()).map_err(pool_error)?;
                Ok(PoolStats {
                    objects: s.objects,
                    offered: s.offers_total,
                    views: s.views_total,
                    view_bytes: s.view_bytes_total,
                })
            }
        }
    }
}
