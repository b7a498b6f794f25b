#!/usr/bin/env bash
# Build everything the page and the tests need:
#   1. the native release CLI (target/release/webvlm; $CARGO_TARGET_DIR when set)
#   2. the wasm library with SIMD128 (target/wasm32-unknown-unknown/release/webvlm.wasm),
#      wasm-bindgen --target web glue and wasm-opt -O3 (npm binaryen) into www/pkg/
#   3. the same with relaxed SIMD into www/pkg-relaxed/ (own target dir; skipped with
#      WEBVLM_NO_RELAXED=1, then every browser runs the SIMD128 kernels)
#   4. the threaded wasm build into www/pkg-threads/ and, with relaxed SIMD, into
#      www/pkg-threads-relaxed/ (nightly, -Z build-std; skipped with WEBVLM_NO_THREADS=1, then
#      the page runs on one thread everywhere)
#   5. the npm package (dist/, www/webvlm/)
# The package picks a build at load time by feature detection (js/threads.js).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build: $*" >&2; }

say "native release build"
cargo build --release --quiet

TARGET="${CARGO_TARGET_DIR:-target}"
WASM_OPT=node_modules/.bin/wasm-opt
# The features rustc enables by default for wasm32 (bulk memory, sign-ext, non-trapping
# float-to-int, multivalue, reference types, mutable globals) plus SIMD.
OPT_FEATURES="--enable-simd --enable-bulk-memory --enable-bulk-memory-opt --enable-sign-ext
  --enable-nontrapping-float-to-int --enable-mutable-globals --enable-multivalue --enable-reference-types"

# bindgen_opt WASM OUT [extra wasm-opt features]: wasm-bindgen glue + wasm-opt -O3 into www/OUT.
bindgen_opt() {
  local wasm=$1 out=$2; shift 2
  [ -f "$wasm" ] || { echo "build: $wasm missing" >&2; exit 1; }
  rm -rf "target/$out.tmp"
  wasm-bindgen --target web --no-typescript --out-dir "target/$out.tmp" "$wasm"
  if [ -x "$WASM_OPT" ]; then
    say "wasm-opt -O3 ($out)"
    # shellcheck disable=SC2086
    "$WASM_OPT" -O3 $OPT_FEATURES "$@" "target/$out.tmp/webvlm_bg.wasm" -o "target/$out.tmp/webvlm_bg.opt.wasm"
    mv "target/$out.tmp/webvlm_bg.opt.wasm" "target/$out.tmp/webvlm_bg.wasm"
  else
    say "warning: $WASM_OPT not found (run scripts/setup.sh); shipping unoptimized wasm"
  fi
  rm -rf "www/$out"
  mv "target/$out.tmp" "www/$out"
  say "www/$out/webvlm_bg.wasm: $(stat -c %s "www/$out/webvlm_bg.wasm") bytes"
}

# build_single OUT TARGET_DIR FEATURES [wasm-opt features]: the one-thread build.
build_single() {
  local out=$1 dir=$2 features=$3; shift 3
  say "wasm build ($features) -> www/$out"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=$features" CARGO_TARGET_DIR="$dir" \
    cargo build --release --quiet --lib --target wasm32-unknown-unknown
  bindgen_opt "$dir/wasm32-unknown-unknown/release/webvlm.wasm" "$out" "$@"
}

# build_threads OUT TARGET_DIR FEATURES [wasm-opt features]: the threaded build. Rust's prebuilt
# std has no atomics, so nightly rebuilds it (-Z build-std); own target dir so it never
# invalidates the stable builds. Shared memory is asked of the linker (rustc no longer implies
# it from +atomics), with wasm32's full 4 GiB as maximum and the TLS symbols wasm-bindgen's
# thread support needs.
build_threads() {
  local out=$1 dir=$2 features=$3; shift 3
  local nightly=${WEBVLM_NIGHTLY:-nightly}
  local flags="-C target-feature=+atomics,+bulk-memory,+mutable-globals,$features" arg
  for arg in --shared-memory --max-memory=4294967296 --import-memory --export=__wasm_init_tls \
      --export=__tls_size --export=__tls_align --export=__tls_base; do
    flags="$flags -C link-arg=$arg"
  done
  say "wasm build with threads (+$nightly, build-std, atomics, $features) -> www/$out"
  RUSTFLAGS="${RUSTFLAGS:-} $flags" CARGO_TARGET_DIR="$dir" \
    cargo "+$nightly" build --release --quiet --lib --target wasm32-unknown-unknown -Z build-std=panic_abort,std
  bindgen_opt "$dir/wasm32-unknown-unknown/release/webvlm.wasm" "$out" --enable-threads "$@"
}

RELAXED=1
[ "${WEBVLM_NO_RELAXED:-0}" = 1 ] && RELAXED=0
THREADS=1
[ "${WEBVLM_NO_THREADS:-0}" = 1 ] && THREADS=0

build_single pkg "$TARGET" +simd128
if [ $RELAXED = 1 ]; then
  build_single pkg-relaxed "$TARGET/wasm-relaxed" +simd128,+relaxed-simd --enable-relaxed-simd
else
  say "WEBVLM_NO_RELAXED=1: no relaxed-SIMD wasm builds"
  rm -rf www/pkg-relaxed www/pkg-threads-relaxed
fi
if [ $THREADS = 1 ]; then
  build_threads pkg-threads "$TARGET/wasm-threads" +simd128
  [ $RELAXED = 1 ] && build_threads pkg-threads-relaxed "$TARGET/wasm-threads-relaxed" +simd128,+relaxed-simd \
    --enable-relaxed-simd
else
  say "WEBVLM_NO_THREADS=1: no threaded wasm builds (the page runs on one thread)"
  rm -rf www/pkg-threads www/pkg-threads-relaxed
fi

# 5. The npm package (dist/, and www/webvlm/ for the page); ships the optional builds made.
say "npm package -> dist/"
node scripts/build-package.mjs
