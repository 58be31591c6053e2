//! n-dimensional arrays in any space: a buffer plus a
//! [`mamba_transforms::Layout`], views of tiles, and wrapping memory
//! the caller owns.
//!
//! An array in a device space (GPU memory) is a full array too: it is
//! created, viewed in tiles, copied and migrated like any other, but its
//! bytes are never handed out as a slice: the host accessors return
//! [`Error::NotHostAccessible`] and the copy engine ([`crate::copy`])
//! moves its bytes.

use crate::allocation::Allocation;
use crate::allocator::Mamba;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::tier::SpaceInfo;
use mamba_transforms::Layout;

/// Where an array's bytes are.
enum Storage<'m> {
    /// An allocation of ours.
    Owned(Allocation<'m>),
    /// Memory the caller owns (as Mamba's `mmb_array_create_wrapped`).
    Wrapped(&'m mut [u8]),
}

/// An n-d array: bytes in a space and the layout that maps indexes to them.
///
/// ```
/// use mamba::{Config, Mamba, Policy, Tier};
/// use mamba_transforms::Layout;
/// let m = Mamba::discover(&Config { gpu: false, ..Config::default() })?;
/// let mut a = m.array(Layout::row_major(8, &[4, 6])?, &Policy::require(Tier::Dram))?;
/// a.as_typed_mut::<f64>()?.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
/// // The same data in Fortran order, in another allocation.
/// let f = m.duplicate_array(&a, Some(Layout::column_major(8, &[4, 6])?), &Policy::require(Tier::Dram))?;
/// assert_eq!(f.as_typed::<f64>()?[1], 6.0);
/// # Ok::<(), mamba::Error>(())
/// ```
pub struct Array<'m> {
    storage: Storage<'m>,
    layout: Layout,
}

impl std::fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("shape", &self.layout.shape())
            .field("elem_size", &self.layout.elem_size())
            .field("space", &self.space().map(|s| s.name.as_str()))
            .finish()
    }
}

impl Mamba {
    /// A new array with `layout`, in a space placed by `policy`. Its bytes
    /// are whatever the pool held (zero for fresh memory).
    ///
    /// # Errors
    /// Placement errors; [`Error::ZeroSize`] for an empty layout.
    pub fn array(&self, layout: Layout, policy: &Policy) -> Result<Array<'_>> {
        let a = self.allocate(layout.required_len(), array_align(&layout), policy)?;
        Array::from_allocation(a, layout)
    }

    /// [`Mamba::array`] over an owned allocation
    /// ([`Allocation::into_owned`]): the array does not borrow `self` and
    /// can travel to other threads, e.g. through
    /// [`copy_async`](crate::copy_async).
    ///
    /// # Errors
    /// As [`Mamba::array`].
    pub fn array_owned(&self, layout: Layout, policy: &Policy) -> Result<Array<'static>> {
        let a = self.allocate_owned(layout.required_len(), array_align(&layout), policy)?;
        Array::from_allocation(a, layout)
    }
}

/// Alignment of an array's allocation: its element size rounded up to a
/// power of two, between 8 and 64 bytes.
fn array_align(layout: &Layout) -> usize {
    layout.elem_size().next_power_of_two().clamp(8, 64)
}

impl<'m> Array<'m> {
    /// An array over an allocation.
    ///
    /// # Errors
    /// [`Error::Layout`] when the layout does not fit the allocation or has
    /// overlapping elements.
    pub fn from_allocation(a: Allocation<'m>, layout: Layout) -> Result<Self> {
        layout.check_destination(a.len())?;
        Ok(Array {
            storage: Storage::Owned(a),
            layout,
        })
    }

    /// An array over memory the caller owns; nothing is freed on drop.
    ///
    /// # Errors
    /// [`Error::Layout`] when the layout does not fit `bytes` or has
    /// overlapping elements.
    pub fn wrap(bytes: &'m mut [u8], layout: Layout) -> Result<Self> {
        layout.check_destination(bytes.len())?;
        Ok(Array {
            storage: Storage::Wrapped(bytes),
            layout,
        })
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The space of an owned array; `None` for wrapped memory.
    pub fn space(&self) -> Option<&SpaceInfo> {
        match &self.storage {
            Storage::Owned(a) => Some(a.space()),
            Storage::Wrapped(_) => None,
        }
    }

    /// The allocation, for an owned array.
    pub fn allocation(&self) -> Option<&Allocation<'m>> {
        match &self.storage {
            Storage::Owned(a) => Some(a),
            Storage::Wrapped(_) => None,
        }
    }

    /// Whether the CPU can reach the bytes (false for device memory).
    pub fn is_host_accessible(&self) -> bool {
        self.space().is_none_or(|s| s.host_accessible)
    }

    /// All the bytes the layout addresses.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn as_bytes(&self) -> Result<&[u8]> {
        match &self.storage {
            Storage::Owned(a) => a.as_slice(),
            Storage::Wrapped(b) => Ok(b),
        }
    }

    /// All the bytes the layout addresses, mutably.
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn as_bytes_mut(&mut self) -> Result<&mut [u8]> {
        match &mut self.storage {
            Storage::Owned(a) => a.as_mut_slice(),
            Storage::Wrapped(b) => Ok(b),
        }
    }

    /// The bytes as `T`s (for dense layouts, the elements in memory order).
    ///
    /// # Errors
    /// [`Error::BadAlignment`] when `T` does not match the bytes' alignment or
    /// size; [`Error::NotHostAccessible`] for device memory.
    pub fn as_typed<T: bytemuck::Pod>(&self) -> Result<&[T]> {
        let bytes = self.as_bytes()?;
        let whole = bytes.len() - bytes.len() % std::mem::size_of::<T>().max(1);
        bytemuck::try_cast_slice(&bytes[..whole]).map_err(|_| Error::BadAlignment {
            align: std::mem::align_of::<T>(),
        })
    }

    /// The bytes as `T`s, mutably.
    ///
    /// # Errors
    /// As [`Array::as_typed`].
    pub fn as_typed_mut<T: bytemuck::Pod>(&mut self) -> Result<&mut [T]> {
        let bytes = self.as_bytes_mut()?;
        let whole = bytes.len() - bytes.len() % std::mem::size_of::<T>().max(1);
        bytemuck::try_cast_slice_mut(&mut bytes[..whole]).map_err(|_| Error::BadAlignment {
            align: std::mem::align_of::<T>(),
        })
    }

    /// A view of the tile of extent `size` starting at `start`: the same
    /// bytes, a sub-array layout. No copy.
    ///
    /// # Errors
    /// [`Error::Layout`] when the region leaves the array.
    pub fn tile(&self, start: &[usize], size: &[usize]) -> Result<ArrayView<'_>> {
        Ok(ArrayView {
            array: self,
            layout: self.layout.view(start, size)?,
            start: start.to_vec(),
        })
    }

    /// Views of every tile of `tile_shape` (smaller at the upper edges), in
    /// row-major order of tiles.
    ///
    /// # Errors
    /// [`Error::Layout`] when `tile_shape` has another rank or a zero extent.
    pub fn tiles(&self, tile_shape: &[usize]) -> Result<Tiles<'_, 'm>> {
        let shape = self.layout.shape();
        if tile_shape.len() != shape.len() {
            return Err(Error::Layout(mamba_transforms::Error::RankMismatch {
                expected: shape.len(),
                found: tile_shape.len(),
            }));
        }
        if let Some(dim) = tile_shape.iter().position(|&t| t == 0) {
            return Err(Error::Layout(mamba_transforms::Error::ZeroExtent { dim }));
        }
        let counts = shape
            .iter()
            .zip(tile_shape)
            .map(|(&n, &t)| n.div_ceil(t))
            .collect();
        Ok(Tiles {
            array: self,
            tile_shape: tile_shape.to_vec(),
            counts,
            next: 0,
        })
    }
}

/// A borrowed view of part of an array (in any space).
#[derive(Debug, Clone)]
pub struct ArrayView<'a> {
    array: &'a Array<'a>,
    layout: Layout,
    start: Vec<usize>,
}

impl<'a> ArrayView<'a> {
    /// The underlying bytes (the whole array's; the layout addresses the
    /// view's elements within them).
    ///
    /// # Errors
    /// [`Error::NotHostAccessible`] for device memory.
    pub fn bytes(&self) -> Result<&'a [u8]> {
        self.array.as_bytes()
    }

    /// The array viewed.
    pub fn array(&self) -> &'a Array<'a> {
        self.array
    }

    /// The view's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Index in the array of the view's first element.
    pub fn start(&self) -> &[usize] {
        &self.start
    }
}

/// Iterator over the tiles of an array (see [`Array::tiles`]).
pub struct Tiles<'a, 'm> {
    array: &'a Array<'m>,
    tile_shape: Vec<usize>,
    counts: Vec<usize>,
    next: usize,
}

impl<'a> Iterator for Tiles<'a, '_> {
    type Item = ArrayView<'a>;

    fn next(&mut self) -> Option<ArrayView<'a>> {
        let total: usize = self.counts.iter().product();
        if self.next >= total {
            return None;
        }
        let mut rest = self.next;
        self.next += 1;
        let mut start = vec![0; self.counts.len()];
        for d in (0..self.counts.len()).rev() {
            start[d] = (rest % self.counts[d]) * self.tile_shape[d];
            rest /= self.counts[d];
        }
        let shape = self.array.layout.shape();
        let size: Vec<usize> = (0..start.len())
            .map(|d| self.tile_shape[d].min(shape[d] - start[d]))
            .collect();
        let array: &'a Array<'_> = self.array;
        array.tile(&start, &size).ok()
    }
}
