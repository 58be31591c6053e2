//! CUDA C kernel sources compiled for the host with the system C++
//! compiler and run under a small emulation of the CUDA execution model:
//! blocks one after the other, the threads of a block in sequence, or as
//! fibers that switch at `__syncthreads()` for kernels that synchronise.
//! It checks a source's own semantics (index math, tiling, arithmetic)
//! against CPU code on machines without a GPU; it says nothing about NVRTC
//! or the hardware. Shared by the tests of the crates that carry CUDA C
//! (`mod host_emulation;` through a `#[path]`).

use std::process::Command;
use std::sync::Mutex;

use libloading::Library;
use mamba_gpu_kernels::plan::Launch;

/// Definitions that let CUDA source compile as host C++.
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
/// kernels that synchronise. A source's dispatch (`host_launch_kernel`)
/// follows it, one `HOST_KERNEL` line per entry point.
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

// One line of a source's `host_launch_kernel` dispatch: runs `fn` with
// parameter struct `P` (as fibers when `sync`) when `name` is its name.
#define HOST_KERNEL(fn, P, sync) \
    if (strcmp(name, #fn) == 0) return host_launch<P>(fn, g, b, words, count, sync);
"#;

type LaunchFn = unsafe extern "C" fn(*const i8, *const u32, *const u32, *const u64, u64) -> i32;

/// Builds `source` (named `file` in compiler messages) with the prelude,
/// the launcher and `dispatch` (which defines
/// `extern "C" int host_launch_kernel(const char* name, const unsigned* g,
/// const unsigned* b, const uint64_t* words, uint64_t count)` from
/// `HOST_KERNEL` lines) as a shared library and loads it; `None` (after
/// printing why) without a C++ compiler. No floating-point contraction, so
/// that the arithmetic is the source's, operation by operation. Launches
/// through it must be serialised (the emulation has global state): keep
/// it behind the mutex.
pub fn build(tag: &str, file: &str, source: &str, dispatch: &str) -> Option<Mutex<Library>> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&cxx).arg("--version").output().is_err() {
        eprintln!("skipped: no C++ compiler ({cxx}) to build the kernel source for the host");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("{tag}-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let cpp = dir.join("kernels_host.cpp");
    let lib = dir.join("libkernels_host.so");
    let text = format!("{PRELUDE}\n#line 1 \"{file}\"\n{source}\n{LAUNCHER}\n{dispatch}");
    std::fs::write(&cpp, text).expect("write the host source");
    let out = Command::new(&cxx)
        .args([
            "-std=c++17",
            "-O1",
            "-ffp-contract=off",
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
}

/// Runs `l` on the host build; its parameter words hold host addresses.
pub fn launch(host: &Mutex<Library>, l: &Launch) {
    let lib = host.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the symbol has the signature the dispatch declares.
    let f: libloading::Symbol<LaunchFn> = unsafe { lib.get(b"host_launch_kernel\0") }.unwrap();
    let name = std::ffi::CString::new(l.kernel).unwrap();
    // SAFETY: the parameter words hold host addresses of live buffers the
    // caller sized for the launch; the arrays have three entries each.
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
