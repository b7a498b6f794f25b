// The CPU path on several threads, in headless Chromium (WebGPU off), through the package the
// page uses (www/webvlm/). On the page served with COOP/COEP (scripts/serve.mjs), which is
// cross-origin isolated, the engine's worker loads the threaded build (pkg-threads/) and starts
// a pool of Web Workers: every pool thread runs a job, a split INT4 matmul equals the unsplit
// one exactly, and SmolLM2 gives the same greedy ids on 1, the default (one per logical core)
// and 3 threads. Served without the headers the page is not isolated and the package falls back
// to the single-threaded build (pkg/), even when threads are asked for. app.js is replaced by an
// empty module so the page does not load a model of its own; the pool check is the engine's
// `debug.threadPoolCheck()` testing hook.
// Needs www/pkg and www/pkg-threads (scripts/build.sh), www/webvlm and the converted model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startServe, watchPage } from './page-harness.mjs';
import { chooseBuild, chooseSimd, MAX_THREADS } from '../../js/threads.js';

const MODEL = 'models/smollm2-135m-int4/';
const PROMPT = 'Write a short story about a robot who learns to paint.'; // long answer: TOKENS ids
const TOKENS = 24;
const TIMEOUT = 8 * 60_000; // two slow shared cores; three model loads

let browser;
const servers = [];

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.kill();
});

/** A page on a fresh server (`env` for serve.mjs) with app.js emptied; collects page errors. */
async function openPage(env = {}) {
  const { child, url } = await startServe(env);
  servers.push(child);
  const page = await browser.newPage();
  const errors = [];
  watchPage(page, errors, { http: false });
  await page.route('**/app.js', (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: '' }));
  await page.goto(url);
  return { page, errors };
}

/**
 * In the page: the package (www/webvlm/, scripts/build-package.mjs) loads the model on the CPU
 * in its worker with `threads`, then runs `steps`: 'generate' (TOKENS greedy tokens of PROMPT)
 * and/or 'check' (the pool check, src/wasm_threads.rs `thread_pool_check`), on the SIMD flavour
 * `simd` ('auto': relaxed SIMD, which this Chromium has; 'simd128': the plain builds).
 * Resolves to { info, ids, text, check }.
 */
function runEngine(page, threads, steps, simd = 'auto') {
  return page.evaluate(async ({ model, threads, steps, prompt, tokens, simd }) => {
    const { createEngine } = await import('./webvlm/index.js');
    const engine = await createEngine({ model, backend: 'cpu', threads, simd });
    try {
      const out = { info: engine.info };
      if (steps.includes('generate')) {
        const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: prompt }],
          max_tokens: tokens, temperature: 0 });
        out.ids = r.webvlm.ids;
        out.text = r.choices[0].message.content;
      }
      if (steps.includes('check')) out.check = await engine.debug.threadPoolCheck();
      return out;
    } finally {
      await engine.unload();
    }
  }, { model: MODEL, threads, steps, prompt: PROMPT, tokens: TOKENS, simd });
}

test('chooseBuild: threads only when isolated and more than one asked for', () => {
  const iso = { isolated: true, cores: 8 };
  assert.deepEqual(chooseBuild(undefined, iso), { threaded: true, threads: 8, reason: null });
  assert.deepEqual(chooseBuild('auto', iso), { threaded: true, threads: 8, reason: null });
  assert.deepEqual(chooseBuild(3, iso), { threaded: true, threads: 3, reason: null });
  assert.equal(chooseBuild(1000, iso).threads, MAX_THREADS);
  assert.equal(chooseBuild(1, iso).threaded, false);
  assert.equal(chooseBuild(undefined, { isolated: true, cores: 1 }).threaded, false);
  const plain = chooseBuild(4, { isolated: false, cores: 8 });
  assert.equal(plain.threaded, false);
  assert.equal(plain.threads, 1);
  assert.match(plain.reason, /not cross-origin isolated/);
  const main = chooseBuild(4, { isolated: true, cores: 8, canBlock: false }); // an in-thread engine on the page
  assert.deepEqual([main.threaded, main.threads], [false, 1]);
  assert.match(main.reason, /main thread/);
  assert.throws(() => chooseBuild(-2, iso), /positive integer/);
  assert.throws(() => chooseBuild('many', iso), /positive integer/);
});

test('chooseSimd: relaxed where supported, SIMD128 when asked or unsupported', () => {
  assert.deepEqual(chooseSimd('auto', { supported: true }), { relaxed: true, reason: null });
  assert.deepEqual(chooseSimd(undefined, { supported: true }), { relaxed: true, reason: null });
  assert.deepEqual(chooseSimd('relaxed', { supported: false }),
    { relaxed: false, reason: 'this browser has no wasm relaxed SIMD' });
  assert.deepEqual(chooseSimd('simd128', { supported: true }), { relaxed: false, reason: 'simd128 asked for' });
  assert.throws(() => chooseSimd('avx'), /simd must be/);
});

test('isolated page: threaded build on N threads gives the single-thread ids', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage();
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true, 'COOP/COEP make the page isolated');
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);

  const one = await runEngine(page, 1, ['generate']);
  assert.equal(one.info.threads, 1);
  assert.equal(one.info.threads_reason, 'one thread asked for');
  assert.equal(one.info.backend, 'cpu');
  assert.equal(one.ids.length, TOKENS);

  const three = await runEngine(page, 3, ['generate']);
  assert.equal(three.info.threads_reason, null);
  assert.equal(three.info.threads, 3, 'thread_count() of the threaded build');
  assert.deepEqual(three.ids, one.ids, `3 threads: ${three.text} / 1 thread: ${one.text}`);

  const auto = await runEngine(page, 'auto', ['generate']);
  assert.equal(auto.info.threads, Math.min(cores, 64));
  assert.equal(auto.info.threads_reason, cores > 1 ? null : 'one logical core');
  assert.deepEqual(auto.ids, one.ids);
  assert.match(one.text, /robot/i);
  assert.deepEqual(errors, []);
});

test('isolated page: relaxed-SIMD and SIMD128 builds, one thread and three, give the same ids', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage();
  const relaxed = await runEngine(page, 1, ['generate']);
  assert.equal(relaxed.info.simd, 'relaxed', 'Chromium validates the relaxed-SIMD probe');
  assert.equal(relaxed.info.simd_reason, null);
  const plain = await runEngine(page, 1, ['generate'], 'simd128');
  assert.deepEqual([plain.info.simd, plain.info.simd_reason], ['simd128', 'simd128 asked for']);
  assert.deepEqual(plain.ids, relaxed.ids, `simd128: ${plain.text} / relaxed: ${relaxed.text}`);
  const plain3 = await runEngine(page, 3, ['generate', 'check'], 'simd128');
  assert.deepEqual([plain3.info.threads, plain3.info.simd], [3, 'simd128']);
  assert.deepEqual(plain3.ids, relaxed.ids);
  assert.deepEqual(plain3.check.broadcast, [0, 1, 2]);
  assert.deepEqual(errors, []);
});

test('isolated page: every pool thread runs work and the row split equals one chunk', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage();
  const { info, check } = await runEngine(page, 4, ['check']);
  assert.equal(info.threads_reason, null);
  assert.equal(info.threads, 4);
  assert.equal(check.threads, 4);
  assert.deepEqual(check.broadcast, [0, 1, 2, 3]);
  assert.equal(check.max_abs_diff, 0);
  assert.deepEqual(errors, []);
});

test('page without COOP/COEP: not isolated, single-threaded build', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage({ WEBVLM_ISOLATION: '0' });
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), false);
  const r = await runEngine(page, 3, ['check']);
  assert.equal(r.info.threads, 1);
  assert.match(r.info.threads_reason, /not cross-origin isolated/);
  assert.equal(r.check.threads, 1, 'thread_count() of the single-threaded build');
  assert.deepEqual(r.check.broadcast, [0]);
  assert.equal(r.check.max_abs_diff, 0);
  assert.deepEqual(errors, []);
});
