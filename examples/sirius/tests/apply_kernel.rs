//! The CUDA apply kernel (`apply.cu`) against `Hamiltonian::apply`, bit
//! for bit: compiled as host C++ under the emulation of the CUDA execution
//! model that the layout kernels' tests use (skipped with a printed reason
//! without a C++ compiler), and on a CUDA GPU through the link (skipped
//! without one).

use std::sync::{Mutex, OnceLock};

use faer::c64;
use libloading::Library;
use sirius::link::{apply_launch, APPLY_SOURCE};
use sirius::physics::Hamiltonian;
use sirius::{DeviceError, Memory, Offload};

#[path = "../../../gpu-kernels/tests/common/host_emulation.rs"]
mod host_emulation;

/// The apply kernel's entry point for the host build.
const DISPATCH: &str = r#"
extern "C" int host_launch_kernel(const char* name, const unsigned* g, const unsigned* b,
                                  const uint64_t* words, uint64_t count) {
    HOST_KERNEL(sirius_apply_h, SiriusApplyParams, false)
    return 1;
}
"#;

fn host() -> Option<&'static Mutex<Library>> {
    static HOST: OnceLock<Option<Mutex<Library>>> = OnceLock::new();
    HOST.get_or_init(|| host_emulation::build("sirius-apply", "apply.cu", APPLY_SOURCE, DISPATCH))
        .as_ref()
}

/// `nvec` wave functions of `n` values with varied signs and magnitudes.
fn block(n: usize, nvec: usize, seed: f64) -> Vec<c64> {
    (0..n * nvec)
        .map(|i| {
            let t = i as f64 + seed;
            c64::new((t * 0.71).sin() * 1e3, (t * 0.29).cos() / 7.0)
        })
        .collect()
}

fn bits(v: &[c64]) -> Vec<(u64, u64)> {
    v.iter().map(|z| (z.re.to_bits(), z.im.to_bits())).collect()
}

/// The cases: k-points, cutoffs and potentials, zero components (skipped
/// directions) included.
fn hamiltonians(memory: &Memory) -> Vec<Hamiltonian> {
    let mut hs = Vec::new();
    for (kappa, nmax, v) in [
        ([0.0, 0.0, 0.0], 0, [0.3, -0.5, 0.7]),
        ([0.1, -0.2, 0.3], 1, [0.3, -0.5, 0.7]),
        ([0.25, 0.5, -0.125], 2, [0.0, -0.45, 1.0 / 3.0]),
        ([-0.4, 0.0, 0.35], 3, [0.2, 0.0, 0.0]),
        ([0.05, 0.15, -0.3], 2, [0.0, 0.0, 0.0]),
    ] {
        hs.push(Hamiltonian::new(memory, 7.5, kappa, nmax, v).unwrap());
    }
    hs
}

#[test]
fn the_host_build_of_the_kernel_gives_the_cpu_apply_bit_for_bit() {
    let Some(host) = host() else { return };
    let memory = Memory::heap();
    for h in hamiltonians(&memory) {
        let n = h.dim();
        let nvec = 5;
        let x = block(n, nvec, h.nmax() as f64);
        let mut want = vec![c64::new(0.0, 0.0); x.len()];
        h.apply(&x, &mut want);
        // Chunks of one, two (the last one short) and all five vectors.
        for per_chunk in [1, 2, nvec] {
            let len = per_chunk * n;
            let mut y = vec![c64::new(f64::NAN, f64::NAN); x.len()];
            for (xc, yc) in x.chunks(len).zip(y.chunks_mut(len)) {
                let l = apply_launch(
                    &h,
                    xc.as_ptr() as u64,
                    yc.as_mut_ptr() as u64,
                    h.diagonal().as_ptr() as u64,
                    xc.len(),
                );
                host_emulation::launch(host, &l);
            }
            assert_eq!(
                bits(&y),
                bits(&want),
                "nmax {} v {:?}, {per_chunk} vectors a chunk",
                h.nmax(),
                h.potential()
            );
        }
    }
}

#[test]
fn a_grid_smaller_than_the_chunk_loops_over_the_rest() {
    let Some(host) = host() else { return };
    let memory = Memory::heap();
    let h = Hamiltonian::new(&memory, 6.0, [0.1, 0.2, 0.3], 3, [0.4, -0.2, 0.1]).unwrap();
    let x = block(h.dim(), 3, 0.5);
    let mut want = vec![c64::new(0.0, 0.0); x.len()];
    h.apply(&x, &mut want);
    let mut y = vec![c64::new(0.0, 0.0); x.len()];
    let mut l = apply_launch(
        &h,
        x.as_ptr() as u64,
        y.as_mut_ptr() as u64,
        h.diagonal().as_ptr() as u64,
        x.len(),
    );
    assert!(l.grid[0] > 1);
    l.grid = [1, 1, 1];
    host_emulation::launch(host, &l);
    assert_eq!(bits(&y), bits(&want));
}

#[test]
fn the_cuda_link_applies_bit_for_bit_or_is_skipped() {
    let memory = Memory::heap();
    let hs = hamiltonians(&memory);
    let n_max = hs.iter().map(Hamiltonian::dim).max().unwrap();
    // Two vectors of the largest basis a slot: several chunks, short ones.
    let budget = Some((4 * 2 * n_max * 16) as u64);
    let mut offload = match Offload::gpu(0, memory.clone(), budget) {
        Ok(o) => o,
        Err(DeviceError::NoGpu(why)) => {
            eprintln!("skipped: no usable CUDA device ({why})");
            return;
        }
        Err(e) => panic!("a CUDA device is present but the apply kernel does not load: {e}"),
    };
    assert!(
        offload.label().contains("CUDA kernel"),
        "{}",
        offload.label()
    );
    for h in &hs {
        let x = block(h.dim(), 7, 1.5);
        let mut want = vec![c64::new(0.0, 0.0); x.len()];
        h.apply(&x, &mut want);
        let mut y = vec![c64::new(0.0, 0.0); x.len()];
        offload.apply(h, &x, &mut y).unwrap();
        assert_eq!(bits(&y), bits(&want), "nmax {}", h.nmax());
    }
}
