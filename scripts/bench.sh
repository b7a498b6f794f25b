#!/usr/bin/env bash
# Benchmarks behind `npm run bench`: the native CLI benchmark (`webvlm bench`) on the converted
# model, then decode speed of the wasm build under Node (scripts/bench-wasm.mjs; one thread, and
# all threads with the threaded build when it was built), then the package in headless Chromium
# (scripts/bench-browser.mjs: load from cache, time to first token, decode tokens/s per path). Results are
# JSON files in test-results/, summarized in BENCHMARKS.md. Run after scripts/setup.sh and scripts/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${WEBVLM_MODELS_DIR:-.cache/models}
MODEL=$MODELS/smollm2-135m-int4
mkdir -p test-results

[ -f "$MODEL/manifest.json" ] || { echo "bench: $MODEL/manifest.json missing (run scripts/setup.sh)" >&2; exit 1; }

echo "bench: native (target/release/webvlm bench)" >&2
target/release/webvlm bench --model "$MODEL" --json > test-results/bench-native.json
cat test-results/bench-native.json

echo "bench: wasm under Node, one thread" >&2
node scripts/bench-wasm.mjs --out test-results/bench-wasm.json
if [ -f www/pkg-threads/webvlm_bg.wasm ]; then
  echo "bench: wasm under Node, all threads (www/pkg-threads)" >&2
  node scripts/bench-wasm.mjs --threads all --out test-results/bench-wasm-threads.json
fi
echo "bench: wasm vision tower under Node" >&2
node scripts/bench-wasm.mjs --vision --out test-results/bench-wasm-vision.json

echo "bench: the package in Chromium (CPU 1 thread, all threads, WebGPU)" >&2
node scripts/bench-browser.mjs --out test-results/bench-browser.json

node scripts/bench-summary.mjs test-results > test-results/bench.md
# Keep the "## Scale kit" section (npm run bench:scale writes it) across this rewrite.
SCALE=$(awk '/^## Scale kit$/ { on = 1 } on && /^## / && !/^## Scale kit$/ { on = 0 } on' BENCHMARKS.md 2>/dev/null || true)
# ... and "## Side by side with llama.cpp" (npm run bench:peers writes it).
PEERS=$(awk '/^## Side by side with llama.cpp$/ { on = 1; print; next } on && /^## / { on = 0 } on' BENCHMARKS.md 2>/dev/null || true)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`npm run bench\` (scripts/bench.sh) on $(date -u +%F) on this machine:"
  echo "$(nproc) CPU cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')."
  echo "Re-run it to refresh; compare runs by the ratios, not the absolute figures."
  echo
  cat test-results/bench.md
  if [ -n "$SCALE" ]; then echo; echo "$SCALE"; fi
  if [ -n "$PEERS" ]; then echo; echo "$PEERS"; fi
} > BENCHMARKS.md
echo "bench: summary in test-results/bench.md and BENCHMARKS.md" >&2
