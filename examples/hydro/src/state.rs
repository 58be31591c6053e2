//! The grid of conserved variables, ghost layers included.

use crate::memory::{Buffer, Memory, MemoryError};

/// Number of conserved variables: rho, rho*u, rho*v, E.
pub const NVAR: usize = 4;
/// Ghost layers on each side of the domain.
pub const GHOSTS: usize = 2;

/// Index of the density field.
pub const ID: usize = 0;
/// Index of the x momentum field.
pub const IU: usize = 1;
/// Index of the y momentum field.
pub const IV: usize = 2;
/// Index of the total energy field.
pub const IP: usize = 3;

/// Names of the conserved fields, in storage order.
pub const FIELD_NAMES: [&str; NVAR] = ["rho", "rhou", "rhov", "E"];

/// Direction of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Along rows (x).
    X,
    /// Along columns (y).
    Y,
}

impl Direction {
    /// The momentum field normal to interfaces of a sweep in this direction.
    pub fn normal_momentum(self) -> usize {
        match self {
            Direction::X => IU,
            Direction::Y => IV,
        }
    }
}

/// Conserved variables on `(nx + 4) x (ny + 4)` cells, one plane per variable,
/// x fastest. Interior cell `(i, j)` (0-based) lives at `(i + 2, j + 2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    nx: usize,
    ny: usize,
    fields: [Buffer; NVAR],
}

impl State {
    /// A zeroed state of `nx x ny` interior cells.
    pub fn new(nx: usize, ny: usize) -> State {
        let len = (nx + 2 * GHOSTS) * (ny + 2 * GHOSTS);
        State {
            nx,
            ny,
            fields: std::array::from_fn(|_| Buffer::from(vec![0.0; len])),
        }
    }

    /// A zeroed state of `nx x ny` interior cells whose planes come from
    /// `memory`.
    ///
    /// # Errors
    /// When `memory` cannot provide the planes.
    pub fn new_in(nx: usize, ny: usize, memory: &Memory) -> Result<State, MemoryError> {
        let len = (nx + 2 * GHOSTS) * (ny + 2 * GHOSTS);
        let [a, b, c, d] = [(); NVAR].map(|()| memory.buffer(len));
        Ok(State {
            nx,
            ny,
            fields: [a?, b?, c?, d?],
        })
    }

    /// A copy of this state whose planes come from `memory`.
    ///
    /// # Errors
    /// When `memory` cannot provide the planes.
    pub fn copy_in(&self, memory: &Memory) -> Result<State, MemoryError> {
        let mut copy = State::new_in(self.nx, self.ny, memory)?;
        for (dst, src) in copy.fields.iter_mut().zip(&self.fields) {
            dst.copy_from_slice(src);
        }
        Ok(copy)
    }

    /// The mamba space holding the planes (`None` on the heap).
    pub fn space(&self) -> Option<&mamba::SpaceInfo> {
        self.fields[0].space()
    }

    /// Interior cells along x.
    pub fn nx(&self) -> usize {
        self.nx
    }

    /// Interior cells along y.
    pub fn ny(&self) -> usize {
        self.ny
    }

    /// Length of a stored row, ghosts included (`nx + 4`).
    pub fn row_len(&self) -> usize {
        self.nx + 2 * GHOSTS
    }

    /// Number of stored rows, ghosts included (`ny + 4`).
    pub fn rows(&self) -> usize {
        self.ny + 2 * GHOSTS
    }

    /// Storage index of interior cell `(i, j)`.
    pub fn index(&self, i: usize, j: usize) -> usize {
        (j + GHOSTS) * self.row_len() + i + GHOSTS
    }

    /// Value of variable `var` in interior cell `(i, j)`.
    pub fn get(&self, var: usize, i: usize, j: usize) -> f64 {
        self.fields[var][self.index(i, j)]
    }

    /// Sets variable `var` in interior cell `(i, j)`.
    pub fn set(&mut self, var: usize, i: usize, j: usize, value: f64) {
        let k = self.index(i, j);
        self.fields[var][k] = value;
    }

    /// The stored plane of one variable, ghosts included.
    pub fn field(&self, var: usize) -> &[f64] {
        &self.fields[var]
    }

    /// The stored planes of all variables, mutably.
    pub fn fields_mut(&mut self) -> [&mut [f64]; NVAR] {
        self.fields.each_mut().map(|f| &mut f[..])
    }

    /// Interior cells of one variable, x fastest (`nx * ny` values).
    pub fn interior(&self, var: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.nx * self.ny];
        self.copy_interior(var, &mut out);
        out
    }

    /// Copies the interior cells of one variable into `out` (x fastest).
    ///
    /// # Panics
    /// If `out` does not hold exactly `nx * ny` values.
    pub fn copy_interior(&self, var: usize, out: &mut [f64]) {
        assert_eq!(out.len(), self.nx * self.ny, "interior size");
        for (j, row) in out.chunks_exact_mut(self.nx).enumerate() {
            let start = self.index(0, j);
            row.copy_from_slice(&self.fields[var][start..start + self.nx]);
        }
    }

    /// Overwrites the interior cells of one variable from `values` (x fastest).
    ///
    /// # Panics
    /// If `values` does not hold exactly `nx * ny` values.
    pub fn set_interior(&mut self, var: usize, values: &[f64]) {
        assert_eq!(values.len(), self.nx * self.ny, "interior size");
        for (j, row) in values.chunks_exact(self.nx).enumerate() {
            let start = self.index(0, j);
            self.fields[var][start..start + self.nx].copy_from_slice(row);
        }
    }

    /// Sum of one variable over the interior cells (times the cell area, this
    /// is the total mass or energy).
    pub fn total(&self, var: usize) -> f64 {
        (0..self.ny)
            .map(|j| {
                let start = self.index(0, j);
                self.fields[var][start..start + self.nx].iter().sum::<f64>()
            })
            .sum()
    }
}
