#!/usr/bin/env bash
# Run the kernel tests (tests/kernels.rs) compiled to wasm32 with simd128, under Node via
# wasm-bindgen-test-runner (must match wasm-bindgen =0.2.130). The tests assert that the
# simd128 path is present and equals the scalar reference.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wasm-bindgen-test-runner >/dev/null || { echo "wasm-bindgen-test-runner not found (cargo install wasm-bindgen-cli --version 0.2.130)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found" >&2; exit 1; }
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128"
exec cargo test --release --target wasm32-unknown-unknown --test kernels "$@"
