//! The dispatch logic run against a host-memory test double that executes
//! each planned launch the way the CUDA source defines it (reading the
//! packed parameter words), checking every access against the buffers it
//! was given and the access unit's alignment. Results are compared with
//! the CPU kernels of `mamba-transforms`.

use std::sync::Mutex;

use cudarc::driver::sys::CUstream;
use mamba_transforms::{CopyPlan, Error, Field, Layout, RecordLayout};

use super::*;

/// Host memory posing as device memory: buffers at fake addresses, with
/// gaps between them that no access may touch. A test double only.
struct HostMemory {
    base: u64,
    bytes: Mutex<Vec<u8>>,
    buffers: Mutex<Vec<(u64, usize)>>,
}

const GAP: usize = 256;

impl HostMemory {
    fn new() -> Self {
        HostMemory {
            base: 0x7000_0000_0000,
            bytes: Mutex::new(Vec::new()),
            buffers: Mutex::new(Vec::new()),
        }
    }

    /// Places a buffer holding `data` at an address `misalign` bytes past a
    /// 256-byte boundary.
    fn alloc(&self, data: &[u8], misalign: usize) -> DeviceBuffer {
        let mut bytes = self.bytes.lock().unwrap();
        let start = (bytes.len() + GAP).next_multiple_of(GAP) + misalign;
        bytes.resize(start, 0xEE);
        bytes.extend_from_slice(data);
        let ptr = self.base + start as u64;
        self.buffers.lock().unwrap().push((ptr, data.len()));
        DeviceBuffer {
            ptr,
            len: data.len(),
        }
    }

    fn read(&self, buf: DeviceBuffer) -> Vec<u8> {
        let start = (buf.ptr - self.base) as usize;
        self.bytes.lock().unwrap()[start..start + buf.len].to_vec()
    }

    /// Index of `len` bytes at `addr`, which must lie inside one buffer and
    /// be aligned to `align`.
    fn index(&self, addr: u64, len: usize, align: u64) -> usize {
        assert_eq!(
            addr % align,
            0,
            "access at {addr:#x} not aligned to {align}"
        );
        let inside = self
            .buffers
            .lock()
            .unwrap()
            .iter()
            .any(|&(p, l)| addr >= p && addr + len as u64 <= p + l as u64);
        assert!(
            inside,
            "access of {len} bytes at {addr:#x} outside every buffer"
        );
        (addr - self.base) as usize
    }

    fn copy(&self, from: u64, to: u64, len: usize, align: u64) {
        let s = self.index(from, len, align);
        let d = self.index(to, len, align);
        self.bytes.lock().unwrap().copy_within(s..s + len, d);
    }
}

/// Runs launches on [`HostMemory`] following the kernel source.
struct Emulator(std::sync::Arc<HostMemory>);

fn at(base: u64, offset: i64) -> u64 {
    base.wrapping_add(offset as u64)
}

impl Backend for Emulator {
    fn api(&self) -> Api {
        Api::Cuda
    }

    fn launch(&self, launch: &Launch, _stream: CUstream) -> Result<(), KernelError> {
        let w = &launch.params;
        let (family, width) = launch
            .kernel
            .split_once('_')
            .unwrap_or((launch.kernel, "0"));
        let unit: u64 = width.parse().unwrap();
        let mem = &self.0;
        match family {
            "pitched" => {
                for r in 0..w[2] {
                    let s = at(w[0], r as i64 * w[4] as i64);
                    let d = at(w[1], r as i64 * w[5] as i64);
                    for c in 0..w[3] {
                        mem.copy(s + c * unit, d + c * unit, unit as usize, unit);
                    }
                }
            }
            "strided" => {
                let rank = w[3] as usize;
                for i in 0..w[2] {
                    let (mut rem, mut so, mut doff) = (i, 0i64, 0i64);
                    for d in (0..rank).rev() {
                        let n = w[5 + d];
                        so += (rem % n) as i64 * w[5 + MAX + d] as i64;
                        doff += (rem % n) as i64 * w[5 + 2 * MAX + d] as i64;
                        rem /= n;
                    }
                    for u in 0..w[4] {
                        mem.copy(
                            at(w[0], so) + u * unit,
                            at(w[1], doff) + u * unit,
                            unit as usize,
                            unit,
                        );
                    }
                }
            }
            "transpose" => {
                assert_eq!(launch.block, [plan::TILE, plan::BLOCK_ROWS, 1]);
                let rank = w[8] as usize;
                for b in 0..w[9] {
                    let (mut rem, mut sb, mut db) = (b, 0i64, 0i64);
                    for d in (0..rank).rev() {
                        let n = w[10 + d];
                        sb += (rem % n) as i64 * w[10 + BATCH + d] as i64;
                        db += (rem % n) as i64 * w[10 + 2 * BATCH + d] as i64;
                        rem /= n;
                    }
                    for q in 0..w[3] as i64 {
                        for p in 0..w[2] as i64 {
                            let s = at(w[0], sb + p * w[4] as i64 + q * w[5] as i64);
                            let d = at(w[1], db + p * w[6] as i64 + q * w[7] as i64);
                            mem.copy(s, d, unit as usize, unit);
                        }
                    }
                }
            }
            "convert" => {
                let from = ElemType::ALL[w[3] as usize];
                let to = ElemType::ALL[w[4] as usize];
                let n = w[2] as usize;
                let s = mem.index(w[0], n * from.size(), from.size() as u64);
                let d = mem.index(w[1], n * to.size(), to.size() as u64);
                let mut bytes = mem.bytes.lock().unwrap();
                let src = bytes[s..s + n * from.size()].to_vec();
                convert_elements_cpu(from, to, n, &src, &mut bytes[d..d + n * to.size()])?;
            }
            other => panic!("unknown kernel family {other}"),
        }
        Ok(())
    }

    fn zero(&self, ptr: u64, bytes: usize, _stream: CUstream) -> Result<(), KernelError> {
        let i = self.0.index(ptr, bytes, 1);
        self.0.bytes.lock().unwrap()[i..i + bytes].fill(0);
        Ok(())
    }
}

const MAX: usize = plan::MAX_RANK;
const BATCH: usize = plan::MAX_BATCH;

fn kernels() -> (GpuKernels, std::sync::Arc<HostMemory>) {
    let mem = std::sync::Arc::new(HostMemory::new());
    (
        GpuKernels::with_backend(Box::new(Emulator(mem.clone()))),
        mem,
    )
}

/// Deterministic pseudo-random bytes (xorshift).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn null() -> CUstream {
    std::ptr::null_mut()
}

/// Copies with the emulated kernels and with the CPU plan from the same
/// source and the same destination contents; the destinations must match
/// byte for byte (untouched bytes included).
fn check_copy(src: &Layout, dst: &Layout, misalign: usize) {
    let (k, mem) = kernels();
    let src_bytes = random_bytes(src.required_len(), src.required_len() as u64 + 7);
    let dst_init = random_bytes(dst.required_len(), 99);
    let mut expected = dst_init.clone();
    CopyPlan::new(src, dst)
        .unwrap()
        .execute(&src_bytes, &mut expected)
        .unwrap();
    let s = mem.alloc(&src_bytes, misalign);
    let d = mem.alloc(&dst_init, 0);
    k.convert(src, s, dst, d, null()).unwrap();
    assert!(
        mem.read(d) == expected,
        "mismatch for {src:?} -> {dst:?} (misaligned by {misalign})"
    );
}

fn rm(elem: usize, shape: &[usize]) -> Layout {
    Layout::row_major(elem, shape).unwrap()
}

#[test]
fn transposes_2d_match_the_cpu_for_all_element_sizes() {
    for elem in [1, 2, 3, 4, 8, 12, 16] {
        for (rows, cols) in [(1, 1), (1, 7), (17, 33), (64, 32), (65, 31)] {
            let from = rm(elem, &[rows, cols]).permute_axes(&[1, 0]).unwrap();
            check_copy(&from, &rm(elem, &[cols, rows]), 0);
        }
    }
    let from = rm(8, &[1023, 1025]).permute_axes(&[1, 0]).unwrap();
    check_copy(&from, &rm(8, &[1025, 1023]), 0);
}

#[test]
fn every_3d_permutation_matches_the_cpu() {
    let shape = [31, 17, 5];
    for elem in [1, 2, 4, 8, 16, 6] {
        for perm in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let src = rm(elem, &shape).permute_axes(&perm).unwrap();
            let dst = rm(elem, src.shape());
            check_copy(&src, &dst, 0);
            // Also scattering into a permuted destination.
            let dst = Layout::permuted(elem, &shape, &perm).unwrap();
            check_copy(&rm(elem, &shape), &dst, 0);
        }
    }
}

#[test]
fn padded_and_strided_copies_match_the_cpu() {
    let dense = rm(4, &[13, 7]);
    let padded = Layout::padded_rows(4, &[13, 7], 10).unwrap();
    check_copy(&padded, &dense, 0);
    check_copy(&dense, &padded, 0);
    // Strided pack/unpack of a view with offsets, steps and a reversal.
    let big = rm(8, &[9, 10, 11]);
    let view = big
        .strided_view(&[1, 2, 3], &[4, 3, 4], &[2, 2, 2])
        .unwrap();
    check_copy(&view, &rm(8, &[4, 3, 4]), 0);
    check_copy(&rm(8, &[4, 3, 4]), &view, 0);
    check_copy(&view.reversed(2).unwrap(), &rm(8, &[4, 3, 4]), 0);
    // Replicated source (zero stride).
    let rep = Layout::from_byte_strides(2, &[5, 6], &[0, 2], 4).unwrap();
    check_copy(&rep, &rm(2, &[5, 6]), 0);
    // Rank 6 with runs contiguous on both sides.
    let shape = [2, 3, 2, 3, 2, 8];
    let v = rm(1, &[3, 4, 3, 4, 3, 8])
        .view(&[1, 1, 1, 1, 1, 0], &shape)
        .unwrap();
    check_copy(&v, &rm(1, &shape), 0);
    // Long runs under two strided dimensions (split into units).
    let runs = rm(4, &[6, 7, 40]).view(&[1, 1, 0], &[4, 5, 40]).unwrap();
    check_copy(&runs, &rm(4, &[4, 5, 40]), 0);
    check_copy(&rm(4, &[4, 5, 40]), &runs, 0);
}

#[test]
fn misaligned_buffers_use_narrower_units() {
    // The emulator asserts every access is aligned to its unit.
    for misalign in [1, 2, 4, 8] {
        let from = rm(8, &[9, 12]).permute_axes(&[1, 0]).unwrap();
        check_copy(&from, &rm(8, &[12, 9]), misalign);
        check_copy(&rm(16, &[5, 3]), &rm(16, &[5, 3]), misalign);
        let padded = Layout::padded_rows(4, &[6, 5], 8).unwrap();
        check_copy(&padded, &rm(4, &[6, 5]), misalign);
    }
}

#[test]
fn short_buffers_and_null_addresses_are_refused_before_any_launch() {
    let (k, mem) = kernels();
    let layout = rm(4, &[8, 8]);
    let src = mem.alloc(&[1; 256], 0);
    let short = mem.alloc(&[2; 255], 0);
    assert_eq!(
        k.convert(&layout, src, &layout, short, null()),
        Err(KernelError::Layout(Error::OutOfBounds {
            needed: 256,
            len: 255
        }))
    );
    assert_eq!(
        k.convert(&layout, short, &layout, src, null()),
        Err(KernelError::Layout(Error::OutOfBounds {
            needed: 256,
            len: 255
        }))
    );
    assert_eq!(mem.read(short), vec![2; 255]);
    let nul = DeviceBuffer { ptr: 0, len: 256 };
    assert!(matches!(
        k.convert(&layout, nul, &layout, src, null()),
        Err(KernelError::BadAddress { ptr: 0, .. })
    ));
    let wrap = DeviceBuffer {
        ptr: u64::MAX - 8,
        len: 256,
    };
    assert_eq!(
        k.convert(&layout, src, &layout, wrap, null()),
        Err(KernelError::Layout(Error::Overflow))
    );
    assert_eq!(mem.read(src), vec![1; 256]);
}

fn record() -> RecordLayout {
    // 24-byte records: u64 at 0, u32 at 8, 3 bytes at 12, padding, u16 at 20.
    RecordLayout::new(
        24,
        &[
            Field { offset: 0, size: 8 },
            Field { offset: 8, size: 4 },
            Field {
                offset: 12,
                size: 3,
            },
            Field {
                offset: 20,
                size: 2,
            },
        ],
    )
    .unwrap()
}

#[test]
fn record_split_and_join_match_the_cpu() {
    let rec = record();
    for count in [1usize, 7, 100] {
        let (k, mem) = kernels();
        let aos = random_bytes(count * 24, count as u64);
        let sizes: Vec<usize> = rec.fields().iter().map(|f| f.size).collect();
        let mut expected: Vec<Vec<u8>> = sizes.iter().map(|s| vec![0; s * count]).collect();
        {
            let mut outs: Vec<&mut [u8]> = expected.iter_mut().map(|v| v.as_mut_slice()).collect();
            rec.split(&aos, count, &mut outs, &Default::default())
                .unwrap();
        }
        let a = mem.alloc(&aos, 0);
        let fields: Vec<DeviceBuffer> = sizes
            .iter()
            .map(|s| mem.alloc(&vec![0xAB; s * count], 0))
            .collect();
        k.split(&rec, count, a, &fields, null()).unwrap();
        for (f, e) in fields.iter().zip(&expected) {
            assert_eq!(&mem.read(*f), e);
        }

        // Join back into a buffer full of garbage: padding becomes zero.
        let mut joined = random_bytes(count * 24, 5);
        let ins: Vec<&[u8]> = expected.iter().map(|v| v.as_slice()).collect();
        rec.join(&ins, count, &mut joined, &Default::default())
            .unwrap();
        let out = mem.alloc(&random_bytes(count * 24, 5), 0);
        k.join(&rec, count, &fields, out, null()).unwrap();
        assert_eq!(mem.read(out), joined);
    }
}

#[test]
fn record_calls_validate_every_buffer_first() {
    let rec = record();
    let (k, mem) = kernels();
    let aos = mem.alloc(&[7; 240], 0);
    let good: Vec<DeviceBuffer> = rec
        .fields()
        .iter()
        .map(|f| mem.alloc(&vec![1; f.size * 10], 0))
        .collect();
    assert_eq!(
        k.split(&rec, 10, aos, &good[..3], null()),
        Err(KernelError::Layout(Error::BufferCount {
            expected: 4,
            found: 3
        }))
    );
    // The last field's buffer is one byte short: nothing is written.
    let mut bad = good.clone();
    bad[3].len -= 1;
    assert!(k.split(&rec, 10, aos, &bad, null()).is_err());
    assert!(k.join(&rec, 10, &bad, aos, null()).is_err());
    assert_eq!(mem.read(aos), vec![7; 240]);
    for b in &good {
        assert!(mem.read(*b).iter().all(|&x| x == 1));
    }
    assert_eq!(
        k.join(&rec, 11, &good, aos, null()),
        Err(KernelError::Layout(Error::OutOfBounds {
            needed: 264,
            len: 240
        }))
    );
    // Zero records: nothing to do.
    k.split(&rec, 0, aos, &good, null()).unwrap();
}

#[test]
fn element_conversion_dispatch_checks_lengths_and_alignment() {
    let (k, mem) = kernels();
    let src = mem.alloc(&random_bytes(80, 3), 0);
    let dst = mem.alloc(&[0; 40], 0);
    k.convert_elements(ElemType::F64, ElemType::F32, 10, src, dst, null())
        .unwrap();
    let mut expected = vec![0; 40];
    convert_elements_cpu(
        ElemType::F64,
        ElemType::F32,
        10,
        &mem.read(src),
        &mut expected,
    )
    .unwrap();
    assert_eq!(mem.read(dst), expected);
    assert_eq!(
        k.convert_elements(ElemType::F32, ElemType::F64, 10, dst, src, null()),
        Ok(())
    );
    assert_eq!(
        k.convert_elements(ElemType::F32, ElemType::F64, 11, dst, src, null()),
        Err(KernelError::Layout(Error::OutOfBounds {
            needed: 44,
            len: 40
        }))
    );
    let odd = mem.alloc(&[0; 16], 2);
    assert_eq!(
        k.convert_elements(ElemType::U8, ElemType::U32, 4, src, odd, null()),
        Err(KernelError::BadAddress {
            ptr: odd.ptr,
            align: 4
        })
    );
}

#[test]
fn loading_without_gpu_libraries_is_a_typed_error() {
    // On a machine without a GPU driver this must fail cleanly; with one it
    // may succeed. Either way it must not panic.
    match GpuKernels::load(u32::MAX) {
        Ok(_) => panic!("device u32::MAX cannot exist"),
        Err(e) => assert!(
            matches!(
                e,
                KernelError::NoDriver(_)
                    | KernelError::NoDevice { .. }
                    | KernelError::Driver { .. }
            ),
            "{e}"
        ),
    }
}

#[test]
fn shared_kernels_report_the_same_errors_as_load() {
    // No device has this ordinal: both fail alike, and nothing is cached.
    let a = GpuKernels::load(u32::MAX - 1).map(|_| ());
    let b = GpuKernels::shared(u32::MAX - 1).map(|_| ());
    assert!(a.is_err());
    assert_eq!(a, b);
}
