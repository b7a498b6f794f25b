// End to end in headless Chromium (CPU wasm path) with an image: serve the page with the
// converted LLaVA-1.5 fixture (scripts/setup.sh writes models/llava15-llama-fixture/, f32),
// attach tests/fixtures/llava/images/chelsea.png through the file input, ask the fixture's
// golden question and check that the answer's token ids equal the native CLI's
// (`webvlm generate --chat --image ... --json`) on the same converted folder, greedy, 12
// tokens. The page renders the same conversation the CLI does: one user turn showing one
// image, rendered by the model's chat template (`USER: <image>\nWhat is in the image? ASSISTANT:`,
// golden.json's chat_text). Screenshots go to test-results/. Needs www/webvlm (scripts/build.sh)
// and target/release/webvlm (under $CARGO_TARGET_DIR when set).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT, openChatPage, openSettings, waitSettled } from './page-harness.mjs';

const SHOTS = path.join(ROOT, 'test-results');
const MODELS = path.resolve(ROOT, process.env.WEBVLM_MODELS_DIR || '.cache/models');
const MODEL_DIR = path.join(MODELS, 'llava15-llama-fixture');
const IMAGE = path.join(ROOT, 'tests/fixtures/llava/images/chelsea.png');
const GOLDEN = path.join(ROOT, 'tests/fixtures/llava/llava15-llama/golden.json');
const CLI = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target', 'release/webvlm');
const MAX_NEW = 12;
const TIMEOUT = 8 * 60_000;

let server;
let baseUrl;
let browser;
let page;
let golden;
let pageErrors;

/** The native CLI's answer to the same conversation (greedy, f32 weights as converted). */
async function nativeAnswer(prompt) {
  const { stdout } = await promisify(execFile)(CLI, ['generate', '--model', MODEL_DIR, '--image', IMAGE, '--chat',
    '--prompt', prompt, '--max-new-tokens', String(MAX_NEW), '--json'], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout);
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  golden = JSON.parse(await readFile(GOLDEN, 'utf8'));
  ({ server, baseUrl, browser, page, errors: pageErrors } = await openChatPage({ env: { WEBVLM_MODELS_DIR: MODELS } }));
});

after(async () => {
  await browser?.close();
  server?.kill();
});

test('the LLaVA fixture loads and offers the image picker', { timeout: TIMEOUT }, async () => {
  await page.goto(`${baseUrl}?model=models/llava15-llama-fixture/`);
  await waitSettled(page, { polling: 200 });
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready',
    await page.locator('#status').textContent());
  assert.equal(await page.locator('#attach').isVisible(), true);
  assert.equal(await page.locator('#image-input').isEnabled(), true);
  assert.equal(await page.getByLabel('Attach image').count(), 1);
});

test('an attached image is previewed, shown in the conversation and answered like the CLI', { timeout: TIMEOUT },
  async () => {
    const photo = golden.cases.find((c) => c.name === 'photo');
    assert.ok(photo, 'golden.json has the photo case');
    // The page sends the golden question as one user turn showing one image, as the
    // fixture's chat_text was made; the CLI's --chat renders the same turn.
    assert.equal(photo.chat_text, `USER: <image>\n${golden.prompt} ASSISTANT:`);
    const native = nativeAnswer(golden.prompt);

    await openSettings(page);
    await page.locator('#max-tokens').fill(String(MAX_NEW));
    await page.locator('#temperature').fill('0');
    await page.locator('#image-input').setInputFiles(IMAGE);
    await page.waitForFunction(() => document.querySelector('#attachments img')?.complete, null, { timeout: 10_000 });
    const thumbs = await page.evaluate(() => [...document.querySelectorAll('#attachments img')]
      .map((i) => ({ src: i.src, w: i.naturalWidth, h: i.naturalHeight })));
    assert.equal(thumbs.length, 1);
    assert.match(thumbs[0].src, /^blob:/);
    assert.deepEqual([thumbs[0].w, thumbs[0].h], [photo.image_width, photo.image_height]);
    await page.screenshot({ path: path.join(SHOTS, 'image-1-attached.png') });

    await page.locator('#prompt').fill(golden.prompt);
    await page.locator('#prompt').press('Enter');
    await page.waitForFunction(() => document.querySelector('#log .msg.assistant')?.dataset.ids
      || document.body.dataset.state === 'error', null, { timeout: TIMEOUT, polling: 200 });
    const status = await page.locator('#status').textContent();
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready', status);
    await page.screenshot({ path: path.join(SHOTS, 'image-2-answered.png') });

    // The user's bubble shows the image (decoded from its object URL) and the question.
    const bubble = await page.evaluate(() => {
      const li = document.querySelector('#log .msg.user');
      const img = li.querySelector('img');
      return { text: li.querySelector('.body').textContent, src: img?.src, w: img?.naturalWidth };
    });
    assert.equal(bubble.text, golden.prompt);
    assert.match(bubble.src, /^blob:/);
    assert.equal(bubble.w, photo.image_width);
    assert.equal(await page.locator('#attachments img').count(), 0, 'the picker is cleared after sending');

    const ids = JSON.parse(await page.evaluate(() => document.querySelector('#log .msg.assistant').dataset.ids));
    const cli = await native;
    assert.equal(cli.image_tokens, photo.num_image_tokens);
    // f32 weights: the CLI itself reproduces transformers' greedy ids for this case.
    assert.deepEqual(cli.generated_ids, photo.greedy_ids.slice(0, MAX_NEW));
    assert.ok(ids.length > 0, 'the page answered');
    assert.deepEqual(ids, cli.generated_ids, `page ids ${JSON.stringify(ids)} vs CLI ${JSON.stringify(cli.generated_ids)}`);
    // The answer's raw text (the bubble shows it rendered as Markdown).
    const answer = await page.evaluate(() => document.querySelector('#log .msg.assistant').dataset.text);
    assert.equal(answer, cli.text);
    assert.match(status, new RegExp(`${photo.num_image_tokens} image tokens, encoded in \\d+ ms`));
  });

test('a file that is not an image gives a clear error and the page stays usable', { timeout: TIMEOUT }, async () => {
  const bubbles = await page.locator('#log .msg').count();
  // A PNG name and type over bytes that are no image: the picker accepts it, wasm refuses it.
  await page.locator('#image-input').setInputFiles({ name: 'broken.png', mimeType: 'image/png',
    buffer: Buffer.from('definitely not a PNG file') });
  await page.locator('#prompt').fill(golden.prompt);
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#log .msg').length === n + 2
    && document.body.dataset.state === 'ready', bubbles, { timeout: TIMEOUT, polling: 100 });
  const status = await page.locator('#status').textContent();
  await page.screenshot({ path: path.join(SHOTS, 'image-3-bad-file.png') });
  assert.match(status, /^Error: image 2: /, 'the error names the image (the conversation\'s second)');
  assert.equal(await page.locator('#send').isEnabled(), true);
  assert.equal(await page.locator('#image-input').isEnabled(), true);
});

test('a follow-up question reuses the encoded image', { timeout: TIMEOUT }, async () => {
  const before = await page.locator('#log .msg.assistant').count();
  await page.locator('#prompt').fill('Describe it in more detail.');
  await page.locator('#prompt').press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#log .msg.assistant').length === n + 1
    && document.body.dataset.state === 'ready', before, { timeout: TIMEOUT, polling: 100 });
  const status = await page.locator('#status').textContent();
  assert.match(status, /^Done/, status);
  // The conversation still shows the first image (sent again with the history). The KV cache
  // already holds the first turn (image tokens included), so the second prefill covers only
  // what follows it: fewer tokens than the first turn's whole prompt. Without reuse it would
  // be the first prompt plus everything after it.
  const photo = golden.cases.find((c) => c.name === 'photo');
  assert.match(status, new RegExp(`${photo.num_image_tokens} image tokens`), status);
  const prefill = Number(/prefill (\d+) tokens/.exec(status)?.[1]);
  assert.ok(prefill > 0 && prefill < photo.input_ids.length,
    `second-turn prefill ${prefill} should be < first prompt ${photo.input_ids.length}: ${status}`);
  const ids = await page.evaluate(() => [...document.querySelectorAll('#log .msg.assistant')].at(-1).dataset.ids);
  assert.ok(JSON.parse(ids).length > 0);
});

test('a text-only model hides the image picker', { timeout: TIMEOUT }, async () => {
  const text = await browser.newPage();
  try {
    await text.goto(`${baseUrl}?model=models/smollm2-135m-int4/`); // SmolLM2 (scripts/setup.sh)
    await waitSettled(text, { polling: 200 });
    assert.equal(await text.evaluate(() => document.body.dataset.state), 'ready');
    assert.equal(await text.locator('#attach').isVisible(), false);
    assert.equal(await text.locator('#image-input').isEnabled(), false);
  } finally {
    await text.close();
  }
});

test('no page errors and no request left the local server', () => {
  assert.deepEqual(pageErrors, []);
});
