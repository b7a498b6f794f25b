// The CPU path on several threads, in headless Chromium (WebGPU off). On the page served with
// COOP/COEP (scripts/serve.mjs), which is cross-origin isolated, the engine worker loads the
// threaded build (www/pkg-threads) and starts a pool of Web Workers: every pool thread runs a
// job, a split INT4 matmul equals the unsplit one exactly, and SmolLM2 gives the same greedy
// ids on 1, the default (one per logical core) and 3 threads. Served without the headers the
// page is not isolated and the worker falls back to the single-threaded build (www/pkg), even
// when threads are asked for. The test drives www/worker.js directly from the page (app.js is
// replaced by an empty module so the page does not load a model of its own); the pool check is
// the worker's `thread_check` testing hook.
// Needs www/pkg and www/pkg-threads (scripts/build.sh) and the converted model (scripts/setup.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startServe } from './page-harness.mjs';
import { chooseBuild, MAX_THREADS } from '../../www/threads.js';

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
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  await page.route('**/app.js', (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: '' }));
  await page.goto(url);
  return { page, errors };
}

/**
 * In the page: start www/worker.js and send it `requests` in turn ({ type, ...fields }, each
 * answered by a reply of type `want`), e.g. load then generate. Resolves to the replies.
 */
function talkToWorker(page, requests) {
  return page.evaluate(async (requests) => {
    const w = new Worker('worker.js', { type: 'module' });
    const call = (msg) => new Promise((resolve, reject) => {
      const on = (ev) => {
        const m = ev.data || {};
        if (m.id !== msg.id) return;
        if (m.type === 'error') reject(new Error(m.message));
        else if (m.type === msg.want) resolve(m);
        else return;
        w.removeEventListener('message', on);
      };
      w.addEventListener('message', on);
      w.onerror = (e) => reject(new Error(`worker: ${e.message}`));
      w.postMessage(msg);
    });
    try {
      const replies = [];
      for (const [i, r] of requests.entries()) {
        const msg = { ...r, id: i + 1 };
        if (msg.type === 'load') msg.url = new URL(msg.url, location.href).href;
        replies.push(await call(msg));
      }
      return replies;
    } finally {
      w.terminate();
    }
  }, requests);
}

/** Load the model on the CPU with `threads` and generate TOKENS greedy tokens. */
async function runWorker(page, threads) {
  const [loaded, done] = await talkToWorker(page, [
    { type: 'load', want: 'loaded', url: MODEL, backend: 'cpu', threads },
    { type: 'generate', want: 'done', messages: [{ role: 'user', content: PROMPT }],
      params: { max_new_tokens: TOKENS, sampling: { temperature: 0 } } },
  ]);
  return { loaded, ids: done.result.ids, text: done.result.text };
}

/** The worker's thread pool check (src/wasm_threads.rs `thread_pool_check`), no model. */
async function threadCheck(page, threads) {
  const [r] = await talkToWorker(page, [{ type: 'thread_check', want: 'thread_check', threads }]);
  return r;
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
  assert.throws(() => chooseBuild(-2, iso), /positive integer/);
  assert.throws(() => chooseBuild('many', iso), /positive integer/);
});

test('isolated page: threaded build on N threads gives the single-thread ids', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage();
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true, 'COOP/COEP make the page isolated');
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);

  const one = await runWorker(page, 1);
  assert.equal(one.loaded.threaded, false);
  assert.equal(one.loaded.threads, 1);
  assert.equal(one.loaded.backend, 'cpu');
  assert.equal(one.ids.length, TOKENS);

  const three = await runWorker(page, 3);
  assert.equal(three.loaded.threaded, true, three.loaded.threadsReason || '');
  assert.equal(three.loaded.threads, 3, 'thread_count() of the threaded build');
  assert.deepEqual(three.ids, one.ids, `3 threads: ${three.text} / 1 thread: ${one.text}`);

  const auto = await runWorker(page, undefined);
  assert.equal(auto.loaded.threads, Math.min(cores, 64));
  assert.equal(auto.loaded.threaded, cores > 1);
  assert.deepEqual(auto.ids, one.ids);
  assert.match(one.text, /robot/i);
  assert.deepEqual(errors, []);
});

test('isolated page: every pool thread runs work and the row split equals one chunk', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage();
  const check = await threadCheck(page, 4);
  assert.equal(check.threaded, true, check.reason || '');
  assert.equal(check.check.threads, 4);
  assert.deepEqual(check.check.broadcast, [0, 1, 2, 3]);
  assert.equal(check.check.max_abs_diff, 0);
  assert.deepEqual(errors, []);
});

test('page without COOP/COEP: not isolated, single-threaded build', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await openPage({ WEBVLM_ISOLATION: '0' });
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), false);
  const r = await threadCheck(page, 3);
  assert.equal(r.threaded, false);
  assert.equal(r.threads, 1);
  assert.match(r.reason, /not cross-origin isolated/);
  assert.equal(r.check.threads, 1, 'thread_count() of the single-threaded build');
  assert.deepEqual(r.check.broadcast, [0]);
  assert.equal(r.check.max_abs_diff, 0);
  assert.deepEqual(errors, []);
});
