//! Element types of the conversion kernel and its CPU reference.
//!
//! The conversion has the semantics of Rust `as` casts, on the GPU as on
//! the CPU:
//!
//! * integer -> integer: the value is sign- or zero-extended by the source
//!   type, then the low bits are kept (wrapping narrowing);
//! * float -> integer: truncation toward zero, saturating at the target's
//!   bounds; NaN becomes 0;
//! * integer -> float and `f64` -> `f32`: rounding to nearest, ties to
//!   even; out-of-range `f64` values become infinities;
//! * `f32` -> `f64`: exact;
//! * NaN -> NaN keeps its sign and its high payload bits and is made quiet,
//!   as the float conversion instructions of x86-64 and AArch64 do (Rust
//!   leaves NaN payloads unspecified; on those targets `as` does this).

use crate::error::KernelError;

/// A scalar element type of [`crate::GpuKernels::convert_elements`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// `u8`.
    U8,
    /// `i8`.
    I8,
    /// `u16`.
    U16,
    /// `i16`.
    I16,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u64`.
    U64,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

impl ElemType {
    /// Every type, in the order of their codes.
    pub const ALL: [ElemType; 10] = [
        ElemType::U8,
        ElemType::I8,
        ElemType::U16,
        ElemType::I16,
        ElemType::U32,
        ElemType::I32,
        ElemType::U64,
        ElemType::I64,
        ElemType::F32,
        ElemType::F64,
    ];

    /// Size in bytes.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 | ElemType::I8 => 1,
            ElemType::U16 | ElemType::I16 => 2,
            ElemType::U32 | ElemType::I32 | ElemType::F32 => 4,
            ElemType::U64 | ElemType::I64 | ElemType::F64 => 8,
        }
    }

    /// The code the kernel source uses for this type (`enum ElemType`).
    pub(crate) fn code(self) -> u64 {
        self as u64
    }
}

/// A source value: integers extended to 64 bits by their signedness, floats
/// as they are.
#[derive(Clone, Copy)]
enum Value {
    Signed(i64),
    Unsigned(u64),
    F32(f32),
    F64(f64),
}

fn load(ty: ElemType, b: &[u8]) -> Value {
    macro_rules! read {
        ($t:ty) => {
            <$t>::from_ne_bytes(b.try_into().expect("element-sized chunk"))
        };
    }
    match ty {
        ElemType::U8 => Value::Unsigned(u64::from(b[0])),
        ElemType::I8 => Value::Signed(i64::from(b[0] as i8)),
        ElemType::U16 => Value::Unsigned(u64::from(read!(u16))),
        ElemType::I16 => Value::Signed(i64::from(read!(i16))),
        ElemType::U32 => Value::Unsigned(u64::from(read!(u32))),
        ElemType::I32 => Value::Signed(i64::from(read!(i32))),
        ElemType::U64 => Value::Unsigned(read!(u64)),
        ElemType::I64 => Value::Signed(read!(i64)),
        ElemType::F32 => Value::F32(read!(f32)),
        ElemType::F64 => Value::F64(read!(f64)),
    }
}

fn store(ty: ElemType, v: Value, out: &mut [u8]) {
    macro_rules! cast {
        ($t:ty) => {
            match v {
                Value::Signed(x) => x as $t,
                Value::Unsigned(x) => x as $t,
                Value::F32(x) => x as $t,
                Value::F64(x) => x as $t,
            }
            .to_ne_bytes()
        };
    }
    match ty {
        ElemType::U8 => out.copy_from_slice(&cast!(u8)),
        ElemType::I8 => out.copy_from_slice(&cast!(i8)),
        ElemType::U16 => out.copy_from_slice(&cast!(u16)),
        ElemType::I16 => out.copy_from_slice(&cast!(i16)),
        ElemType::U32 => out.copy_from_slice(&cast!(u32)),
        ElemType::I32 => out.copy_from_slice(&cast!(i32)),
        ElemType::U64 => out.copy_from_slice(&cast!(u64)),
        ElemType::I64 => out.copy_from_slice(&cast!(i64)),
        ElemType::F32 => out.copy_from_slice(&cast!(f32)),
        ElemType::F64 => out.copy_from_slice(&cast!(f64)),
    }
}

/// Converts `count` elements from `src` (of type `from`) to `dst` (of type
/// `to`) on the CPU with `as` casts: the reference the GPU kernel matches
/// bit for bit, and the host-side path of a converting copy.
///
/// # Errors
///
/// [`mamba_transforms::Error::OutOfBounds`] when a buffer is shorter than
/// `count` elements.
pub fn convert_elements_cpu(
    from: ElemType,
    to: ElemType,
    count: usize,
    src: &[u8],
    dst: &mut [u8],
) -> Result<(), KernelError> {
    check_len(from, count, src.len())?;
    check_len(to, count, dst.len())?;
    for (s, d) in src
        .chunks_exact(from.size())
        .zip(dst.chunks_exact_mut(to.size()))
        .take(count)
    {
        store(to, load(from, s), d);
    }
    Ok(())
}

/// Checks that `len` bytes hold `count` elements of `ty`.
pub(crate) fn check_len(ty: ElemType, count: usize, len: usize) -> Result<(), KernelError> {
    let needed = count
        .checked_mul(ty.size())
        .ok_or(mamba_transforms::Error::Overflow)?;
    if needed > len {
        return Err(mamba_transforms::Error::OutOfBounds { needed, len }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(from: ElemType, to: ElemType, src: &[u8]) -> Vec<u8> {
        let mut out = vec![0; to.size()];
        convert_elements_cpu(from, to, 1, src, &mut out).unwrap();
        out
    }

    #[test]
    fn float_to_int_saturates_and_maps_nan_to_zero() {
        let f = |x: f64| x.to_ne_bytes();
        assert_eq!(
            one(ElemType::F64, ElemType::I32, &f(1e300)),
            i32::MAX.to_ne_bytes()
        );
        assert_eq!(
            one(ElemType::F64, ElemType::I32, &f(-1e300)),
            i32::MIN.to_ne_bytes()
        );
        assert_eq!(one(ElemType::F64, ElemType::U8, &f(-3.7)), [0]);
        assert_eq!(one(ElemType::F64, ElemType::U8, &f(255.9)), [255]);
        assert_eq!(one(ElemType::F64, ElemType::I8, &f(-7.9)), [(-7i8) as u8]);
        assert_eq!(one(ElemType::F64, ElemType::U64, &f(f64::NAN)), [0; 8]);
        let inf = f32::INFINITY.to_ne_bytes();
        assert_eq!(
            one(ElemType::F32, ElemType::I64, &inf),
            i64::MAX.to_ne_bytes()
        );
    }

    #[test]
    fn integers_wrap_by_source_signedness() {
        assert_eq!(
            one(ElemType::I8, ElemType::U32, &[0xff]),
            u32::MAX.to_ne_bytes()
        );
        assert_eq!(
            one(ElemType::U8, ElemType::I32, &[0xff]),
            255i32.to_ne_bytes()
        );
        let big = 0x1234_5678u32.to_ne_bytes();
        assert_eq!(one(ElemType::U32, ElemType::U8, &big), [0x78]);
        assert_eq!(
            one(ElemType::U32, ElemType::I16, &big),
            0x5678i16.to_ne_bytes()
        );
    }

    #[test]
    fn integer_to_float_rounds_to_nearest_even() {
        // 2^24 + 1 is halfway between two f32 values; ties go to even.
        let x = (1u32 << 24) + 1;
        let out = one(ElemType::U32, ElemType::F32, &x.to_ne_bytes());
        assert_eq!(f32::from_ne_bytes(out.try_into().unwrap()), 16_777_216.0);
        let y = u64::MAX.to_ne_bytes();
        let out = one(ElemType::U64, ElemType::F64, &y);
        assert_eq!(
            f64::from_ne_bytes(out.try_into().unwrap()),
            18_446_744_073_709_551_616.0
        );
    }

    #[test]
    fn f64_to_f32_overflows_to_infinity_and_keeps_nan() {
        let out = one(ElemType::F64, ElemType::F32, &1e300f64.to_ne_bytes());
        assert_eq!(f32::from_ne_bytes(out.try_into().unwrap()), f32::INFINITY);
        let out = one(ElemType::F64, ElemType::F32, &(-f64::NAN).to_ne_bytes());
        let v = f32::from_ne_bytes(out.try_into().unwrap());
        assert!(v.is_nan() && v.is_sign_negative());
    }

    #[test]
    fn short_buffers_are_refused() {
        let mut dst = [0u8; 7];
        let err = convert_elements_cpu(ElemType::U8, ElemType::F64, 1, &[1], &mut dst);
        assert_eq!(
            err,
            Err(mamba_transforms::Error::OutOfBounds { needed: 8, len: 7 }.into())
        );
        assert!(
            convert_elements_cpu(ElemType::U16, ElemType::U8, 2, &[0; 3], &mut [0; 2]).is_err()
        );
    }
}
