// Screenshots of the chat page, saved under test-results/screenshots/ (look at them): on the CPU
// backend (Chromium without WebGPU) at desktop width and at a phone width (390x844), and on the
// WebGPU backend (--enable-unsafe-webgpu, SwiftShader). Each run also checks what a screenshot
// cannot: no horizontal scrolling at phone width, the composer in view, every control labelled,
// and a keyboard-only turn (Tab to the prompt, Enter sends, Shift+Enter is a new line).
// WEBVLM_SKIP_GPU=1 skips the WebGPU part where Chromium has no adapter. Needs www/webvlm (scripts/build.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, launchChromium, openSettings, startServe, waitSettled, watchPage } from './page-harness.mjs';

const SHOTS = path.join(ROOT, 'test-results/screenshots');
const MODELS = path.resolve(ROOT, process.env.WEBVLM_MODELS_DIR || '.cache/models');
const IMAGE = path.join(ROOT, 'tests/fixtures/llava/images/chelsea.png');
const FIXTURE = 'models/llava15-llama-fixture/';
const TIMEOUT = 8 * 60_000;
const SAMPLE = [
  'Rendering sample (Markdown as a model might write it):', '',
  '## A heading', '- **bold** and *emphasis*', '- `inline code` and a [link](https://example.com)', '',
  '```js', 'const answer = 42;', '```',
].join('\n');

let server;
let baseUrl;
const browsers = [];

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  ({ child: server, url: baseUrl } = await startServe({ WEBVLM_MODELS_DIR: MODELS }));
});

after(async () => {
  for (const b of browsers) await b.close();
  server?.kill();
});

async function newPage({ webgpu = false, viewport }) {
  const browser = await launchChromium({ webgpu });
  browsers.push(browser);
  const page = await browser.newPage({ viewport });
  const errors = [];
  watchPage(page, errors, { console: false, http: false });
  return { page, errors };
}

const waitReady = (page) => waitSettled(page);

async function askWithImage(page, text) {
  await page.locator('#image-input').setInputFiles(IMAGE);
  await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
  await page.locator('#prompt').fill(text);
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction(() => document.querySelector('#log .msg.assistant:last-child')?.dataset.ids,
    null, { timeout: TIMEOUT, polling: 100 });
  await waitReady(page);
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });

/** Controls without an accessible name (label, aria-label or text). */
const unlabelled = (page) => page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.textContent.trim()))
  .map((el) => el.id || el.outerHTML.slice(0, 60)));

test('CPU backend, desktop: image, answer, settings, Markdown sample', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await newPage({ viewport: { width: 1100, height: 850 } });
  await page.goto(`${baseUrl}?model=${FIXTURE}&backend=cpu`);
  await waitReady(page);
  await openSettings(page);
  await page.locator('#max-tokens').fill('24');
  await shot(page, 'cpu-desktop-1-settings');
  await page.locator('#settings').evaluate((d) => { d.open = false; });
  await askWithImage(page, 'What is in the image?');
  await page.evaluate((md) => window.webvlmDebug.showAnswer(md), SAMPLE);
  await shot(page, 'cpu-desktop-2-answer');
  assert.match(await page.locator('#log .msg.assistant').first().locator('.meta').textContent(), /^CPU \(wasm SIMD\)/);
  assert.deepEqual(await unlabelled(page), []);
  assert.deepEqual(errors, []);
});

test('CPU backend, phone 390x844: fits the width, composer in view, keyboard-only turn', { timeout: TIMEOUT }, async () => {
  const { page, errors } = await newPage({ viewport: { width: 390, height: 844 } });
  await page.goto(`${baseUrl}?model=${FIXTURE}&backend=cpu`);
  await waitReady(page);
  await shot(page, 'phone-1-ready');
  await page.locator('#image-input').setInputFiles(IMAGE);
  await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
  await shot(page, 'phone-2-attached');
  // Keyboard only: focus the prompt, Shift+Enter makes a new line, Enter sends.
  await page.locator('#prompt').focus();
  await page.keyboard.type('What is in');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('the image?');
  assert.equal(await page.locator('#prompt').inputValue(), 'What is in\nthe image?');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#log .msg.assistant:last-child')?.dataset.ids,
    null, { timeout: TIMEOUT, polling: 100 });
  await waitReady(page);
  assert.equal(await page.locator('#log .msg.user .body').textContent(), 'What is in\nthe image?');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'prompt', 'focus returns to the prompt');
  await page.keyboard.press('Shift+Tab'); // back to the image picker, then forward to the buttons
  assert.equal(await page.evaluate(() => document.activeElement.id), 'image-input');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'regenerate');
  await page.evaluate((md) => window.webvlmDebug.showAnswer(md), SAMPLE);
  await shot(page, 'phone-3-answer');
  const layout = await page.evaluate(() => {
    const send = document.getElementById('send').getBoundingClientRect();
    return { scrollWidth: document.documentElement.scrollWidth, sendRight: send.right, sendBottom: send.bottom,
      height: window.innerHeight };
  });
  assert.ok(layout.scrollWidth <= 390, `no horizontal scroll: ${layout.scrollWidth}px wide`);
  assert.ok(layout.sendRight <= 390 && layout.sendBottom <= layout.height, `Send is in view: ${JSON.stringify(layout)}`);
  await openSettings(page);
  await shot(page, 'phone-4-settings');
  await page.locator('#settings').evaluate((d) => { d.open = false; });
  await page.locator('#cache-panel > summary').click();
  await page.locator('#cached-models li').first().waitFor({ timeout: 10_000 });
  await shot(page, 'phone-5-downloaded');
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth) <= 390);
  assert.deepEqual(await unlabelled(page), []);
  assert.deepEqual(errors, []);
});

test('WebGPU backend (SwiftShader), desktop: download progress and an answer', { timeout: TIMEOUT }, async (t) => {
  const { page, errors } = await newPage({ webgpu: true, viewport: { width: 1100, height: 850 } });
  await page.goto(`${baseUrl}?backend=cpu&model=${FIXTURE}`);
  const hasAdapter = await page.evaluate(async () => Boolean(navigator.gpu && await navigator.gpu.requestAdapter()));
  if (!hasAdapter && process.env.WEBVLM_SKIP_GPU === '1') return t.skip('no WebGPU adapter');
  assert.ok(hasAdapter, 'Chromium with --enable-unsafe-webgpu gave no WebGPU adapter (WEBVLM_SKIP_GPU=1 skips)');
  await page.goto(`${baseUrl}?backend=webgpu&model=models/smollm2-135m-int4/`); // SmolLM2
  await page.waitForFunction(() => Number(document.getElementById('load-progress').value) > 0
    && /left/.test(document.getElementById('load-text').textContent), null, { timeout: TIMEOUT, polling: 20 })
    .catch(() => {}); // a fast (cached) load may show no estimate
  await shot(page, 'webgpu-1-loading');
  await waitReady(page);
  assert.match(await page.locator('#status').textContent(), /^Ready · backend: WebGPU/);
  await openSettings(page);
  await page.locator('#max-tokens').fill('12');
  await page.locator('#settings').evaluate((d) => { d.open = false; });
  await page.locator('#prompt').fill('Write a short Markdown list of three fruits.');
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction(() => document.querySelector('#log .msg.assistant:last-child')?.dataset.ids,
    null, { timeout: TIMEOUT, polling: 100 });
  await waitReady(page);
  await shot(page, 'webgpu-2-answer');
  assert.match(await page.locator('#log .msg.assistant .meta').textContent(), /^WebGPU · /);
  assert.deepEqual(errors, []);
});
