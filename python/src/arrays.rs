//! NumPy arrays over memory that Rust owns, without copies: a [`Bytes`]
//! object owns the memory and is the base object of every array over it,
//! so the memory lives as long as any array (or view of one) does.

use crate::errors::{cdo_err, tier_err};
use crate::local::Lent;
use cdo::app::View;
use numpy::ndarray::ArrayView1;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ptr::NonNull;

/// What owns the bytes.
pub enum Owned {
    /// A mamba allocation (writable).
    Allocation(mamba::Allocation<'static>),
    /// A consumer's data (read-only): an in-process pool's, or a view of
    /// a producer's shared memory (the manager is told when it is
    /// dropped).
    View(Lent<View<'static>>),
}

/// Owner of bytes viewed by NumPy arrays (the arrays' base object).
#[pyclass(frozen, module = "mambatiers")]
pub struct Bytes {
    owned: Owned,
}

impl Bytes {
    /// Owner of `owned`.
    pub fn new(owned: Owned) -> Self {
        Bytes { owned }
    }

    /// The first byte, the length, and whether arrays may write.
    fn raw(&self) -> PyResult<(*const u8, usize, bool)> {
        Ok(match &self.owned {
            Owned::Allocation(a) => (a.as_ptr().map_err(tier_err)?.cast_const(), a.len(), true),
            Owned::View(view) => {
                let bytes = view.get().bytes().map_err(cdo_err)?;
                (bytes.as_ptr(), bytes.len(), false)
            }
        })
    }

    /// An array over the bytes, without a copy: as `dtype` (default
    /// `uint8`) with `shape` (default flat); read-only for consumer data.
    ///
    /// # Errors
    /// `TierError` for memory the CPU cannot address; NumPy's errors when
    /// the bytes do not divide into `dtype` and `shape`.
    pub fn array<'py>(
        slf: &Bound<'py, Bytes>,
        dtype: Option<&Bound<'py, PyAny>>,
        shape: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ptr, len, writable) = slf.get().raw()?;
        // An empty array still needs an aligned, non-null pointer.
        let ptr = if len == 0 {
            NonNull::<u8>::dangling().as_ptr().cast_const()
        } else {
            ptr
        };
        // SAFETY: `ptr` is non-null and points to `len` initialised bytes
        // owned by `slf` (an allocation, the consumer's data, or a mapping
        // of a sealed segment), which stay in place while `slf` lives.
        let view = unsafe { ArrayView1::from_shape_ptr(len, ptr) };
        // SAFETY: the array's base is `slf`, which keeps the bytes valid
        // and in place for as long as the array lives. Rust code never
        // references bytes of a `Bytes` (it hands out no slices), so writes
        // through a writable array alias nothing; consumer bytes are given
        // read-only (below), and NumPy refuses to make an array writable
        // again when its base is not a writable buffer.
        let array = unsafe { PyArray1::borrow_from_array(&view, slf.clone().into_any()) };
        if !writable {
            let kwargs = PyDict::new(slf.py());
            kwargs.set_item("write", false)?;
            array.call_method("setflags", (), Some(&kwargs))?;
        }
        let typed = match dtype {
            Some(dtype) => array.call_method1("view", (dtype,))?,
            None => array.into_any(),
        };
        match shape {
            // Our bytes are contiguous: `reshape` views, never copies.
            Some(shape) => typed.call_method1("reshape", (shape,)),
            None => Ok(typed),
        }
    }
}
