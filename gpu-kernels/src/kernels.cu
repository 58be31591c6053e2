// Layout kernels of mamba-gpu-kernels, compiled at run time by NVRTC (CUDA)
// or hiprtc (HIP). No headers: the source must compile with both.
//
// Every kernel takes one struct of 64-bit words by value; the Rust side packs
// the same words in the same order (src/plan.rs). Addresses are byte
// addresses; strides are signed byte strides; all index math is 64-bit.

typedef unsigned long long u64;
typedef long long i64;

// A 16-byte element moved as one aligned load and store.
struct alignas(16) u128 {
    u64 lo;
    u64 hi;
};

#define TILE 32
#define BLOCK_ROWS 8
#define MAX_RANK 8
#define MAX_BATCH 6

// Loops the device compilers unroll; plain loops elsewhere (the host build
// of this source in the tests).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

__device__ __forceinline__ u64 at(u64 base, i64 offset) { return base + (u64)offset; }

// ---------------------------------------------------------------------------
// Pitched: `rows` runs of `row_units` contiguous units on both sides (dense
// copies, padded <-> dense). Grid: x over the units of a row, y over rows.

struct PitchedParams {
    u64 src, dst, rows, row_units;
    i64 src_pitch, dst_pitch;
};

template <typename T>
__device__ void pitched(const PitchedParams& p) {
    const u64 step = (u64)gridDim.x * blockDim.x;
    for (u64 r = blockIdx.y; r < p.rows; r += gridDim.y) {
        const T* s = (const T*)at(p.src, (i64)r * p.src_pitch);
        T* d = (T*)at(p.dst, (i64)r * p.dst_pitch);
        for (u64 c = (u64)blockIdx.x * blockDim.x + threadIdx.x; c < p.row_units; c += step) {
            d[c] = s[c];
        }
    }
}

// ---------------------------------------------------------------------------
// Strided gather/scatter: `count` elements of `units` units each; element i
// is decomposed over `shape` (dimension rank-1 varies fastest).

struct StridedParams {
    u64 src, dst, count, rank, units;
    u64 shape[MAX_RANK];
    i64 src_stride[MAX_RANK];
    i64 dst_stride[MAX_RANK];
};

template <typename T>
__device__ void strided(const StridedParams& p) {
    const u64 step = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < p.count; i += step) {
        u64 rem = i;
        i64 so = 0, doff = 0;
        for (int d = (int)p.rank - 1; d >= 0; --d) {
            const u64 n = p.shape[d];
            const u64 k = rem % n;
            rem /= n;
            so += (i64)k * p.src_stride[d];
            doff += (i64)k * p.dst_stride[d];
        }
        const T* s = (const T*)at(p.src, so);
        T* dd = (T*)at(p.dst, doff);
        for (u64 u = 0; u < p.units; ++u) {
            dd[u] = s[u];
        }
    }
}

// ---------------------------------------------------------------------------
// Tiled transpose: dimension p is contiguous in the source, q in the
// destination; a TILE x TILE tile is read along p, staged in shared memory
// (one column of padding against bank conflicts) and written along q. The
// remaining dimensions are a batch walked by grid z. Grid x over p tiles,
// y over q tiles; every grid dimension loops, so any extent fits.

struct TransposeParams {
    u64 src, dst, np, nq;
    i64 src_p, src_q, dst_p, dst_q;
    u64 batch_rank, batch_count;
    u64 shape[MAX_BATCH];
    i64 src_stride[MAX_BATCH];
    i64 dst_stride[MAX_BATCH];
};

template <typename T>
__device__ void transpose(const TransposeParams& p) {
    __shared__ T tile[TILE][TILE + 1];
    const u64 tiles_p = (p.np + TILE - 1) / TILE;
    const u64 tiles_q = (p.nq + TILE - 1) / TILE;
    for (u64 b = blockIdx.z; b < p.batch_count; b += gridDim.z) {
        u64 rem = b;
        i64 sb = 0, db = 0;
        for (int d = (int)p.batch_rank - 1; d >= 0; --d) {
            const u64 n = p.shape[d];
            const u64 k = rem % n;
            rem /= n;
            sb += (i64)k * p.src_stride[d];
            db += (i64)k * p.dst_stride[d];
        }
        for (u64 bq = blockIdx.y; bq < tiles_q; bq += gridDim.y) {
            for (u64 bp = blockIdx.x; bp < tiles_p; bp += gridDim.x) {
                const u64 p0 = bp * TILE, q0 = bq * TILE;
                const u64 pi = p0 + threadIdx.x, qo = q0 + threadIdx.x;
                // Per-thread addresses advance by one block-row stride per
                // step: no multiplication in the loops.
                const i64 src_step = (i64)BLOCK_ROWS * p.src_q;
                const i64 dst_step = (i64)BLOCK_ROWS * p.dst_p;
                const u64 src0 = at(p.src, sb + (i64)pi * p.src_p + (i64)(q0 + threadIdx.y) * p.src_q);
                const u64 dst0 = at(p.dst, db + (i64)(p0 + threadIdx.y) * p.dst_p + (i64)qo * p.dst_q);
                if (p0 + TILE <= p.np && q0 + TILE <= p.nq) {
                    // A full tile: no bounds checks, every load of a thread
                    // in flight before the first store to shared memory.
                    T v[TILE / BLOCK_ROWS];
UNROLL
                    for (unsigned j = 0; j < TILE / BLOCK_ROWS; ++j) {
                        v[j] = *(const T*)at(src0, (i64)j * src_step);
                    }
UNROLL
                    for (unsigned j = 0; j < TILE / BLOCK_ROWS; ++j) {
                        tile[threadIdx.y + j * BLOCK_ROWS][threadIdx.x] = v[j];
                    }
                    __syncthreads();
UNROLL
                    for (unsigned j = 0; j < TILE / BLOCK_ROWS; ++j) {
                        v[j] = tile[threadIdx.x][threadIdx.y + j * BLOCK_ROWS];
                    }
UNROLL
                    for (unsigned j = 0; j < TILE / BLOCK_ROWS; ++j) {
                        *(T*)at(dst0, (i64)j * dst_step) = v[j];
                    }
                } else {
                    u64 src_at = src0;
                    for (unsigned k = threadIdx.y; k < TILE; k += BLOCK_ROWS, src_at += src_step) {
                        if (pi < p.np && q0 + k < p.nq) {
                            tile[k][threadIdx.x] = *(const T*)src_at;
                        }
                    }
                    __syncthreads();
                    u64 dst_at = dst0;
                    for (unsigned k = threadIdx.y; k < TILE; k += BLOCK_ROWS, dst_at += dst_step) {
                        if (p0 + k < p.np && qo < p.nq) {
                            *(T*)dst_at = tile[threadIdx.x][k];
                        }
                    }
                }
                __syncthreads();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Element type conversion with the semantics of Rust `as` casts:
// integer -> integer wraps (sign- or zero-extends by the source type, then
// keeps the low bits); float -> integer truncates toward zero and saturates,
// NaN -> 0; integer -> float and f64 -> f32 round to nearest even; NaN keeps
// its sign and high payload bits and is made quiet (as x86-64 and AArch64
// do).

enum ElemType { U8 = 0, I8, U16, I16, U32, I32, U64, I64, F32, F64 };

struct ConvertParams {
    u64 src, dst, count, src_type, dst_type;
};

// A source value: integers extended to 64 bits by their signedness, floats
// kept as they are.
struct Value {
    int kind;  // 0 signed, 1 unsigned, 2 f32, 3 f64
    i64 i;
    u64 u;
    float f;
    double d;
};

__device__ __forceinline__ float f64_to_f32(double x) {
    if (x != x) {
        const u64 b = (u64)__double_as_longlong(x);
        return __uint_as_float((unsigned)((b >> 32) & 0x80000000u) | 0x7fc00000u |
                               (unsigned)((b >> 29) & 0x7fffffu));
    }
    return (float)x;
}

__device__ __forceinline__ double f32_to_f64(float x) {
    if (x != x) {
        const unsigned b = __float_as_uint(x);
        return __longlong_as_double((i64)(((u64)(b & 0x80000000u) << 32) | 0x7ff8000000000000ull |
                                          ((u64)(b & 0x7fffffu) << 29)));
    }
    return (double)x;
}

// Float -> signed integer of `bits` bits: truncate, saturate, NaN -> 0.
__device__ __forceinline__ u64 sat_signed(double x, int bits) {
    if (x != x) return 0;
    const double lim = (double)(1ull << (bits - 1));
    if (x >= lim) return (1ull << (bits - 1)) - 1;
    if (x <= -lim) return ~0ull << (bits - 1);
    return (u64)(i64)x;
}

// Float -> unsigned integer of `bits` bits: truncate, saturate, NaN -> 0.
__device__ __forceinline__ u64 sat_unsigned(double x, int bits) {
    if (!(x > -1.0)) return 0;
    const double lim = bits == 64 ? 18446744073709551616.0 : (double)(1ull << bits);
    if (x >= lim) return bits == 64 ? ~0ull : (1ull << bits) - 1;
    return (u64)x;
}

__device__ __forceinline__ Value load_value(u64 base, u64 i, u64 type) {
    Value v;
    v.kind = 0;
    v.i = 0;
    v.u = 0;
    v.f = 0.0f;
    v.d = 0.0;
    switch (type) {
        case U8: v.kind = 1; v.u = ((const unsigned char*)base)[i]; break;
        case I8: v.i = ((const signed char*)base)[i]; break;
        case U16: v.kind = 1; v.u = ((const unsigned short*)base)[i]; break;
        case I16: v.i = ((const short*)base)[i]; break;
        case U32: v.kind = 1; v.u = ((const unsigned*)base)[i]; break;
        case I32: v.i = ((const int*)base)[i]; break;
        case U64: v.kind = 1; v.u = ((const u64*)base)[i]; break;
        case I64: v.i = ((const i64*)base)[i]; break;
        case F32: v.kind = 2; v.f = ((const float*)base)[i]; v.d = (double)v.f; break;
        default: v.kind = 3; v.d = ((const double*)base)[i]; break;
    }
    return v;
}

// The integer bits of `v` converted to an integer type of `bits` bits.
__device__ __forceinline__ u64 int_bits(const Value& v, int bits, bool is_signed) {
    if (v.kind == 0) return (u64)v.i;
    if (v.kind == 1) return v.u;
    return is_signed ? sat_signed(v.d, bits) : sat_unsigned(v.d, bits);
}

__device__ __forceinline__ void store_value(u64 base, u64 i, u64 type, const Value& v) {
    switch (type) {
        case U8: ((unsigned char*)base)[i] = (unsigned char)int_bits(v, 8, false); break;
        case I8: ((unsigned char*)base)[i] = (unsigned char)int_bits(v, 8, true); break;
        case U16: ((unsigned short*)base)[i] = (unsigned short)int_bits(v, 16, false); break;
        case I16: ((unsigned short*)base)[i] = (unsigned short)int_bits(v, 16, true); break;
        case U32: ((unsigned*)base)[i] = (unsigned)int_bits(v, 32, false); break;
        case I32: ((unsigned*)base)[i] = (unsigned)int_bits(v, 32, true); break;
        case U64: ((u64*)base)[i] = int_bits(v, 64, false); break;
        case I64: ((u64*)base)[i] = int_bits(v, 64, true); break;
        case F32: {
            float r;
            if (v.kind == 0) r = (float)v.i;
            else if (v.kind == 1) r = (float)v.u;
            else if (v.kind == 2) r = v.f;
            else r = f64_to_f32(v.d);
            ((float*)base)[i] = r;
            break;
        }
        default: {
            double r;
            if (v.kind == 0) r = (double)v.i;
            else if (v.kind == 1) r = (double)v.u;
            else if (v.kind == 2) r = f32_to_f64(v.f);
            else r = v.d;
            ((double*)base)[i] = r;
            break;
        }
    }
}

extern "C" __global__ void convert(const ConvertParams p) {
    const u64 step = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < p.count; i += step) {
        store_value(p.dst, i, p.dst_type, load_value(p.src, i, p.src_type));
    }
}

// ---------------------------------------------------------------------------
// Entry points, one per family and unit size (names used by src/plan.rs).

#define ENTRY(family, params, width, type)                                        \
    extern "C" __global__ void family##_##width(const params p) { family<type>(p); }

ENTRY(pitched, PitchedParams, 1, unsigned char)
ENTRY(pitched, PitchedParams, 2, unsigned short)
ENTRY(pitched, PitchedParams, 4, unsigned)
ENTRY(pitched, PitchedParams, 8, u64)
ENTRY(pitched, PitchedParams, 16, u128)
ENTRY(strided, StridedParams, 1, unsigned char)
ENTRY(strided, StridedParams, 2, unsigned short)
ENTRY(strided, StridedParams, 4, unsigned)
ENTRY(strided, StridedParams, 8, u64)
ENTRY(strided, StridedParams, 16, u128)

#define TRANSPOSE_ENTRY(width, type)                                                  \
    extern "C" __global__ void __launch_bounds__(TILE * BLOCK_ROWS)                  \
        transpose_##width(const TransposeParams p) { transpose<type>(p); }

TRANSPOSE_ENTRY(1, unsigned char)
TRANSPOSE_ENTRY(2, unsigned short)
TRANSPOSE_ENTRY(4, unsigned)
TRANSPOSE_ENTRY(8, u64)
TRANSPOSE_ENTRY(16, u128)
