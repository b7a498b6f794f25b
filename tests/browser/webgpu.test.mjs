// The page on the WebGPU path in headless Chromium with `--enable-unsafe-webgpu` (SwiftShader,
// Chromium's software WebGPU adapter: no shader-f16, subgroups of 4, 1 GiB buffers). The same
// greedy answer (token ids) comes from the CPU and the WebGPU backends; a device destroyed
// mid-answer (the page's testing hook) moves the conversation to the CPU: the answer completes
// with the same ids, a notice says why, and the next turn runs. SwiftShader is slow, so answers
// are short. With the LLaVA-1.5 fixture, an image question on WebGPU gives the CPU's ids
// with the image encoded by the GPU vision tower (the status says "on WebGPU"), and with the
// device destroyed before the question the image is encoded on the CPU, the same ids, a
// notice saying why; on WebGPU, stop, regenerate and a later turn whose prefill covers only its new
// tokens (the KV cache on the GPU holds the rest). WEBVLM_SKIP_GPU=1 skips them where the browser has no WebGPU adapter.
// Needs www/webvlm (scripts/build.sh) and the converted models (scripts/setup.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, openChatPage, openSettings, waitSettled } from './page-harness.mjs';

const SHOTS = path.join(ROOT, 'test-results');
const LOAD_TIMEOUT = 5 * 60_000;
const GEN_TIMEOUT = 8 * 60_000;
const MAX_TOKENS = 10;
const QUESTION = 'What is the capital of France?';
const LLAVA = 'models/llava15-llama-fixture/';
const SMOL = 'models/smollm2-135m-int4/'; // SmolLM2 (scripts/setup.sh)
const IMAGE = path.join(ROOT, 'tests/fixtures/llava/images/chelsea.png');
const IMAGE_QUESTION = 'What is in the image?';

let server;
let baseUrl;
let browser;
let page;
let adapterInfo = null; // what navigator.gpu.requestAdapter() gave, or null
let cpuIds = null; // greedy ids of QUESTION on the CPU backend
let pageErrors;

/** Open the page with `?backend=` (and `?model=`) and wait until the model is loaded. */
async function openPage(backend, model = SMOL) {
  await page.goto(`${baseUrl}?backend=${backend}&model=${model}`);
  await waitSettled(page, { timeout: LOAD_TIMEOUT, polling: 200 });
  const status = await page.locator('#status').textContent();
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready', status);
  await openSettings(page);
  await page.locator('#max-tokens').fill(String(MAX_TOKENS));
  return status;
}

async function ask(text) {
  await page.locator('#prompt').fill(text);
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'generating', null, { timeout: 10_000 });
}

/** Wait for the answer in progress to end; its text, ids, backend and meta line. */
async function answer() {
  await page.waitForFunction(() => document.body.dataset.state !== 'generating',
    null, { timeout: GEN_TIMEOUT, polling: 100 });
  return page.evaluate(() => {
    const all = document.querySelectorAll('#log .msg.assistant');
    const li = all[all.length - 1];
    return {
      state: document.body.dataset.state,
      status: document.getElementById('status').textContent,
      text: li.querySelector('.body').textContent,
      ids: JSON.parse(li.dataset.ids || 'null'),
      backend: li.dataset.backend,
      meta: li.querySelector('.meta')?.textContent || '',
    };
  });
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  ({ server, baseUrl, browser, page, errors: pageErrors } = await openChatPage({ webgpu: true }));
  // The adapter, asked for first (the page's CSP allows no blob: worker, so from the window;
  // the engine asks from its worker, which the tests below exercise).
  await page.goto(`${baseUrl}?backend=cpu&model=${SMOL}`);
  adapterInfo = await page.evaluate(async () => {
    const a = navigator.gpu && await navigator.gpu.requestAdapter();
    return a && { vendor: a.info.vendor, architecture: a.info.architecture, features: [...a.features],
      subgroupMinSize: a.info.subgroupMinSize, maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize };
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

// WEBVLM_SKIP_GPU=1 (as for the native GPU tests) skips where Chromium has no WebGPU adapter;
// otherwise a missing adapter is a failure, not a silent skip.
const skipWithoutAdapter = (t) => {
  if (adapterInfo) return false;
  if (process.env.WEBVLM_SKIP_GPU === '1') {
    t.skip('no WebGPU adapter in this Chromium (requestAdapter() gave null)');
    return true;
  }
  assert.fail('Chromium with --enable-unsafe-webgpu gave no WebGPU adapter (set WEBVLM_SKIP_GPU=1 to skip)');
};

test('a worker gets a WebGPU adapter with --enable-unsafe-webgpu', (t) => {
  if (skipWithoutAdapter(t)) return;
  console.log(`adapter: ${JSON.stringify(adapterInfo)}`);
  assert.ok(adapterInfo.maxStorageBufferBindingSize >= 128 << 20);
});

test('greedy answer on the CPU backend (the reference)', { timeout: LOAD_TIMEOUT + GEN_TIMEOUT }, async (t) => {
  if (skipWithoutAdapter(t)) return;
  const status = await openPage('cpu');
  assert.match(status, /CPU \(wasm SIMD\)/);
  assert.equal(await page.locator('#notice').isVisible(), false, 'no notice when the CPU was asked for');
  await ask(QUESTION);
  const a = await answer();
  assert.equal(a.state, 'ready', a.status);
  assert.equal(a.backend, 'cpu');
  assert.ok(a.ids.length >= 4 && a.ids.length <= MAX_TOKENS, `${a.ids.length} tokens: ${a.text}`);
  cpuIds = a.ids;
  console.log(`cpu: ${JSON.stringify(a.text)} ${a.meta}`);
});

test('the WebGPU backend gives the same greedy ids', { timeout: LOAD_TIMEOUT + GEN_TIMEOUT }, async (t) => {
  if (skipWithoutAdapter(t)) return;
  // The settings select reloads the engine on the chosen backend (and records it in the URL).
  await openSettings(page);
  await page.locator('#backend').selectOption('webgpu');
  await waitSettled(page, { timeout: LOAD_TIMEOUT, polling: 200 });
  const status = await page.locator('#status').textContent();
  assert.match(status, /^Ready · backend: WebGPU \(software adapter\)/, status);
  assert.match(page.url(), /[?&]backend=webgpu/);
  assert.equal(await page.locator('#log .msg').count(), 0, 'a new engine starts a new conversation');
  assert.equal(await page.locator('#notice').isVisible(), false);
  await ask(QUESTION);
  const a = await answer();
  await page.screenshot({ path: path.join(SHOTS, 'webgpu-1-answer.png') });
  assert.equal(a.state, 'ready', a.status);
  assert.equal(a.backend, 'webgpu', a.meta);
  assert.match(a.meta, /^WebGPU · [\d.]+ tokens\/s · first token \d+ ms · prefill \d+ tokens · \d+ dispatches\/token$/);
  assert.match(a.status, /tokens\/s/);
  console.log(`webgpu: ${JSON.stringify(a.text)} ${a.meta} · ${status}`);
  assert.deepEqual(a.ids, cpuIds, 'greedy ids on WebGPU vs the CPU');
});

test('device lost mid-answer: the conversation goes on on the CPU', { timeout: 2 * GEN_TIMEOUT }, async (t) => {
  if (skipWithoutAdapter(t)) return;
  await page.locator('#reset').click();
  await ask(QUESTION);
  // Destroy the device once a few tokens are out (the answer is mid-way).
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('#log .msg.assistant .body');
    return all.length === 1 && all[0].textContent.length >= 6;
  }, null, { timeout: GEN_TIMEOUT, polling: 50 });
  const destroyed = await page.evaluate(() => window.webvlmDebug.loseDevice());
  assert.equal(destroyed, true, 'the engine was on a WebGPU device');
  const a = await answer();
  await page.screenshot({ path: path.join(SHOTS, 'webgpu-2-device-lost.png') });
  assert.equal(a.state, 'ready', a.status);
  assert.equal(a.backend, 'cpu');
  assert.match(a.meta, /CPU \(wasm SIMD\) \(moved from WebGPU\)/);
  assert.deepEqual(a.ids, cpuIds, 'the answer completes with the same greedy ids');
  const notice = await page.locator('#notice').textContent();
  assert.equal(await page.locator('#notice').isVisible(), true);
  assert.match(notice, /continues on the CPU/);
  console.log(`notice: ${notice}`);
  // The next turn runs on the CPU, with the conversation so far.
  await ask('And of Italy?');
  const b = await answer();
  assert.equal(b.state, 'ready', b.status);
  assert.equal(b.backend, 'cpu');
  assert.ok(b.ids.length > 0 && b.text.length > 0, b.text);
  assert.match(b.status, /backend: CPU/);
  assert.equal(await page.locator('#log .msg').count(), 4);
});

/** Ask IMAGE_QUESTION with IMAGE attached, greedy; the answer and the status line. */
async function askImage() {
  await page.locator('#temperature').fill('0');
  await page.locator('#image-input').setInputFiles(IMAGE);
  await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
  await ask(IMAGE_QUESTION);
  return answer();
}

let cpuImageIds = null;

test('an image question on WebGPU: the CPU\'s ids, the image encoded on the GPU', { timeout: 3 * GEN_TIMEOUT },
  async (t) => {
    if (skipWithoutAdapter(t)) return;
    await openPage('cpu', LLAVA);
    const c = await askImage();
    assert.equal(c.state, 'ready', c.status);
    assert.equal(c.backend, 'cpu');
    assert.match(c.status, /image tokens, encoded in \d+ ms on the CPU/, c.status);
    cpuImageIds = c.ids;
    await openPage('webgpu', LLAVA);
    const g = await askImage();
    await page.screenshot({ path: path.join(SHOTS, 'webgpu-3-image.png') });
    console.log(`image on webgpu: ${g.status} · ${g.meta}`);
    assert.equal(g.state, 'ready', g.status);
    assert.equal(g.backend, 'webgpu', g.meta);
    assert.match(g.status, /image tokens, encoded in \d+ ms on WebGPU/, g.status);
    assert.ok(cpuImageIds.length > 0);
    assert.deepEqual(g.ids, cpuImageIds, 'greedy ids with an image, WebGPU vs the CPU');
  });

/** The last answer's figures from its data-* attributes. */
const lastFigures = () => page.evaluate(() => {
  const d = [...document.querySelectorAll('#log .msg.assistant')].at(-1).dataset;
  return { ids: JSON.parse(d.ids || 'null'), finish: d.finish, prefill: Number(d.prefillTokens),
    prompt: Number(d.promptTokens), backend: d.backend };
});

test('on WebGPU: stop ends an answer early, regenerate re-runs it, a later turn prefills only its new tokens',
  { timeout: 3 * GEN_TIMEOUT }, async (t) => {
    if (skipWithoutAdapter(t)) return;
    // Continues the image conversation of the test above (LLaVA fixture, WebGPU engine).
    const first = await lastFigures();
    assert.equal(first.backend, 'webgpu');
    await page.locator('#max-tokens').fill('200');
    // Escape (the keyboard's Stop) once the second token is counted.
    await page.evaluate(() => {
      const obs = new MutationObserver(() => {
        if (Number(/ (\d+) tokens ·/.exec(document.getElementById('status').textContent)?.[1]) >= 2) {
          obs.disconnect();
          document.activeElement.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
        }
      });
      obs.observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
    });
    await ask('Tell me a long story about it.');
    const stopped = await answer();
    const sf = await lastFigures();
    assert.match(stopped.status, /^Stopped/);
    assert.equal(sf.finish, 'aborted');
    assert.equal(sf.backend, 'webgpu');
    assert.ok(sf.ids.length >= 2 && sf.ids.length < 200, `${sf.ids.length} tokens`);

    await page.locator('#max-tokens').fill(String(sf.ids.length + 2));
    await page.locator('#regenerate').click();
    await page.waitForFunction(() => document.body.dataset.state === 'generating', null, { timeout: 10_000, polling: 10 })
      .catch(() => {});
    await answer();
    const again = await lastFigures();
    assert.notEqual(again.finish, 'aborted');
    assert.deepEqual(again.ids.slice(0, sf.ids.length), sf.ids, 'greedy: the same tokens, then past the stop');
    assert.ok(again.ids.length > sf.ids.length);
    assert.equal(again.prompt, sf.prompt, 'the same conversation was sent');

    await page.locator('#max-tokens').fill('4');
    await ask('And what colour is it?');
    await answer();
    const later = await lastFigures();
    console.log(`webgpu later turn: prefill ${later.prefill} of ${later.prompt} (first turn ${first.prefill})`);
    assert.equal(later.backend, 'webgpu');
    assert.ok(later.prefill > 0 && later.prefill <= later.prompt - again.prompt,
      `prefill ${later.prefill} should be <= ${later.prompt} - ${again.prompt} (only the new tokens)`);
    assert.ok(later.prefill < first.prefill, `${later.prefill} < first turn's ${first.prefill}`);
  });

test('device lost before an image question: the CPU encodes it, same ids, a notice', { timeout: 2 * GEN_TIMEOUT },
  async (t) => {
    if (skipWithoutAdapter(t)) return;
    await openPage('webgpu', LLAVA); // a new engine: the image is not in its feature cache
    assert.equal(await page.evaluate(() => window.webvlmDebug.loseDevice()), true);
    const a = await askImage();
    console.log(`image after device loss: ${a.status} · ${a.meta}`);
    assert.equal(a.state, 'ready', a.status);
    assert.equal(a.backend, 'cpu');
    assert.match(a.status, /image tokens, encoded in \d+ ms on the CPU/, a.status);
    assert.deepEqual(a.ids, cpuImageIds, 'the same greedy ids from the CPU encoder');
    assert.equal(await page.locator('#notice').isVisible(), true);
    assert.match(await page.locator('#notice').textContent(), /continues on the CPU/);
  });

test('no page errors and no request left the local server', () => {
  assert.deepEqual(pageErrors, []);
});
