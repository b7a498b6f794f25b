// The package's model loading in headless Chromium (WebGPU off): dist/ (scripts/build.sh) and
// the converted SmolLM2 model are served by an in-process server that logs every request and
// can cut or stall a connection mid-file. Checks: a tab closed mid-download resumes from the
// pieces it saved; a dropped connection fails the load with a clear
// error; a reload resumes (completed files come from Cache Storage, the partial shard
// continues with a Range request) and finishes; a corrupt cached shard is detected and only
// it is fetched again; the second turn of a conversation prefills only its new tokens; the
// context-window policy; the storage quota check; listCachedModels / deleteCachedModel;
// progress per shard and in total with a time-left estimate on a slow network, and
// navigator.storage.persist() asked for (not with `persist: false`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, launchChromium } from './page-harness.mjs';
import { openPackagePage, packagePage, startPackageServer } from './package-harness.mjs';

const MODEL_DIR = path.join(ROOT, '.cache/models');
const MODEL = '/models/smollm2-135m-int4/manifest.json';
const SHARD0 = 'model-00000.safetensors';
const SHARD1 = 'model-00001.safetensors';
const TIMEOUT = 5 * 60_000;

let server;
let browser;
let context;
let page;
let manifest;

const requestsFor = (file) => server.log.filter((e) => e.path.endsWith('/' + file));

/** createEngine in the page with `opts`; resolves to its info, or { error, name, code }. */
function load(opts = {}) {
  return page.evaluate(async ({ model, opts }) => {
    try {
      window.engine = await window.webvlm.createEngine({ model, ...opts });
      return window.engine.info;
    } catch (e) {
      return { error: e.message, name: e.name, code: e.code };
    }
  }, { model: MODEL, opts });
}

async function freshPage() {
  await page?.evaluate(() => window.engine?.unload()).catch(() => {});
  await page?.close();
  page = await openPackagePage(context, server.url);
}

before(async () => {
  manifest = JSON.parse(await readFile(path.join(MODEL_DIR, 'smollm2-135m-int4/manifest.json'), 'utf8'));
  server = await startPackageServer({
    roots: [['/models/', MODEL_DIR], ['/dist/', path.join(ROOT, 'dist')]],
    pages: { '/': packagePage('/dist/index.js') },
  });
  browser = await launchChromium();
  // One context for the whole file: Cache Storage outlives the pages (a closed tab, a reload).
  context = await browser.newContext();
  await freshPage();
  await page.evaluate(() => window.webvlm.deleteCachedModel('/models/smollm2-135m-int4/manifest.json'));
});

after(async () => {
  await page?.evaluate(() => window.engine?.unload()).catch(() => {});
  await browser?.close();
  await server?.close();
});

test('a tab closed mid-download: the next visit resumes from the saved pieces', { timeout: TIMEOUT }, async () => {
  server.log.length = 0;
  server.faults.stall = { file: SHARD0, after: 30_000_000 };
  await page.evaluate((model) => {
    window.webvlm.createEngine({ model }).catch(() => {}); // never settles: the server stalls
  }, MODEL);
  const stalled = () => requestsFor(SHARD0)[0]?.sent >= 30_000_000 && requestsFor(SHARD1)[0]?.status === 200;
  for (let i = 0; i < 600 && !stalled(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(stalled(), 'the download reached the stall');
  await new Promise((r) => setTimeout(r, 1500)); // let the page write its last piece
  await freshPage(); // closes the tab mid-download
  server.faults.stall = null;
  server.log.length = 0;
  const info = await load();
  assert.equal(info.error, undefined, info.error);
  assert.equal(requestsFor('tokenizer.json').length, 0);
  assert.equal(requestsFor(SHARD1).length, 0);
  const [resume] = requestsFor(SHARD0);
  const start = Number(/\d+/.exec(resume?.range)?.[0]);
  // Pieces are written every 8 MiB: 30 MB in hand leaves three of them.
  assert.ok(start >= 3 * 8 * 2 ** 20 && start <= 30_000_000, `resumed at ${resume?.range}`);
  assert.equal(resume.status, 206);
  await page.evaluate(async (model) => {
    await window.engine.unload();
    await window.webvlm.deleteCachedModel(model);
  }, MODEL);
});

test('a connection dropped mid-shard fails the load with a clear error', { timeout: TIMEOUT }, async () => {
  server.log.length = 0;
  server.faults.cut = { file: SHARD0, after: 20_000_000, times: Infinity };
  const r = await load({ retries: 1 });
  server.faults.cut = null;
  assert.ok(r.error, 'the load must fail');
  assert.equal(r.name, 'ModelLoadError');
  assert.equal(r.code, 'network');
  assert.match(r.error, new RegExp(`downloading ${SHARD0} failed after 2 attempt`));
  assert.match(r.error, /the next load resumes there/);
  // The retry within the load resumed with a Range request from where the first attempt stopped.
  const tries = requestsFor(SHARD0);
  assert.equal(tries.length, 2);
  assert.equal(tries[0].range, null);
  assert.match(tries[1].range, /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(tries[1].range)[0]) > 8_000_000, tries[1].range);
  assert.equal(requestsFor(SHARD1).length, 1);
  assert.equal(requestsFor('tokenizer.json').length, 1);
});

test('a reload resumes: finished files from the cache, the partial shard by Range', { timeout: TIMEOUT }, async () => {
  await freshPage(); // the tab is gone: only Cache Storage remains
  server.log.length = 0;
  const info = await load({ concurrency: 3 });
  assert.equal(info.error, undefined, info.error);
  assert.equal(info.backend, 'cpu');
  assert.equal(requestsFor('tokenizer.json').length, 0, 'tokenizer must come from the cache');
  assert.equal(requestsFor(SHARD1).length, 0, 'the completed shard must come from the cache');
  const tries = requestsFor(SHARD0);
  assert.equal(tries.length, 1);
  assert.equal(tries[0].status, 206);
  const start = Number(/\d+/.exec(tries[0].range)[0]);
  assert.ok(start >= 16_000_000, `resumed from ${start}`);
  assert.equal(tries[0].sent, manifest.shards[0].size - start, 'only the missing bytes are sent');
  assert.deepEqual(info.download.resumed, [{ file: SHARD0, offset: start }]);
  assert.deepEqual(info.download.fromCache.sort(), [SHARD1, 'tokenizer.json']);
  assert.deepEqual(info.download.downloaded, [SHARD0]);
  const r = await page.evaluate(() => window.engine.chat.completions.create({
    messages: [{ role: 'user', content: 'What is the capital of France?' }], max_tokens: 12 }));
  assert.match(r.choices[0].message.content, /Paris/);
});

test('a corrupt cached shard is detected and fetched again alone', { timeout: TIMEOUT }, async () => {
  const corrupted = await page.evaluate(async (file) => {
    await window.engine.unload();
    const cache = await caches.open('webvlm-model:' + new URL('/models/smollm2-135m-int4/manifest.json', location.href));
    const key = new URL(`/models/smollm2-135m-int4/${file}`, location.href).href;
    const resp = await cache.match(key);
    const bytes = new Uint8Array(await resp.arrayBuffer());
    bytes[bytes.length >> 1] ^= 0xff; // same size, one byte flipped
    await cache.put(key, new Response(bytes, { headers: resp.headers }));
    return bytes.length;
  }, SHARD1);
  assert.equal(corrupted, manifest.shards[1].size);
  await freshPage();
  server.log.length = 0;
  const progress = [];
  await page.exposeFunction('recordProgress', (p) => progress.push(p));
  const info = await page.evaluate(async (model) => {
    window.engine = await window.webvlm.createEngine({ model, onProgress: (p) => window.recordProgress(p) });
    return window.engine.info;
  }, MODEL);
  assert.deepEqual(info.download.corrupt, [SHARD1]);
  assert.deepEqual(info.download.downloaded, [SHARD1]);
  const models = server.log.filter((e) => e.path.startsWith('/models/') && !e.path.endsWith('manifest.json'));
  assert.deepEqual(models.map((e) => [path.basename(e.path), e.range]), [[SHARD1, null]]);
  // Progress: per file and in total, ending with everything in hand.
  const last = progress.filter((p) => p.phase === 'download').pop();
  assert.equal(last.loaded, last.total);
  assert.deepEqual(last.files.map((f) => f.state).sort(), ['cached', 'cached', 'done']);
  assert.ok(progress.some((p) => p.phase === 'ready'));
});

test('a shard Cache Storage refuses whole is kept in pieces and read back from them', { timeout: TIMEOUT }, async () => {
  // Chromium refuses one entry of a few hundred MiB ("Unexpected internal error"): a model whose
  // largest tensor is that big (LLaVA-Gemma's 256000-token embedding) has a shard that big.
  await page.evaluate((model) => window.engine.unload().then(() => window.webvlm.deleteCachedModel(model)), MODEL);
  await freshPage();
  await page.evaluate((file) => {
    const put = Cache.prototype.put;
    Cache.prototype.put = function (req, resp) {
      const url = new URL(typeof req === 'string' ? req : req.url, location.href);
      if (url.pathname.endsWith('/' + file) && !url.search) {
        return Promise.reject(new DOMException("Failed to execute 'put' on 'Cache': Unexpected internal error.", 'UnknownError'));
      }
      return put.call(this, req, resp);
    };
  }, SHARD0);
  let info = await load({ worker: false });
  assert.equal(info.error, undefined, info.error);
  assert.deepEqual(info.download.cachedInPieces, [SHARD0]);
  assert.deepEqual(info.download.notCached, []);
  await freshPage(); // Cache Storage as Chromium has it again
  server.log.length = 0;
  info = await load();
  assert.equal(info.error, undefined, info.error);
  assert.ok(info.download.fromCache.includes(SHARD0), JSON.stringify(info.download));
  assert.deepEqual(info.download.downloaded, []);
  assert.deepEqual(requestsFor(SHARD0), [], 'the pieces served the shard');
  const listed = await page.evaluate(() => window.webvlm.listCachedModels());
  assert.ok(listed.some((m) => m.url.endsWith(MODEL) && m.complete), JSON.stringify(listed));
});

test('the second turn prefills only its new tokens (in-thread engine)', { timeout: TIMEOUT }, async () => {
  await page.evaluate(() => window.engine.unload());
  const info = await load({ worker: false });
  assert.equal(info.error, undefined, info.error);
  const [r1, r2] = await page.evaluate(async () => {
    const q1 = { role: 'user', content: 'What is the capital of France?' };
    const create = (messages) => window.engine.chat.completions.create({ messages, max_tokens: 8 });
    const a = await create([q1]);
    const b = await create([q1, a.choices[0].message, { role: 'user', content: 'And of Italy?' }]);
    return [a, b];
  });
  const t1 = r1.webvlm.timings;
  const t2 = r2.webvlm.timings;
  assert.equal(t1.prefill_tokens, r1.usage.prompt_tokens, 'the first turn prefills its whole prompt');
  const fresh = r2.usage.prompt_tokens - r1.usage.prompt_tokens;
  assert.ok(t2.prefill_tokens <= fresh, `second turn prefilled ${t2.prefill_tokens} of ${r2.usage.prompt_tokens} ` +
    `tokens; only the ${fresh} after the first prompt are new`);
  console.log(`prefill: turn 1 ${t1.prefill_tokens} tokens, turn 2 ${t2.prefill_tokens} of ${r2.usage.prompt_tokens}`);
});

test('context window: a clear error by default, oldest turns dropped on request', { timeout: TIMEOUT }, async () => {
  const [err, dropped] = await page.evaluate(async () => {
    const long = 'lorem ipsum '.repeat(5000); // ~10k tokens: more than the 8192 of SmolLM2
    const messages = [
      { role: 'system', content: 'Answer briefly.' },
      { role: 'user', content: long },
      { role: 'assistant', content: 'Noted.' },
      { role: 'user', content: 'Say hello.' },
    ];
    let error = null;
    try {
      await window.engine.chat.completions.create({ messages, max_tokens: 4 });
    } catch (e) {
      error = { name: e.name, code: e.code, message: e.message };
    }
    const r = await window.engine.chat.completions.create({ messages, max_tokens: 4, context: 'drop_oldest' });
    return [error, r];
  });
  assert.equal(err?.name, 'ContextWindowError');
  assert.equal(err.code, 'context_length_exceeded');
  assert.match(err.message, /context window holds 8192/);
  assert.match(err.message, /drop_oldest/);
  assert.equal(dropped.webvlm.dropped_messages, 2);
  assert.ok(dropped.usage.prompt_tokens < 100, `prompt of ${dropped.usage.prompt_tokens} tokens`);
  assert.ok(dropped.usage.completion_tokens >= 1 && dropped.usage.completion_tokens <= 4);
  assert.ok(['stop', 'length'].includes(dropped.choices[0].finish_reason), dropped.choices[0].finish_reason);
});

test('cached models are listed and deleted; a too-small quota is refused before downloading', { timeout: TIMEOUT },
  async () => {
    const total = manifest.shards.reduce((a, s) => a + s.size, 0) + manifest.files[0].size;
    const listed = await page.evaluate(() => window.webvlm.listCachedModels());
    assert.equal(listed.length, 1);
    assert.equal(listed[0].url, new URL(MODEL, server.url).href);
    assert.equal(listed[0].complete, true);
    assert.ok(listed[0].bytes >= total && listed[0].bytes < total + 200_000, `${listed[0].bytes} bytes`);
    await page.evaluate(() => window.engine.unload());
    server.log.length = 0;
    const after = await page.evaluate(async (model) => {
      const deleted = await window.webvlm.deleteCachedModel(model);
      // Simulate a nearly full origin: the browser grants 10 MB.
      navigator.storage.estimate = async () => ({ quota: 10_000_000, usage: 1_000_000 });
      let error = null;
      try {
        await window.webvlm.createEngine({ model, worker: false });
      } catch (e) {
        error = { name: e.name, code: e.code, message: e.message };
      }
      return { deleted, list: await window.webvlm.listCachedModels(), error };
    }, MODEL);
    assert.equal(after.deleted, true);
    assert.deepEqual(after.list.filter((m) => m.complete), []);
    assert.equal(after.error?.code, 'quota');
    assert.match(after.error.message, /not enough storage for the model: it needs 73\.0 MB/);
    const fetched = server.log.map((e) => path.basename(e.path));
    assert.deepEqual(fetched, ['manifest.json'], 'nothing but the manifest is fetched before the quota check');
  });

test('a server without Range support: the partial shard restarts from zero and still verifies', { timeout: TIMEOUT },
  async () => {
    const plain = await startPackageServer({
      roots: [['/models/', MODEL_DIR], ['/dist/', path.join(ROOT, 'dist')]],
      pages: { '/': packagePage('/dist/index.js') },
      rangeSupport: false,
    });
    const p = await openPackagePage(context, plain.url); // another origin: its own Cache Storage
    try {
      plain.faults.cut = { file: SHARD0, after: 20_000_000, times: 1 };
      const run = (opts) => p.evaluate(async ({ model, opts }) => {
        try {
          const e = await window.webvlm.createEngine({ model, ...opts });
          const info = e.info;
          await e.unload();
          return info;
        } catch (e) {
          return { error: e.message };
        }
      }, { model: MODEL, opts });
      assert.match((await run({ retries: 0 })).error, /failed after 1 attempt/);
      const info = await run({});
      assert.equal(info.error, undefined, info.error);
      const gets = plain.log.filter((e) => e.path.endsWith(SHARD0));
      assert.equal(gets.length, 2);
      assert.match(gets[1].range, /^bytes=\d+-$/, 'the page asked to resume');
      assert.equal(gets[1].status, 200, 'the server sent the whole file');
      assert.equal(gets[1].sent, manifest.shards[0].size);
      assert.deepEqual(info.download.resumed, []);
      assert.deepEqual(info.download.downloaded, [SHARD0]);
      await p.evaluate((model) => window.webvlm.deleteCachedModel(model), MODEL);
    } finally {
      await p.close();
      await plain.close();
    }
  });

test('createEngine({ signal }) cancels a download in either core', { timeout: TIMEOUT }, async () => {
  await freshPage();
  for (const worker of [true, false]) {
    server.log.length = 0;
    server.faults.stall = { file: SHARD0, after: 10_000_000 };
    await page.evaluate(({ model, worker }) => {
      window.ctl = new AbortController();
      window.outcome = window.webvlm.createEngine({ model, worker, signal: window.ctl.signal })
        .then(() => 'loaded', (e) => e.name);
    }, { model: MODEL, worker });
    const stalled = () => requestsFor(SHARD0)[0]?.sent >= 10_000_000;
    for (let i = 0; i < 600 && !stalled(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(stalled());
    const t0 = Date.now();
    const outcome = await page.evaluate(() => {
      window.ctl.abort();
      return window.outcome;
    });
    assert.equal(outcome, 'AbortError', `worker: ${worker}`);
    assert.ok(Date.now() - t0 < 5000);
  }
  server.faults.stall = null;
  await page.evaluate((model) => window.webvlm.deleteCachedModel(model), MODEL);
});

test('progress per shard and in total with a time left on a slow network; storage.persist() asked', { timeout: TIMEOUT },
  async () => {
    await freshPage();
    await page.evaluate((model) => window.webvlm.deleteCachedModel(model), MODEL);
    server.faults.slow = { file: SHARD0, bytesPerSecond: 25_000_000 }; // ~2.7 s for shard 0
    const out = await page.evaluate(async (model) => {
      let asked = 0;
      navigator.storage.persist = async () => { asked += 1; return true; };
      const events = [];
      const engine = await window.webvlm.createEngine({ model, worker: false, onProgress: (p) => events.push(p) });
      await engine.unload();
      const askedFirst = asked;
      const again = await window.webvlm.createEngine({ model, worker: false, persist: false });
      await again.unload();
      return { askedFirst, askedAfter: asked, events: events.filter((e) => e.phase === 'download') };
    }, MODEL);
    server.faults.slow = null;
    assert.equal(out.askedFirst, 1, 'persist() is asked for before a download');
    assert.equal(out.askedAfter, 1, 'not with persist: false');
    const mid = out.events.filter((e) => e.loaded > 0 && e.loaded < e.total);
    assert.ok(mid.length >= 5, `${mid.length} progress events mid-download`);
    const timed = mid.filter((e) => Number.isFinite(e.etaSeconds) && e.etaSeconds > 0 && e.bytesPerSecond > 0);
    assert.ok(timed.length >= 3, 'a time-left estimate while downloading');
    // Paced at 25 MB/s, the estimate is of the right size: 0.2 s .. 10 s for what is left.
    for (const e of timed.slice(-3)) {
      const left = (e.total - e.loaded) / 25e6;
      assert.ok(e.etaSeconds > left / 5 && e.etaSeconds < left * 5 + 1, `eta ${e.etaSeconds} s for ${left} s left`);
    }
    for (const e of out.events) {
      assert.equal(e.loaded, e.files.reduce((a, f) => a + f.loaded, 0), 'the total is the sum of the files');
      assert.ok(e.files.some((f) => f.file === SHARD0) && e.files.some((f) => f.file === SHARD1));
    }
    const last = out.events.at(-1);
    assert.equal(last.loaded, last.total);
    assert.equal(last.etaSeconds, 0);
    assert.ok(last.files.every((f) => f.loaded === f.total), JSON.stringify(last.files.map((f) => f.state)));
  });

test('sampling options in the browser: seed repeats an answer, top_p and temperature vary it, stop cuts it',
  { timeout: TIMEOUT }, async () => {
    const out = await page.evaluate(async (model) => {
      const engine = await window.webvlm.createEngine({ model });
      const ask = (opts, content = 'Tell me about cats.') => engine.chat.completions.create({ max_tokens: 16, ...opts,
        messages: [{ role: 'user', content }] }).then((r) => ({ text: r.choices[0].message.content,
        finish: r.choices[0].finish_reason }));
      const sampled = { temperature: 0.9, top_p: 0.9 };
      const a = await ask({ ...sampled, seed: 7 });
      const b = await ask({ ...sampled, seed: 7 });
      const others = [];
      for (const seed of [8, 9, 10]) others.push((await ask({ ...sampled, seed })).text);
      const q = 'What is the capital of France?';
      const greedy = await ask({ max_tokens: 24 }, q);
      const stopped = await ask({ max_tokens: 24, stop: ['Paris'] }, q);
      await engine.unload();
      return { a, b, others, greedy, stopped };
    }, MODEL);
    assert.equal(out.a.text, out.b.text, 'the same seed gives the same sampled answer');
    assert.ok(out.others.some((t) => t !== out.a.text), `other seeds vary it: ${JSON.stringify(out.others)}`);
    const at = out.greedy.text.indexOf('Paris');
    assert.ok(at >= 0, out.greedy.text);
    assert.equal(out.stopped.finish, 'stop');
    assert.equal(out.stopped.text, out.greedy.text.slice(0, at), 'the text ends before the stop string');
  });
