#!/usr/bin/env bash
# Run the kernel tests (tests/kernels.rs, tests/ternary.rs' kernel test) compiled to wasm32 under
# Node via wasm-bindgen-test-runner (must match wasm-bindgen =0.2.130): once with SIMD128 and
# once with relaxed SIMD (own target dir; Node 20 needs --experimental-wasm-relaxed-simd, given
# through a `node` wrapper first on PATH). The tests assert that the SIMD path is present and
# equals the scalar reference. WEBVLM_WASM_SIMD=simd128|relaxed runs one flavour.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wasm-bindgen-test-runner >/dev/null || { echo "wasm-bindgen-test-runner not found (cargo install wasm-bindgen-cli --version 0.2.130)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found" >&2; exit 1; }
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
BASE_FLAGS="${RUSTFLAGS:-}"
TARGET="${CARGO_TARGET_DIR:-target}"

run() { # flavour features target-dir
  echo "test-wasm-kernels: $1 ($2)" >&2
  RUSTFLAGS="$BASE_FLAGS -C target-feature=$2" CARGO_TARGET_DIR="$3" \
    cargo test --release --target wasm32-unknown-unknown --test kernels "${@:4}"
}

FLAVOURS=${WEBVLM_WASM_SIMD:-simd128 relaxed}
for f in $FLAVOURS; do
  case $f in
    simd128) run simd128 +simd128 "$TARGET" "$@" ;;
    relaxed)
      WRAP=$(mktemp -d)
      trap 'rm -rf "$WRAP"' EXIT
      REAL_NODE=$(command -v node)
      printf '#!/bin/sh\nexec "%s" --experimental-wasm-relaxed-simd "$@"\n' "$REAL_NODE" > "$WRAP/node"
      chmod +x "$WRAP/node"
      PATH="$WRAP:$PATH" run relaxed +simd128,+relaxed-simd "$TARGET/wasm-relaxed" "$@"
      ;;
    *) echo "test-wasm-kernels: unknown flavour $f" >&2; exit 2 ;;
  esac
done
