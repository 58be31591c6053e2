//! CDO attribute values between Python and Rust: `bool`, `int`, `float`,
//! `str` and lists of them; timestamps come out as integer nanoseconds
//! since the Unix epoch.

use cdo::Value;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The attribute value of a Python object.
///
/// # Errors
/// `TypeError` for other types, `OverflowError` for integers beyond 64 bits.
pub fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Int(i));
        }
        return obj
            .extract::<u64>()
            .map(Value::UInt)
            .map_err(|_| PyOverflowError::new_err("attribute integers fit in 64 bits"));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Value::Float(obj.extract()?));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::Str(obj.extract()?));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let items = obj
            .try_iter()?
            .map(|item| to_value(&item?))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Value::List(items));
    }
    Err(PyTypeError::new_err(format!(
        "an attribute value is a bool, int, float, str or list of them, not {}",
        obj.get_type().name()?
    )))
}

/// The Python object of an attribute value.
pub fn from_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::UInt(u) => u.into_pyobject(py)?.into_any(),
        Value::Float(f) => f.into_pyobject(py)?.into_any(),
        Value::Str(s) => s.into_pyobject(py)?.into_any(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Timestamp(t) => t.0.into_pyobject(py)?.into_any(),
        Value::List(items) => {
            let items = items
                .iter()
                .map(|v| from_value(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
    })
}

/// A dict of attributes (keys as the pool spells them).
pub fn to_dict<'py, 'a>(
    py: Python<'py>,
    attrs: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in attrs {
        dict.set_item(k, from_value(py, v)?)?;
    }
    Ok(dict)
}
