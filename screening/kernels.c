/* The edge messages of one MT-CGCNN convolution at inference, fused (screening/kernels.py).

   For each atom i in [a0, a1) and each of its edges e (rows start[i] .. start[i+1]-1):
       h = u[e] W + p[i] + q[dst[e]]                  (2A values: gate half, core half)
       out[i, c] = sum over e of sigmoid(h[c]) * softplus(h[A + c]),   c < A
   u: (E, B) Gaussian-expanded distances; W: (B, 2A) = W_u^T; p: (N, 2A) = v W_i + b;
   q: (N, 2A) = v W_j (batch norm folded into W_u, W_i, b, W_j).

   One pass per atom where torch makes eight over (E, 2A) rows (a matrix product, two
   gathers, an add, sigmoid, softplus, a product, a sum):
   - u[e] W: with band (not NULL), only u[e, band[e] .. band[e] + J - 1] enters it: a
     Gaussian expansion is ~0 (below e^-30 of its peak) outside its J nearest centers.
   - exp is Cephes' range reduction with a fitted polynomial (within 1.1 float32 ulps, no
     libm call, so the compiler vectorizes the loop over c); log1p(t) for 0 <= t <= 1 is
     2 atanh(s), s = t / (2 + t), with a fitted polynomial for atanh(s) / s (within 2.6 ulps,
     as the 9-term series it replaced). Inputs beyond +-87 saturate exp at 2^+-126, where
     sigmoid and softplus are already exact to float32.

   Portable C99 with GCC's and Clang's vector extension (x86-64, ARM, others); the only
   CPU-specific code is the subnormal flush below. Built with -ffp-contract=off
   (screening/kernel_build.py), every build computes the same IEEE operations. */
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

typedef float v8 __attribute__((vector_size(32))); /* GCC's and Clang's vector extension: 8 floats */

static inline v8 load8(const float *p)
{
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Flush subnormals to zero in this thread while a loop runs (the previous mode restored after it):
   the polynomials of e^-|x| near e^-87 make products below float32's normal range, and each one
   costs the CPU a slow assist (softplus took twice as long); they are ~1e-40, nothing in any sum.
   x86: MXCSR's FTZ and DAZ bits; ARM64: FPCR's FZ bit; elsewhere the mode stays as it is. */
typedef uint64_t fp_mode;

static inline fp_mode flush_subnormals(void)
{
#if defined(__x86_64__) || defined(_M_X64)
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
    return csr;
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (UINT64_C(1) << 24)));
    return fpcr;
#else
    return 0;
#endif
}

static inline void restore_fp_mode(fp_mode mode)
{
#if defined(__x86_64__) || defined(_M_X64)
    _mm_setcsr((unsigned int)mode);
#elif defined(__aarch64__)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(mode));
#else
    (void)mode;
#endif
}

static inline float exp_poly(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + shift) - shift;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.392957172356546e-3f; /* (e^r - 1 - r) / r^2 on |r| <= ln2 / 2, fitted: 1.1 ulps */
    p = p * r + 8.359856903553009e-3f;
    p = p * r + 4.166650399565697e-2f;
    p = p * r + 1.6666598618030548e-1f;
    p = p * r + 0.5f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + exp_poly(-x));
}

static inline float exp_neg_abs(float x)
{
    return exp_poly(x < 0.0f ? x : -x); /* e^-|x| in (0, 1] */
}

static inline float softplus_of(float x, float t) /* t = exp_neg_abs(x) */
{
    /* 2s = 2t / (2 + t) in one division, and s = 2s / 2 (exact). Written as 2 * s, GCC folds the
       factor into the division and Clang does not, and where t is near e^-87, s is subnormal,
       flushed to 0 while 2t / (2 + t) is not: the compilers' results differed. */
    const float s2 = (2.0f * t) / (2.0f + t), s = 0.5f * s2;
    float z = s * s;
    float p = z * 0.12200534343719482f + 0.10693691670894623f; /* atanh(s) / s in z = s^2 <= 1/9, fitted */
    p = p * z + 0.1431121826171875f;
    p = p * z + 0.19999279081821442f;
    p = p * z + 0.33333340287208557f;
    p = p * z + 1.0f;
    return (x > 0.0f ? x : 0.0f) + s2 * p;
}

static inline float softplus(float x)
{
    return softplus_of(x, exp_neg_abs(x));
}

void gated_messages(const float *restrict u, int64_t B, const int64_t *restrict band, int64_t J,
                    const float *restrict w, const float *restrict p, const float *restrict q,
                    const int64_t *restrict dst, const int64_t *restrict start, float *restrict out,
                    int64_t a0, int64_t a1, int64_t A)
{
    float h[2 * A];
    const fp_mode mode = flush_subnormals();
    for (int64_t i = a0; i < a1; i++) {
        float *restrict acc = out + i * A;
        const float *restrict pi = p + i * 2 * A;
        memset(acc, 0, (size_t)A * sizeof *acc);
        for (int64_t e = start[i]; e < start[i + 1]; e++) {
            const float *restrict qj = q + dst[e] * 2 * A;
            const int64_t first = band ? band[e] : 0, n = band ? J : B;
            const float *restrict ue = u + e * B + first;
            const float *restrict we = w + first * 2 * A;
            int64_t c = 0;
            for (; c + 32 <= 2 * A; c += 32) { /* 32 columns in 4 vector registers across the j loop */
                v8 t0 = load8(pi + c) + load8(qj + c), t1 = load8(pi + c + 8) + load8(qj + c + 8);
                v8 t2 = load8(pi + c + 16) + load8(qj + c + 16), t3 = load8(pi + c + 24) + load8(qj + c + 24);
                for (int64_t j = 0; j < n; j++) {
                    const float *restrict wj = we + j * 2 * A + c;
                    const v8 a = {ue[j], ue[j], ue[j], ue[j], ue[j], ue[j], ue[j], ue[j]};
                    t0 += a * load8(wj), t1 += a * load8(wj + 8), t2 += a * load8(wj + 16), t3 += a * load8(wj + 24);
                }
                memcpy(h + c, &t0, sizeof t0), memcpy(h + c + 8, &t1, sizeof t1);
                memcpy(h + c + 16, &t2, sizeof t2), memcpy(h + c + 24, &t3, sizeof t3);
            }
            for (; c < 2 * A; c++) { /* the columns left when 2A is not a multiple of 32 */
                float t = pi[c] + qj[c];
                for (int64_t j = 0; j < n; j++)
                    t += ue[j] * we[j * 2 * A + c];
                h[c] = t;
            }
            for (int64_t c = 0; c < A; c++)
                acc[c] += sigmoid(h[c]) * softplus(h[A + c]);
        }
    }
    restore_fp_mode(mode);
}

/* Training: the same messages from h (E, 2A) after batch norm, and their gradient.

   gate_sum_forward:  out[i, c] = sum over atom i's edges e of sigmoid(h[e, c]) * softplus(h[e, A + c])
   gate_sum_backward: dh[e, c]     = dout[i, c] * softplus(s) * sigmoid(g) * (1 - sigmoid(g))
                      dh[e, A + c] = dout[i, c] * sigmoid(g) * sigmoid(s)
   (g = h[e, c], s = h[e, A + c], i the atom of edge e). In torch's ops these are eight
   passes over (E, A) tensors and four saved ones; here one pass each way, and only h is kept. */
void gate_sum_forward(const float *restrict h, const int64_t *restrict start, float *restrict out,
                      int64_t a0, int64_t a1, int64_t A)
{
    const fp_mode mode = flush_subnormals();
    for (int64_t i = a0; i < a1; i++) {
        float *restrict acc = out + i * A;
        memset(acc, 0, (size_t)A * sizeof *acc);
        for (int64_t e = start[i]; e < start[i + 1]; e++) {
            const float *restrict he = h + e * 2 * A;
            for (int64_t c = 0; c < A; c++)
                acc[c] += sigmoid(he[c]) * softplus(he[A + c]);
        }
    }
    restore_fp_mode(mode);
}

void gate_sum_backward(const float *restrict h, const int64_t *restrict start, const float *restrict dout,
                       float *restrict dh, int64_t a0, int64_t a1, int64_t A)
{
    const fp_mode mode = flush_subnormals();
    for (int64_t i = a0; i < a1; i++) {
        const float *restrict d = dout + i * A;
        for (int64_t e = start[i]; e < start[i + 1]; e++) {
            const float *restrict he = h + e * 2 * A;
            float *restrict de = dh + e * 2 * A;
            for (int64_t c = 0; c < A; c++) {
                const float g = sigmoid(he[c]), s = he[A + c];
                const float t = exp_neg_abs(s); /* one exp for both sigmoid(s) and softplus(s) */
                const float sig_s = (s < 0.0f ? t : 1.0f) / (1.0f + t);
                de[c] = d[c] * softplus_of(s, t) * g * (1.0f - g);
                de[A + c] = d[c] * g * sig_s;
            }
        }
    }
    restore_fp_mode(mode);
}
