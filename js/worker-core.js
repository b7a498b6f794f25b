// `WorkerCore`: the EngineCore contract of core.js, run in a module Web Worker (worker.js of
// this package) so downloads, hashing, prefill and decoding never block the page. Errors keep
// their name and code across the boundary (ModelLoadError, ContextWindowError, AbortError).
import { ContextWindowError } from './core.js';
import { ModelLoadError } from './loader.js';

function rebuildError({ name, message, code }) {
  if (name === 'AbortError') return new DOMException(message, 'AbortError');
  if (name === 'ModelLoadError') return new ModelLoadError(message, code);
  if (name === 'ContextWindowError') return new ContextWindowError(message);
  const e = new Error(message);
  if (name) e.name = name;
  if (code) e.code = code;
  return e;
}

export class WorkerCore {
  #worker;
  #nextId = 1;
  #pending = new Map(); // id -> { resolve, reject, onProgress, onToken }

  constructor() {
    // The literal `new Worker(new URL(..., import.meta.url), { type: 'module' })` form lets
    // bundlers (Vite, webpack 5, Parcel) find and emit the worker.
    this.#worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.#worker.onmessage = (ev) => this.#receive(ev.data);
    this.#worker.onerror = (ev) => this.#failAll(new Error(`webvlm worker failed: ${ev.message || 'script error'}`));
  }

  #receive(msg) {
    const p = this.#pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') p.onProgress?.(msg.progress);
    else if (msg.type === 'token') p.onToken?.(msg.text, msg.tokenId);
    else {
      this.#pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.value);
      else p.reject(rebuildError(msg.error || {}));
    }
  }

  #failAll(err) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #call(type, body, hooks = {}, transfer = []) {
    if (!this.#worker) return Promise.reject(new Error('the engine was unloaded'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...hooks });
      this.#worker.postMessage({ type, id, ...body }, transfer);
    });
  }

  /** `signal` (not cloneable, so it stays here) ends the worker, which stops the download. */
  load(options, onProgress, signal) {
    const done = this.#call('load', { options }, { onProgress });
    const onAbort = () => {
      this.#worker?.terminate();
      this.#worker = null;
      this.#failAll(new DOMException('The load was aborted.', 'AbortError'));
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    return done.finally(() => signal?.removeEventListener('abort', onAbort));
  }

  /** Image ArrayBuffers in `request` are transferred (the caller gives fresh copies). */
  generate(request, { onToken, signal } = {}) {
    const transfer = request.messages.flatMap((m) => m.images || []).filter((b) => b instanceof ArrayBuffer);
    const id = this.#nextId; // the id #call is about to use
    const done = this.#call('generate', { request }, { onToken }, transfer); // posted synchronously
    const onAbort = () => this.#worker?.postMessage({ type: 'stop', id });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    return done.finally(() => signal?.removeEventListener('abort', onAbort));
  }

  loseDevice() {
    return this.#call('lose_device', {});
  }

  threadPoolCheck() {
    return this.#call('thread_pool_check', {});
  }

  reset() {
    return this.#call('reset', {});
  }

  async unload() {
    if (!this.#worker) return;
    try {
      await this.#call('unload', {});
    } finally {
      this.#worker.terminate();
      this.#worker = null;
      this.#failAll(new Error('the engine was unloaded'));
    }
  }
}
