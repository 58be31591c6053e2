//! GPU tests of the layout kernels: each result must be bit-identical to
//! the CPU kernels of `mamba-transforms` on the same random input. Every
//! test prints `skipped: ...` and returns when no CUDA GPU is present; a
//! GPU without a loadable NVRTC is a failure (the kernels cannot run).

use cudarc::driver::{result, sys};
use mamba_gpu_kernels::{convert_elements_cpu, DeviceBuffer, ElemType, GpuKernels, KernelError};
use mamba_transforms::{CopyPlan, Field, Layout, RecordLayout};

mod common;
#[path = "common/conversions.rs"]
mod conversions;
use common::{random_bytes, rm, tiled, PERMUTATIONS_3D};
use conversions::conversion_input;

/// The kernels on device 0 with its primary context current on this
/// thread, or `None` (after printing why) without a GPU.
fn gpu(test: &str) -> Option<GpuKernels> {
    // SAFETY: only tries to dlopen libcuda.
    if !unsafe { sys::is_culib_present() } {
        eprintln!("skipped {test}: the CUDA driver library is not installed");
        return None;
    }
    if let Err(e) = result::init() {
        eprintln!("skipped {test}: cuInit failed ({e:?})");
        return None;
    }
    match result::device::get_count() {
        Ok(n) if n > 0 => {}
        _ => {
            eprintln!("skipped {test}: no CUDA device");
            return None;
        }
    }
    let dev = result::device::get(0).expect("cuDeviceGet");
    // SAFETY: `dev` came from cuDeviceGet; the context stays retained for
    // the process (tests share it).
    let ctx = unsafe { result::primary_ctx::retain(dev) }.expect("retain primary context");
    // SAFETY: `ctx` is a retained primary context.
    unsafe { result::ctx::set_current(ctx) }.expect("set current context");
    match GpuKernels::load(0) {
        Ok(k) => Some(k),
        Err(e) => panic!("a CUDA device is present but the kernels do not load: {e}"),
    }
}

/// Device memory of the tests' context, freed on drop.
struct DevMem {
    ptr: u64,
    len: usize,
}

impl DevMem {
    fn new(len: usize) -> Self {
        // SAFETY: plain allocation in the current context.
        let ptr = unsafe { result::malloc_sync(len.max(1)) }.expect("cuMemAlloc");
        DevMem { ptr, len }
    }

    fn upload(data: &[u8]) -> Self {
        let m = Self::new(data.len());
        if !data.is_empty() {
            // SAFETY: `m` holds `data.len()` bytes.
            unsafe { result::memcpy_htod_sync(m.ptr, data) }.expect("cuMemcpyHtoD");
        }
        m
    }

    fn download(&self) -> Vec<u8> {
        sync();
        let mut out = vec![0u8; self.len];
        // SAFETY: `self` holds `self.len` bytes.
        unsafe { result::memcpy_dtoh_sync(&mut out, self.ptr) }.expect("cuMemcpyDtoH");
        out
    }

    fn buf(&self) -> DeviceBuffer {
        DeviceBuffer {
            ptr: self.ptr,
            len: self.len,
        }
    }

    /// The buffer shifted by `bytes` (misaligned views).
    fn shifted(&self, bytes: usize) -> DeviceBuffer {
        DeviceBuffer {
            ptr: self.ptr + bytes as u64,
            len: self.len - bytes,
        }
    }
}

impl Drop for DevMem {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`, freed once.
        if let Err(e) = unsafe { result::free_sync(self.ptr) } {
            eprintln!("cuMemFree failed: {e:?}");
        }
    }
}

fn sync() {
    result::ctx::synchronize().expect("cuCtxSynchronize");
}

fn stream() -> sys::CUstream {
    std::ptr::null_mut()
}

/// Copies on the GPU and on the CPU from the same source into the same
/// destination contents and asserts the destinations are identical.
/// `shift` moves both device buffers off their allocation's alignment.
fn check_copy(k: &GpuKernels, src: &Layout, dst: &Layout, shift: usize) {
    let src_bytes = random_bytes(src.required_len(), src.required_len() as u64);
    let dst_init = random_bytes(dst.required_len(), 17);
    let mut expected = dst_init.clone();
    CopyPlan::new(src, dst)
        .unwrap()
        .execute(&src_bytes, &mut expected)
        .unwrap();
    let mut padded_src = vec![0u8; shift];
    padded_src.extend_from_slice(&src_bytes);
    let mut padded_dst = vec![0u8; shift];
    padded_dst.extend_from_slice(&dst_init);
    let s = DevMem::upload(&padded_src);
    let d = DevMem::upload(&padded_dst);
    k.convert(src, s.shifted(shift), dst, d.shifted(shift), stream())
        .unwrap_or_else(|e| panic!("{src:?} -> {dst:?}: {e}"));
    let got = d.download();
    assert!(
        got[shift..] == expected[..],
        "GPU and CPU differ for {src:?} -> {dst:?} (shift {shift})"
    );
}

#[test]
fn transpose_2d_is_bit_identical_to_the_cpu() {
    let Some(k) = gpu("transpose_2d") else { return };
    for elem in [1, 2, 4, 8, 16, 3, 12] {
        for (rows, cols) in [(1, 1), (17, 33), (64, 64), (1023, 1025)] {
            let from = rm(elem, &[rows, cols]).permute_axes(&[1, 0]).unwrap();
            check_copy(&k, &from, &rm(elem, &[cols, rows]), 0);
        }
    }
}

#[test]
fn every_3d_permutation_is_bit_identical_to_the_cpu() {
    let Some(k) = gpu("permutations_3d") else {
        return;
    };
    let shape = [31, 17, 5];
    for elem in [1, 2, 4, 8, 16, 6] {
        for perm in PERMUTATIONS_3D {
            let src = rm(elem, &shape).permute_axes(&perm).unwrap();
            check_copy(&k, &src, &rm(elem, src.shape()), 0);
            let dst = Layout::permuted(elem, &shape, &perm).unwrap();
            check_copy(&k, &rm(elem, &shape), &dst, 0);
        }
    }
}

#[test]
fn padded_strided_and_reversed_copies_are_bit_identical_to_the_cpu() {
    let Some(k) = gpu("padded_strided") else {
        return;
    };
    for (rows, cols, ld) in [(1, 1, 1), (17, 33, 40), (1023, 1025, 1031)] {
        for elem in [1, 2, 4, 8, 16, 3] {
            let padded = Layout::padded_rows(elem, &[rows, cols], ld).unwrap();
            let dense = rm(elem, &[rows, cols]);
            check_copy(&k, &padded, &dense, 0);
            check_copy(&k, &dense, &padded, 0);
        }
    }
    let big = rm(8, &[19, 20, 21]);
    let view = big
        .strided_view(&[1, 2, 3], &[9, 6, 5], &[2, 3, 3])
        .unwrap();
    check_copy(&k, &view, &rm(8, &[9, 6, 5]), 0);
    check_copy(&k, &rm(8, &[9, 6, 5]), &view, 0);
    check_copy(&k, &view.reversed(1).unwrap(), &rm(8, &[9, 6, 5]), 0);
    check_copy(
        &k,
        &rm(4, &[33, 65]).reversed(0).unwrap().reversed(1).unwrap(),
        &rm(4, &[33, 65]),
        0,
    );
    let replicated = Layout::from_byte_strides(4, &[50, 60], &[0, 4], 8).unwrap();
    check_copy(&k, &replicated, &rm(4, &[50, 60]), 0);
    let shape = [3, 2, 4, 3, 2, 5];
    let v = rm(2, &[4, 3, 5, 4, 3, 7])
        .view(&[1, 1, 1, 1, 1, 2], &shape)
        .unwrap();
    check_copy(&k, &v, &rm(2, &shape).reversed(2).unwrap(), 0);
    // Long runs under two strided dimensions (split into units).
    let runs = rm(4, &[6, 7, 40]).view(&[1, 1, 0], &[4, 5, 40]).unwrap();
    check_copy(&k, &runs, &rm(4, &[4, 5, 40]), 0);
    check_copy(&k, &rm(4, &[4, 5, 40]), &runs, 0);
}

#[test]
fn misaligned_buffers_give_the_same_bytes() {
    let Some(k) = gpu("misaligned") else { return };
    for shift in [1, 2, 4, 8] {
        let from = rm(8, &[37, 45]).permute_axes(&[1, 0]).unwrap();
        check_copy(&k, &from, &rm(8, &[45, 37]), shift);
        check_copy(&k, &rm(16, &[9, 7]), &rm(16, &[9, 7]), shift);
        let padded = Layout::padded_rows(4, &[31, 7], 9).unwrap();
        check_copy(&k, &padded, &rm(4, &[31, 7]), shift);
    }
}

#[test]
fn records_split_and_join_are_bit_identical_to_the_cpu() {
    let Some(k) = gpu("records") else { return };
    let rec = RecordLayout::new(
        32,
        &[
            Field { offset: 0, size: 8 },
            Field { offset: 8, size: 4 },
            Field {
                offset: 12,
                size: 3,
            },
            Field {
                offset: 16,
                size: 16,
            },
        ],
    )
    .unwrap();
    for count in [1usize, 17, 100_003] {
        let aos = random_bytes(count * 32, count as u64);
        let mut expected: Vec<Vec<u8>> = rec
            .fields()
            .iter()
            .map(|f| vec![0u8; f.size * count])
            .collect();
        {
            let mut outs: Vec<&mut [u8]> = expected.iter_mut().map(|v| v.as_mut_slice()).collect();
            rec.split(&aos, count, &mut outs, &Default::default())
                .unwrap();
        }
        let a = DevMem::upload(&aos);
        let fields: Vec<DevMem> = rec
            .fields()
            .iter()
            .map(|f| DevMem::new(f.size * count))
            .collect();
        let bufs: Vec<DeviceBuffer> = fields.iter().map(DevMem::buf).collect();
        k.split(&rec, count, a.buf(), &bufs, stream()).unwrap();
        for (f, e) in fields.iter().zip(&expected) {
            assert!(f.download() == *e, "split of {count} records differs");
        }

        let garbage = random_bytes(count * 32, 3);
        let mut joined = garbage.clone();
        let ins: Vec<&[u8]> = expected.iter().map(|v| v.as_slice()).collect();
        rec.join(&ins, count, &mut joined, &Default::default())
            .unwrap();
        let out = DevMem::upload(&garbage);
        k.join(&rec, count, &bufs, out.buf(), stream()).unwrap();
        assert!(out.download() == joined, "join of {count} records differs");
    }
}

#[test]
fn element_conversions_are_bit_identical_to_rust_as_casts() {
    let Some(k) = gpu("conversions") else { return };
    let count = 4099;
    for from in ElemType::ALL {
        let input = conversion_input(from, count);
        let src = DevMem::upload(&input);
        for to in ElemType::ALL {
            let mut expected = vec![0u8; count * to.size()];
            convert_elements_cpu(from, to, count, &input, &mut expected).unwrap();
            let dst = DevMem::new(count * to.size());
            k.convert_elements(from, to, count, src.buf(), dst.buf(), stream())
                .unwrap();
            let got = dst.download();
            if got != expected {
                let i = got
                    .chunks(to.size())
                    .zip(expected.chunks(to.size()))
                    .position(|(a, b)| a != b)
                    .unwrap();
                panic!(
                    "{from:?} -> {to:?}: element {i} (input {:02x?}) is {:02x?} on the GPU, {:02x?} on the CPU",
                    &input[i * from.size()..(i + 1) * from.size()],
                    &got[i * to.size()..(i + 1) * to.size()],
                    &expected[i * to.size()..(i + 1) * to.size()],
                );
            }
        }
    }
}

#[test]
fn offsets_beyond_4_gib_are_indexed_with_64_bit_math() {
    let Some(k) = gpu("beyond_4gib") else { return };
    let (free, _) = result::mem_get_info().expect("cuMemGetInfo");
    let pitch = 4_400_000usize;
    let (rows, cols) = (1024usize, 256usize);
    let len = (rows - 1) * pitch + cols * 4;
    if free < len + (64 << 20) {
        eprintln!("skipped beyond_4gib: {free} bytes free on the device");
        return;
    }
    // Rows of 256 u32 spaced 4.4 MB apart: the last ones lie past 4 GiB.
    let words: Vec<u32> = random_bytes(rows * cols * 4, 4)
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    let data: Vec<u8> = bytemuck::cast_slice(&words).to_vec();
    let src = DevMem::new(len);
    for r in 0..rows {
        // SAFETY: row `r` lies inside `src`.
        unsafe {
            result::memcpy_htod_sync(
                src.ptr + (r * pitch) as u64,
                &data[r * cols * 4..][..cols * 4],
            )
        }
        .expect("cuMemcpyHtoD");
    }
    let sparse = Layout::from_byte_strides(4, &[rows, cols], &[pitch as isize, 4], 0).unwrap();
    let dense = rm(4, &[rows, cols]);
    let out = DevMem::new(rows * cols * 4);
    // Pitched rows.
    k.convert(&sparse, src.buf(), &dense, out.buf(), stream())
        .unwrap();
    assert!(out.download() == data, "pitched copy past 4 GiB differs");
    // Transpose.
    let mut transposed = vec![0u32; words.len()];
    mamba_transforms::transpose(&words, rows, cols, &mut transposed).unwrap();
    let expected: Vec<u8> = bytemuck::cast_slice(&transposed).to_vec();
    let t = DevMem::new(rows * cols * 4);
    k.convert(
        &sparse.permute_axes(&[1, 0]).unwrap(),
        src.buf(),
        &rm(4, &[cols, rows]),
        t.buf(),
        stream(),
    )
    .unwrap();
    assert!(t.download() == expected, "transpose past 4 GiB differs");
    // Pitched with a negative pitch (rows reversed).
    let mut expected = vec![0u8; data.len()];
    for r in 0..rows {
        expected[r * cols * 4..][..cols * 4]
            .copy_from_slice(&data[(rows - 1 - r) * cols * 4..][..cols * 4]);
    }
    let rev = DevMem::new(rows * cols * 4);
    k.convert(
        &sparse.reversed(0).unwrap(),
        src.buf(),
        &dense,
        rev.buf(),
        stream(),
    )
    .unwrap();
    assert!(
        rev.download() == expected,
        "reversed copy past 4 GiB differs"
    );
    // Strided gather: every fourth value of each row.
    let every4 = Layout::from_byte_strides(4, &[rows, cols / 4], &[pitch as isize, 16], 0).unwrap();
    let expected: Vec<u8> = (0..rows)
        .flat_map(|r| (0..cols / 4).map(move |j| (r, j)))
        .flat_map(|(r, j)| data[(r * cols + 4 * j) * 4..][..4].to_vec())
        .collect();
    let picked = DevMem::new(expected.len());
    k.convert(
        &every4,
        src.buf(),
        &rm(4, &[rows, cols / 4]),
        picked.buf(),
        stream(),
    )
    .unwrap();
    assert!(
        picked.download() == expected,
        "strided gather past 4 GiB differs"
    );
}

#[test]
fn the_callers_current_context_is_left_alone() {
    let Some(k) = gpu("context_hygiene") else {
        return;
    };
    let layout = rm(4, &[64, 64]);
    let data = random_bytes(layout.required_len(), 9);
    let src = DevMem::upload(&data);
    let dst = DevMem::new(data.len());
    let current = result::ctx::get_current().expect("cuCtxGetCurrent");
    assert!(current.is_some());
    // With no context current, the call still works and leaves none.
    // SAFETY: null unbinds the current context of this thread.
    unsafe { result::ctx::set_current(std::ptr::null_mut()) }.unwrap();
    k.convert(&layout, src.buf(), &layout, dst.buf(), stream())
        .unwrap();
    assert_eq!(result::ctx::get_current().unwrap(), None);
    // SAFETY: the primary context retained by `gpu`.
    unsafe { result::ctx::set_current(current.unwrap()) }.unwrap();
    assert!(dst.download() == data);
    assert_eq!(result::ctx::get_current().unwrap(), current);
}

#[test]
fn bad_requests_on_a_gpu_are_typed_errors() {
    let Some(k) = gpu("bad_requests") else { return };
    let layout = rm(8, &[10, 10]);
    let a = DevMem::new(800);
    let short = DevMem::new(799);
    assert!(matches!(
        k.convert(&layout, a.buf(), &layout, short.buf(), stream()),
        Err(KernelError::Layout(
            mamba_transforms::Error::OutOfBounds { .. }
        ))
    ));
    let tiled = tiled(8, &[10, 10], &[4, 4]);
    let big = DevMem::new(tiled.required_len());
    assert!(matches!(
        k.convert(&tiled, big.buf(), &layout, a.buf(), stream()),
        Err(KernelError::Layout(mamba_transforms::Error::NotStrided))
    ));
}

#[test]
fn shared_kernels_are_loaded_once_per_device() {
    let Some(_k) = gpu("shared") else {
        return;
    };
    let a = GpuKernels::shared(0).expect("shared kernels of device 0");
    let b = GpuKernels::shared(0).expect("shared kernels of device 0");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(a.api(), mamba_gpu_kernels::Api::Cuda);
}

/// y[i] = x[i] * a + b over `n` doubles: one parameter struct of words.
const AXPB: &str = r#"
struct AxpbParams { const double* x; double* y; unsigned long long n; double a; double b; };
extern "C" __global__ void axpb(const AxpbParams p) {
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < p.n) p.y[i] = p.x[i] * p.a + p.b;
}
"#;

#[test]
fn a_callers_module_compiles_once_and_runs_on_the_callers_stream() {
    use mamba_gpu_kernels::plan::Launch;
    use mamba_gpu_kernels::CudaModule;
    let Some(_k) = gpu("callers_module") else {
        // Without a GPU, loading is a typed error, not a panic.
        assert!(CudaModule::load(0, "axpb.cu", AXPB, &["--fmad=false"], &["axpb"]).is_err());
        return;
    };
    let module = CudaModule::load(0, "axpb.cu", AXPB, &["--fmad=false"], &["axpb"])
        .expect("the module compiles and loads");
    let n = 1000usize;
    let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
    let (a, b): (f64, f64) = (1.0 / 3.0, 0.1);
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let dx = DevMem::upload(&bytes);
    let dy = DevMem::new(bytes.len());
    let launch = Launch {
        kernel: "axpb",
        grid: [n.div_ceil(128) as u32, 1, 1],
        block: [128, 1, 1],
        params: vec![dx.ptr, dy.ptr, n as u64, a.to_bits(), b.to_bits()],
    };
    // SAFETY: the words are the kernel's parameter struct; both buffers
    // hold `n` doubles until the download below synchronizes.
    unsafe { module.launch(&launch, stream()) }.expect("launch");
    let got: Vec<f64> = dy
        .download()
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    // No contraction: the same bits as the CPU's multiply then add.
    let want: Vec<u64> = x.iter().map(|v| (v * a + b).to_bits()).collect();
    assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
    // A second load of the same program reuses the cached cubin; an
    // unknown entry point, a bad source and an unknown name are typed
    // errors.
    CudaModule::load(0, "axpb.cu", AXPB, &["--fmad=false"], &["axpb"]).expect("second load");
    assert!(matches!(
        CudaModule::load(0, "axpb.cu", AXPB, &[], &["nope"]),
        Err(KernelError::Driver { .. })
    ));
    assert!(matches!(
        CudaModule::load(0, "bad.cu", "this is not C", &[], &["axpb"]),
        Err(KernelError::Compile { .. })
    ));
    let mut unknown = launch.clone();
    unknown.kernel = "nope";
    // SAFETY: refused before anything is enqueued.
    let refused = unsafe { module.launch(&unknown, stream()) };
    assert!(matches!(refused, Err(KernelError::Unsupported(_))));
}
