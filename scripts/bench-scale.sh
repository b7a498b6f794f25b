#!/usr/bin/env bash
# `npm run bench:scale`: the scale kit. Writes random-weight checkpoints with the seed models' published shapes
# (tools/scale/make_checkpoints.py -> .cache/scale/src/), converts each with the converter's defaults
# (.cache/scale/out/), times one image question natively and in headless Chromium on 1 and 2 threads, measures the
# machine's limits in the same run (scripts/bench-scale.mjs -> test-results/bench-scale*.json), and replaces the
# "## Scale kit" section of BENCHMARKS.md (scripts/bench-scale-summary.mjs). Run after scripts/setup.sh and
# scripts/build.sh. Arguments go to scripts/bench-scale.mjs, e.g.
#   npm run bench:scale -- --models olmo-bitnet-1b,gemma-2b
#   npm run bench:scale -- --models llava-1.5-7b --paths native --skip-limits
# Disk: the four f16 sources take 38 GB under .cache/scale/src, the converted models about 11 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/bench-scale.mjs "$@"
node scripts/bench-scale-summary.mjs test-results
