// y = H x for a chunk of wave functions, one thread per plane-wave
// coefficient: the same arithmetic in the same order as
// `physics::Hamiltonian::apply` (kinetic diagonal first, then the
// couplings of directions 0, 1 and 2, each skipped when its potential
// component is zero; each coupling sums the lower neighbour then the upper
// one into a zero accumulator, scales the sum by V_d and adds it). Complex
// values are pairs of doubles (real, imaginary). Compiled with
// `--fmad=false`, so that no multiply-add is contracted and the results are
// the CPU's bits.

struct SiriusApplyParams {
    const double* x;          // input chunk, `len` complex values
    double* y;                // output chunk, `len` complex values
    const double* diagonal;   // kinetic diagonal, `n` values
    unsigned long long n;     // plane waves per vector
    unsigned long long len;   // complex values in the chunk (a multiple of n)
    unsigned long long side;  // plane waves per direction, 2 nmax + 1
    double v[3];              // potential components V_d
};

extern "C" __global__ void sirius_apply_h(const SiriusApplyParams p) {
    const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < p.len; i += step) {
        const unsigned long long j = i % p.n;
        const double d = p.diagonal[j];
        double re = p.x[2 * i] * d;
        double im = p.x[2 * i + 1] * d;
        unsigned long long stride = 1;
        for (int dir = 0; dir < 3; ++dir) {
            const double v = p.v[dir];
            if (v != 0.0) {
                const unsigned long long pos = j / stride % p.side;
                double acc_re = 0.0;
                double acc_im = 0.0;
                if (pos > 0) {
                    acc_re += p.x[2 * (i - stride)];
                    acc_im += p.x[2 * (i - stride) + 1];
                }
                if (pos + 1 < p.side) {
                    acc_re += p.x[2 * (i + stride)];
                    acc_im += p.x[2 * (i + stride) + 1];
                }
                re += acc_re * v;
                im += acc_im * v;
            }
            stride *= p.side;
        }
        p.y[2 * i] = re;
        p.y[2 * i + 1] = im;
    }
}
