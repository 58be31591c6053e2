//! The copy engine: copies between arrays in any two spaces, converting the
//! layout on the way, synchronously or in the background.
//!
//! Every path is chosen by [`route`]:
//!
//! | route | when | how |
//! |---|---|---|
//! | [`Route::Host`] | both sides CPU-addressable (DRAM, HBM, NVDIMM, pinned, SSD mappings) | the layout kernels of `mamba_transforms`, parallel, non-temporal stores for large copies |
//! | [`Route::HostToDevice`] | host to GPU memory | one DMA from pinned memory; through the device's pinned staging ring ([`crate::gpu::StagingConfig`]) from pageable memory |
//! | [`Route::DeviceToHost`] | GPU memory to host | the same, the other way |
//! | [`Route::DeviceToDevice`] | GPU to GPU memory | one DMA on the device, or a peer copy between two devices |
//!
//! Same-layout copies with a device side are plain DMA of the layout's
//! bytes. Layout-converting copies with a device side convert on the side
//! where it is cheaper:
//!
//! - Between two arrays of one device, and between host and device memory
//!   for arrays of at least [`DEVICE_CONVERSION_MIN`] bytes, the device's
//!   [`DeviceConverter`](crate::gpu::DeviceConverter) converts on the
//!   device when it takes the pair of layouts: on CUDA devices that is the
//!   `mamba-gpu-kernels` kernels (strided layouts; tiled layouts, and
//!   machines without NVRTC, keep the host path), counted by
//!   [`GpuDevice::device_conversions`]. Between host and device the bytes
//!   cross as they are, through a scratch block of the device's pool;
//!   towards the host only into a layout without gaps (a download would
//!   overwrite them).
//! - Otherwise the host converts, in a host temporary that the staging
//!   ring carries (no memory is page-locked per copy): the device bytes
//!   are brought to the host (when the device is the source, or when the
//!   destination layout leaves gaps whose bytes must survive), converted
//!   by the CPU kernels, and sent back.

use crate::allocation::Allocation;
use crate::allocator::Mamba;
use crate::array::{Array, ArrayView};
use crate::error::{Error, Result};
use crate::gpu::{DevicePtr, GpuDevice, Transfer};
use crate::policy::Policy;
use mamba_transforms::{CopyPlan, ExecOptions, Layout};
use std::sync::Arc;

/// How a copy moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Both sides are CPU-addressable: the CPU layout kernels.
    Host,
    /// Host memory to device memory.
    HostToDevice {
        /// The host side is pinned: straight DMA, no staging.
        pinned: bool,
    },
    /// Device memory to host memory.
    DeviceToHost {
        /// The host side is pinned: straight DMA, no staging.
        pinned: bool,
    },
    /// Device memory to device memory.
    DeviceToDevice {
        /// The two sides are on two devices (a peer copy).
        peer: bool,
    },
}

/// Where one side of a copy is.
enum Place {
    /// CPU-addressable; `pinned` when a GPU can DMA it directly.
    Host { pinned: bool },
    /// Device memory at `ptr`.
    Device { gpu: Arc<GpuDevice>, ptr: DevicePtr },
}

fn place(a: &Array<'_>) -> Result<Place> {
    match a.allocation() {
        Some(alloc) => place_of(alloc),
        None => Ok(Place::Host { pinned: false }),
    }
}

/// Where an allocation's memory is.
fn place_of(alloc: &Allocation<'_>) -> Result<Place> {
    let gpu = alloc.pool().gpu();
    let space = alloc.space();
    if space.host_accessible {
        return Ok(Place::Host {
            pinned: gpu.is_some(),
        });
    }
    match gpu {
        Some(gpu) => Ok(Place::Device {
            gpu,
            ptr: DevicePtr(alloc.addr() as u64),
        }),
        None => Err(Error::Unsupported {
            operation: "copying device memory without a GPU runtime",
            space: space.id,
            tier: space.tier,
        }),
    }
}

fn route_of(src: &Place, dst: &Place) -> Route {
    match (src, dst) {
        (Place::Host { .. }, Place::Host { .. }) => Route::Host,
        (Place::Host { pinned }, Place::Device { .. }) => Route::HostToDevice { pinned: *pinned },
        (Place::Device { .. }, Place::Host { pinned }) => Route::DeviceToHost { pinned: *pinned },
        (Place::Device { gpu: a, .. }, Place::Device { gpu: b, .. }) => Route::DeviceToDevice {
            peer: a.ordinal() != b.ordinal(),
        },
    }
}

/// The path between two arrays.
///
/// # Errors
/// [`Error::Unsupported`] for device memory without a GPU runtime (a HIP
/// space).
pub fn route(src: &Array<'_>, dst: &Array<'_>) -> Result<Route> {
    Ok(route_of(&place(src)?, &place(dst)?))
}

/// Copies the elements of `src` into `dst`: same shape and element size,
/// any layouts, any spaces, with [`ExecOptions::default`] (its streaming
/// threshold is a fallback constant: pass [`Mamba::exec_options`] to
/// [`copy_array_with`] for the node's own).
///
/// # Errors
/// [`Error::Layout`] for mismatched shapes or element sizes;
/// [`Error::Unsupported`] for device memory without a GPU runtime; the GPU
/// runtime's errors.
pub fn copy_array(src: &Array<'_>, dst: &mut Array<'_>) -> Result<()> {
    copy_array_with(src, dst, &ExecOptions::default())
}

/// [`copy_array`] with explicit threading and streaming options (for the
/// CPU kernels).
///
/// # Errors
/// As [`copy_array`].
pub fn copy_array_with(src: &Array<'_>, dst: &mut Array<'_>, opts: &ExecOptions) -> Result<()> {
    let (src_layout, dst_layout) = (src.layout().clone(), dst.layout().clone());
    copy_between(src, &src_layout, dst, &dst_layout, opts)
}

/// Copies the elements of the tile `src` (of an array in any space) into
/// `dst`, which has the tile's shape.
///
/// # Errors
/// As [`copy_array`].
pub fn copy_tile(src: &ArrayView<'_>, dst: &mut Array<'_>) -> Result<()> {
    let dst_layout = dst.layout().clone();
    copy_between(
        src.array(),
        src.layout(),
        dst,
        &dst_layout,
        &ExecOptions::default(),
    )
}

/// Copies the elements of `src` into the tile of `dst` that starts at
/// `start` and has `src`'s shape; the rest of `dst` is left as it was.
///
/// # Errors
/// As [`copy_array`]; [`Error::Layout`] when the tile leaves `dst`.
pub fn copy_into_tile(src: &Array<'_>, dst: &mut Array<'_>, start: &[usize]) -> Result<()> {
    let dst_layout = dst.layout().view(start, src.layout().shape())?;
    let src_layout = src.layout().clone();
    copy_between(src, &src_layout, dst, &dst_layout, &ExecOptions::default())
}

/// Largest bounce buffer of [`copy_bytes`] between two spaces that the
/// CPU addresses neither of.
const BOUNCE: usize = 4 << 20;

/// Copies the bytes of `src` into `dst`, an allocation of the same length,
/// whatever their spaces:
///
/// - between CPU-addressable spaces, a memory copy;
/// - between host and GPU memory, one DMA from or to pinned memory, and
///   through the device's staging ring for pageable memory;
/// - between two GPU allocations, a copy on the device, or a peer copy
///   between two devices;
/// - otherwise (SSD spill files, device memory that only byte reads and
///   writes reach), the spaces' own reads and writes, through a bounce
///   buffer of at most 4 MiB when the CPU addresses neither side.
///
/// This is what [`Mamba::duplicate`] and [`Mamba::migrate`] copy with.
///
/// # Errors
/// [`Error::OutOfBounds`] when the lengths differ (nothing is copied); the
/// device's or the disk's errors; [`Error::NotHostAccessible`] for memory
/// that no route reaches.
pub fn copy_bytes(src: &Allocation<'_>, dst: &mut Allocation<'_>) -> Result<()> {
    let len = src.len();
    if dst.len() != len {
        return Err(Error::OutOfBounds {
            requested: len,
            available: dst.len(),
        });
    }
    match (place_of(src), place_of(dst)) {
        (Ok(Place::Host { pinned }), Ok(Place::Device { gpu, ptr })) => {
            let bytes = src.as_slice()?;
            // SAFETY: `src` is borrowed for the call, which waits, and
            // `dst` (the device range) is borrowed mutably.
            unsafe { gpu.upload(ptr, bytes.as_ptr(), len, pinned) }?;
        }
        (Ok(Place::Device { gpu, ptr }), Ok(Place::Host { pinned })) => {
            let bytes = dst.as_mut_slice()?;
            // SAFETY: `dst` is borrowed mutably for the call, which waits.
            unsafe { gpu.download(bytes.as_mut_ptr(), ptr, len, pinned) }?;
        }
        (Ok(Place::Device { gpu: sg, ptr: sp }), Ok(Place::Device { gpu: dg, ptr: dp })) => {
            // SAFETY: both allocations are borrowed (`dst` mutably) until
            // `finish` has waited for the copy.
            unsafe { sg.enqueue_device_copy(&dg, dp, sp, len) }?;
            sg.finish()?;
        }
        // Host memory on both sides (a memory copy), or spaces reached
        // only by their own reads and writes.
        _ => copy_by_reads_and_writes(src, dst)?,
    }
    Ok(())
}

/// [`copy_bytes`] through the spaces' byte reads and writes: directly when
/// the CPU addresses either side, through a bounce buffer otherwise.
fn copy_by_reads_and_writes(src: &Allocation<'_>, dst: &mut Allocation<'_>) -> Result<()> {
    if let Ok(bytes) = src.as_slice() {
        return dst.write_bytes(0, bytes);
    }
    let len = src.len();
    if let Ok(bytes) = dst.as_mut_slice() {
        return src.read_bytes(0, bytes);
    }
    let mut bounce = vec![0u8; len.min(BOUNCE)];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(bounce.len());
        src.read_bytes(offset, &mut bounce[..n])?;
        dst.write_bytes(offset, &bounce[..n])?;
        offset += n;
    }
    Ok(())
}

/// Whether every byte up to `required_len` belongs to an element (no
/// gaps whose bytes a copy must keep).
fn covers(layout: &Layout) -> bool {
    layout.offset() == 0 && layout.len() * layout.elem_size() == layout.required_len()
}

/// The elements of `src` (laid out by `src_layout` in its bytes) into
/// `dst` (by `dst_layout`).
fn copy_between(
    src: &Array<'_>,
    src_layout: &Layout,
    dst: &mut Array<'_>,
    dst_layout: &Layout,
    opts: &ExecOptions,
) -> Result<()> {
    let plan = CopyPlan::new(src_layout, dst_layout)?;
    let (from, to) = (place(src)?, place(dst)?);
    let same = src_layout == dst_layout;
    match (from, to) {
        (Place::Host { .. }, Place::Host { .. }) => {
            plan.execute_with(src.as_bytes()?, dst.as_bytes_mut()?, opts)?;
        }
        (Place::Host { pinned }, Place::Device { gpu, ptr }) => {
            let bytes = src.as_bytes()?;
            if same {
                let len = src_layout.required_len();
                // SAFETY: `bytes` is borrowed for the call, which waits.
                unsafe { gpu.upload(ptr, bytes.as_ptr(), len, pinned) }?;
            } else if !convert_after_upload(&gpu, dst, bytes, pinned, src_layout, dst_layout, ptr)?
            {
                let mut tmp = host_destination(&gpu, ptr, dst_layout)?;
                plan.execute_with(bytes, &mut tmp, opts)?;
                // SAFETY: `tmp` lives until the call (which waits) returns.
                unsafe { gpu.upload(ptr, tmp.as_ptr(), tmp.len(), false) }?;
            }
        }
        (Place::Device { gpu, ptr }, Place::Host { pinned }) => {
            if same {
                let bytes = dst.as_bytes_mut()?;
                let len = src_layout.required_len();
                // SAFETY: `bytes` is borrowed mutably for the call.
                unsafe { gpu.download(bytes.as_mut_ptr(), ptr, len, pinned) }?;
            } else if !convert_before_download(&gpu, src, dst, pinned, src_layout, dst_layout, ptr)?
            {
                let tmp = host_copy_of(&gpu, ptr, src_layout.required_len())?;
                plan.execute_with(&tmp, dst.as_bytes_mut()?, opts)?;
            }
        }
        (Place::Device { gpu: sg, ptr: sp }, Place::Device { gpu: dg, ptr: dp }) => {
            if same {
                // SAFETY: both arrays are borrowed for the call, which waits.
                unsafe { sg.enqueue_device_copy(&dg, dp, sp, src_layout.required_len()) }?;
                sg.finish()?;
            } else if !(Arc::ptr_eq(&sg, &dg)
                && sg.convert_on_device(src_layout, dst_layout, sp, dp)?)
            {
                let tmp_src = host_copy_of(&sg, sp, src_layout.required_len())?;
                let mut tmp = host_destination(&dg, dp, dst_layout)?;
                plan.execute_with(&tmp_src, &mut tmp, opts)?;
                // SAFETY: `tmp` lives until the call (which waits) returns.
                unsafe { dg.upload(dp, tmp.as_ptr(), tmp.len(), false) }?;
            }
        }
    }
    Ok(())
}

/// Smallest array (in bytes of its source layout) whose layout conversion
/// between host and device memory runs on the device: below it, the
/// device's launch and the extra pass over device memory cost more than
/// the CPU's conversion saves.
pub const DEVICE_CONVERSION_MIN: usize = 1 << 20;

/// A scratch block of `len` bytes in the device pool of `a` (device memory
/// of the copy's device) and its address, for a conversion on the device
/// of a source of `source_len` bytes: `None`, and the host converts, when
/// that is not worth it (a source under [`DEVICE_CONVERSION_MIN`]), when
/// the device has no converter, or when its pool has no room.
fn device_scratch<'p>(
    gpu: &GpuDevice,
    a: &'p Array<'_>,
    source_len: usize,
    len: usize,
) -> Option<(Allocation<'p>, DevicePtr)> {
    if source_len < DEVICE_CONVERSION_MIN || !gpu.has_converter() {
        return None;
    }
    let scratch = a.allocation()?.pool().allocate(len, 256).ok()?;
    let ptr = DevicePtr(scratch.addr() as u64);
    Some((scratch, ptr))
}

/// A host-to-device copy that converts the layout: for large arrays, the
/// source bytes go to a scratch block of the destination's device pool as
/// they are, and the device's converter writes them into `dst` (at
/// `dst_ptr`) in its layout. False, with nothing written to `dst`, when the
/// host converts instead (see [`device_scratch`]), or when the converter
/// declines the pair of layouts (tiled ones): the upload to the scratch
/// block was then for nothing.
fn convert_after_upload(
    gpu: &Arc<GpuDevice>,
    dst: &Array<'_>,
    bytes: &[u8],
    pinned: bool,
    src_layout: &Layout,
    dst_layout: &Layout,
    dst_ptr: DevicePtr,
) -> Result<bool> {
    let len = src_layout.required_len();
    let Some((_scratch, scratch_ptr)) = device_scratch(gpu, dst, len, len) else {
        return Ok(false);
    };
    // SAFETY: `bytes` is borrowed for the call, which waits; the scratch
    // block is ours until it drops on return.
    unsafe { gpu.upload(scratch_ptr, bytes.as_ptr(), len, pinned) }?;
    gpu.convert_on_device(src_layout, dst_layout, scratch_ptr, dst_ptr)
}

/// A device-to-host copy that converts the layout: for large arrays whose
/// destination layout has no gaps (every byte downloaded is an element),
/// the device's converter writes `src` (at `src_ptr`) into a scratch block
/// of its device pool in the destination's layout, and that block comes
/// down as it is. False, with nothing written to `dst`, when the host
/// converts instead (see [`device_scratch`]), or when the converter
/// declines the pair of layouts.
fn convert_before_download(
    gpu: &Arc<GpuDevice>,
    src: &Array<'_>,
    dst: &mut Array<'_>,
    pinned: bool,
    src_layout: &Layout,
    dst_layout: &Layout,
    src_ptr: DevicePtr,
) -> Result<bool> {
    let len = dst_layout.required_len();
    if !covers(dst_layout) {
        return Ok(false);
    }
    let Some((_scratch, scratch_ptr)) = device_scratch(gpu, src, src_layout.required_len(), len)
    else {
        return Ok(false);
    };
    if !gpu.convert_on_device(src_layout, dst_layout, src_ptr, scratch_ptr)? {
        return Ok(false);
    }
    let bytes = dst.as_bytes_mut()?;
    // SAFETY: `bytes` is borrowed mutably for the call, which waits; the
    // scratch block lives until it drops on return.
    unsafe { gpu.download(bytes.as_mut_ptr(), scratch_ptr, len, pinned) }?;
    Ok(true)
}

/// Host memory in which to build the device array at `ptr` (layout
/// `layout`) before uploading it: a copy of its bytes when the layout
/// leaves gaps whose bytes must survive, fresh memory otherwise. Ordinary
/// memory, which the device's pinned staging ring carries: page-locking a
/// temporary for each copy would cost more than the ring's memory copy.
fn host_destination(gpu: &Arc<GpuDevice>, ptr: DevicePtr, layout: &Layout) -> Result<Vec<u8>> {
    if covers(layout) {
        Ok(vec![0; layout.required_len()])
    } else {
        host_copy_of(gpu, ptr, layout.required_len())
    }
}

/// A host copy of `len` device bytes at `ptr`, through the staging ring
/// (see [`host_destination`]).
fn host_copy_of(gpu: &Arc<GpuDevice>, ptr: DevicePtr, len: usize) -> Result<Vec<u8>> {
    let mut tmp = vec![0; len];
    // SAFETY: `tmp` is borrowed mutably for the call, which waits.
    unsafe { gpu.download(tmp.as_mut_ptr(), ptr, len, false) }?;
    Ok(tmp)
}

impl Mamba {
    /// A copy of `src` in a space placed by `policy`, with `layout` (dense
    /// row-major of the same shape when `None`), streaming above this
    /// node's threshold ([`Mamba::exec_options`]).
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
        copy_array_with(src, &mut dst, &self.exec_options())?;
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
pub type CopyHandle = Transfer<(Array<'static>, Array<'static>)>;

/// Starts copying `src` into `dst` and returns at once. The arrays travel
/// with the copy and come back from [`Transfer::wait`]; they must be
/// `'static` (arrays over owned allocations, from [`Mamba::array_owned`]
/// or [`Allocation::into_owned`](crate::Allocation::into_owned)), so that
/// no memory can be freed while the copy writes it.
///
/// Copies that are pure DMA (same layout, with pinned host memory or
/// between device arrays) are enqueued on the device's copy stream and
/// complete with an event; every other copy runs on a background thread.
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
    match dma_only(&src, &dst) {
        Ok(Some(gpu)) => {
            let enqueued = enqueue_dma(&src, &mut dst);
            match enqueued {
                Ok(()) => Transfer::on_device(gpu, (src, dst)),
                Err(e) => Transfer::ready(gpu.finish().and(Err(e))),
            }
        }
        Ok(None) => Transfer::on_thread(move || {
            copy_array(&src, &mut dst)?;
            Ok((src, dst))
        }),
        Err(e) => Transfer::ready(Err(e)),
    }
}

/// The device whose copy stream carries the copy, when it is DMA only.
fn dma_only(src: &Array<'_>, dst: &Array<'_>) -> Result<Option<Arc<GpuDevice>>> {
    if src.layout() != dst.layout() {
        return Ok(None);
    }
    CopyPlan::new(src.layout(), dst.layout())?;
    Ok(match (place(src)?, place(dst)?) {
        (Place::Host { pinned: true }, Place::Device { gpu, .. })
        | (Place::Device { gpu, .. }, Place::Host { pinned: true })
        | (Place::Device { gpu, .. }, Place::Device { .. }) => Some(gpu),
        _ => None,
    })
}

/// Enqueues the DMA of a copy [`dma_only`] accepted.
fn enqueue_dma(src: &Array<'_>, dst: &mut Array<'_>) -> Result<()> {
    let len = src.layout().required_len();
    match (place(src)?, place(dst)?) {
        (Place::Host { .. }, Place::Device { gpu, ptr }) => {
            let bytes = src.as_bytes()?;
            // SAFETY: pinned; the transfer owns `src` until the copy stream
            // has passed this copy.
            unsafe { gpu.enqueue_upload(ptr, bytes.as_ptr(), len, true) }
        }
        (Place::Device { gpu, ptr }, Place::Host { .. }) => {
            let bytes = dst.as_bytes_mut()?.as_mut_ptr();
            // SAFETY: pinned and owned by the transfer (nobody reads or
            // writes it) until the copy stream has passed this copy.
            unsafe {
                gpu.runtime()
                    .copy_dtoh_async(bytes, ptr, len, gpu.stream()?)
            }
        }
        (Place::Device { gpu: sg, ptr: sp }, Place::Device { gpu: dg, ptr: dp }) => {
            // SAFETY: the transfer owns both arrays until the copy stream
            // has passed this copy.
            unsafe { sg.enqueue_device_copy(&dg, dp, sp, len) }
        }
        _ => Err(Error::CopyLost("not a DMA-only copy".into())),
    }
}
