//! Inputs of the element conversion tests, shared by the GPU tests and the
//! host build of the kernel source (integration tests only: it names the
//! crate by its package name).

use super::common::random_bytes;
use mamba_gpu_kernels::ElemType;

/// Values that exercise every rule of the conversion: NaNs with payloads
/// and signs, infinities, zeros, subnormals, integer bounds and their
/// neighbours, halfway cases, then random bits.
pub fn conversion_input(ty: ElemType, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    match ty {
        ElemType::F64 => {
            let specials = [
                f64::NAN,
                -f64::NAN,
                f64::from_bits(0x7ff0_0000_0000_0001),
                f64::from_bits(0xfff4_0000_dead_beef),
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
                -0.0,
                f64::MIN_POSITIVE / 3.0,
                1e300,
                -1e300,
                f64::from(f32::MAX) * (1.0 + 2f64.powi(-25)),
                127.5,
                -128.9,
                255.99,
                256.0,
                -1.0,
                -0.5,
                32767.5,
                65535.9,
                2147483647.5,
                2147483648.0,
                -2147483649.0,
                4294967295.9,
                4294967296.0,
                2f64.powi(63) - 1024.0,
                2f64.powi(63),
                -2f64.powi(63),
                -2f64.powi(63) - 2048.0,
                2f64.powi(64) - 2048.0,
                2f64.powi(64),
                16777217.0,
                0.1,
            ];
            for v in specials {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        ElemType::F32 => {
            let specials = [
                f32::NAN,
                -f32::NAN,
                f32::from_bits(0x7f80_0001),
                f32::from_bits(0xffa0_beef),
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                f32::MIN_POSITIVE / 3.0,
                3.0e38,
                127.5,
                -128.9,
                255.99,
                -0.5,
                65535.9,
                2147483648.0,
                -2147483904.0,
                4294967296.0,
                2f32.powi(63),
                2f32.powi(64),
                -2f32.powi(63),
            ];
            for v in specials {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        _ => {
            // Integer bounds: all-zero, all-one, sign bit only, max positive.
            let size = ty.size();
            for pattern in [0x00u8, 0xff] {
                out.extend(std::iter::repeat_n(pattern, size));
            }
            let mut min = vec![0u8; size];
            min[size - 1] = 0x80;
            out.extend_from_slice(&min);
            let mut max = vec![0xffu8; size];
            max[size - 1] = 0x7f;
            out.extend_from_slice(&max);
        }
    }
    let size = ty.size();
    let specials = out.len() / size;
    out.extend(random_bytes((count - specials) * size, size as u64 + 1));
    out
}
