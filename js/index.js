// webvlm: quantized LLaVA-family and Llama-family models in the browser (WebGPU or wasm SIMD),
// behind OpenAI's chat-completions API. Nothing leaves the device: the only requests are the
// model's manifest and files (and image URLs the caller passes in).
//
//   import { createEngine } from 'webvlm';
//   const engine = await createEngine({ model: '/models/smollm2-135m-int4/manifest.json' });
//   const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }] });
import { Engine } from './api.js';
import { LocalCore } from './core.js';
import { WorkerCore } from './worker-core.js';
import { manifestUrlOf } from './loader.js';

export { Engine, ChunkStream } from './api.js';
export { ContextWindowError, LocalCore } from './core.js';
export { WorkerCore } from './worker-core.js';
export { chooseBuild, chooseSimd, relaxedSimdSupported, MAX_THREADS } from './threads.js';
export { ModelLoadError, listCachedModels, deleteCachedModel, manifestUrlOf } from './loader.js';

/**
 * Download (or load from Cache Storage) a converted model and start an engine on it.
 * @param {import('./index').CreateEngineOptions} options
 * @returns {Promise<Engine>}
 */
export async function createEngine(options = {}) {
  const { model, backend = 'auto', onProgress, worker = true, context = 'error', concurrency = 3, retries = 2,
    gpuBudgetMib, useCache = true, persist = true, wasmUrl, threads = 'auto', simd = 'auto', signal } = options;
  if (!model) throw new TypeError('createEngine: `model` (the URL of a manifest.json) is required');
  if (!['auto', 'webgpu', 'cpu'].includes(backend)) {
    throw new TypeError(`createEngine: backend must be 'auto', 'webgpu' or 'cpu', got ${JSON.stringify(backend)}`);
  }
  if (threads !== 'auto' && !(Number.isInteger(threads) && threads >= 1)) {
    throw new TypeError(`createEngine: threads must be 'auto' or a positive integer, got ${JSON.stringify(threads)}`);
  }
  if (!['auto', 'relaxed', 'simd128'].includes(simd)) {
    throw new TypeError(`createEngine: simd must be 'auto', 'relaxed' or 'simd128', got ${JSON.stringify(simd)}`);
  }
  if (context !== 'error' && context !== 'drop_oldest') {
    throw new TypeError(`createEngine: context must be 'error' or 'drop_oldest', got ${JSON.stringify(context)}`);
  }
  // Relative URLs resolve against the page, not against the worker's script.
  const url = manifestUrlOf(model);
  // Ask the browser not to evict the cached model under storage pressure (a window-only API;
  // Firefox asks the user, hence the option).
  if (useCache && persist && globalThis.navigator?.storage?.persist) {
    await navigator.storage.persist().catch(() => false);
  }
  if (signal?.aborted) throw new DOMException('The load was aborted.', 'AbortError');
  const core = worker ? new WorkerCore() : new LocalCore();
  const wasm = wasmUrl ? new URL(wasmUrl, globalThis.location?.href).href : undefined;
  try {
    const info = await core.load({ model: url, backend, gpuBudgetMib, concurrency, retries, useCache, wasmUrl: wasm,
      threads, simd },
      onProgress, signal);
    return new Engine(core, info, { context });
  } catch (e) {
    await core.unload().catch(() => {});
    throw signal?.aborted ? new DOMException('The load was aborted.', 'AbortError') : e;
  }
}
