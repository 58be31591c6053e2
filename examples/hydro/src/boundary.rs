//! Ghost cells for one sweep direction (HydroC's `make_boundary`).
//!
//! Only the ghosts a sweep reads are filled: those at the ends of the
//! interior rows for an x sweep, of the interior columns for a y sweep.

use crate::params::{Boundary, Params};
use crate::state::{Direction, State, GHOSTS, NVAR};

/// The interior cell a ghost at position `g` (0-based along a line of
/// `n + 4` stored cells) copies, and whether the normal momentum flips.
fn ghost_source(g: usize, n: usize, low: Boundary, high: Boundary) -> (usize, bool) {
    if g < GHOSTS {
        match low {
            Boundary::Reflective => (2 * GHOSTS - 1 - g, true),
            Boundary::Outflow => (GHOSTS, false),
            Boundary::Periodic => (g + n, false),
        }
    } else {
        match high {
            Boundary::Reflective => (2 * n + 2 * GHOSTS - 1 - g, true),
            Boundary::Outflow => (n + GHOSTS - 1, false),
            Boundary::Periodic => (g - n, false),
        }
    }
}

/// Fills the ghost cells that a sweep in direction `dir` reads, from the
/// boundary conditions of `params`.
pub fn fill_ghosts(state: &mut State, dir: Direction, params: &Params) {
    let (nx, ny, row_len) = (state.nx(), state.ny(), state.row_len());
    let normal = dir.normal_momentum();
    let ghosts = |n: usize| (0..GHOSTS).chain(n + GHOSTS..n + 2 * GHOSTS);
    for (var, field) in state.fields_mut().iter_mut().enumerate().take(NVAR) {
        match dir {
            Direction::X => {
                for g in ghosts(nx) {
                    let (src, flip) =
                        ghost_source(g, nx, params.boundary_left, params.boundary_right);
                    let sign = if flip && var == normal { -1.0 } else { 1.0 };
                    for row in field.chunks_exact_mut(row_len).skip(GHOSTS).take(ny) {
                        row[g] = sign * row[src];
                    }
                }
            }
            Direction::Y => {
                for g in ghosts(ny) {
                    let (src, flip) = ghost_source(g, ny, params.boundary_down, params.boundary_up);
                    let sign = if flip && var == normal { -1.0 } else { 1.0 };
                    for i in GHOSTS..GHOSTS + nx {
                        field[g * row_len + i] = sign * field[src * row_len + i];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghost_sources_follow_hydroc() {
        let (r, o, p) = (Boundary::Reflective, Boundary::Outflow, Boundary::Periodic);
        let n = 10;
        assert_eq!(ghost_source(0, n, r, r), (3, true));
        assert_eq!(ghost_source(1, n, r, r), (2, true));
        assert_eq!(ghost_source(12, n, r, r), (11, true));
        assert_eq!(ghost_source(13, n, r, r), (10, true));
        assert_eq!(ghost_source(0, n, o, o), (2, false));
        assert_eq!(ghost_source(13, n, o, o), (11, false));
        assert_eq!(ghost_source(0, n, p, p), (10, false));
        assert_eq!(ghost_source(1, n, p, p), (11, false));
        assert_eq!(ghost_source(12, n, p, p), (2, false));
        assert_eq!(ghost_source(13, n, p, p), (3, false));
    }
}
