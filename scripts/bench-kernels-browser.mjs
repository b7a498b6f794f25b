#!/usr/bin/env node
// The CPU kernels alone in headless Chromium, on one thread: `bench_kernel` (src/wasm_bench.rs)
// of the SIMD128 build (www/pkg) and of the relaxed-SIMD build (www/pkg-relaxed), side by side
// in one page: decode GEMV weight GB/s and prefill GEMM GOP/s per format. Writes JSON (default
// test-results/bench-kernels-browser.json) and prints a markdown table.
//
// Usage: node scripts/bench-kernels-browser.mjs [--kernels format:ROWSxCOLS:N,...] [--reps N] [--out FILE]
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { launchChromium, startServe } from '../tests/browser/page-harness.mjs';

const DEFAULT = ['int4_sym_g64', 'ternary', 'int8', 'f32'].flatMap((f) =>
  [`${f}:4096x4096:1`, `${f}:2048x2048:64`]).join(',');

const { values: opt } = parseArgs({ options: {
  kernels: { type: 'string', default: DEFAULT },
  reps: { type: 'string', default: '3' },
  out: { type: 'string', default: 'test-results/bench-kernels-browser.json' },
} });

const { child, url } = await startServe();
const browser = await launchChromium();
const rows = [];
try {
  const page = await browser.newPage();
  await page.goto(url);
  for (const build of ['pkg', 'pkg-relaxed']) {
    const got = await page.evaluate(async ({ build, specs, reps }) => {
      const glue = await import(`/webvlm/${build}/webvlm.js`);
      await glue.default();
      return specs.split(',').map((s) => {
        const [format, shape, n] = s.split(':');
        const [r, c] = shape.split('x').map(Number);
        return JSON.parse(glue.bench_kernel(format, r, c, Number(n), reps));
      });
    }, { build, specs: opt.kernels, reps: Number(opt.reps) });
    for (const g of got) rows.push({ build, ...g });
  }
} finally {
  await browser.close();
  child.kill();
}
const lines = ['| format | rows x cols | tokens | build | ms | weight GB/s | GOP/s |', '|---|---|---|---|---|---|---|'];
for (const r of rows) {
  lines.push(`| ${r.format} | ${r.rows}x${r.cols} | ${r.n} | ${r.build === 'pkg' ? 'SIMD128' : 'relaxed SIMD'} | ` +
    `${r.ms_per_product.toFixed(2)} | ${r.weight_gbs.toFixed(2)} | ${r.gops.toFixed(1)} |`);
}
await mkdir(path.dirname(opt.out), { recursive: true });
await writeFile(opt.out, JSON.stringify({ date: new Date().toISOString(), rows }, null, 1) + '\n');
console.log(lines.join('\n'));
