#!/usr/bin/env node
// Browser figures for `npm run bench`: the npm package (dist/) in headless Chromium, per model and
// per path — CPU on one thread, CPU on every thread (the page is cross-origin isolated, so the
// package may pick its threaded build), and WebGPU (`--enable-unsafe-webgpu`; on these machines
// SwiftShader, a CPU rasterizer: its figures say the path works, not how fast a GPU is).
// For each: the first load (download, sha256, Cache Storage), the load from the cache in a new
// engine, then one greedy answer (with a sample image for vision models): time to first token split
// into image encode and prefill, and decode tokens/s. Writes JSON (default
// test-results/bench-browser.json); scripts/bench-summary.mjs makes the table.
//
// Usage: node scripts/bench-browser.mjs [--models a,b] [--paths cpu1,cpu,webgpu] [--tokens N] [--out FILE]
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, launchChromium } from '../tests/browser/page-harness.mjs';
import { packagePage, startPackageServer } from '../tests/browser/package-harness.mjs';

const { values: opt } = parseArgs({ options: {
  models: { type: 'string', default: 'tiny-llava-int4,tiny-llava-ternary,smollm2-135m-int4' },
  paths: { type: 'string', default: 'cpu1,cpu,cpu1-simd128,cpu-simd128,webgpu' },
  tokens: { type: 'string', default: '32' },
  out: { type: 'string', default: 'test-results/bench-browser.json' },
} });

// cpu1 / cpu: the build the package picks here (relaxed SIMD in this Chromium); the -simd128
// paths force the plain SIMD128 build, to compare the two flavours.
const PATHS = { cpu1: { backend: 'cpu', threads: 1 }, cpu: { backend: 'cpu', threads: 'auto' },
  'cpu1-simd128': { backend: 'cpu', threads: 1, simd: 'simd128' },
  'cpu-simd128': { backend: 'cpu', threads: 'auto', simd: 'simd128' },
  webgpu: { backend: 'webgpu', threads: 1 } };

/** The model's folder under www/models (committed) or .cache/models (converted by set-up). */
async function modelRoot(name) {
  for (const dir of [path.join(ROOT, 'www/models'), path.join(ROOT, '.cache/models')]) {
    try {
      await readFile(path.join(dir, name, 'manifest.json'));
      return dir;
    } catch { /* next */ }
  }
  throw new Error(`bench-browser: no manifest for ${name} in www/models or .cache/models`);
}

/** The first sample of `name` in www/models.json, if any: { image, question }. */
async function sampleOf(name) {
  const list = JSON.parse(await readFile(path.join(ROOT, 'www/models.json'), 'utf8'));
  return list.models.find((m) => m.url === `models/${name}/`)?.samples?.[0] || null;
}

/** In the page: first load, unload, load again (cached), one answer. */
function measure(page, { manifest, backend, threads, simd = 'auto', sample, tokens }) {
  return page.evaluate(async ({ manifest, backend, threads, simd, sample, tokens }) => {
    const t0 = performance.now();
    const first = await window.webvlm.createEngine({ model: manifest, backend, threads, simd });
    const coldMs = performance.now() - t0;
    await first.unload();
    const t1 = performance.now();
    const engine = await window.webvlm.createEngine({ model: manifest, backend, threads, simd });
    const cachedMs = performance.now() - t1;
    try {
      const content = sample
        ? [{ type: 'image_url', image_url: { url: `/www/${sample.image}` } }, { type: 'text', text: sample.question }]
        : 'Write a short story about a lighthouse keeper.';
      const r = await engine.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: tokens,
        temperature: 0 });
      const w = r.webvlm;
      return { cold_load_ms: coldMs, cached_load_ms: cachedMs, backend: w.backend, threads: engine.info.threads ?? null,
        simd: engine.info.simd ?? null,
        adapter: engine.info.adapter?.description || engine.info.adapter?.name || null, ttft_ms: w.ttft_ms,
        image_encode_ms: w.timings.image_encode_ms, prefill_ms: w.timings.prefill_ms,
        prefill_tokens: w.timings.prefill_tokens, decode_tokens: w.timings.decode_tokens,
        decode_tokens_per_s: w.timings.decode_tokens_per_s, answer: r.choices[0].message.content };
    } finally {
      await engine.unload();
    }
  }, { manifest, backend, threads, simd, sample, tokens });
}

async function main() {
  const models = opt.models.split(',');
  const roots = [['/www/', path.join(ROOT, 'www')], ['/dist/', path.join(ROOT, 'dist')]];
  for (const m of models) roots.unshift([`/m/${m}/`, path.join(await modelRoot(m), m)]);
  const server = await startPackageServer({ roots, pages: { '/': packagePage('/dist/index.js') } });
  const rows = [];
  try {
    for (const p of opt.paths.split(',')) {
      const browser = await launchChromium({ webgpu: p === 'webgpu' });
      try {
        for (const m of models) {
          const page = await browser.newPage(); // a fresh page: nothing compiled yet, same Cache Storage
          await page.goto(server.url);
          await page.waitForFunction(() => window.webvlmReady === true);
          await page.evaluate(() => caches.keys().then((k) => Promise.all(k.map((n) => caches.delete(n)))));
          const r = await measure(page, { manifest: `/m/${m}/manifest.json`, ...PATHS[p], sample: await sampleOf(m),
            tokens: Number(opt.tokens) });
          rows.push({ model: m, path: p, ...r });
          console.error(`${m} ${p}: cached load ${r.cached_load_ms.toFixed(0)} ms, ttft ${r.ttft_ms?.toFixed(0)} ms, ` +
            `${r.decode_tokens_per_s.toFixed(1)} tok/s (${r.backend}, ${r.threads ?? '?'} threads)`);
          await page.close();
        }
      } finally {
        await browser.close();
      }
    }
  } finally {
    await server.close();
  }
  const out = { chromium: '/usr/bin/chromium', cpus: os.cpus().length, date: new Date().toISOString(), rows };
  await mkdir(path.dirname(opt.out), { recursive: true });
  await writeFile(opt.out, JSON.stringify(out, null, 1) + '\n');
  console.error(`bench-browser: wrote ${opt.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
