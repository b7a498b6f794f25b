// The npm package as a web developer uses it: `npm pack` of dist/ (scripts/build-package.mjs),
// a fresh Vite app in a temp dir that installs the tarball (Vite and TypeScript from npm's
// cache in .cache/npm/, which scripts/setup.sh fills: the test itself runs offline), `vite build`, the built app
// served with the converted SmolLM2 model, and in headless Chromium (WebGPU off): the engine
// created in its Web Worker, an answer streamed as chat.completion.chunk objects, another
// aborted with an AbortController, and a non-streamed chat.completion; then the same app in
// Chromium with --enable-unsafe-webgpu (SwiftShader, slow: 4 tokens): the engine on WebGPU
// streams the CPU's greedy text and aborts (WEBVLM_SKIP_GPU=1 skips that part). Needs www/pkg
// (scripts/build.sh), npm and, on the first run, the registry.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ROOT, launchChromium } from './page-harness.mjs';
import { startPackageServer } from './package-harness.mjs';
import { buildPackage } from '../../scripts/build-package.mjs';

const NPM_CACHE = path.join(ROOT, '.cache/npm');
let APP; // the app's temp dir
const VITE = '^8'; // scripts/setup.sh caches the same specs (VITE_SPECS)
const TIMEOUT = 6 * 60_000;

let server;
let browser;
let page;
let cpuText = null; // the greedy streamed answer on the CPU
const SKIP_GPU = process.env.WEBVLM_SKIP_GPU === '1';

/** `npm install ...` from npm's cache alone when it has everything, else through the registry. */
function npmInstall(args) {
  const run = (mode) => execFileSync('npm', ['install', ...args, '--cache', NPM_CACHE, mode, '--no-audit', '--no-fund',
    '--loglevel=error'], { cwd: APP, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 240_000 });
  try {
    run('--offline');
  } catch {
    run('--prefer-offline');
  }
}

const MAIN_JS = `import { createEngine, listCachedModels, deleteCachedModel } from 'webvlm';
// Exposed for the test, which drives the app from Chromium.
window.webvlmApp = { createEngine, listCachedModels, deleteCachedModel };
document.getElementById('status').textContent = 'ready';
`;

// Type-checked against the package's index.d.ts (tsc --strict); the expected errors prove the
// types are not \`any\`.
const CHECK_TS = `import { createEngine, listCachedModels, type ChatCompletion } from 'webvlm';
export async function main(file: Blob): Promise<string> {
  const engine = await createEngine({ model: '/m/manifest.json', backend: 'auto', context: 'drop_oldest',
    onProgress: (p) => { if (p.phase === 'download') console.log(p.loaded / p.total, p.etaSeconds); } });
  const stream = await engine.chat.completions.create({ stream: true, messages: [{ role: 'user',
    content: [{ type: 'text', text: 'hi' }, { type: 'image', image: file }] }] });
  let text = '';
  for await (const c of stream) text += c.choices[0].delta.content ?? '';
  const r: ChatCompletion = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }] });
  const n: number = r.usage.total_tokens + r.webvlm.timings.prefill_tokens;
  // @ts-expect-error: not a backend
  await createEngine({ model: 'x', backend: 'gpu' });
  // @ts-expect-error: content parts have a type
  await engine.chat.completions.create({ messages: [{ role: 'user', content: [{ text: 'x' }] }] });
  await engine.unload();
  return text + r.choices[0].message.content + n + (await listCachedModels()).length;
}
`;

/** A fresh app in a temp dir: vite, typescript and the freshly packed tarball installed (npm's
 * cache under .cache/ makes reruns fast and lets them work offline), then `vite build`. */
async function buildApp() {
  APP = await mkdtemp(path.join(os.tmpdir(), 'webvlm-vite-'));
  await buildPackage();
  const tgz = execFileSync('npm', ['pack', path.join(ROOT, 'dist'), '--pack-destination', APP, '--silent'],
    { encoding: 'utf8' }).trim().split('\n').pop();
  await writeFile(path.join(APP, 'index.html'),
    '<!doctype html><meta charset="utf-8"><title>webvlm in Vite</title><p id="status">loading</p>\n' +
    '<script type="module" src="/main.js"></script>\n');
  await writeFile(path.join(APP, 'main.js'), MAIN_JS);
  await writeFile(path.join(APP, 'check.ts'), CHECK_TS);
  await writeFile(path.join(APP, 'vite.config.js'), "export default { worker: { format: 'es' } };\n");
  await writeFile(path.join(APP, 'package.json'), JSON.stringify({ name: 'webvlm-vite-app', private: true,
    type: 'module', scripts: { build: 'vite build' } }, null, 2));
  npmInstall(['-D', `vite@${VITE}`, 'typescript@^5']);
  npmInstall([`./${tgz}`]);
  execFileSync(path.join(APP, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'],
    { cwd: APP, stdio: 'inherit', timeout: 240_000 });
}

before(async () => {
  await buildApp();
  server = await startPackageServer({
    roots: [['/models/', path.join(ROOT, '.cache/models')], ['/', path.join(APP, 'dist')]],
  });
  browser = await launchChromium();
  page = await browser.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  await page.goto(server.url);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
}, { timeout: TIMEOUT });

after(async () => {
  await page?.evaluate(() => window.engine?.unload()).catch(() => {});
  await browser?.close();
  await server?.close();
  if (APP) await rm(APP, { recursive: true, force: true });
});

test('a TypeScript consumer type-checks against index.d.ts', () => {
  execFileSync(path.join(APP, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--target', 'es2022', '--module',
    'esnext', '--moduleResolution', 'bundler', '--lib', 'es2022,dom,dom.iterable', 'check.ts'],
  { cwd: APP, stdio: 'inherit' });
});

test('the built app ships the worker and the wasm as assets', () => {
  const assets = execFileSync('find', [path.join(APP, 'dist'), '-type', 'f'], { encoding: 'utf8' });
  // All four wasm builds: pkg/, pkg-threads/, pkg-relaxed/ and pkg-threads-relaxed/ (the
  // threaded ones with their pool workers).
  assert.equal(assets.match(/\.wasm\n/g)?.length, 4, assets);
  assert.match(assets, /worker[^/\n]*\.js\n/);
  const wasmGets = () => server.log.filter((e) => e.path.endsWith('.wasm'));
  assert.equal(wasmGets().length, 0, 'nothing loads the wasm before an engine is created');
});

test('createEngine in a worker, a streamed answer, an aborted one', { timeout: TIMEOUT }, async () => {
  const out = await page.evaluate(async () => {
    const model = '/models/smollm2-135m-int4/manifest.json';
    await window.webvlmApp.deleteCachedModel(model);
    const progress = [];
    window.engine = await window.webvlmApp.createEngine({ model, onProgress: (p) => progress.push(p) });
    const question = { role: 'user', content: [{ type: 'text', text: 'What is the capital of France?' }] };
    const chunks = [];
    const stream = await window.engine.chat.completions.create({ messages: [question], stream: true, max_tokens: 24 });
    for await (const c of stream) chunks.push(c);
    const ctl = new AbortController();
    const aborted = [];
    const story = await window.engine.chat.completions.create({ stream: true, max_tokens: 400, signal: ctl.signal,
      messages: [{ role: 'user', content: 'Write a long story about a dragon.' }] });
    for await (const c of story) {
      aborted.push(c);
      if (aborted.length === 4) ctl.abort();
    }
    let rejected = null;
    const ctl2 = new AbortController();
    const p = window.engine.chat.completions.create({ max_tokens: 400, signal: ctl2.signal,
      messages: [{ role: 'user', content: 'Write a long story about a cat.' }] });
    setTimeout(() => ctl2.abort(), 300);
    try {
      await p;
    } catch (e) {
      rejected = e.name;
    }
    const full = await window.engine.chat.completions.create({ messages: [question], max_tokens: 24 });
    return { info: window.engine.info, cores: navigator.hardwareConcurrency, progress: progress.slice(-3), chunks, aborted, rejected, full };
  });
  assert.equal(out.info.backend, 'cpu');
  // The server sends COOP/COEP: the bundled threaded build runs, one thread per logical core.
  assert.equal(out.info.threads, Math.min(out.cores, 64), out.info.threads_reason);
  const dl = out.progress.find((p) => p.phase === 'download');
  assert.equal(dl.loaded, dl.total);
  assert.deepEqual(out.progress.map((p) => p.phase).slice(-2), ['build', 'ready']);
  // Streamed: chat.completion.chunk objects, one id, role first, content deltas, finish last.
  const { chunks } = out;
  assert.ok(chunks.length >= 3);
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, chunks[0].id);
    assert.match(c.id, /^chatcmpl-/);
    assert.equal(c.choices.length, 1);
  }
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const last = chunks.at(-1);
  assert.ok(['stop', 'length'].includes(last.choices[0].finish_reason));
  assert.equal(last.webvlm.backend, 'cpu');
  const text = chunks.map((c) => c.choices[0].delta.content || '').join('');
  assert.match(text, /Paris/);
  cpuText = text;
  assert.ok(chunks.length - 2 <= last.usage.completion_tokens, 'at most one content chunk per token');
  // Aborted after the 4th chunk: the engine stops after the token in flight.
  const end = out.aborted.at(-1);
  assert.equal(end.choices[0].finish_reason, 'abort');
  assert.equal(end.webvlm.finish_reason, 'aborted');
  assert.ok(end.usage.completion_tokens <= 5, `${end.usage.completion_tokens} tokens after abort`);
  assert.equal(out.rejected, 'AbortError');
  // Non-streamed: a chat.completion with the same text as the greedy stream.
  const { full } = out;
  assert.equal(full.object, 'chat.completion');
  assert.equal(full.choices[0].message.role, 'assistant');
  assert.equal(full.choices[0].message.content, text);
  assert.equal(full.usage.total_tokens, full.usage.prompt_tokens + full.usage.completion_tokens);
  assert.equal(full.usage.completion_tokens, last.usage.completion_tokens);
  assert.equal(typeof full.created, 'number');
});

test('the same app on WebGPU: a streamed answer (the CPU greedy text), an aborted one', { skip: SKIP_GPU,
  timeout: TIMEOUT }, async () => {
  const gpuBrowser = await launchChromium({ webgpu: true });
  try {
    const gpuPage = await gpuBrowser.newPage();
    const errors = [];
    gpuPage.on('pageerror', (e) => errors.push(e.message));
    await gpuPage.goto(server.url);
    await gpuPage.waitForFunction(() => document.getElementById('status').textContent === 'ready');
    const out = await gpuPage.evaluate(async () => {
      const engine = await window.webvlmApp.createEngine({ model: '/models/smollm2-135m-int4/manifest.json',
        backend: 'webgpu' });
      const question = { role: 'user', content: [{ type: 'text', text: 'What is the capital of France?' }] };
      const chunks = [];
      for await (const c of await engine.chat.completions.create({ messages: [question], stream: true, max_tokens: 4 })) {
        chunks.push(c);
      }
      const ctl = new AbortController();
      const aborted = [];
      const story = await engine.chat.completions.create({ stream: true, max_tokens: 100, signal: ctl.signal,
        messages: [{ role: 'user', content: 'Write a long story about a dragon.' }] });
      for await (const c of story) {
        aborted.push(c);
        if (aborted.length === 2) ctl.abort();
      }
      const info = { ...engine.info };
      await engine.unload();
      return { info, chunks, end: aborted.at(-1) };
    });
    assert.equal(out.info.backend, 'webgpu', JSON.stringify(out.info));
    const last = out.chunks.at(-1);
    assert.equal(last.webvlm.backend, 'webgpu');
    assert.equal(last.usage.completion_tokens, 4);
    const text = out.chunks.map((c) => c.choices[0].delta.content || '').join('');
    assert.ok(text.length > 0 && cpuText.startsWith(text), `WebGPU ${JSON.stringify(text)} vs CPU ${JSON.stringify(cpuText)}`);
    assert.equal(out.end.choices[0].finish_reason, 'abort');
    assert.ok(out.end.usage.completion_tokens <= 3, `${out.end.usage.completion_tokens} tokens after abort`);
    assert.deepEqual(errors, []);
  } finally {
    await gpuBrowser.close();
  }
});
