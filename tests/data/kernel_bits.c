/* Every entry point of screening/kernels.c on fixed pseudo-random inputs; prints one hash of all
   output bits. tests/screening/test_kernels.py builds it for this CPU and for another (a cross
   compiler and an emulator, where present) with kernel_build's flags: equal hashes, equal bits. */
#include <stdio.h>
#include <stdlib.h>
#include "kernels.c"

static uint64_t state = 88172645463325252ULL;

static float uniform(void) /* [0, 1) from xorshift64: the same on every CPU, no libm */
{
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return (float)(state >> 40) / 16777216.0f;
}

static uint64_t hash = 1469598103934665603ULL;

static void mix(const float *x, int64_t n)
{
    const unsigned char *b = (const unsigned char *)x;
    for (int64_t i = 0; i < n * (int64_t)sizeof *x; i++)
        hash = (hash ^ b[i]) * 1099511628211ULL;
}

int main(void)
{
    const int64_t N = 200, B = 41, J = 11;
    int64_t *start = malloc((N + 1) * sizeof *start);
    start[0] = 0;
    for (int64_t i = 0; i < N; i++)
        start[i + 1] = start[i] + (int64_t)(uniform() * 16); /* 0 .. 15 edges an atom */
    const int64_t E = start[N];
    int64_t *dst = malloc(E * sizeof *dst), *band = malloc(E * sizeof *band);
    for (int64_t e = 0; e < E; e++)
        dst[e] = (int64_t)(uniform() * N), band[e] = (int64_t)(uniform() * (B - J + 1));
    for (int64_t A = 20; A <= 32; A += 12) { /* 2A = 40: a 32-column block and a tail; 2A = 64: blocks */
        float *u = malloc(E * B * sizeof *u), *w = malloc(B * 2 * A * sizeof *w);
        float *p = malloc(N * 2 * A * sizeof *p), *q = malloc(N * 2 * A * sizeof *q);
        float *h = malloc(E * 2 * A * sizeof *h), *dh = malloc(E * 2 * A * sizeof *dh);
        float *out = malloc(N * A * sizeof *out), *dout = malloc(N * A * sizeof *dout);
        for (int64_t i = 0; i < E * B; i++) u[i] = uniform();
        for (int64_t i = 0; i < B * 2 * A; i++) w[i] = 2 * uniform() - 1;
        for (int64_t i = 0; i < N * 2 * A; i++) p[i] = 60 * uniform() - 30, q[i] = 60 * uniform() - 30;
        for (int64_t i = 0; i < E * 2 * A; i++) h[i] = 200 * uniform() - 100; /* into the flushed range */
        for (int64_t i = 0; i < N * A; i++) dout[i] = 2 * uniform() - 1;
        gated_messages(u, B, NULL, J, w, p, q, dst, start, out, 0, N, A);
        mix(out, N * A);
        gated_messages(u, B, band, J, w, p, q, dst, start, out, 0, N, A);
        mix(out, N * A);
        gate_sum_forward(h, start, out, 0, N, A);
        mix(out, N * A);
        gate_sum_backward(h, start, dout, dh, 0, N, A);
        mix(dh, E * 2 * A);
        free(u), free(w), free(p), free(q), free(h), free(dh), free(out), free(dout);
    }
    printf("%016llx %lld\n", (unsigned long long)hash, (long long)E);
    return 0;
}
