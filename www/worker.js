// Module Web Worker that owns the wasm engine. Protocol (every request carries an `id`):
//   UI -> worker  { type: 'load', id, url, backend, threads? }   (backend: 'auto' | 'webgpu' | 'cpu';
//                   threads: 'auto' (default: one per logical core when the page is cross-origin
//                   isolated, else 1) | n; the first load picks the wasm build, see threads.js)
//                 { type: 'generate', id, messages: [{ role, content, images? }], images?, params }
//                   (`images` in a message: how many images it shows; `images` in the request:
//                   the encoded bytes (ArrayBuffer, transferred) of every image of the
//                   conversation, in order; decoded inside wasm)
//                 { type: 'stop', id }            (id of the generate request to stop)
//                 { type: 'lose_device', id }     (testing hook: destroy the WebGPU device)
//                 { type: 'thread_check', id, threads? }  (testing hook: load the wasm build for
//                   `threads` if none is loaded yet, run its thread pool check, no model needed)
//   worker -> UI  { type: 'progress', id, loaded, total, file }
//                 { type: 'loaded', id, backend, fallbackReason, adapter, loadMs, supportsImages,
//                   threads, threaded, threadsReason }   (CPU threads; threadsReason: why one)
//                   (backend: 'webgpu' | 'cpu'; adapter: { name, shader_f16, subgroups, ... } on WebGPU)
//                 { type: 'token', id, text, tokenId }
//                 { type: 'done', id, result: { text, ids, finish_reason, timings, image_tokens,
//                   backend, fallback_reason, dispatches_per_token, prompt_tokens } }
//                   (prompt_tokens: the rendered conversation's length in KV positions, each image
//                   counted as its features; timings.prefill_tokens: the part not already cached)
//                 { type: 'lost', id, destroyed }
//                 { type: 'thread_check', id, threads, threaded, reason, check: { threads,
//                   broadcast, max_abs_diff } }
//                 { type: 'error', id, message }
// Stop is handled here, in JavaScript: the wasm generation loop yields to the event loop
// between tokens, so this handler runs and the next on_token call returns false.
// Model files: the engine fetches them through this worker's `fetch`, which answers from and
// stores into Cache Storage (model-cache.js), so a second load (or an offline one) reads no
// network. A load that fails after reading model files deletes that model's cached files, so
// the next try starts clean.
// Only engine-client.js talks to this worker.
import { loadWasm } from './threads.js';
import { cachingFetch, deleteCachedModel, modelFolder } from './model-cache.js';

let engine = null;
let loading = null;
let wasm = null; // { glue, threads, threaded, reason } from loadWasm
const stopRequested = new Set();

const reply = (msg) => self.postMessage(msg);
const errorMessage = (e) => (e && e.message) || String(e);

const realFetch = self.fetch.bind(self);

async function load({ id, url, backend, threads }) {
  const t0 = performance.now();
  if (!loading) {
    loading = (async () => {
      wasm ||= await loadWasm(threads);
      const folder = modelFolder(url);
      const log = { puts: [], calls: 0 };
      self.fetch = cachingFetch(folder, realFetch, log);
      const onProgress = (p) => reply({ type: 'progress', id, loaded: p.loaded, total: p.total, file: p.file });
      try {
        const e = await wasm.glue.WasmEngine.load(url, onProgress, { backend: backend || 'auto' });
        await Promise.all(log.puts);
        return e;
      } catch (e) {
        // Past the backend check the model's files were read: one may be what broke.
        await Promise.allSettled(log.puts);
        if (log.calls > 0) await deleteCachedModel(folder).catch(() => {});
        throw e;
      } finally {
        self.fetch = realFetch;
      }
    })();
  }
  engine = await loading;
  const adapter = engine.adapter_info();
  reply({ type: 'loaded', id, backend: engine.backend(), fallbackReason: engine.fallback_reason() ?? null,
    adapter: adapter ? JSON.parse(adapter) : null, loadMs: performance.now() - t0,
    supportsImages: engine.supports_images(), threads: wasm.threads, threaded: wasm.threaded,
    threadsReason: wasm.reason });
}

async function generate({ id, messages, images, params }) {
  if (!engine) {
    if (!loading) throw new Error('no model loaded');
    engine = await loading;
  }
  const promptIds = engine.chat_prompt(JSON.stringify(messages));
  const onToken = (text, tokenId) => {
    reply({ type: 'token', id, text, tokenId });
    return !stopRequested.has(id);
  };
  try {
    const p = JSON.stringify(params || {});
    const json = images && images.length
      ? await engine.generate_with_images(promptIds, images.map((b) => new Uint8Array(b)), p, onToken)
      : await engine.generate(promptIds, p, onToken);
    const result = JSON.parse(json);
    // Each image token of the prompt stands for the image's features in the KV cache.
    const nImages = images ? images.length : 0;
    reply({ type: 'done', id, result: { ...result, prompt_tokens: promptIds.length - nImages + (result.image_tokens || 0) } });
  } finally {
    stopRequested.delete(id);
  }
}

self.onmessage = async (ev) => {
  const msg = ev.data || {};
  try {
    switch (msg.type) {
      case 'load':
        await load(msg);
        break;
      case 'generate':
        await generate(msg);
        break;
      case 'stop':
        stopRequested.add(msg.id);
        break;
      case 'lose_device':
        reply({ type: 'lost', id: msg.id, destroyed: Boolean(engine && engine.lose_device()) });
        break;
      case 'thread_check':
        wasm ||= await loadWasm(msg.threads);
        reply({ type: 'thread_check', id: msg.id, threads: wasm.threads, threaded: wasm.threaded, reason: wasm.reason,
          check: JSON.parse(wasm.glue.thread_pool_check(1024, 512, 3)) });
        break;
      default:
        throw new Error(`unknown request type ${JSON.stringify(msg.type)}`);
    }
  } catch (e) {
    if (msg.type === 'load') loading = null;
    reply({ type: 'error', id: msg.id, message: errorMessage(e) });
  }
};
