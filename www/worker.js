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
//                   backend, fallback_reason, dispatches_per_token } }
//                 { type: 'lost', id, destroyed }
//                 { type: 'thread_check', id, threads, threaded, reason, check: { threads,
//                   broadcast, max_abs_diff } }
//                 { type: 'error', id, message }
// Stop is handled here, in JavaScript: the wasm generation loop yields to the event loop
// between tokens, so this handler runs and the next on_token call returns false.
import { loadWasm } from './threads.js';

let engine = null;
let loading = null;
let wasm = null; // { glue, threads, threaded, reason } from loadWasm
const stopRequested = new Set();

const reply = (msg) => self.postMessage(msg);
const errorMessage = (e) => (e && e.message) || String(e);

async function load({ id, url, backend, threads }) {
  if (!loading) {
    loading = (async () => {
      wasm ||= await loadWasm(threads);
      const onProgress = (p) => reply({ type: 'progress', id, loaded: p.loaded, total: p.total, file: p.file });
      return wasm.glue.WasmEngine.load(url, onProgress, { backend: backend || 'auto' });
    })();
  }
  const t0 = performance.now();
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
    reply({ type: 'done', id, result: JSON.parse(json) });
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
