// The chat page's flow in headless Chromium (CPU wasm path) with the LLaVA-1.5 fixture
// (.cache/models/llava15-llama-fixture, scripts/setup.sh): the model picker (models.json),
// attach an image (preview, remove, attach again), ask and get a streamed answer, stop one,
// regenerate it, and a later turn whose prefill covers only its new tokens (the per-answer
// figures the page shows, also as data-* attributes); settings kept across a reload; the
// downloaded-models panel (Cache Storage) with a delete button; and the page, engine and model
// working offline once loaded (the server stopped, the service worker and the cache answer).
// Greedy sampling throughout. Needs www/webvlm (scripts/build.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, openChatPage, openSettings, waitSettled } from './page-harness.mjs';

const MODELS = path.resolve(ROOT, process.env.WEBVLM_MODELS_DIR || '.cache/models');
const IMAGE = path.join(ROOT, 'tests/fixtures/llava/images/chelsea.png');
const FIXTURE = 'models/llava15-llama-fixture/';
const TIMEOUT = 8 * 60_000;

let server;
let baseUrl;
let browser;
let page;
let pageErrors;
const answers = {}; // name -> the answer's figures

/** The last assistant bubble: text, figures (data-*), meta line. */
const lastAnswer = () => page.evaluate(() => {
  const li = [...document.querySelectorAll('#log .msg.assistant')].at(-1);
  const d = li.dataset;
  return { text: d.text, ids: JSON.parse(d.ids || 'null'), finish: d.finish, prefill: Number(d.prefillTokens),
    prompt: Number(d.promptTokens), ttftMs: Number(d.ttftMs), meta: li.querySelector('.meta')?.textContent || '',
    busy: li.getAttribute('aria-busy'), status: document.getElementById('status').textContent };
});

const waitReady = () => waitSettled(page);

/** Send `text` with Enter and wait for the answer; records the answer's text lengths on the way. */
async function ask(text) {
  await page.evaluate(() => {
    window.__lengths = [];
    window.__observer?.disconnect();
    window.__observer = new MutationObserver(() => {
      const n = [...document.querySelectorAll('#log .msg.assistant')].at(-1)?.querySelector('.body').textContent.length;
      if (n && window.__lengths.at(-1) !== n) window.__lengths.push(n);
    });
    window.__observer.observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true });
  });
  await page.locator('#prompt').fill(text);
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'generating', null, { timeout: 10_000, polling: 10 })
    .catch(() => {}); // a very fast answer may already be done
  await waitReady();
  const a = await lastAnswer();
  a.lengths = await page.evaluate(() => window.__lengths);
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready', a.status);
  return a;
}

before(async () => {
  ({ server, baseUrl, browser, page, errors: pageErrors } = await openChatPage({ env: { WEBVLM_MODELS_DIR: MODELS } }));
});

after(async () => {
  await browser?.close();
  server?.kill();
});

test('the model picker lists models.json; picking the LLaVA fixture loads it', { timeout: TIMEOUT }, async () => {
  await page.goto(baseUrl);
  const options = await page.locator('#model option').evaluateAll((os) => os.map((o) => o.textContent));
  assert.ok(options.some((o) => /SmolLM2/.test(o)) && options.some((o) => /LLaVA-1.5 test fixture/.test(o)),
    options.join(' | '));
  await waitReady();
  await page.locator('#model').selectOption({ label: options.find((o) => /LLaVA-1.5 test fixture/.test(o)) });
  await page.waitForFunction(() => document.body.dataset.state === 'loading', null, { timeout: 10_000, polling: 10 })
    .catch(() => {});
  await waitReady();
  assert.match(await page.locator('#status').textContent(), /^Ready · backend: CPU/);
  assert.equal(new URL(page.url()).searchParams.get('model'), `/${FIXTURE}`, 'the choice is in the URL');
  assert.equal(await page.locator('#attach').isVisible(), true);
});

test('paste and drag-and-drop attach images (previews), non-images are refused', { timeout: TIMEOUT }, async () => {
  const png = (await readFile(path.join(ROOT, 'tests/fixtures/llava/images/synthetic-56.png'))).toString('base64');
  const r = await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = (file) => {
      const dt = new DataTransfer();
      dt.items.add(file);
      return dt;
    };
    const img = (name) => new File([bytes], name, { type: 'image/png' });
    document.getElementById('prompt').dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer(img('pasted.png')),
      bubbles: true, cancelable: true }));
    document.getElementById('log').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer(img('dropped.png')),
      bubbles: true, cancelable: true }));
    document.getElementById('log').dispatchEvent(new DragEvent('drop', {
      dataTransfer: transfer(new File(['hello'], 'notes.txt', { type: 'text/plain' })), bubbles: true, cancelable: true }));
    const imgs = () => [...document.querySelectorAll('#attachments img')];
    for (let i = 0; i < 100 && !imgs().every((im) => im.complete && im.naturalWidth); i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    return { alts: [...document.querySelectorAll('#attachments img')].map((i) => i.alt),
      sizes: [...document.querySelectorAll('#attachments img')].map((i) => i.naturalWidth),
      status: document.getElementById('status').textContent };
  }, png);
  assert.deepEqual(r.alts, ['image to send: pasted.png', 'image to send: dropped.png']);
  assert.deepEqual(r.sizes, [56, 56]);
  assert.match(r.status, /^Not attached: notes\.txt is not a PNG, JPEG or WebP image/);
  for (const name of ['pasted.png', 'dropped.png']) await page.getByRole('button', { name: `remove ${name}` }).click();
  assert.equal(await page.locator('#attachments img').count(), 0);
});

test('attach (preview, remove, attach again), ask: a streamed answer with its figures', { timeout: TIMEOUT }, async () => {
  await openSettings(page);
  await page.locator('#max-tokens').fill('12');
  await page.locator('#temperature').fill('0');
  await page.locator('#image-input').setInputFiles(IMAGE);
  await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
  await page.getByRole('button', { name: /^remove chelsea\.png/ }).click();
  assert.equal(await page.locator('#attachments img').count(), 0, 'the remove button drops the image');
  await page.locator('#image-input').setInputFiles(IMAGE);
  await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
  const a = await ask('What is in the image?');
  answers.first = a;
  console.log(`first: ${JSON.stringify(a)}`);
  assert.ok(a.ids.length > 0 && a.ids.length <= 12, a.text);
  assert.ok(a.lengths.length >= 2, `streamed in several steps: ${JSON.stringify(a.lengths)}`);
  assert.equal(a.busy, null, 'no longer busy');
  assert.match(a.meta, /^CPU \(wasm SIMD\) · [\d.]+ tokens\/s · first token \d+ ms · prefill \d+ tokens$/);
  assert.ok(a.prefill > 16 && a.prefill === a.prompt, `a fresh conversation prefills it all: ${a.prefill}/${a.prompt}`);
  assert.ok(a.ttftMs > 0);
  assert.match(a.status, /16 image tokens/);
  assert.equal(await page.locator('#log .msg.user img').count(), 1);
});

test('stop ends an answer early; regenerate re-runs the turn', { timeout: TIMEOUT }, async () => {
  await page.locator('#max-tokens').fill('300');
  // Press Escape (the keyboard's Stop) from the page as soon as the third token is counted:
  // the fixture is too fast to stop from outside. The Stop button itself: chat.test.mjs.
  await page.evaluate(() => {
    const obs = new MutationObserver(() => {
      if (Number(/ (\d+) tokens ·/.exec(document.getElementById('status').textContent)?.[1]) >= 3) {
        obs.disconnect();
        document.activeElement.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
      }
    });
    obs.observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
  });
  const stopped = await ask('Tell me a long story about it.');
  console.log(`stopped: ${JSON.stringify(stopped)}`);
  assert.match(stopped.status, /^Stopped/);
  assert.equal(stopped.finish, 'aborted');
  assert.ok(stopped.ids.length >= 3 && stopped.ids.length < 300, `${stopped.ids.length} tokens`);
  assert.equal(await page.locator('#regenerate').isEnabled(), true);

  await page.locator('#max-tokens').fill(String(stopped.ids.length + 4));
  const bubbles = await page.locator('#log .msg').count();
  await page.locator('#regenerate').click();
  await page.waitForFunction(() => document.body.dataset.state === 'generating', null, { timeout: 10_000, polling: 10 })
    .catch(() => {});
  await waitReady();
  const again = await lastAnswer();
  console.log(`regenerated: ${JSON.stringify(again)}`);
  assert.equal(await page.locator('#log .msg').count(), bubbles, 'the stopped answer was replaced, not added to');
  assert.notEqual(again.finish, 'aborted');
  // Greedy: the same turn gives the same tokens, now past where it was stopped.
  assert.deepEqual(again.ids.slice(0, stopped.ids.length), stopped.ids);
  assert.ok(again.ids.length > stopped.ids.length);
  assert.equal(again.prompt, stopped.prompt, 'the same conversation was sent');
  answers.regenerated = again;
});

test('a second turn prefills only its new tokens (the KV cache holds the rest)', { timeout: TIMEOUT }, async () => {
  await page.locator('#max-tokens').fill('8');
  const prev = answers.regenerated;
  const a = await ask('And what colour is it?');
  console.log(`later turn: ${JSON.stringify(a)}`);
  // The previous prompt (image tokens included) is already in the cache: this prefill covers
  // at most what follows it (the previous answer and the new user turn), far less than it all.
  assert.ok(a.prompt > prev.prompt + prev.ids.length, `${a.prompt} vs ${prev.prompt}+${prev.ids.length}`);
  assert.ok(a.prefill > 0 && a.prefill <= a.prompt - prev.prompt,
    `prefill ${a.prefill} should be <= ${a.prompt} - ${prev.prompt} (only the new tokens)`);
  assert.ok(a.prefill < answers.first.prefill, `${a.prefill} < first turn's ${answers.first.prefill}`);
  assert.match(a.meta, new RegExp(`prefill ${a.prefill} tokens$`));
});

test('new chat clears the conversation; settings survive a reload', { timeout: TIMEOUT }, async () => {
  await page.locator('#reset').click();
  assert.equal(await page.locator('#log .msg').count(), 0);
  await page.locator('#top-p').fill('0.8');
  await page.reload();
  await waitReady();
  assert.equal(await page.locator('#max-tokens').inputValue(), '8');
  assert.equal(await page.locator('#top-p').inputValue(), '0.8');
  assert.equal(await page.locator('#temperature').inputValue(), '0');
  assert.match(await page.locator('#model option:checked').textContent(), /LLaVA/);
});

test('the downloaded-models panel lists the cached model with its size and deletes it', { timeout: TIMEOUT }, async () => {
  await page.locator('#cache-panel > summary').click();
  const row = page.locator('#cached-models li', { hasText: 'LLaVA-1.5 test fixture' });
  await row.waitFor({ timeout: 10_000 });
  // manifest + tokenizer + one shard, 16.1 MiB + 1.3 MiB.
  assert.match(await row.locator('.size').textContent(), /^1[78]\.\d MiB · 3 files$/);
  const other = await page.locator('#cached-models li').count();
  await row.getByRole('button', { name: /^Delete LLaVA-1.5 test fixture/ }).click();
  await page.waitForFunction((n) => document.querySelectorAll('#cached-models li').length === n - 1, other,
    { timeout: 10_000 });
  // The model's cache is gone (named as the npm package's loader names it).
  assert.deepEqual(await page.evaluate(async () => (await caches.keys()).filter((k) => k.includes('llava15'))), []);
  await page.locator('#cache-panel > summary').click();
});

test('offline after the first load: the page, the engine and the cached model need no server', { timeout: TIMEOUT },
  async () => {
    await page.reload(); // downloads the fixture again (deleted above) into the cache
    await waitReady();
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
    server.kill();
    await new Promise((r) => server.once('exit', r));
    await page.reload();
    await waitReady();
    assert.match(await page.locator('#status').textContent(), /^Ready/);
    const a = await ask('What is in the image?');
    assert.ok(a.ids.length > 0, a.text);
    // Requests that failed while offline are expected now; nothing else may have failed.
    pageErrors.splice(0, pageErrors.length, ...pageErrors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load/.test(e)));
  });

test('no page errors and no failed requests', () => {
  assert.deepEqual(pageErrors, []);
});
