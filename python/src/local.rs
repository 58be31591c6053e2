//! Values that borrow a [`cdo::app::Pool`] (handles, views, subscriptions,
//! events) together with a counted reference to the pool, so that Python
//! objects (which carry no Rust lifetimes) can hold them.

use cdo::app;
use std::sync::Arc;

/// A value made from a pool, with the pool it borrows.
pub struct Lent<T> {
    // Declared before `pool`: dropped first, while the pool still lives.
    value: T,
    pool: Arc<app::Pool>,
}

impl<T> Lent<T> {
    /// Makes a value from `pool` and keeps the pool with it.
    ///
    /// `make` gets the pool with a `'static` lifetime; what it returns, and
    /// everything later made from that through [`Lent::get_mut`], must be
    /// kept with the pool through [`Lent::keep`] (or dropped before it).
    ///
    /// # Errors
    /// `make`'s.
    pub fn new<E>(
        pool: &Arc<app::Pool>,
        make: impl FnOnce(&'static app::Pool) -> Result<T, E>,
    ) -> Result<Self, E> {
        let pool = Arc::clone(pool);
        // SAFETY: the pool lives in the Arc's allocation, which does not
        // move and is not freed while `pool` (kept in the returned value)
        // holds its count. The value borrowing it is dropped before `pool`
        // (field order), and this crate keeps every value made from it with
        // a count of the same pool (`keep`), so no 'static borrow outlives
        // the pool.
        let shared: &'static app::Pool = unsafe { &*Arc::as_ptr(&pool) };
        Ok(Lent {
            value: make(shared)?,
            pool,
        })
    }

    /// `value`, made from this value, kept with the same pool.
    pub fn keep<U>(&self, value: U) -> Lent<U> {
        Lent {
            value,
            pool: Arc::clone(&self.pool),
        }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The value, for changing.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.value
    }
}
