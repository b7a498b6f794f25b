// The page's default model (issue 6) in headless Chromium: the tiny LLaVA trained on generated
// scenes (tools/train_tiny_llava.py), shipped in www/models/ as INT4 and ternary shards.
// 1. Accuracy through the npm package on the CPU path and on WebGPU (SwiftShader; 10 there): the first 50
//    questions of the committed held-out split (tests/fixtures/tinyllava/heldout, the generator's
//    own answer key; training never saw these scenes), greedy, each asked alone; an answer counts
//    when it equals the key after lower-casing and dropping punctuation (stricter than
//    tools/vqa_gen.py's judge). The bar: 85% (issue 6). On WebGPU the first 10 questions must get the
//    CPU path's answers, word for word.
// 2. The page: click a sample image, send its question, get the sample's answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, launchChromium, startServe } from './page-harness.mjs';
import { packagePage, startPackageServer } from './package-harness.mjs';

const HELDOUT = path.join(ROOT, 'tests/fixtures/tinyllava/heldout');
const QUESTIONS = 50;
// SwiftShader (WebGPU on the CPU) takes ~5 s a question here: the WebGPU runs ask the first 10 and
// must give the CPU path's answers. WEBVLM_WEBGPU_QUESTIONS=50 asks all 50 there and holds them to the
// bar too (how the figures in docs/TRAINING.md were taken: INT4 46/50, the CPU's answers; ternary
// 46/50 against the CPU's 45/50, a near-tie or more falling the other way).
const WEBGPU_QUESTIONS = Math.min(QUESTIONS, Number(process.env.WEBVLM_WEBGPU_QUESTIONS || 10));
const BAR = 0.85;
const TIMEOUT = 10 * 60_000;

/** Lower case, `color`/`center` as the generator spells them, punctuation dropped. */
export function normalize(s) {
  const spell = { color: 'colour', center: 'centre' };
  return s.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim().split(' ').map((w) => spell[w] || w).join(' ');
}

let server;
const rows = [];

before(async () => {
  const text = await readFile(path.join(HELDOUT, 'questions.jsonl'), 'utf8');
  rows.push(...text.trim().split('\n').slice(0, QUESTIONS).map((l) => JSON.parse(l)));
  server = await startPackageServer({
    roots: [['/models/', path.join(ROOT, 'www/models')], ['/dist/', path.join(ROOT, 'dist')],
      ['/heldout/', HELDOUT]],
    pages: { '/': packagePage('/dist/index.js') },
  });
});

after(async () => {
  await server?.close();
});

/** Ask every row alone on `model` with `backend`; returns [{ ...row, said, backend }]. */
async function askAll(model, backend, n) {
  const browser = await launchChromium({ webgpu: backend === 'webgpu' });
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error('pageerror:', e.message));
    await page.goto(server.url);
    await page.waitForFunction(() => window.webvlmReady === true);
    return await page.evaluate(async ({ model, backend, rows }) => {
      const engine = await window.webvlm.createEngine({ model, backend });
      try {
        const out = [];
        for (const r of rows) {
          const content = [{ type: 'image_url', image_url: { url: `/heldout/${r.image}` } },
            { type: 'text', text: r.question }];
          const res = await engine.chat.completions.create({ messages: [{ role: 'user', content }],
            max_tokens: 64, temperature: 0 });
          out.push({ ...r, said: res.choices[0].message.content, backend: res.webvlm?.backend });
        }
        return out;
      } finally {
        await engine.unload();
      }
    }, { model, backend, rows: rows.slice(0, n) });
  } finally {
    await browser.close();
  }
}

const cpuAnswers = {}; // model -> the CPU path's answers (the WebGPU run must give the same)

for (const name of ['tiny-llava-int4', 'tiny-llava-ternary']) {
  test(`${name} on cpu: held-out accuracy >= ${BAR * 100}%`, { timeout: TIMEOUT }, async () => {
    const t0 = Date.now();
    const answers = await askAll(`/models/${name}/manifest.json`, 'cpu', QUESTIONS);
    cpuAnswers[name] = answers;
    const ok = (a) => normalize(a.said) === normalize(a.answer);
    const kinds = {};
    for (const a of answers) {
      const k = (kinds[a.kind] ||= [0, 0]);
      k[0] += ok(a) ? 1 : 0;
      k[1] += 1;
    }
    const right = answers.filter(ok).length;
    const acc = right / answers.length;
    console.log(`${name} cpu: ${right}/${answers.length} = ${(100 * acc).toFixed(1)}% ` +
      `(${Object.entries(kinds).map(([k, [r, n]]) => `${k} ${r}/${n}`).join(', ')}) in ` +
      `${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(answers.every((a) => a.backend === 'cpu'), 'every answer ran on the CPU');
    const wrong = answers.filter((a) => !ok(a)).slice(0, 5).map((a) => `${a.question} -> ${a.said} (key: ${a.answer})`);
    assert.ok(acc >= BAR, `accuracy ${acc} < ${BAR}; e.g. ${wrong.join(' | ')}`);
  });

  test(`${name} on webgpu: the CPU path's answers`, { timeout: TIMEOUT }, async () => {
    assert.ok(cpuAnswers[name], 'the CPU run came first');
    const t0 = Date.now();
    const answers = await askAll(`/models/${name}/manifest.json`, 'webgpu', WEBGPU_QUESTIONS);
    const right = answers.filter((a) => normalize(a.said) === normalize(a.answer)).length;
    console.log(`${name} webgpu: ${right}/${answers.length} right, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(answers.every((a) => a.backend === 'webgpu'), 'every answer ran on WebGPU');
    const differ = answers.filter((a, i) => a.said !== cpuAnswers[name][i].said).map((a) => a.question);
    console.log(`${name} webgpu: ${differ.length} answers differ from the CPU path's ${JSON.stringify(differ)}`);
    // The first 10 word for word; beyond them a near-tie may fall the other way (float sums in
    // another order), so a full run is held to the bar instead.
    answers.slice(0, 10).forEach((a, i) => assert.equal(a.said, cpuAnswers[name][i].said, `${a.question} (WebGPU vs CPU)`));
    if (answers.length === QUESTIONS) assert.ok(right / answers.length >= BAR, `${right}/${answers.length} on WebGPU`);
  });
}

test('the page: click a sample image, ask its question, get the right answer', { timeout: TIMEOUT }, async () => {
  const models = JSON.parse(await readFile(path.join(ROOT, 'www/models.json'), 'utf8'));
  const entry = models.models.find((m) => m.url === models.default);
  assert.ok(entry?.samples?.length, 'the default model lists sample images');
  const serve = await startServe();
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(serve.url); // the default model: nothing chosen
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null,
      { timeout: TIMEOUT, polling: 100 });
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready');
    for (const [i, sample] of entry.samples.slice(0, 2).entries()) {
      await page.locator('#sample-list button').nth(i).click();
      await page.waitForFunction(() => document.querySelectorAll('#attachments li').length === 1);
      assert.equal(await page.locator('#prompt').inputValue(), sample.question);
      await page.locator('#send').click();
      // each sample starts a new chat (New chat below): one answer in the log
      await page.waitForFunction(() => document.querySelectorAll('#log .msg.assistant').length === 1 &&
        document.body.dataset.state === 'ready', null, { timeout: TIMEOUT, polling: 50 });
      const said = await page.evaluate(() => [...document.querySelectorAll('#log .msg.assistant')].at(-1)
        .querySelector('.body').textContent);
      console.log(`sample ${i + 1}: ${sample.question} -> ${said}`);
      assert.equal(normalize(said), normalize(sample.answer), `sample ${i + 1}: ${sample.question}`);
      await page.locator('#reset').click();
    }
  } finally {
    await browser.close();
    serve.child.kill();
  }
});
