#!/usr/bin/env bash
# Build everything the page and the tests need:
#   1. the native release CLI (target/release/webvlm; $CARGO_TARGET_DIR when set)
#   2. the wasm library with SIMD128 (target/wasm32-unknown-unknown/release/webvlm.wasm)
#   3. wasm-bindgen --target web glue into www/pkg/
#   4. wasm-opt -O3 (npm binaryen) with the features rustc emits, SIMD kept
#   5. the threaded wasm build into www/pkg-threads/ (nightly, -Z build-std; skipped with
#      WEBVLM_NO_THREADS=1, then the page runs on one thread everywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build: $*" >&2; }

say "native release build"
cargo build --release --quiet

say "wasm build (simd128)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" \
  cargo build --release --quiet --lib --target wasm32-unknown-unknown

TARGET="${CARGO_TARGET_DIR:-target}"
WASM="$TARGET/wasm32-unknown-unknown/release/webvlm.wasm"
[ -f "$WASM" ] || { echo "build: $WASM missing" >&2; exit 1; }

say "wasm-bindgen --target web -> www/pkg"
rm -rf target/pkg.tmp
wasm-bindgen --target web --no-typescript --out-dir target/pkg.tmp "$WASM"

WASM_OPT=node_modules/.bin/wasm-opt
if [ -x "$WASM_OPT" ]; then
  say "wasm-opt -O3"
  # The features rustc enables by default for wasm32 (bulk memory, sign-ext, non-trapping
  # float-to-int, multivalue, reference types, mutable globals) plus SIMD.
  "$WASM_OPT" -O3 --enable-simd --enable-bulk-memory --enable-bulk-memory-opt \
    --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals \
    --enable-multivalue --enable-reference-types \
    target/pkg.tmp/webvlm_bg.wasm -o target/pkg.tmp/webvlm_bg.opt.wasm
  mv target/pkg.tmp/webvlm_bg.opt.wasm target/pkg.tmp/webvlm_bg.wasm
else
  say "warning: $WASM_OPT not found (run scripts/setup.sh); shipping unoptimized wasm"
fi

rm -rf www/pkg
mv target/pkg.tmp www/pkg
say "www/pkg/webvlm_bg.wasm: $(stat -c %s www/pkg/webvlm_bg.wasm) bytes"

# 5. The threaded build (www/pkg-threads/, loaded when the page is cross-origin isolated; see
#    js/threads.js and src/wasm_threads.rs). Rust's prebuilt std has no atomics, so nightly
#    rebuilds it (-Z build-std); own target dir so it never invalidates the stable builds.
#    Shared memory is asked of the linker (rustc no longer implies it from +atomics), with
#    wasm32's full 4 GiB as maximum and the TLS symbols wasm-bindgen's thread support needs.
build_threads() {
  local nightly=${WEBVLM_NIGHTLY:-nightly}
  local target="$TARGET/wasm-threads"
  local flags="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128" arg
  for arg in --shared-memory --max-memory=4294967296 --import-memory --export=__wasm_init_tls \
      --export=__tls_size --export=__tls_align --export=__tls_base; do
    flags="$flags -C link-arg=$arg"
  done
  say "wasm build with threads (+$nightly, build-std, atomics) -> www/pkg-threads"
  RUSTFLAGS="${RUSTFLAGS:-} $flags" CARGO_TARGET_DIR="$target" \
    cargo "+$nightly" build --release --quiet --lib --target wasm32-unknown-unknown -Z build-std=panic_abort,std
  rm -rf target/pkg-threads.tmp
  wasm-bindgen --target web --no-typescript --out-dir target/pkg-threads.tmp \
    "$target/wasm32-unknown-unknown/release/webvlm.wasm"
  if [ -x "$WASM_OPT" ]; then
    say "wasm-opt -O3 (threads)"
    "$WASM_OPT" -O3 --enable-threads --enable-simd --enable-bulk-memory --enable-bulk-memory-opt \
      --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals \
      --enable-multivalue --enable-reference-types \
      target/pkg-threads.tmp/webvlm_bg.wasm -o target/pkg-threads.tmp/webvlm_bg.opt.wasm
    mv target/pkg-threads.tmp/webvlm_bg.opt.wasm target/pkg-threads.tmp/webvlm_bg.wasm
  fi
  rm -rf www/pkg-threads
  mv target/pkg-threads.tmp www/pkg-threads
  say "www/pkg-threads/webvlm_bg.wasm: $(stat -c %s www/pkg-threads/webvlm_bg.wasm) bytes"
}
if [ "${WEBVLM_NO_THREADS:-0}" = 1 ]; then
  say "WEBVLM_NO_THREADS=1: no threaded wasm build (the page runs on one thread)"
  rm -rf www/pkg-threads
else
  build_threads
fi

# 6. The npm package (dist/, and www/webvlm/ for the page); ships www/pkg-threads when built.
say "npm package -> dist/"
node scripts/build-package.mjs
