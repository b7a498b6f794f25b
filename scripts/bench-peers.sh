#!/usr/bin/env bash
# `npm run bench:peers`: SmolLM2-135M decode side by side with llama.cpp (issue 13, deliverable 4), on this
# machine, in interleaved rounds. Each round, for 1 and then 2 threads, after waiting for an idle machine:
#   - read bandwidth (a sum over a 256 MiB buffer, best of 5; the probe is built here);
#   - llama.cpp native: llama-completion on the Q4_1 GGUF with tests/fixtures/prompt64.txt (64 tokens) and 64
#     greedy tokens, EOS ignored (its own prompt-eval / eval timings);
#   - webvlm native: `target/release/webvlm generate` on .cache/models/smollm2-135m-int4, same prompt, 64 tokens;
#   - webvlm in headless Chromium through the npm package (scripts/bench-browser.mjs, CPU path: cpu1 / cpu);
#   - wllama (llama.cpp in wasm, npm) in the same Chromium, same prompt and flow as llama.cpp native.
# Writes test-results/bench-peers.json and replaces the "## Side by side with llama.cpp" section of
# BENCHMARKS.md. Run after scripts/setup.sh and scripts/build.sh (it uses target/release/webvlm, dist/ and the
# converted model as they are; it builds nothing of webvlm).
#
# Set-up (idempotent; cached under .cache/peers/, nothing outside it):
#   - .cache/peers/venv: cmake + ninja from PyPI (scikit-build-core, only to let pip fetch the sdist);
#   - llama.cpp 0c1e57098 from the PyPI sdist llama-cpp-python==0.3.36 (vendor/llama.cpp), Release, GGML_NATIVE
#     (-march=native) with AMX turned off when /proc/cpuinfo reports it (ggml's AMX path crashes on prompt
#     batches on such VMs: ggml-org/llama.cpp#20824), only llama-completion and llama-bench, into
#     .cache/peers/llama.cpp-build (about 10 minutes on 2 cores);
#   - .cache/peers/membw: the read-bandwidth probe (gcc -O3 -march=native -fopenmp);
#   - .cache/peers/wllama: npm @wllama/wllama@3.8.1 (npm install --prefix); skipped with --no-wllama, and left
#     out with a note when it cannot be installed.
#
# Usage: scripts/bench-peers.sh [--setup-only] [--no-wllama] [--rounds N] [other scripts/bench-peers.mjs options]
#   e.g. npm run bench:peers -- --rounds 5
#        npm run bench:peers -- --resume              (continue an interrupted run from test-results/bench-peers.json)
#        npm run bench:peers -- --max-wait 120 --no-markdown --steps membw,llamacpp,webvlm
#        node scripts/bench-peers.mjs --summary-only   (redo the tables from the JSON)
# A measurement waits for an idle machine (under 0.15 core busy for 3 s; at most --max-wait 300 s, then it runs
# anyway and says so); one during which other processes used over 0.1 core is flagged and re-run (--retries 2)
# if the machine goes quiet within --retry-wait 120 s.
# Environment: WEBVLM_MODELS_DIR (default .cache/models), PEERS_JOBS (build jobs, default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=.cache/peers
LCPP_PY_VERSION=0.3.36          # llama-cpp-python sdist on PyPI ...
LCPP_COMMIT=0c1e57098           # ... vendors this llama.cpp commit (its CHANGELOG; the sdist has no .git)
WLLAMA_VERSION=3.8.1
MODELS=${WEBVLM_MODELS_DIR:-.cache/models}
GGUF=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
WMODEL=$MODELS/smollm2-135m-int4
PROMPT=tests/fixtures/prompt64.txt

say() { echo "bench-peers: $*" >&2; }
die() { echo "bench-peers: error: $*" >&2; exit 1; }

SETUP_ONLY=0; WLLAMA=1; ARGS=()
for a in "$@"; do
  case "$a" in
    --setup-only) SETUP_ONLY=1 ;;
    --no-wllama) WLLAMA=0; ARGS+=("$a") ;;
    *) ARGS+=("$a") ;;
  esac
done

[ -f "$GGUF" ] || die "$GGUF missing (run scripts/setup.sh)"
[ -f "$WMODEL/manifest.json" ] || die "$WMODEL/manifest.json missing (run scripts/setup.sh)"
[ -f "$PROMPT" ] || die "$PROMPT missing"
mkdir -p "$PEERS"

# 1. cmake + ninja (and scikit-build-core, the sdist's build backend, which pip needs to fetch the sdist).
VENV=$PEERS/venv
if [ ! -x "$VENV/bin/cmake" ] || [ ! -x "$VENV/bin/ninja" ] || ! "$VENV/bin/python" -c 'import scikit_build_core' 2>/dev/null; then
  say "creating $VENV with cmake and ninja from PyPI"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q cmake ninja scikit-build-core >&2
fi

# 2. The llama-cpp-python sdist (its vendor/llama.cpp is the llama.cpp we build).
SRC=$PEERS/llama_cpp_python-$LCPP_PY_VERSION
LC=$SRC/vendor/llama.cpp
if [ ! -f "$LC/CMakeLists.txt" ]; then
  TGZ=$PEERS/sdist/llama_cpp_python-$LCPP_PY_VERSION.tar.gz
  if [ ! -f "$TGZ" ]; then
    say "downloading the llama-cpp-python==$LCPP_PY_VERSION sdist from PyPI"
    PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
      -d "$PEERS/sdist" "llama-cpp-python==$LCPP_PY_VERSION" >&2
  fi
  tar xzf "$TGZ" -C "$PEERS"
  [ -f "$LC/CMakeLists.txt" ] || die "no vendor/llama.cpp in $TGZ"
fi
grep -q "$LCPP_COMMIT" "$SRC/CHANGELOG.md" || say "warning: $SRC/CHANGELOG.md does not mention llama.cpp $LCPP_COMMIT"

# 3. llama.cpp: Release, native CPU flags, AMX off where the CPU has it, two targets only.
CFLAGS_EXTRA=""
if grep -qw amx_tile /proc/cpuinfo; then CFLAGS_EXTRA="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
BUILD=$PEERS/llama.cpp-build
STAMP="llama.cpp $LCPP_COMMIT (llama-cpp-python $LCPP_PY_VERSION) Release GGML_NATIVE=ON flags='$CFLAGS_EXTRA'"
if [ "$(cat "$BUILD/webvlm-stamp" 2>/dev/null)" != "$STAMP" ] || [ ! -x "$BUILD/bin/llama-completion" ] \
   || [ ! -x "$BUILD/bin/llama-bench" ]; then
  say "building $STAMP in $BUILD (about 10 minutes on 2 cores)"
  rm -f "$BUILD/webvlm-stamp"
  export PATH="$PWD/$VENV/bin:$PATH"
  # LLAMA_OPENSSL=OFF: no HTTPS downloads in the tools (LLAMA_CURL is gone at this commit; kept for older trees).
  cmake -S "$LC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMIT=$LCPP_COMMIT \
    "-DCMAKE_C_FLAGS=$CFLAGS_EXTRA" "-DCMAKE_CXX_FLAGS=$CFLAGS_EXTRA" >&2
  # llama-cli is not a plain target at this commit; llama-completion is the old `main`.
  ninja -C "$BUILD" -j "${PEERS_JOBS:-$(nproc)}" llama-completion llama-bench >&2
  echo "$STAMP" > "$BUILD/webvlm-stamp"
fi

# 4. The read-bandwidth probe: sum of a uint64 buffer, split over T OpenMP threads, best of N passes.
MEMBW=$PEERS/membw
if [ ! -x "$MEMBW" ] || [ "$0" -nt "$MEMBW" ]; then
  say "building the read-bandwidth probe $MEMBW"
  cat > "$PEERS/membw.c" <<'EOF'
// usage: membw MiB passes threads -> prints "GB/s <best>" (bytes / best wall time of one full pass)
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
__attribute__((noinline)) static uint64_t sum(const uint64_t *a, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; s4 += a[i + 4]; s5 += a[i + 5]; s6 += a[i + 6]; s7 += a[i + 7];
  }
  return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
}
int main(int argc, char **argv) {
  size_t bytes = (size_t)(argc > 1 ? atoi(argv[1]) : 256) << 20, n = bytes / 8;
  int passes = argc > 2 ? atoi(argv[2]) : 5, nt = argc > 3 ? atoi(argv[3]) : 1;
  uint64_t *a = aligned_alloc(64, bytes);
  if (!a) return 1;
  omp_set_num_threads(nt);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = i;
  double best = 1e30; uint64_t s = 0;
  for (int p = 0; p < passes; p++) {
    double t0 = now(); s = 0;
#pragma omp parallel reduction(+ : s)
    { int t = omp_get_thread_num(), T = omp_get_num_threads(); size_t lo = n * t / T, hi = n * (t + 1) / T; s += sum(a + lo, hi - lo); }
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  if (s != (uint64_t)n * (n - 1) / 2) { fprintf(stderr, "membw: wrong sum\n"); return 1; }
  printf("GB/s %.3f threads %d MiB %zu passes %d\n", bytes / best / 1e9, nt, bytes >> 20, passes);
  return 0;
}
EOF
  gcc -O3 -march=native -fopenmp "$PEERS/membw.c" -o "$MEMBW"
fi

# 5. wllama from npm (optional).
WL=$PEERS/wllama
if [ "$WLLAMA" = 1 ] && [ "$(cat "$WL/webvlm-stamp" 2>/dev/null)" != "$WLLAMA_VERSION" ]; then
  say "installing @wllama/wllama@$WLLAMA_VERSION into $WL"
  mkdir -p "$WL"
  [ -f "$WL/package.json" ] || echo '{"name":"webvlm-peers","private":true}' > "$WL/package.json"
  if npm install --prefix "$WL" --no-audit --no-fund --loglevel=error "@wllama/wllama@$WLLAMA_VERSION" >&2 \
     && [ -f "$WL/node_modules/@wllama/wllama/esm/index.js" ]; then
    echo "$WLLAMA_VERSION" > "$WL/webvlm-stamp"
  else
    say "warning: could not install @wllama/wllama@$WLLAMA_VERSION; measuring without wllama"
  fi
fi

[ "$SETUP_ONLY" = 1 ] && { say "set-up done"; exit 0; }
[ -x target/release/webvlm ] || die "target/release/webvlm missing (cargo build --release)"
[ -f dist/index.js ] || die "dist/ missing (npm run build)"

exec node scripts/bench-peers.mjs --peers "$PEERS" --lcpp-bin "$BUILD/bin" --membw "$MEMBW" --gguf "$GGUF" \
  --model "$WMODEL" --prompt "$PROMPT" --lcpp-version "llama.cpp $LCPP_COMMIT from the PyPI sdist llama-cpp-python $LCPP_PY_VERSION" \
  --lcpp-flags "Release, GGML_NATIVE=ON${CFLAGS_EXTRA:+, AMX off ($CFLAGS_EXTRA)}" --wllama-version "$WLLAMA_VERSION" ${ARGS[@]+"${ARGS[@]}"}
