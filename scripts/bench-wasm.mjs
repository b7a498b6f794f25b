#!/usr/bin/env node
// Decode speed of the wasm build (www/pkg, the same module the page uses) under Node:
// serves the converted model with scripts/serve.mjs, loads it through WasmEngine.load (the
// streamed-fetch path of the browser), chats once greedily and reports tokens/s as JSON.
//
// With --vision it instead times one 336x336 image encode through LLaVA-1.5-7B's vision tower
// (CLIP ViT-L/14-336, 23 of 24 layers, random weights built in wasm memory; the wasm export
// `bench_vision` of src/wasm_bench.rs), per --vision-formats (default int8,f32; also w8a8; the f32 tower
// is 1.16 GB of wasm32's 4 GiB: pass int8 alone where memory is tight), and writes
// test-results/bench-wasm-vision.json.
//
// --threads N runs on N threads: 1 (default) is www/pkg, the single-threaded build; N > 1 (or
// `all`, one per logical core) is www/pkg-threads with a pool of N Node worker_threads
// (scripts/wasm-thread-node.mjs), started the way the package's Web Workers are (js/threads.js).
//
// Usage: node scripts/bench-wasm.mjs [--model DIR_NAME] [--prompt TEXT] [--max-tokens N]
//                                    [--threads 1|N|all] [--out FILE]
//                                    (default out: test-results/bench-wasm.json)
//        node scripts/bench-wasm.mjs --vision [--vision-formats int8,f32] [--threads 1|N|all] [--out FILE]
//        node scripts/bench-wasm.mjs --kernels [format:ROWSxCOLS:N,...] [--threads 1|N|all] [--out FILE]
//          (the CPU kernels alone: GEMV weight GB/s and GEMM GOP/s; '' = the default shapes)
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { startServer } from './serve.mjs';
import { startThreadPool } from '../js/threads.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One pool thread as a Node worker_thread (unref'd: it blocks for good, the process may exit). */
function spawnNodeThread({ glueUrl, module, memory }) {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./wasm-thread-node.mjs', import.meta.url), { workerData: { glueUrl, module, memory } });
    w.once('message', (m) => {
      if (m?.type !== 'ready') return reject(new Error(m?.message || 'thread failed'));
      w.unref();
      resolve(w);
    });
    w.once('error', reject);
  });
}

/**
 * Load the wasm build into this process: www/pkg for `threads` = 1, else www/pkg-threads with
 * a pool of `threads` worker_threads. Returns the wasm-bindgen module (WasmEngine etc.).
 */
export async function loadWasm({ threads = 1 } = {}) {
  const pkgDir = path.join(ROOT, threads > 1 ? 'www/pkg-threads' : 'www/pkg');
  const glueUrl = pathToFileURL(path.join(pkgDir, 'webvlm.js')).href;
  const glue = await import(glueUrl);
  const bytes = await readFile(path.join(pkgDir, 'webvlm_bg.wasm'));
  await glue.default({ module_or_path: bytes });
  if (threads > 1) await startThreadPool(glue, glueUrl, threads, spawnNodeThread);
  return glue;
}

/** `--threads` value: 'all' = one per logical core, else a positive integer. */
function parseThreads(v) {
  const n = v === 'all' ? os.availableParallelism() : Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--threads must be 'all' or a positive integer, got ${v}`);
  return n;
}

/**
 * Load `model` (a folder under the models dir) over HTTP and run one chat turn.
 * Returns { text, finish_reason, timings, load_ms, progress_events, ... }.
 */
export async function runWasmChat({ model = 'smollm2-135m-int4', prompt, maxTokens = 64, onToken, threads = 1 } = {}) {
  const glue = await loadWasm({ threads });
  const { server, url } = await startServer({ port: 0 });
  try {
    let progressEvents = 0;
    let lastProgress = null;
    const t0 = performance.now();
    const engine = await glue.WasmEngine.load(`${url}models/${model}/`, (p) => {
      progressEvents += 1;
      lastProgress = { loaded: p.loaded, total: p.total, file: p.file };
    });
    const loadMs = performance.now() - t0;
    const ids = engine.chat_prompt(JSON.stringify([{ role: 'user', content: prompt }]));
    const pieces = [];
    const params = { max_new_tokens: maxTokens, sampling: { temperature: 0 } };
    const json = await engine.generate(ids, JSON.stringify(params), (text, id) => {
      pieces.push(text);
      return onToken ? onToken(text, id) !== false : true;
    });
    const result = JSON.parse(json);
    const backend = engine.backend();
    engine.free();
    return {
      model,
      backend,
      threads: glue.thread_count(),
      prompt,
      prompt_tokens: ids.length,
      text: result.text,
      streamed_text: pieces.join(''),
      streamed_pieces: pieces.length,
      finish_reason: result.finish_reason,
      generated_ids: result.ids,
      load_ms: loadMs,
      progress_events: progressEvents,
      last_progress: lastProgress,
      timings: result.timings,
    };
  } finally {
    server.close();
  }
}

/** Time the vision tower in wasm for each format; returns the report object. */
export async function runWasmVision({ formats = ['int8'], runs = 1, threads = 1 } = {}) {
  const glue = await loadWasm({ threads });
  const rows = formats.map((f) => JSON.parse(glue.bench_vision(f, runs, 0)));
  return {
    kind: 'wasm-node-vision',
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    tower: 'CLIP ViT-L/14-336 (LLaVA-1.5-7B), random weights',
    vision: rows,
  };
}

/** The default kernel shapes: SmolLM2's decode and prefill, 4096-wide GEMV and GEMM, per format. */
const KERNELS = ['int4_sym_g64', 'ternary', 'int8', 'f32'].flatMap((f) =>
  [`${f}:4096x4096:1`, `${f}:1536x576:1`, `${f}:1024x1024:64`]).join(',');

/** Time the CPU kernels in wasm (`bench_kernel` of src/wasm_bench.rs): `specs` =
 * `format:ROWSxCOLS:N,...`; returns the report object. */
export async function runWasmKernels({ specs = KERNELS, reps = 3, threads = 1 } = {}) {
  const glue = await loadWasm({ threads });
  const rows = specs.split(',').map((s) => {
    const [format, shape, n] = s.split(':');
    const [r, c] = shape.split('x').map(Number);
    const row = JSON.parse(glue.bench_kernel(format, r, c, Number(n), reps));
    console.error(`${format} ${r}x${c} n=${n}: ${row.weight_gbs.toFixed(2)} GB/s, ${row.gops.toFixed(1)} GOP/s`);
    return row;
  });
  return { kind: 'wasm-node-kernels', date: new Date().toISOString(), node: process.version, kernels: rows };
}

async function main() {
  const { values } = parseArgs({
    options: {
      vision: { type: 'boolean', default: false },
      kernels: { type: 'string' },
      'vision-formats': { type: 'string', default: 'int8,f32' },
      model: { type: 'string', default: 'smollm2-135m-int4' },
      prompt: { type: 'string', default: 'Write a short story about a robot who learns to paint.' },
      'max-tokens': { type: 'string', default: '128' },
      threads: { type: 'string', default: '1' },
      out: { type: 'string' },
    },
  });
  const threads = parseThreads(values.threads);
  if (values.kernels !== undefined) {
    const report = await runWasmKernels({ specs: values.kernels || KERNELS, threads });
    if (values.out) await writeFile(values.out, JSON.stringify(report, null, 2) + '\n');
    return;
  }
  if (values.vision) {
    const out = values.out || path.join(ROOT, 'test-results/bench-wasm-vision.json');
    const report = await runWasmVision({ formats: values['vision-formats'].split(','), threads });
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, JSON.stringify(report, null, 2) + '\n');
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  values.out ||= path.join(ROOT, 'test-results/bench-wasm.json');
  const maxTokens = Number(values['max-tokens']);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`--max-tokens must be a positive integer`);
  const r = await runWasmChat({ model: values.model, prompt: values.prompt, maxTokens, threads });
  const report = {
    kind: 'wasm-node',
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    model: r.model,
    backend: r.backend,
    threads: r.threads,
    prompt_tokens: r.prompt_tokens,
    finish_reason: r.finish_reason,
    load_ms: Math.round(r.load_ms),
    prefill_tokens: r.timings.prefill_tokens,
    prefill_ms: Math.round(r.timings.prefill_ms),
    prefill_tokens_per_s: r.timings.prefill_tokens / (r.timings.prefill_ms / 1000),
    decode_tokens: r.timings.decode_tokens,
    decode_ms: Math.round(r.timings.decode_ms),
    decode_tokens_per_s: r.timings.decode_tokens_per_s,
    text: r.text,
  };
  await mkdir(path.dirname(values.out), { recursive: true });
  await writeFile(values.out, JSON.stringify(report, null, 2) + '\n');
  console.log(JSON.stringify(report, null, 2));
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((e) => {
    console.error(`bench-wasm: ${e.message || e}`);
    process.exit(1);
  });
}
