#!/usr/bin/env bash
# Build everything the page and the tests need:
#   1. the native release CLI (target/release/webvlm; $CARGO_TARGET_DIR when set)
#   2. the wasm library with SIMD128 (target/wasm32-unknown-unknown/release/webvlm.wasm)
#   3. wasm-bindgen --target web glue into www/pkg/
#   4. wasm-opt -O3 (npm binaryen) with the features rustc emits, SIMD kept
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

say "npm package -> dist/"
node scripts/build-package.mjs
