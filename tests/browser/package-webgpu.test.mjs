// The package on the WebGPU path in headless Chromium with `--enable-unsafe-webgpu`
// (SwiftShader: slow, so answers are a few tokens): createEngine({ backend: 'webgpu' }) streams
// the shards from Cache Storage into GPU buffers, answers on WebGPU with the same greedy text
// as the CPU engine, and when the device is destroyed mid-answer (engine.debug.loseDevice) the
// answer completes on the CPU, its weights fetched again through the engine's shard source
// (answered from Cache Storage: no network request). WEBVLM_SKIP_GPU=1 skips it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT, launchChromium } from './page-harness.mjs';
import { packagePage, startPackageServer } from './package-harness.mjs';

const SKIP = process.env.WEBVLM_SKIP_GPU === '1';
const MODEL = '/models/smollm2-135m-int4/manifest.json';
const TIMEOUT = 6 * 60_000;
const MAX_TOKENS = 6;

let server;
let browser;
let page;

before(async () => {
  if (SKIP) return;
  server = await startPackageServer({
    roots: [['/models/', path.join(ROOT, '.cache/models')], ['/dist/', path.join(ROOT, 'dist')]],
    pages: { '/': packagePage('/dist/index.js') },
  });
  browser = await launchChromium({ webgpu: true });
  page = await browser.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  await page.goto(server.url);
  await page.waitForFunction(() => window.webvlmReady === true);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('WebGPU engine: same greedy text as the CPU; a lost device finishes the answer on the CPU', { skip: SKIP,
  timeout: TIMEOUT }, async () => {
  const out = await page.evaluate(async ({ model, max }) => {
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const cpu = await window.webvlm.createEngine({ model, backend: 'cpu' });
    const onCpu = await cpu.chat.completions.create({ messages, max_tokens: max });
    await cpu.unload();
    const gpu = await window.webvlm.createEngine({ model, backend: 'webgpu' });
    const info = gpu.info;
    const onGpu = await gpu.chat.completions.create({ messages, max_tokens: max });
    await gpu.reset();
    // Lose the device after the first content token of a fresh answer.
    const stream = await gpu.chat.completions.create({ messages, max_tokens: max, stream: true });
    let text = '';
    let lost = null;
    let last = null;
    for await (const c of stream) {
      text += c.choices[0].delta.content ?? '';
      if (text && lost === null) lost = await gpu.debug.loseDevice();
      last = c;
    }
    await gpu.unload();
    return { info, onCpu, onGpu, text, lost, last };
  }, { model: MODEL, max: MAX_TOKENS });
  assert.equal(out.info.backend, 'webgpu');
  assert.equal(out.onCpu.webvlm.backend, 'cpu');
  assert.equal(out.onGpu.webvlm.backend, 'webgpu');
  assert.ok(out.onGpu.webvlm.dispatches_per_token > 0);
  assert.equal(out.onGpu.choices[0].message.content, out.onCpu.choices[0].message.content);
  assert.equal(out.lost, true);
  assert.equal(out.last.webvlm.backend, 'cpu');
  assert.ok(out.last.webvlm.fallback_reason, 'the answer says why it moved to the CPU');
  assert.equal(out.text, out.onCpu.choices[0].message.content, 'the answer completes on the CPU unchanged');
  const shardGets = server.log.filter((e) => e.path.endsWith('.safetensors'));
  assert.ok(shardGets.length <= 2, 'the CPU weights after the loss came from Cache Storage, not the network');
});
