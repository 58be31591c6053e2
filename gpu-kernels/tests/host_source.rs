//! The CUDA C kernel source compiled for the host with the system C++
//! compiler and run under a small emulation of the CUDA execution model:
//! blocks one after the other, the threads of a block as fibers that switch
//! at `__syncthreads()`. It checks the source's own semantics (index math,
//! tiling, conversions) and the planned launches against the CPU kernels
//! on machines without a GPU. It says nothing about NVRTC or the hardware.
//! Skips with a printed reason when no C++ compiler is found.

use std::process::Command;
use std::sync::{Mutex, OnceLock};

use libloading::Library;
use mamba_gpu_kernels::plan::{convert_launch, CopyKernel, Launch};
use mamba_gpu_kernels::{convert_elements_cpu, ElemType, SOURCE};
use mamba_transforms::{CopyPlan, Layout};

mod common;
#[path = "common/conversions.rs"]
mod conversions;
use common::{random_bytes, rm, PERMUTATIONS_3D};
use conversions::conversion_input;

/// Definitions that let the CUDA source compile as host C++.
const PRELUDE: &str = r#"
#include <cstdint>
#include <cstring>
#include <functional>
#include <ucontext.h>
#include <vector>
struct dim3 { unsigned x, y, z; };
static dim3 threadIdx, blockIdx, blockDim, gridDim;
static ucontext_t host_scheduler;
static std::vector<ucontext_t> host_fibers;
static unsigned host_current;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(x)
static inline void __syncthreads() { swapcontext(&host_fibers[host_current], &host_scheduler); }
static inline long long __double_as_longlong(double d) { long long r; memcpy(&r, &d, 8); return r; }
static inline double __longlong_as_double(long long d) { double r; memcpy(&r, &d, 8); return r; }
static inline unsigned __float_as_uint(float d) { unsigned r; memcpy(&r, &d, 4); return r; }
static inline float __uint_as_float(unsigned d) { float r; memcpy(&r, &d, 4); return r; }
"#;

/// The launcher: every block in sequence; its threads in sequence, or as
/// fibers scheduled round-robin (each runs to its next barrier) for
/// kernels that synchronise.
const LAUNCHER: &str = r#"
static std::function<void()> host_body;
static std::vector<char> host_done;
static std::vector<std::vector<char>> host_stacks;

static void host_set_thread(unsigned i) {
    threadIdx = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
}

static void host_fiber_entry() {
    host_body();
    host_done[host_current] = 1;
}

static void host_run_block(unsigned threads, bool fibers) {
    if (!fibers) {
        for (unsigned i = 0; i < threads; ++i) { host_set_thread(i); host_body(); }
        return;
    }
    host_fibers.assign(threads, ucontext_t{});
    host_done.assign(threads, 0);
    host_stacks.resize(threads);
    for (unsigned i = 0; i < threads; ++i) {
        host_stacks[i].resize(1 << 16);
        getcontext(&host_fibers[i]);
        host_fibers[i].uc_stack.ss_sp = host_stacks[i].data();
        host_fibers[i].uc_stack.ss_size = host_stacks[i].size();
        host_fibers[i].uc_link = &host_scheduler;
        makecontext(&host_fibers[i], host_fiber_entry, 0);
    }
    for (bool live = true; live;) {
        live = false;
        for (unsigned i = 0; i < threads; ++i) {
            if (host_done[i]) continue;
            host_current = i;
            host_set_thread(i);
            swapcontext(&host_scheduler, &host_fibers[i]);
            live = live || !host_done[i];
        }
    }
}

template <typename P>
static int host_launch(void (*kernel)(const P), const unsigned* g, const unsigned* b,
                       const uint64_t* words, uint64_t count, bool fibers) {
    if (count * 8 != sizeof(P)) return 2;
    P p;
    memcpy(&p, words, sizeof p);
    gridDim = {g[0], g[1], g[2]};
    blockDim = {b[0], b[1], b[2]};
    host_body = [kernel, p] { kernel(p); };
    for (unsigned z = 0; z < g[2]; ++z)
        for (unsigned y = 0; y < g[1]; ++y)
            for (unsigned x = 0; x < g[0]; ++x) {
                blockIdx = {x, y, z};
                host_run_block(b[0] * b[1] * b[2], fibers);
            }
    return 0;
}

extern "C" int host_launch_kernel(const char* name, const unsigned* g, const unsigned* b,
                                  const uint64_t* words, uint64_t count) {
#define HOST_KERNEL(fn, P, sync) \
    if (strcmp(name, #fn) == 0) return host_launch<P>(fn, g, b, words, count, sync);
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

type LaunchFn = unsafe extern "C" fn(*const i8, *const u32, *const u32, *const u64, u64) -> i32;

/// The compiled source, or `None` (after printing why) without a C++
/// compiler. One per test binary; launches are serialised (the emulation
/// has global state).
fn host() -> Option<&'static Mutex<Library>> {
    static HOST: OnceLock<Option<Mutex<Library>>> = OnceLock::new();
    HOST.get_or_init(|| {
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        if Command::new(&cxx).arg("--version").output().is_err() {
            eprintln!("skipped: no C++ compiler ({cxx}) to build the kernel source for the host");
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("mamba-gpu-kernels-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let cpp = dir.join("kernels_host.cpp");
        let lib = dir.join("libkernels_host.so");
        let text = format!("{PRELUDE}\n#line 1 \"kernels.cu\"\n{SOURCE}\n{LAUNCHER}");
        std::fs::write(&cpp, text).expect("write the host source");
        let out = Command::new(&cxx)
            .args([
                "-std=c++17",
                "-O1",
                "-Wall",
                "-Wextra",
                "-shared",
                "-fPIC",
                "-o",
            ])
            .arg(&lib)
            .arg(&cpp)
            .output()
            .expect("run the C++ compiler");
        assert!(
            out.status.success(),
            "the kernel source does not compile as host C++:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: the library was just built from the kernel source and the
        // launcher above; its initialisers are those of the C++ runtime.
        let library = unsafe { Library::new(&lib) }.expect("load the host build");
        let _ = std::fs::remove_dir_all(&dir);
        Some(Mutex::new(library))
    })
    .as_ref()
}

fn launch(host: &Mutex<Library>, l: &Launch) {
    let lib = host.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the symbol has the signature the launcher declares.
    let f: libloading::Symbol<LaunchFn> = unsafe { lib.get(b"host_launch_kernel\0") }.unwrap();
    let name = std::ffi::CString::new(l.kernel).unwrap();
    // SAFETY: the parameter words hold host addresses of live buffers the
    // planner sized from the layouts; the arrays have three entries each.
    let rc = unsafe {
        f(
            name.as_ptr(),
            l.grid.as_ptr(),
            l.block.as_ptr(),
            l.params.as_ptr(),
            l.params.len() as u64,
        )
    };
    assert_eq!(rc, 0, "launch of {} refused ({rc})", l.kernel);
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
