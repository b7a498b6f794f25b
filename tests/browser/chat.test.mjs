// End to end in headless Chromium (WebGPU off, so the CPU wasm path runs): serve the page
// and the converted model with scripts/serve.mjs, wait for the streamed download, ask a
// question and watch the answer grow token by token, then stop a long generation.
// Screenshots go to test-results/. Needs www/webvlm (scripts/build.sh) and the converted model
// (scripts/setup.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, openChatPage, openSettings, waitSettled } from './page-harness.mjs';

const SHOTS = path.join(ROOT, 'test-results');
// CI runs on two slow cores: model load and generation get generous limits.
const LOAD_TIMEOUT = 5 * 60_000;
const GEN_TIMEOUT = 8 * 60_000;

let server;
let baseUrl;
let browser;
let page;
let pageErrors;

/** Text of the last assistant bubble. */
const lastAnswer = () =>
  page.evaluate(() => {
    const all = document.querySelectorAll('#log .msg.assistant .body');
    return all.length ? all[all.length - 1].textContent : '';
  });

/** Record every length the last assistant bubble takes (a MutationObserver in the page). */
async function watchAnswerGrowth() {
  await page.evaluate(() => {
    window.__lengths = [];
    window.__observer?.disconnect();
    window.__observer = new MutationObserver(() => {
      const all = document.querySelectorAll('#log .msg.assistant .body');
      const n = all.length ? all[all.length - 1].textContent.length : 0;
      if (window.__lengths[window.__lengths.length - 1] !== n) window.__lengths.push(n);
    });
    window.__observer.observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true });
  });
}

async function ask(text) {
  await page.locator('#prompt').fill(text);
  await page.locator('#prompt').press('Enter');
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  // Page errors, failed responses and any request off the local server are recorded.
  ({ server, baseUrl, browser, page, errors: pageErrors } = await openChatPage());
});

after(async () => {
  await browser?.close();
  server?.kill();
});

test('model downloads with visible progress', { timeout: LOAD_TIMEOUT }, async () => {
  await page.goto(`${baseUrl}?model=models/smollm2-135m-int4/`); // SmolLM2 (scripts/setup.sh)
  // Progress must be seen while loading (sampled from the page) ...
  const sawProgress = page.waitForFunction(() => Number(document.getElementById('load-progress').value) > 0,
    null, { timeout: LOAD_TIMEOUT, polling: 50 });
  await sawProgress;
  await page.screenshot({ path: path.join(SHOTS, 'chat-1-loading.png') });
  await waitSettled(page, { timeout: LOAD_TIMEOUT, polling: 200 });
  const status = await page.locator('#status').textContent();
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready', status);
  // ... and end complete, in bytes.
  const { value, max, text } = await page.evaluate(() => ({
    value: document.getElementById('load-progress').value,
    max: document.getElementById('load-progress').max,
    text: document.getElementById('load-text').textContent,
  }));
  assert.ok(max > 1_000_000, `progress total ${max} should be the model size in bytes`);
  assert.equal(value, max);
  assert.match(text, /MiB \/ [\d.]+ MiB \(100%\)/);
  assert.match(status, /CPU \(wasm SIMD\)/);
  assert.equal(await page.locator('#send').isEnabled(), true);
  await page.screenshot({ path: path.join(SHOTS, 'chat-2-ready.png') });
});

test('answers "capital of France" with Paris, streamed', { timeout: GEN_TIMEOUT }, async () => {
  await watchAnswerGrowth();
  await ask('What is the capital of France?');
  await page.waitForFunction(() => document.body.dataset.state === 'generating', null, { timeout: 10_000 });
  assert.equal(await page.locator('#stop').isEnabled(), true);
  await page.waitForFunction(() => document.body.dataset.state !== 'generating',
    null, { timeout: GEN_TIMEOUT, polling: 200 });
  const answer = await lastAnswer();
  const lengths = await page.evaluate(() => window.__lengths.filter((n) => n > 0));
  await page.screenshot({ path: path.join(SHOTS, 'chat-3-paris.png') });
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready',
    await page.locator('#status').textContent());
  assert.match(answer, /Paris/);
  assert.ok(lengths.length >= 2, `answer should arrive in several steps, saw lengths ${JSON.stringify(lengths)}`);
  assert.match(await page.locator('#status').textContent(), /tokens\/s/);
  // The user's turn is shown as typed, as text.
  const userText = await page.evaluate(() => document.querySelector('#log .msg.user .body').textContent);
  assert.equal(userText, 'What is the capital of France?');
});

test('stop ends a long generation', { timeout: GEN_TIMEOUT }, async () => {
  await openSettings(page);
  await page.locator('#max-tokens').fill('2000');
  await watchAnswerGrowth();
  await ask('Write a long story about a dragon.');
  // Let a few tokens arrive, then stop.
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('#log .msg.assistant .body');
    return all.length === 2 && all[1].textContent.length >= 20;
  }, null, { timeout: GEN_TIMEOUT, polling: 100 });
  await page.locator('#stop').click();
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000, polling: 100 });
  const stoppedAt = await lastAnswer();
  const status = await page.locator('#status').textContent();
  await new Promise((r) => setTimeout(r, 3000));
  const later = await lastAnswer();
  await page.screenshot({ path: path.join(SHOTS, 'chat-4-stopped.png') });
  assert.equal(later, stoppedAt, 'text kept growing after stop');
  assert.match(status, /^Stopped/);
  const tokens = Number(/(\d+) tokens/.exec(status)?.[1]);
  assert.ok(tokens > 0 && tokens < 2000, `stopped after ${tokens} tokens`);
  assert.equal(await page.locator('#send').isEnabled(), true);
  assert.equal(await page.locator('#stop').isEnabled(), false);
  // Two turns of history are on screen: 2 user + 2 assistant bubbles.
  assert.equal(await page.locator('#log .msg').count(), 4);
});

test('without a WebGPU adapter, auto says why it runs on the CPU and webgpu fails clearly', { timeout: LOAD_TIMEOUT }, async () => {
  // The default load (auto) above fell back at once: a notice gives the reason.
  assert.equal(await page.locator('#notice').isVisible(), true);
  assert.match(await page.locator('#notice').textContent(), /^Running on the CPU: .*adapter/);
  await page.goto(`${baseUrl}?backend=webgpu&model=models/smollm2-135m-int4/`);
  await waitSettled(page, { timeout: LOAD_TIMEOUT, polling: 100 });
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'error');
  assert.match(await page.locator('#status').textContent(), /^Error: the WebGPU backend is unavailable/);
  // The select stays usable: the CPU backend loads.
  await openSettings(page);
  await page.locator('#backend').selectOption('cpu');
  await waitSettled(page, { timeout: LOAD_TIMEOUT, polling: 200 });
  assert.match(await page.locator('#status').textContent(), /^Ready · backend: CPU \(wasm SIMD\)/);
  assert.equal(await page.locator('#notice').isVisible(), false);
});

test('no page errors and no request left the local server', () => {
  assert.deepEqual(pageErrors, []);
});
