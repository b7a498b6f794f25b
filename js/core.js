// The engine core: the contract both ways of running the engine implement, and `LocalCore`,
// the implementation that owns the wasm engine in the current thread. `WorkerCore`
// (worker-core.js) implements the same contract by forwarding to `worker.js`, which hosts a
// LocalCore; the public `Engine` (api.js) wraps either one and speaks OpenAI's shapes.
//
// Contract (`EngineCore`):
//   load(options, onProgress, signal?) -> Promise<LoadInfo>   (signal: cancels the download)
//     options: { model (absolute manifest URL), backend, gpuBudgetMib, concurrency, retries,
//                useCache, wasmUrl, threads ('auto' | n: CPU threads, see threads.js) }
//     LoadInfo: { model, backend, fallback_reason, adapter, supports_images, load_ms, download,
//                 threads (CPU threads of the wasm build), threads_reason (why one, or null),
//                 simd ('relaxed' | 'simd128'), simd_reason (why not relaxed, or null) }
//   generate(request, { onToken, signal }) -> Promise<RawResult>
//     request: { messages: [{ role, content: string, images: ArrayBuffer[] }],
//                params: { max_new_tokens, sampling, stop }, context: 'error' | 'drop_oldest' }
//     onToken(text, tokenId) per token; `signal` stops after the current token
//     RawResult: the wasm result ({ text, ids, finish_reason, timings, image_tokens, backend,
//                fallback_reason, ... }) plus prompt_tokens and dropped_messages
//   loseDevice() -> Promise<boolean>  testing hook: destroy the WebGPU device (callable mid-answer;
//                                 the answer goes on on the CPU); false when there is none
//   threadPoolCheck() -> Promise<{ threads, broadcast, max_abs_diff }>  testing hook: every pool
//                                 thread runs a job, a row-split INT4 matmul vs one chunk
//   reset() -> Promise<void>      forget the KV cache
//   unload() -> Promise<void>     free the engine (the core cannot be used afterwards)
import { loadWasm } from './wasm.js';
import { fetchModel, readCachedShard } from './loader.js';
import { dropOldestTurn } from './messages.js';

/** The prompt does not fit the model's context window (OpenAI's code: context_length_exceeded). */
export class ContextWindowError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ContextWindowError';
    this.code = 'context_length_exceeded';
  }
}

const OVERFLOW = /prompt of (\d+) tokens does not fit the context window of (\d+) tokens/;

export class LocalCore {
  #engine = null;
  #shardsReloaded = 0; // shards the engine asked for again (a lost GPU's weights), from the cache
  #wasm = null; // loadWasm's { glue, threads, threaded, reason }

  async load({ model, backend = 'auto', gpuBudgetMib, concurrency = 3, retries = 2, useCache = true, wasmUrl,
    threads = 'auto', simd = 'auto' } = {}, onProgress, signal) {
    if (this.#engine) throw new Error('this engine is already loaded');
    const t0 = performance.now();
    this.#wasm = await loadWasm({ wasmUrl, threads, simd });
    const wasm = this.#wasm.glue;
    let loader = null;
    try {
      const res = await fetchModel(model, {
        onProgress, concurrency, retries, useCache, signal,
        begin: async ({ manifestText, tokenizerText }) => {
          const opts = { backend, verified: true };
          if (gpuBudgetMib) opts.gpu_budget_mib = gpuBudgetMib;
          loader = await wasm.WasmLoader.begin(manifestText, tokenizerText, opts);
        },
        consume: (shard, bytes) => loader.add_shard(shard.index, bytes),
      });
      onProgress?.({ phase: 'build' });
      const consumed = loader;
      loader = null; // finish() consumes it, whether it resolves or rejects
      const engine = await consumed.finish();
      this.#engine = engine;
      if (useCache && typeof caches !== 'undefined') {
        engine.set_shard_source((index) => {
          this.#shardsReloaded += 1;
          return readCachedShard(res.manifestUrl, res.manifest, index);
        });
      }
      const adapter = engine.adapter_info();
      const info = {
        model: res.manifestUrl,
        backend: engine.backend(),
        fallback_reason: engine.fallback_reason() ?? null,
        adapter: adapter ? JSON.parse(adapter) : null,
        supports_images: engine.supports_images(),
        load_ms: performance.now() - t0,
        download: res.stats,
        threads: this.#wasm.threads,
        threads_reason: this.#wasm.reason,
        simd: this.#wasm.simd,
        simd_reason: this.#wasm.simd_reason,
      };
      onProgress?.({ phase: 'ready', backend: info.backend });
      return info;
    } finally {
      loader?.free();
    }
  }

  #require() {
    if (!this.#engine) throw new Error('the engine is not loaded (or was unloaded)');
    return this.#engine;
  }

  /** One generation over `messages`, dropping the oldest turns first when the policy says so. */
  async generate({ messages, params = {}, context = 'error' }, { onToken, signal } = {}) {
    const engine = this.#require();
    const paramsJson = JSON.stringify(params);
    const t0 = performance.now();
    let ttft = null;
    const keepGoing = (text, id) => {
      ttft ??= performance.now() - t0;
      onToken?.(text, id);
      return !signal?.aborted;
    };
    let msgs = messages;
    for (;;) {
      const images = msgs.flatMap((m) => m.images || []).map((b) => (b instanceof Uint8Array ? b : new Uint8Array(b)));
      const wire = msgs.map((m) => ({ role: m.role, content: m.content, images: (m.images || []).length }));
      const ids = engine.chat_prompt(JSON.stringify(wire));
      let json;
      try {
        json = images.length
          ? await engine.generate_with_images(ids, images, paramsJson, keepGoing)
          : await engine.generate(ids, paramsJson, keepGoing);
      } catch (e) {
        const m = OVERFLOW.exec((e && e.message) || '');
        if (!m) throw e;
        const fewer = context === 'drop_oldest' ? dropOldestTurn(msgs) : null;
        if (fewer) {
          msgs = fewer;
          continue;
        }
        throw new ContextWindowError(`the conversation needs ${m[1]} tokens but the model's context window holds ` +
          `${m[2]}: ${context === 'drop_oldest' ? 'the last message alone does not fit' :
            "start a new conversation, shorten it, or create the engine with context: 'drop_oldest'"}`);
      }
      const r = JSON.parse(json);
      r.prompt_tokens = ids.length - images.length + (r.image_tokens || 0);
      r.dropped_messages = messages.length - msgs.length;
      r.ttft_ms = ttft;
      r.shards_reloaded = this.#shardsReloaded;
      return r;
    }
  }

  async loseDevice() {
    return this.#require().lose_device();
  }

  async threadPoolCheck() {
    this.#require();
    return JSON.parse(this.#wasm.glue.thread_pool_check(1024, 512, 3));
  }

  async reset() {
    this.#require().reset();
  }

  async unload() {
    const engine = this.#engine;
    this.#engine = null;
    engine?.free();
  }
}
