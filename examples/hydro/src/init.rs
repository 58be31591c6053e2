//! Initial conditions of the test cases.

use crate::eos::GAMMA;
use crate::memory::{Memory, MemoryError};
use crate::params::{Params, TestCase};
use crate::state::{State, ID, IP, IU, IV};

/// Background energy of the point blast.
const BLAST_BACKGROUND_ENERGY: f64 = 1e-5;

/// The state at t = 0 for `params.testcase`, ghost cells included, on the
/// heap.
pub fn initial_state(params: &Params) -> State {
    let mut state = State::new(params.nx, params.ny);
    set_initial(&mut state, params);
    state
}

/// The state at t = 0 for `params.testcase`, its planes from `memory`.
///
/// # Errors
/// When `memory` cannot provide the planes.
pub fn initial_state_in(params: &Params, memory: &Memory) -> Result<State, MemoryError> {
    let mut state = State::new_in(params.nx, params.ny, memory)?;
    set_initial(&mut state, params);
    Ok(state)
}

/// Overwrites `state` with the initial condition of `params.testcase`.
fn set_initial(state: &mut State, params: &Params) {
    let (nx, ny) = (params.nx, params.ny);
    let fields = state.fields_mut();
    fields[IU].fill(0.0);
    fields[IV].fill(0.0);
    match params.testcase {
        TestCase::PointBlast | TestCase::CornerBlast | TestCase::PlaneBlast => {
            fields[ID].fill(1.0);
            fields[IP].fill(BLAST_BACKGROUND_ENERGY);
            let blast = 1.0 / params.dx / params.dx;
            match params.testcase {
                TestCase::PointBlast => state.set(IP, nx / 2, ny / 2, blast),
                TestCase::CornerBlast => state.set(IP, 0, 0, blast),
                _ => (0..ny).for_each(|j| state.set(IP, 0, j, blast)),
            }
        }
        TestCase::Sod => {
            for j in 0..ny {
                for i in 0..nx {
                    // Cell centre (i + 1/2) dx left of the middle nx dx / 2.
                    let (rho, p) = if 2 * i + 1 < nx {
                        (1.0, 1.0)
                    } else {
                        (0.125, 0.1)
                    };
                    state.set(ID, i, j, rho);
                    state.set(IP, i, j, p / (GAMMA - 1.0));
                }
            }
        }
    }
}
