//! The copy engine: copies between arrays in any two spaces, converting the
//! layout on the way, synchronously or in the background.
//!
//! Every path is chosen by [`route`]: both sides CPU-addressable (DRAM,
//! HBM, NVDIMM, pinned memory, and SSD tiers, which are mapped files) go
//! through the layout kernels of `mamba_transforms`, parallel and with
//! non-temporal stores for large copies. Device memory has no path yet:
//! GPU copies will be another [`Route`] behind the same calls.

use crate::allocator::Mamba;
use crate::array::Array;
use crate::error::{Error, Result};
use crate::policy::Policy;
use mamba_transforms::{CopyPlan, ExecOptions, Layout};
use std::sync::mpsc;

/// How a copy moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Both sides are CPU-addressable: the CPU layout kernels.
    Host,
}

/// The path between two arrays.
///
/// # Errors
/// [`Error::Unsupported`] when a side is device memory.
pub fn route(src: &Array<'_>, dst: &Array<'_>) -> Result<Route> {
    for space in [src.space(), dst.space()].into_iter().flatten() {
        if !space.host_accessible {
            return Err(Error::Unsupported {
                operation: "copying to or from device memory",
                space: space.id,
                tier: space.tier,
            });
        }
    }
    Ok(Route::Host)
}

/// Copies the elements of `src` into `dst`: same shape and element size,
/// any layouts, any spaces.
///
/// # Errors
/// [`Error::Layout`] for mismatched shapes or element sizes;
/// [`Error::Unsupported`] for device memory.
pub fn copy_array(src: &Array<'_>, dst: &mut Array<'_>) -> Result<()> {
    copy_array_with(src, dst, &ExecOptions::default())
}

/// [`copy_array`] with explicit threading and streaming options.
///
/// # Errors
/// As [`copy_array`].
pub fn copy_array_with(src: &Array<'_>, dst: &mut Array<'_>, opts: &ExecOptions) -> Result<()> {
    match route(src, dst)? {
        Route::Host => {
            let plan = CopyPlan::new(src.layout(), dst.layout())?;
            let layout_src = src.as_bytes();
            plan.execute_with(layout_src, dst.as_bytes_mut(), opts)?;
        }
    }
    Ok(())
}

impl Mamba {
    /// A copy of `src` in a space placed by `policy`, with `layout` (dense
    /// row-major of the same shape when `None`).
    ///
    /// # Errors
    /// Placement and copy errors; `src` is untouched.
    pub fn duplicate_array<'m>(
        &'m self,
        src: &Array<'_>,
        layout: Option<Layout>,
        policy: &Policy,
    ) -> Result<Array<'m>> {
        let layout = match layout {
            Some(l) => l,
            None => Layout::row_major(src.layout().elem_size(), src.layout().shape())?,
        };
        let mut dst = self.array(layout, policy)?;
        copy_array(src, &mut dst)?;
        Ok(dst)
    }

    /// Moves `a` to a space placed by `policy` (optionally into another
    /// layout); its old memory goes back to its pool.
    ///
    /// # Errors
    /// As [`Mamba::duplicate_array`]; on error `a` is left as it was.
    pub fn migrate_array<'m>(
        &'m self,
        a: &mut Array<'m>,
        layout: Option<Layout>,
        policy: &Policy,
    ) -> Result<()> {
        let moved = self.duplicate_array(a, layout, policy)?;
        drop(std::mem::replace(a, moved));
        Ok(())
    }
}

/// A copy running in the background; see [`copy_async`].
#[derive(Debug)]
pub struct CopyHandle {
    done: mpsc::Receiver<Finished>,
    finished: Option<Finished>,
}

type Finished = (Result<()>, Array<'static>, Array<'static>);

/// Starts copying `src` into `dst` on a background thread and returns at
/// once. The arrays travel with the copy and come back from
/// [`CopyHandle::wait`]; they must be `'static` (arrays over owned
/// allocations, from [`Mamba::array_owned`] or
/// [`Allocation::into_owned`](crate::Allocation::into_owned)), so that no
/// memory can be freed while the copy writes it.
///
/// ```
/// use mamba::{copy::copy_async, Config, Mamba, Policy, Tier};
/// use mamba_transforms::Layout;
/// let m = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
/// let dram = Policy::require(Tier::Dram);
/// let mut src = m.array_owned(Layout::row_major(4, &[64, 32])?, &dram)?;
/// src.as_typed_mut::<f32>()?.fill(2.5);
/// let dst = m.array_owned(Layout::column_major(4, &[64, 32])?, &dram)?;
/// drop(m); // the arrays keep their pools alive
/// let handle = copy_async(src, dst);
/// let (_src, dst) = handle.wait()?;
/// assert!(dst.as_typed::<f32>()?.iter().all(|&x| x == 2.5));
/// # Ok::<(), mamba::Error>(())
/// ```
pub fn copy_async(src: Array<'static>, mut dst: Array<'static>) -> CopyHandle {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("mamba-copy".into())
        .spawn(move || {
            let result = copy_array(&src, &mut dst);
            // The receiver may be gone (handle dropped): the arrays are then
            // freed here.
            let _ = tx.send((result, src, dst));
        });
    if let Err(e) = spawned {
        // The closure, its sender and the arrays are dropped: `wait` reports
        // the copy as lost.
        tracing::error!(error = %e, "cannot start a copy thread");
    }
    CopyHandle {
        done: rx,
        finished: None,
    }
}

impl CopyHandle {
    /// Whether the copy has finished (without blocking).
    pub fn is_done(&mut self) -> bool {
        if self.finished.is_none() {
            self.finished = self.done.try_recv().ok();
        }
        self.finished.is_some()
    }

    /// Blocks until the copy has finished; returns the two arrays.
    ///
    /// # Errors
    /// The copy's error, or [`Error::CopyLost`] when its thread could not
    /// run.
    pub fn wait(mut self) -> Result<(Array<'static>, Array<'static>)> {
        let finished = match self.finished.take() {
            Some(f) => f,
            None => self
                .done
                .recv()
                .map_err(|_| Error::CopyLost("the copy thread did not start or died".into()))?,
        };
        let (result, src, dst) = finished;
        result.map(|()| (src, dst))
    }
}
