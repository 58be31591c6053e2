//! The CUDA C kernel source compiled for the host with the system C++
//! compiler and run under a small emulation of the CUDA execution model:
//! blocks one after the other, the threads of a block as fibers that switch
//! at `__syncthreads()`. It checks the source's own semantics (index math,
//! tiling, conversions) and the planned launches against the CPU kernels
//! on machines without a GPU. It says nothing about NVRTC or the hardware.
//! Skips with a printed reason when no C++ compiler is found.

use std::sync::{Mutex, OnceLock};

use libloading::Library;
use mamba_gpu_kernels::plan::{convert_launch, CopyKernel};
use mamba_gpu_kernels::{convert_elements_cpu, ElemType, SOURCE};
use mamba_transforms::{CopyPlan, Layout};

mod common;
#[path = "common/conversions.rs"]
mod conversions;
#[path = "common/host_emulation.rs"]
mod host_emulation;
use common::{random_bytes, rm, PERMUTATIONS_3D};
use conversions::conversion_input;
use host_emulation::launch;

/// The entry points the host build dispatches to.
const DISPATCH: &str = r#"
extern "C" int host_launch_kernel(const char* name, const unsigned* g, const unsigned* b,
                                  const uint64_t* words, uint64_t count) {
#define HOST_WIDTHS(family, P, sync) \
    HOST_KERNEL(family##_1, P, sync) HOST_KERNEL(family##_2, P, sync) \
    HOST_KERNEL(family##_4, P, sync) HOST_KERNEL(family##_8, P, sync) \
    HOST_KERNEL(family##_16, P, sync)
    HOST_WIDTHS(pitched, PitchedParams, false)
    HOST_WIDTHS(strided, StridedParams, false)
    HOST_WIDTHS(transpose, TransposeParams, true)
    HOST_KERNEL(convert, ConvertParams, false)
    return 1;
}
"#;

/// The compiled source, or `None` (after printing why) without a C++
/// compiler. One per test binary.
fn host() -> Option<&'static Mutex<Library>> {
    static HOST: OnceLock<Option<Mutex<Library>>> = OnceLock::new();
    HOST.get_or_init(|| host_emulation::build("mamba-gpu-kernels", "kernels.cu", SOURCE, DISPATCH))
        .as_ref()
}

/// Runs the planned kernel on host buffers and the CPU plan on copies of
/// them; the destinations must be identical. `shift` misaligns both.
fn check_copy(host: &Mutex<Library>, src: &Layout, dst: &Layout, shift: usize) {
    let s = random_bytes(src.required_len() + shift + 16, 3);
    let d = random_bytes(dst.required_len() + shift + 16, 5);
    let mut expected = d.clone();
    CopyPlan::new(src, dst)
        .unwrap()
        .execute(&s[shift..], &mut expected[shift..])
        .unwrap();
    let mut got = d;
    let kernel = CopyKernel::plan(src, dst).unwrap();
    let l = kernel.launch(
        s.as_ptr() as u64 + (shift + src.offset()) as u64,
        got.as_mut_ptr() as u64 + (shift + dst.offset()) as u64,
    );
    launch(host, &l);
    assert!(
        got == expected,
        "{} differs from the CPU for {src:?} -> {dst:?} (shift {shift})",
        l.kernel
    );
}

#[test]
fn transposes_and_permutations_match_the_cpu() {
    let Some(host) = host() else { return };
    for elem in [1, 2, 4, 8, 16, 3] {
        for (rows, cols) in [(1, 1), (17, 33), (70, 45)] {
            let from = rm(elem, &[rows, cols]).permute_axes(&[1, 0]).unwrap();
            check_copy(host, &from, &rm(elem, &[cols, rows]), 0);
        }
    }
    let shape = [31, 17, 5];
    for elem in [1, 4, 16, 6] {
        for perm in PERMUTATIONS_3D {
            let src = rm(elem, &shape).permute_axes(&perm).unwrap();
            check_copy(host, &src, &rm(elem, src.shape()), 0);
            let dst = Layout::permuted(elem, &shape, &perm).unwrap();
            check_copy(host, &rm(elem, &shape), &dst, 0);
        }
    }
}

#[test]
fn pitched_and_strided_copies_match_the_cpu() {
    let Some(host) = host() else { return };
    for (rows, cols, ld) in [(1, 1, 1), (17, 33, 40)] {
        for elem in [1, 2, 4, 8, 16, 3] {
            let padded = Layout::padded_rows(elem, &[rows, cols], ld).unwrap();
            let dense = rm(elem, &[rows, cols]);
            check_copy(host, &padded, &dense, 0);
            check_copy(host, &dense, &padded, 0);
        }
    }
    let view = rm(8, &[19, 20, 21])
        .strided_view(&[1, 2, 3], &[9, 6, 5], &[2, 3, 3])
        .unwrap();
    check_copy(host, &view, &rm(8, &[9, 6, 5]), 0);
    check_copy(host, &rm(8, &[9, 6, 5]), &view, 0);
    check_copy(host, &view.reversed(1).unwrap(), &rm(8, &[9, 6, 5]), 0);
    let replicated = Layout::from_byte_strides(4, &[50, 60], &[0, 4], 8).unwrap();
    check_copy(host, &replicated, &rm(4, &[50, 60]), 0);
    let shape = [3, 2, 4, 3, 2, 5];
    let v = rm(2, &[4, 3, 5, 4, 3, 7])
        .view(&[1, 1, 1, 1, 1, 2], &shape)
        .unwrap();
    check_copy(host, &v, &rm(2, &shape).reversed(2).unwrap(), 0);
    // Long runs under two strided dimensions (split into units).
    let runs = rm(4, &[6, 7, 40]).view(&[1, 1, 0], &[4, 5, 40]).unwrap();
    check_copy(host, &runs, &rm(4, &[4, 5, 40]), 0);
    check_copy(host, &rm(4, &[4, 5, 40]), &runs, 0);
    for shift in [1, 2, 4, 8] {
        let from = rm(8, &[37, 45]).permute_axes(&[1, 0]).unwrap();
        check_copy(host, &from, &rm(8, &[45, 37]), shift);
        check_copy(host, &rm(16, &[9, 7]), &rm(16, &[9, 7]), shift);
    }
}

#[test]
fn every_conversion_matches_rust_as_casts() {
    let Some(host) = host() else { return };
    let count = 1000;
    for from in ElemType::ALL {
        let input = conversion_input(from, count);
        for to in ElemType::ALL {
            let mut expected = vec![0u8; count * to.size()];
            convert_elements_cpu(from, to, count, &input, &mut expected).unwrap();
            let mut got = vec![0u8; count * to.size()];
            let l = convert_launch(
                input.as_ptr() as u64,
                got.as_mut_ptr() as u64,
                count as u64,
                from,
                to,
            );
            launch(host, &l);
            assert!(
                got == expected,
                "{from:?} -> {to:?} differs from the `as` cast"
            );
        }
    }
}
