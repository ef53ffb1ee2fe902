// How this machine's speed grows from one core to two, with no program of ours in the way:
// each thread runs the same 512-bit multiply-adds, over registers only or over a buffer of
// its own of the given size (resident in L2, in L3, or in memory), alone and then with a
// second thread beside it. Printed ratios are two threads' throughput over one thread's.
//
//   gcc -O2 -mavx512f -fopenmp bench/machine/scaling.c -o /tmp/scaling
//   /tmp/scaling            # rounds of registers, 512 KiB, 4 MiB and 64 MiB per thread
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

// Seconds for `work` multiply-adds of 8 x 16 lanes, over registers (kib 0) or a buffer.
static double run(long work, long kib) {
    __m512 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm512_set1_ps(1.0f);
    __m512 scale = _mm512_set1_ps(0.9999999f), step = _mm512_set1_ps(1e-7f);
    long floats = kib * 256;
    float *buffer = floats ? aligned_alloc(64, floats * sizeof(float)) : NULL;
    for (long i = 0; i < floats; i++) buffer[i] = 1.0f;
    double start = omp_get_wtime();
    if (!floats) {
        for (long k = 0; k < work; k++)
            for (int i = 0; i < 8; i++) acc[i] = _mm512_fmadd_ps(acc[i], scale, step);
    } else {
        for (long done = 0; done < work; done += floats / 128)
            for (long j = 0; j < floats; j += 128)
                for (int i = 0; i < 8; i++)
                    acc[i] = _mm512_fmadd_ps(acc[i], _mm512_load_ps(buffer + j + 16 * i), acc[i]);
    }
    double seconds = omp_get_wtime() - start;
    float sum = 0;
    for (int i = 0; i < 8; i++) sum += _mm512_reduce_add_ps(acc[i]);
    if (sum == 12345.0f) puts("");  // keeps the arithmetic
    free(buffer);
    return seconds;
}

int main(void) {
    const long sizes[] = {0, 512, 4096, 65536};
    for (int round = 1; round <= 3; round++) {
        printf("round %d:", round);
        for (int s = 0; s < 4; s++) {
            long work = sizes[s] == 65536 ? 100000000 : 300000000;
            double one = run(work, sizes[s]), two[2];
#pragma omp parallel num_threads(2)
            two[omp_get_thread_num()] = run(work, sizes[s]);
            double slower = two[0] > two[1] ? two[0] : two[1];
            if (sizes[s]) printf("  %5ld KiB %.2fx", sizes[s], 2 * one / slower);
            else printf("  registers %.2fx", 2 * one / slower);
        }
        printf("\n");
    }
    return 0;
}
