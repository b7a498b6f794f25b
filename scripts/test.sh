#!/usr/bin/env bash
# The test suite behind `npm test` (run after scripts/setup.sh and scripts/build.sh):
# native Rust tests, the wasm kernel tests when present, then the Node/browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "test: cargo test --release" >&2
cargo test --release

if [ -f scripts/test-wasm-kernels.sh ]; then
  echo "test: scripts/test-wasm-kernels.sh" >&2
  bash scripts/test-wasm-kernels.sh
fi

echo "test: node --test tests/browser/" >&2
node --test --test-concurrency=1 tests/browser/*.test.mjs
