#!/usr/bin/env bash
# Run the kernel tests (tests/kernels.rs) compiled to wasm32 through wasm-bindgen-test-runner
# (must match wasm-bindgen =0.2.130): the SIMD128 build under Node, and the relaxed-SIMD build
# (own target dir) in headless Chromium through chromedriver (webdriver.json has the flags):
# Node 20's V8 computes `i32x4.relaxed_dot_i8x16_i7x16_add_s` wrongly even behind
# --experimental-wasm-relaxed-simd (twice the dot, without the addend), while Chromium's matches
# the spec. The tests assert that the SIMD path is present and equals the scalar reference.
# WEBVLM_WASM_SIMD=simd128|relaxed runs one flavour.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wasm-bindgen-test-runner >/dev/null || { echo "wasm-bindgen-test-runner not found (cargo install wasm-bindgen-cli --version 0.2.130)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found" >&2; exit 1; }
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
BASE_FLAGS="${RUSTFLAGS:-}"
TARGET="${CARGO_TARGET_DIR:-target}"

run() { # flavour features target-dir [test args]
  echo "test-wasm-kernels: $1 ($2)" >&2
  RUSTFLAGS="$BASE_FLAGS -C target-feature=$2" CARGO_TARGET_DIR="$3" \
    cargo test --release --target wasm32-unknown-unknown --test kernels "${@:4}"
}

for f in ${WEBVLM_WASM_SIMD:-simd128 relaxed}; do
  case $f in
    simd128) run simd128 +simd128 "$TARGET" "$@" ;;
    relaxed)
      command -v chromedriver >/dev/null || { echo "chromedriver not found (apt-get install chromium-driver)" >&2; exit 1; }
      WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER=$(command -v chromedriver) \
        run relaxed +simd128,+relaxed-simd "$TARGET/wasm-relaxed" "$@"
      ;;
    *) echo "test-wasm-kernels: unknown flavour $f" >&2; exit 2 ;;
  esac
done
