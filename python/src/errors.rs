//! The exception hierarchy: every error of mamba and cdo becomes an
//! instance of a subclass of `MambaError` carrying the typed error's
//! message.
//!
//! ```text
//! MambaError
//! ├── TierError              memory tiers and allocations (mamba::Error)
//! └── CdoError               Core Data Objects
//!     ├── InvalidStateError  a call out of order (seal after offer, ...)
//!     ├── InvalidNameError   a name that cannot name a CDO
//!     ├── CdoAttributeError  unknown, read-only, mistyped or missing attribute
//!     ├── SelectorError      a selector that does not parse
//!     ├── CdoTimeoutError    a bounded wait ran out
//!     └── PoolManagerError   the pool manager refused or the connection failed
//! ```

use cdo::ipc::client::ClientError;
use cdo::ipc::wire::ErrorCode;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    mambatiers,
    MambaError,
    PyException,
    "Base of every error of mambatiers."
);
create_exception!(
    mambatiers,
    TierError,
    MambaError,
    "A memory tier, placement or allocation failed."
);
create_exception!(
    mambatiers,
    CdoError,
    MambaError,
    "Base of the errors of Core Data Objects."
);
create_exception!(
    mambatiers,
    InvalidStateError,
    CdoError,
    "A CDO call out of order (offer before seal, demand without data, ...)."
);
create_exception!(
    mambatiers,
    InvalidNameError,
    CdoError,
    "A string that cannot name a CDO."
);
create_exception!(
    mambatiers,
    CdoAttributeError,
    CdoError,
    "An unknown, read-only, mistyped or missing CDO attribute."
);
create_exception!(
    mambatiers,
    SelectorError,
    CdoError,
    "A selector that does not parse."
);
create_exception!(
    mambatiers,
    CdoTimeoutError,
    CdoError,
    "A bounded wait ran out."
);
create_exception!(
    mambatiers,
    PoolManagerError,
    CdoError,
    "The pool manager refused a request, or the connection to it failed."
);

/// Registers the exception classes in the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MambaError", py.get_type::<MambaError>())?;
    m.add("TierError", py.get_type::<TierError>())?;
    m.add("CdoError", py.get_type::<CdoError>())?;
    m.add("InvalidStateError", py.get_type::<InvalidStateError>())?;
    m.add("InvalidNameError", py.get_type::<InvalidNameError>())?;
    m.add("CdoAttributeError", py.get_type::<CdoAttributeError>())?;
    m.add("SelectorError", py.get_type::<SelectorError>())?;
    m.add("CdoTimeoutError", py.get_type::<CdoTimeoutError>())?;
    m.add("PoolManagerError", py.get_type::<PoolManagerError>())?;
    Ok(())
}

/// A mamba error as a Python exception.
pub fn tier_err(e: mamba::Error) -> PyErr {
    TierError::new_err(e.to_string())
}

/// A CDO error as a Python exception.
pub fn cdo_err(e: cdo::Error) -> PyErr {
    use cdo::Error as E;
    let text = e.to_string();
    match e {
        E::InvalidState { .. } | E::AlreadyOffered { .. } => InvalidStateError::new_err(text),
        E::InvalidName { .. } => InvalidNameError::new_err(text),
        E::UnknownAttribute { .. }
        | E::ReadOnlyAttribute { .. }
        | E::TypeMismatch { .. }
        | E::MissingAttribute { .. } => CdoAttributeError::new_err(text),
        E::Selector { .. } => SelectorError::new_err(text),
        E::Timeout { .. } | E::AckTimeout { .. } => CdoTimeoutError::new_err(text),
        E::Memory(m) => tier_err(m),
        E::PoolManager(e) => client_err(e),
        E::ManagerStart(_) => PoolManagerError::new_err(text),
        _ => CdoError::new_err(text),
    }
}

/// A pool manager client's error as a Python exception.
fn client_err(e: ClientError) -> PyErr {
    let text = e.to_string();
    match e {
        ClientError::Timeout => CdoTimeoutError::new_err(text),
        ClientError::Pool { code, .. } => match code {
            ErrorCode::DuplicateName
            | ErrorCode::UnknownName
            | ErrorCode::NotOwner
            | ErrorCode::Retracted => InvalidStateError::new_err(text),
            ErrorCode::InvalidName => InvalidNameError::new_err(text),
            ErrorCode::BadAttributes => CdoAttributeError::new_err(text),
            ErrorCode::BadSelector => SelectorError::new_err(text),
            ErrorCode::AckTimeout => CdoTimeoutError::new_err(text),
            _ => PoolManagerError::new_err(text),
        },
        _ => PoolManagerError::new_err(text),
    }
}
