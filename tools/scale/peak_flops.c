// The machine's multiply-add ceiling for the scale kit's ratios (scripts/bench-scale.mjs builds and runs it):
// per thread, 12 independent chains of f32 multiply-adds kept in registers, run on 1..N threads at once.
//   avx2_fma   : _mm256_fmadd_ps, 8 lanes, 2 FLOP per lane per instruction (the native kernels' ceiling)
//   sse_muladd : _mm_mul_ps then _mm_add_ps, 4 lanes (what wasm SIMD128's f32x4.mul + f32x4.add can reach)
// Prints one JSON object: {"rows": [{"kernel", "threads", "gflops"}]}. GFLOP/s counts 2 per multiply-add.
// Usage: peak_flops [threads...]   (default: 1 and every online CPU)
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
  int kernel;
  long iters;
  float out;
  double secs;
} job;

#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx2,fma"))) static float fma_loop(long iters) {
#define DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + (i) * 1e-3f);
  CHAINS(DECL)
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (long n = 0; n < iters; n++) {
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
    CHAINS(STEP)
  }
  __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, a##i);
  CHAINS(SUM)
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0] + o[7];
}

static float sse_loop(long iters) {
#define DECL4(i) __m128 a##i = _mm_set1_ps(1.0f + (i) * 1e-3f);
  CHAINS(DECL4)
  const __m128 b = _mm_set1_ps(0.999999f), c = _mm_set1_ps(1e-6f);
  for (long n = 0; n < iters; n++) {
#define STEP4(i) a##i = _mm_add_ps(_mm_mul_ps(a##i, b), c);
    CHAINS(STEP4)
  }
  __m128 s = _mm_setzero_ps();
#define SUM4(i) s = _mm_add_ps(s, a##i);
  CHAINS(SUM4)
  float o[4];
  _mm_storeu_ps(o, s);
  return o[0] + o[3];
}

static void *run(void *p) {
  job *j = p;
  double t0 = now();
  j->out = j->kernel == 0 ? fma_loop(j->iters) : sse_loop(j->iters);
  j->secs = now() - t0;
  return NULL;
}

// GFLOP/s of `kernel` on `threads` threads, each running `iters` iterations (wall time of the slowest).
static double measure(int kernel, int threads, long iters) {
  pthread_t tid[256];
  job jobs[256];
  double t0 = now();
  for (int t = 0; t < threads; t++) {
    jobs[t] = (job){kernel, iters, 0, 0};
    pthread_create(&tid[t], NULL, run, &jobs[t]);
  }
  float sink = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    sink += jobs[t].out;
  }
  double wall = now() - t0;
  if (sink == 12345.0f) fprintf(stderr, "%f\n", sink);  // keep the results alive
  double lanes = kernel == 0 ? 8 : 4;
  return threads * (double)iters * 12 * lanes * 2 / wall / 1e9;
}

int main(int argc, char **argv) {
  int counts[64], n = 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  for (int i = 1; i < argc && n < 64; i++) counts[n++] = atoi(argv[i]);
  if (n == 0) {
    counts[n++] = 1;
    if (cpus > 1) counts[n++] = (int)cpus;
  }
  int fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  printf("{\"cpus\": %ld, \"rows\": [", cpus);
  int first = 1;
  for (int k = fma ? 0 : 1; k < 2; k++) {
    // about 1 s per measurement: calibrate on one thread, then best of 3
    long iters = 1 << 20;
    while (1) {
      double t0 = now();
      measure(k, 1, iters);
      if (now() - t0 > 0.25) break;
      iters *= 2;
    }
    iters *= 4;
    for (int c = 0; c < n; c++) {
      double best = 0;
      for (int r = 0; r < 3; r++) {
        double g = measure(k, counts[c], iters);
        if (g > best) best = g;
      }
      printf("%s{\"kernel\": \"%s\", \"threads\": %d, \"gflops\": %.2f}", first ? "" : ", ",
             k == 0 ? "avx2_fma" : "sse_muladd", counts[c], best);
      first = 0;
    }
  }
  printf("]}\n");
  return 0;
}
