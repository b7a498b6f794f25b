// The page's only door to the engine: everything app.js needs from the model goes through the
// functions exported here, so moving the page onto the npm package (js/, createEngine and
// chat.completions.create) changes this file alone. Today it drives worker.js (the wasm engine
// in a module Web Worker; its message protocol is documented at the top of worker.js) and reads
// Cache Storage through model-cache.js.
//
//   const engine = await openEngine({ model, backend, onProgress });
//     model: the model folder URL (absolute); backend: 'auto' | 'webgpu' | 'cpu'
//     onProgress({ loaded, total, file }) while the files download
//     engine.info: { backend: 'webgpu' | 'cpu', adapter, fallbackReason, loadMs, supportsImages,
//                    threads (CPU threads of the wasm build), threadsReason (why one, if so) }
//   const result = await engine.generate({ messages, params, onToken, signal });
//     messages: [{ role, content: string, images?: Blob[] }] (the whole conversation)
//     params: { max_tokens, temperature, top_p, seed }; onToken(text) per streamed piece;
//     signal: an AbortSignal that stops the answer (it resolves, finish_reason 'aborted')
//     result: { text, ids, finish_reason, timings: { prefill_ms, prefill_tokens, decode_ms,
//       decode_tokens, decode_tokens_per_s, image_encode_ms, image_encoder, load_ms }, image_tokens, backend,
//       fallback_reason, dispatches_per_token, prompt_tokens }  (prompt_tokens: the whole
//       rendered conversation; timings.prefill_tokens: the part not already in the KV cache)
//   engine.loseDevice() -> Promise<boolean>   (testing hook: destroy the WebGPU device)
//   engine.close()                            (ends the worker; pending requests reject)
//   listCachedModels() -> [{ url (manifest URL), cacheName, bytes, files, complete }];
//   deleteCachedModel(folder or manifest URL) -> whether it was there (the npm package's shapes)

export { listCachedModels, deleteCachedModel } from './model-cache.js';

/** The engine in a module worker, behind id-tagged requests. */
class WorkerEngine {
  constructor() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map(); // id -> { onProgress, onToken, resolve, reject }
    this.nextId = 1;
    this.info = null;
    this.worker.onmessage = (ev) => this.onMessage(ev.data);
    this.worker.onerror = (e) => this.failAll(new Error(`worker failed: ${e.message || 'could not start'}`));
  }

  request(msg, handlers = {}, transfer = []) {
    const id = this.nextId++;
    const done = new Promise((resolve, reject) => {
      this.pending.set(id, { ...handlers, resolve, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
    return { id, done };
  }

  onMessage(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') p.onProgress?.(msg);
    else if (msg.type === 'token') p.onToken?.(msg.text, msg.tokenId);
    else {
      this.pending.delete(msg.id);
      if (msg.type === 'error') p.reject(new Error(msg.message));
      else p.resolve(msg);
    }
  }

  failAll(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async load(model, backend, threads, onProgress) {
    const m = await this.request({ type: 'load', url: model, backend, threads }, { onProgress }).done;
    this.info = { backend: m.backend, adapter: m.adapter, fallbackReason: m.fallbackReason, loadMs: m.loadMs,
      supportsImages: Boolean(m.supportsImages), threads: m.threads, threadsReason: m.threadsReason };
    return this;
  }

  async generate({ messages, params = {}, onToken, signal }) {
    // Every image of the conversation, in order (the engine's feature cache skips re-encoding).
    const blobs = messages.flatMap((m) => m.images || []);
    const buffers = await Promise.all(blobs.map((b) => b.arrayBuffer()));
    const wire = messages.map((m) => ({ role: m.role, content: m.content, images: (m.images || []).length }));
    const req = this.request({ type: 'generate', messages: wire, images: buffers, params: wireParams(params) },
      { onToken }, buffers);
    const stop = () => this.worker.postMessage({ type: 'stop', id: req.id });
    if (signal?.aborted) stop();
    signal?.addEventListener('abort', stop, { once: true });
    try {
      return (await req.done).result;
    } finally {
      signal?.removeEventListener('abort', stop);
    }
  }

  async loseDevice() {
    return (await this.request({ type: 'lose_device' }).done).destroyed;
  }

  close() {
    this.worker.terminate();
    this.failAll(new Error('engine closed'));
  }
}

/** The engine's GenerateParams JSON from OpenAI-style names. */
function wireParams({ max_tokens: maxTokens = 256, temperature = 0, top_p: topP = 1, seed }) {
  const sampling = { temperature, top_p: topP };
  if (seed !== undefined) sampling.seed = seed;
  return { max_new_tokens: maxTokens, sampling };
}

/** Start an engine and load the model in folder `model` on `backend` (`threads`: CPU threads,
 * 'auto' = one per logical core when the page is cross-origin isolated, else 1). */
export async function openEngine({ model, backend = 'auto', threads = 'auto', onProgress }) {
  const engine = new WorkerEngine();
  try {
    return await engine.load(model, backend, threads, onProgress);
  } catch (e) {
    engine.worker.terminate();
    throw e;
  }
}
