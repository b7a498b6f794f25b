// The package with images, in headless Chromium (CPU path): the converted LLaVA-1.5 fixture
// (random weights, f32; scripts/setup.sh) answers a three-turn conversation whose images come
// as a blob: URL (under a CSP whose connect-src forbids fetching it), a data: URL and an
// ImageBitmap. Checks: one image token span per image, the KV
// cache reused across turns (only new tokens prefilled), the same picture given again in
// another form (ImageBitmap -> PNG in the package) recognised by its pixels, so nothing is
// re-run; and the worker core and the in-thread core give identical answers (one contract).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, launchChromium } from './page-harness.mjs';
import { openPackagePage, packagePage, startPackageServer } from './package-harness.mjs';

const MODEL = '/models/llava15-llama-fixture/manifest.json';
const TIMEOUT = 4 * 60_000;

let server;
let browser;
let page;

before(async () => {
  server = await startPackageServer({
    roots: [['/models/', path.join(ROOT, '.cache/models')], ['/dist/', path.join(ROOT, 'dist')],
      ['/images/', path.join(ROOT, 'tests/fixtures/llava/images')]],
    pages: { '/': packagePage('/dist/index.js') },
    // As strict as the chat page's policy (plus the test page's inline module): fetch() may
    // not read blob: URLs, so the package reads them through an <img>.
    pageHeaders: { 'Content-Security-Policy': "default-src 'self'; script-src 'self' 'unsafe-inline' " +
      "'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' data: blob:" },
  });
  browser = await launchChromium();
  page = await openPackagePage(browser, server.url);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Three turns on an engine (worker or in-thread); returns the three responses. */
function conversation(worker, synthetic) {
  return page.evaluate(async ({ model, worker, synthetic }) => {
    const engine = await window.webvlm.createEngine({ model, worker });
    try {
      const blob = await (await fetch('/images/chelsea.png')).blob();
      const create = (messages) => engine.chat.completions.create({ messages, max_tokens: 6 });
      const blobUrl = URL.createObjectURL(blob);
      const q1 = { role: 'user', content: [{ type: 'image_url', image_url: { url: blobUrl } },
        { type: 'text', text: 'What is in the image?' }] };
      const r1 = await create([q1]);
      const q2 = { role: 'user', content: [{ type: 'image_url', image_url: { url: synthetic } },
        { type: 'text', text: 'And in this one?' }] };
      const history = [q1, r1.choices[0].message, q2];
      const r2 = await create(history);
      // The first picture again, as an ImageBitmap (encoded to PNG by the package).
      const bitmap = await createImageBitmap(blob);
      const q1b = { role: 'user', content: [{ type: 'image', image: bitmap }, q1.content[1]] };
      const r3 = await create([q1b, r1.choices[0].message, q2]);
      return [r1, r2, r3];
    } finally {
      await engine.unload();
    }
  }, { model: MODEL, worker, synthetic });
}

test('images across turns: one span each, KV and features reused, both cores agree', { timeout: TIMEOUT }, async () => {
  const png = await readFile(path.join(ROOT, 'tests/fixtures/llava/images/synthetic-56.png'));
  const synthetic = `data:image/png;base64,${png.toString('base64')}`;
  const [r1, r2, r3] = await conversation(true, synthetic);
  const span = r1.webvlm.image_tokens;
  console.log(`image span ${span}; prompt/prefill tokens per turn: ` +
    [r1, r2, r3].map((r) => `${r.usage.prompt_tokens}/${r.webvlm.timings.prefill_tokens}`).join(', ') +
    `; image encode ms: ${[r1, r2, r3].map((r) => r.webvlm.timings.image_encode_ms.toFixed(1)).join(', ')}`);
  assert.ok(span > 1, `an image takes ${span} positions`);
  assert.equal(r2.webvlm.image_tokens, 2 * span, 'two images in the second turn');
  assert.equal(r1.webvlm.timings.prefill_tokens, r1.usage.prompt_tokens);
  const fresh = r2.usage.prompt_tokens - r1.usage.prompt_tokens;
  assert.ok(r2.webvlm.timings.prefill_tokens <= fresh,
    `turn 2 prefilled ${r2.webvlm.timings.prefill_tokens} tokens; ${fresh} are new`);
  assert.equal(r3.usage.prompt_tokens, r2.usage.prompt_tokens);
  assert.equal(r3.webvlm.timings.prefill_tokens, 1,
    'the same pixels as an ImageBitmap: the whole prompt but its last token comes from the KV cache');
  assert.equal(r3.choices[0].message.content, r2.choices[0].message.content);
  // The in-thread core gives the same answers (greedy) as the worker core.
  const local = await conversation(false, synthetic);
  assert.deepEqual(local.map((r) => r.choices[0].message.content), [r1, r2, r3].map((r) => r.choices[0].message.content));
  assert.deepEqual(local.map((r) => r.usage), [r1, r2, r3].map((r) => r.usage));
});
