//! # mambatiers: Python bindings of mamba and cdo
//!
//! The node's memory tiers, placements and allocations whose bytes NumPy
//! arrays view without copies (module `tiers`); Core Data Objects in a
//! pool of this process or of a pool manager (`pool`, `handle`), consumers
//! getting read-only NumPy arrays over the producer's bytes (`arrays`);
//! subscriptions to pool events filtered by selectors (`events`); errors
//! as a small hierarchy of exceptions (`errors`). Blocking calls release
//! the GIL (`wait`).
//!
//! Built by maturin (`pip install ./python`); see `python/README.md`.

mod arrays;
mod errors;
mod events;
mod handle;
mod hwloc;
mod local;
mod policy;
mod pool;
mod source;
mod tiers;
mod values;
mod wait;

use pyo3::prelude::*;

/// The Python module `mambatiers`.
#[pymodule]
fn mambatiers(m: &Bound<'_, PyModule>) -> PyResult<()> {
    hwloc::expose_to_plugins();
    m.add_class::<tiers::Mamba>()?;
    m.add_class::<tiers::Tier>()?;
    m.add_class::<tiers::Placement>()?;
    m.add_class::<tiers::Allocation>()?;
    m.add_class::<pool::Pool>()?;
    m.add_class::<handle::Cdo>()?;
    m.add_class::<events::Subscription>()?;
    m.add_class::<events::Event>()?;
    errors::register(m)?;
    Ok(())
}
