//! A producer's bytes from a Python object: `bytes`, or anything NumPy
//! takes as an array (`bytearray`, `memoryview`, arrays of any dtype),
//! read in place as its contiguous bytes.

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Calls `f` with the bytes of `obj` (a contiguous copy only when `obj`
/// is not contiguous).
///
/// # Errors
/// NumPy's when `obj` is no array.
pub fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(f(bytes.as_bytes()));
    }
    let numpy = obj.py().import("numpy")?;
    let flat = numpy
        .call_method1("ascontiguousarray", (obj,))?
        .call_method1("reshape", (-1,))?
        .call_method1("view", ("u1",))?;
    let array: PyReadonlyArray1<'_, u8> = flat.extract()?;
    let slice = array
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(f(slice))
}
