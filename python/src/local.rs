//! A CDO handle of an in-process pool that owns a counted reference to
//! the pool it borrows, so that Python objects (which carry no Rust
//! lifetimes) can hold it.

use std::sync::Arc;

/// A [`cdo::Cdo`] with the pool it borrows.
pub struct LocalCdo {
    // Declared before `pool`: dropped first, while the pool still lives.
    cdo: cdo::Cdo<'static>,
    _pool: Arc<cdo::Pool>,
}

impl LocalCdo {
    /// Declares `name` in `pool`.
    ///
    /// # Errors
    /// As [`cdo::Pool::declare`].
    pub fn declare(pool: &Arc<cdo::Pool>, name: &str) -> cdo::Result<Self> {
        let pool = Arc::clone(pool);
        // SAFETY: the pool lives in the Arc's allocation, which does not
        // move and is not freed while `pool` (kept in the returned value)
        // holds its count; the handle borrowing it is dropped before
        // `pool` (field order) and is only lent out with a lifetime no
        // longer than a borrow of `self` (`with`), so the 'static borrow
        // never outlives the pool.
        let shared: &'static cdo::Pool = unsafe { &*Arc::as_ptr(&pool) };
        Ok(LocalCdo {
            cdo: shared.declare(name)?,
            _pool: pool,
        })
    }

    /// Runs `f` on the handle (which `f` cannot keep).
    pub fn with<R>(&mut self, f: impl for<'p> FnOnce(&mut cdo::Cdo<'p>) -> R) -> R {
        f(&mut self.cdo)
    }

    /// The handle, for reading.
    pub fn get(&self) -> &cdo::Cdo<'_> {
        &self.cdo
    }
}
