// The package on the WebGPU path in headless Chromium with `--enable-unsafe-webgpu`
// (SwiftShader: slow, so the answer is 4 tokens): createEngine({ backend: 'webgpu' }) streams
// the shards from Cache Storage into GPU buffers and starts the answer on WebGPU; the device
// destroyed after two tokens (engine.debug.loseDevice), the answer completes on the CPU with
// the same greedy text as the CPU engine alone. Weights the CPU needs again come through the
// engine's shard source, which the package answers from Cache Storage: no shard is fetched
// from the network after the load. WEBVLM_SKIP_GPU=1 skips it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT, launchChromium } from './page-harness.mjs';
import { openPackagePage, packagePage, startPackageServer } from './package-harness.mjs';

const SKIP = process.env.WEBVLM_SKIP_GPU === '1';
const MODEL = '/models/smollm2-135m-int4/manifest.json';
const TIMEOUT = 6 * 60_000;
const MAX_TOKENS = 4;

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
  page = await openPackagePage(browser, server.url);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('WebGPU engine: a device lost mid-answer finishes it on the CPU, same greedy text', { skip: SKIP,
  timeout: TIMEOUT }, async () => {
  const out = await page.evaluate(async ({ model, max }) => {
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Capital of France?' }];
    const cpu = await window.webvlm.createEngine({ model, backend: 'cpu' });
    const onCpu = await cpu.chat.completions.create({ messages, max_tokens: max });
    await cpu.unload();
    const gpu = await window.webvlm.createEngine({ model, backend: 'webgpu' });
    const info = { ...gpu.info }; // gpu.info.backend follows later answers
    // Two tokens on the GPU (prefill, one decode step), then the device is lost.
    const stream = await gpu.chat.completions.create({ messages, max_tokens: max, stream: true });
    const pieces = [];
    let lost = null;
    let last = null;
    for await (const c of stream) {
      if (c.choices[0].delta.content) pieces.push(c.choices[0].delta.content);
      if (pieces.length === 2 && lost === null) lost = await gpu.debug.loseDevice();
      last = c;
    }
    await gpu.unload();
    return { info, onCpu, text: pieces.join(''), lost, last };
  }, { model: MODEL, max: MAX_TOKENS });
  const t = out.last.webvlm.timings;
  console.log(`WebGPU load ${Math.round(out.info.load_ms)} ms; the answer: prefill ${Math.round(t.prefill_ms)} ms, ` +
    `decode ${Math.round(t.decode_ms)} ms (SwiftShader, then the CPU); shards read again from the cache: ` +
    `${out.last.webvlm.shards_reloaded}`);
  assert.equal(out.info.backend, 'webgpu');
  assert.equal(out.onCpu.webvlm.backend, 'cpu');
  assert.equal(out.onCpu.usage.completion_tokens, MAX_TOKENS, 'the CPU answer runs to max_tokens');
  assert.equal(out.lost, true);
  assert.equal(out.last.webvlm.backend, 'cpu');
  assert.ok(out.last.webvlm.fallback_reason, 'the answer says why it moved to the CPU');
  assert.equal(out.text, out.onCpu.choices[0].message.content,
    'two tokens from WebGPU, the rest from the CPU: the same greedy answer as the CPU alone');
  assert.ok(out.last.webvlm.shards_reloaded >= 1, 'the weights the GPU held were read again from the cache');
  const shardGets = server.log.filter((e) => e.path.endsWith('.safetensors'));
  assert.ok(shardGets.length <= 2, 'the CPU weights after the loss came from Cache Storage, not the network');
});
