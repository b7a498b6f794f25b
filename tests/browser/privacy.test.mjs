// Privacy of the chat page in headless Chromium: every request of a session (page, engine
// worker and service worker, recorded on the browser context) while the LLaVA fixture loads, an
// image is attached and a question with a distinctive word is asked and answered, then the page
// is reloaded (models from the cache) and asked again. Only the page's own files, models.json and
// the model's manifest, tokenizer and shards are fetched, all from the page's origin with GET
// and no body, and no URL, header or body holds the prompt, the image's bytes (its base64 and
// hex prefixes) or its file name. Needs www/webvlm (scripts/build.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, launchChromium, startServe, waitSettled } from './page-harness.mjs';

const MODELS = path.resolve(ROOT, process.env.WEBVLM_MODELS_DIR || '.cache/models');
const IMAGE = path.join(ROOT, 'tests/fixtures/llava/images/chelsea.png');
const MODEL = 'models/llava15-llama-fixture/';
const SECRET = 'quokka-zebra-7731';
const PROMPT = `Is there a ${SECRET} in this picture?`;
const TIMEOUT = 8 * 60_000;

let server;
let baseUrl;
let browser;
let context;
let page;
const requests = [];

before(async () => {
  ({ child: server, url: baseUrl } = await startServe({ WEBVLM_MODELS_DIR: MODELS }));
  browser = await launchChromium();
  context = await browser.newContext();
  context.on('request', (r) => requests.push({ url: r.url(), method: r.method(), body: r.postDataBuffer(),
    headers: r.headers(), from: r.serviceWorker() ? 'service worker' : r.frame?.() ? 'page' : 'worker' }));
  page = await context.newPage();
  page.on('websocket', (ws) => requests.push({ url: ws.url(), method: 'WEBSOCKET', body: null, headers: {} }));
});

after(async () => {
  await browser?.close();
  server?.kill();
});

const waitReady = () => waitSettled(page);

async function askWithImage() {
  await page.locator('#image-input').setInputFiles(IMAGE);
  await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
  await page.locator('#prompt').fill(PROMPT);
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction(() => document.querySelector('#log .msg.assistant')?.dataset.ids
    || document.body.dataset.state === 'error', null, { timeout: TIMEOUT, polling: 100 });
  await waitReady();
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready', await page.locator('#status').textContent());
}

test('a session with an image and a prompt', { timeout: TIMEOUT }, async () => {
  await page.goto(`${baseUrl}?model=${MODEL}`);
  await waitReady();
  await askWithImage();
  await page.reload(); // the second visit: service worker and cached model
  await waitReady();
  await askWithImage();
  assert.ok(requests.length > 10, `${requests.length} requests recorded`);
});

test('only the page, models.json and the model files are fetched, with GET from the page origin', async () => {
  // The page's own files and the package it runs on (www/webvlm/, its modules and wasm builds).
  const pkgFiles = JSON.parse(await readFile(path.join(ROOT, 'www/webvlm/files.json'), 'utf8'));
  const own = new Set(['', 'index.html', 'sw.js', 'models.json', 'webvlm/files.json',
    ...pkgFiles.filter((f) => /\.(js|wasm)$/.test(f)).map((f) => `webvlm/${f}`),
    ...(await readdir(path.join(ROOT, 'www'))).filter((f) => /\.(js|css)$/.test(f))]);
  const modelDir = path.join(MODELS, MODEL.replace('models/', ''));
  const manifest = JSON.parse(await readFile(path.join(modelDir, 'manifest.json'), 'utf8'));
  const modelFiles = ['manifest.json', manifest.tokenizer.file, ...manifest.shards.map((s) => s.file)];
  const origin = new URL(baseUrl).origin;
  const seen = new Set();
  for (const r of requests) {
    // Object URLs of the attached image (local to the browser) and the page's data: favicon.
    if (r.url.startsWith(`blob:${origin}/`) || r.url === 'data:,') continue;
    assert.equal(r.method, 'GET', `${r.method} ${r.url}`);
    assert.ok(!r.body || r.body.length === 0, `no request body: ${r.url}`);
    const u = new URL(r.url);
    assert.equal(u.origin, origin, `request to another origin: ${r.url}`);
    const p = u.pathname.slice(1);
    const ok = own.has(p) || (p.startsWith(MODEL) && modelFiles.includes(p.slice(MODEL.length)));
    assert.ok(ok, `unexpected request (${r.from}): ${r.url}`);
    seen.add(p);
  }
  for (const f of modelFiles) assert.ok(seen.has(MODEL + f), `the model's ${f} was fetched`);
  const by = {};
  for (const r of requests) by[r.from] = (by[r.from] || 0) + 1;
  console.log(`${requests.length} requests ${JSON.stringify(by)}; fetched: ${[...seen].sort().join(' ')}`);
});

test('no request carries the prompt or the image', async () => {
  const bytes = await readFile(IMAGE);
  const needles = [SECRET, encodeURIComponent(SECRET), Buffer.from(SECRET).toString('base64').slice(0, 16),
    bytes.toString('base64').slice(0, 40), bytes.subarray(16, 48).toString('hex'), 'chelsea'];
  for (const r of requests) {
    const hay = [r.url, decodeURIComponent(r.url), JSON.stringify(r.headers), r.body ? r.body.toString('latin1') : '',
      r.body ? r.body.toString('base64') : ''].join('\n');
    for (const n of needles) assert.ok(!hay.includes(n), `${r.method} ${r.url} contains ${JSON.stringify(n)}`);
    if (r.body) assert.ok(!r.body.includes(bytes.subarray(16, 48)), `${r.url}: a body holds the image bytes`);
  }
});
