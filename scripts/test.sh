#!/usr/bin/env bash
# The test suite behind `npm test` (run after scripts/setup.sh and scripts/build.sh):
# native Rust tests, the wasm kernel tests when present, then the Node/browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "test: cargo test --release (at $(date -u +%T))" >&2
cargo test --release

if [ -f scripts/test-wasm-kernels.sh ]; then
  echo "test: scripts/test-wasm-kernels.sh (at $(date -u +%T))" >&2
  bash scripts/test-wasm-kernels.sh
fi

echo "test: node --test tests/browser/ (at $(date -u +%T))" >&2
node --test --test-concurrency=1 tests/browser/*.test.mjs
echo "test: done (at $(date -u +%T))" >&2
