#!/usr/bin/env node
// Turns the JSON written by `npm run bench` (test-results/bench-native.json and
// bench-wasm.json) into the Markdown tables the README quotes. Every GB/s figure is also
// given as a ratio to the read bandwidth measured in the same run, so runs on different
// machines (or the same machine at a busier minute) compare by ratio, not by absolute speed.
//
// Usage: node scripts/bench-summary.mjs [DIR]   (default test-results) > test-results/bench.md
import { readFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] || 'test-results';
const read = (f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
const fix = (v, d = 1) => (v == null ? '-' : Number(v).toFixed(d));
const pct = (v) => (v == null ? '-' : `${Math.round(v * 100)}%`);

function gemvTable(native) {
  const { read: bw, gemv, llc_mib: llc } = native.gemv;
  const bw1 = bw.find((r) => r.threads === 1);
  const lines = [
    `Read bandwidth (sum over a buffer several times the last-level cache; detected L3 ${fix(llc, 0)} MiB, 105 MiB assumed at least): ` +
      bw.map((r) => `${r.threads} thread(s) ${fix(r.gbs)} GB/s wall` +
        (r.gbs_on_cpu ? ` (${fix(r.gbs_on_cpu)} GB/s on-CPU)` : '')).join(', ') + '.',
    '',
    '| format | rows x cols | threads | kernel | GB/s (wall) | share of 1-thread read | GB/s (on-CPU) | share (on-CPU) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const g of gemv) {
    lines.push(`| ${g.format} | ${g.rows}x${g.cols} | ${g.threads} | ${g.isa} | ${fix(g.gbs)} | ` +
      `${pct(g.ratio_to_read_1t)} | ${fix(g.gbs_on_cpu)} | ${pct(g.ratio_on_cpu)} |`);
  }
  lines.push('', `Working set per GEMV row: ${fix(gemv[0]?.working_set_mib, 0)} MiB rotated ` +
    `(several times the LLC, so weights come from memory). 1-thread read: ${fix(bw1?.gbs)} GB/s.`);
  return lines.join('\n');
}

function decodeTable(native, wasm) {
  const lines = [
    '| where | weights | threads | prompt tokens | prefill ms | decode tokens/s | weight bytes read per token x tokens/s |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const d of native.decode || []) {
    lines.push(`| native | ${d.weights} | ${d.threads} | ${d.prompt_tokens} | ${fix(d.prefill_ms)} | ` +
      `${fix(d.decode_tokens_per_s)} | ${fix((d.weight_bytes * d.decode_tokens_per_s) / 1e9, 2)} GB/s |`);
  }
  for (const w of wasm) {
    lines.push(`| wasm SIMD128 under Node ${w.node} | int4_sym_g64 | ${w.threads ?? 1} | ${w.prompt_tokens} | ` +
      `${fix(w.prefill_ms)} | ${fix(w.decode_tokens_per_s)} | - |`);
  }
  return lines.join('\n');
}

function visionTable(native, wasmVision) {
  const lines = [
    'One 336x336 image through CLIP ViT-L/14-336 at LLaVA-1.5-7B\'s shapes (hidden 1024, 16 heads, MLP 4096, ' +
      '577 tokens; 23 of 24 layers, as LLaVA reads layer -2), random weights. GFLOP/s counts 2 per multiply-add.',
    '',
    '| where | format | threads | layers | tokens | encode ms | GFLOP/s |',
    '|---|---|---|---|---|---|---|',
  ];
  const row = (where, v) => lines.push(`| ${where} | ${v.format} | ${v.threads} | ${v.layers} | ${v.tokens} | ` +
    `${fix(v.encode_ms, 0)} | ${fix(v.gflops)} |`);
  for (const v of native.vision || []) row('native', v);
  for (const v of wasmVision?.vision || []) row(`wasm SIMD128 under Node ${wasmVision.node}`, v);
  return lines.join('\n');
}

function browserTable(b) {
  const lines = [
    `Headless Chromium, the npm package on ${b.cpus} CPU cores (${b.date.slice(0, 10)}). webgpu here is SwiftShader ` +
      '(a CPU rasterizer): it shows the path works, not GPU speed. Loads: first (download + sha256 + Cache Storage) ' +
      'and from the cache in a new engine; TTFT = image encode + prefill + first step.',
    '',
    '| model | path | SIMD | threads | first load ms | cached load ms | image encode ms | prefill ms (tokens) | TTFT ms | decode tokens/s |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of b.rows) {
    lines.push(`| ${r.model} | ${r.backend} | ${r.backend === 'cpu' ? r.simd ?? '-' : '-'} | ${r.threads ?? '-'} | ${fix(r.cold_load_ms, 0)} | ${fix(r.cached_load_ms, 0)} | ` +
      `${fix(r.image_encode_ms)} | ${fix(r.prefill_ms)} (${r.prefill_tokens}) | ${fix(r.ttft_ms, 0)} | ` +
      `${fix(r.decode_tokens_per_s)} |`);
  }
  return lines.join('\n');
}

const native = read('bench-native.json');
const wasm = [];
for (const f of ['bench-wasm.json', 'bench-wasm-threads.json']) {
  try { wasm.push(read(f)); } catch { /* native only, or no threaded build */ }
}
let wasmVision = null;
try { wasmVision = read('bench-wasm-vision.json'); } catch { /* not measured */ }
const sections = [];
if (native.gemv) sections.push(`## GEMV kernels\n\n${gemvTable(native)}`);
if (native.decode || wasm.length) sections.push(`## SmolLM2-135M-Instruct decode\n\n${decodeTable(native, wasm)}`);
if (native.vision || wasmVision) sections.push(`## Vision tower encode\n\n${visionTable(native, wasmVision)}`);
try {
  sections.push(`## In the browser\n\n${browserTable(read('bench-browser.json'))}`);
} catch { /* not measured */ }
console.log(sections.join('\n\n'));
