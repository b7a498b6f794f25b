// The public engine: OpenAI's chat-completions shapes over an EngineCore (core.js), whether
// the core runs in this thread (LocalCore) or in a Web Worker (WorkerCore). Requests are
// queued: one generation runs at a time and the next starts when it ends.
// Reference: OpenAI Chat Completions API (chat.completion and chat.completion.chunk objects).
import { finishReason, generationParams, normalizeMessages } from './messages.js';

const abortError = () => new DOMException('The generation was aborted.', 'AbortError');

function completionId() {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return 'chatcmpl-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** webvlm's own fields of a response or of the final chunk. */
function extras(r) {
  return {
    backend: r.backend,
    timings: r.timings,
    fallback_reason: r.fallback_reason ?? null,
    image_tokens: r.image_tokens || 0,
    dropped_messages: r.dropped_messages || 0,
    finish_reason: r.finish_reason,
    ids: r.ids || [],
    ttft_ms: r.ttft_ms ?? null,
    dispatches_per_token: r.dispatches_per_token ?? null,
    shards_reloaded: r.shards_reloaded || 0,
  };
}

function usage(r) {
  const completion = (r.ids || []).length;
  return { prompt_tokens: r.prompt_tokens, completion_tokens: completion, total_tokens: r.prompt_tokens + completion };
}

/** A push-to-pull queue: an async iterable of the chunks `push` gives, ended by `end`/`fail`. */
export class ChunkStream {
  #queue = [];
  #waiters = [];
  #done = false;
  #error = null;

  /** @param {AbortController} controller aborts the generation (also on `break` out of `for await`) */
  constructor(controller) {
    this.controller = controller;
  }

  push(chunk) {
    const w = this.#waiters.shift();
    if (w) w.resolve({ value: chunk, done: false });
    else this.#queue.push(chunk);
  }

  end(error = null) {
    this.#done = true;
    this.#error = error;
    for (const w of this.#waiters.splice(0)) (error ? w.reject(error) : w.resolve({ value: undefined, done: true }));
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.#queue.length) return Promise.resolve({ value: this.#queue.shift(), done: false });
        if (this.#done) {
          const e = this.#error;
          this.#error = null;
          return e ? Promise.reject(e) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
      },
      return: () => {
        if (!this.#done) this.controller.abort();
        this.#queue.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export class Engine {
  #core;
  #queue = Promise.resolve();
  #context;

  /**
   * @param {object} core an EngineCore (LocalCore or WorkerCore), loaded
   * @param {object} info its LoadInfo
   * @param {{ context?: 'error' | 'drop_oldest' }} [opts]
   */
  constructor(core, info, { context = 'error' } = {}) {
    if (context !== 'error' && context !== 'drop_oldest') {
      throw new TypeError(`context must be 'error' or 'drop_oldest', got ${JSON.stringify(context)}`);
    }
    this.#core = core;
    this.#context = context;
    this.info = info;
    this.model = info.model;
    this.chat = { completions: { create: (body, options) => this.#create(body, options) } };
    /** Testing hooks. `loseDevice()` destroys the WebGPU device now, even mid-answer;
     * `threadPoolCheck()` runs a job on every CPU pool thread (core.js). */
    this.debug = {
      loseDevice: () => this.#core.loseDevice(),
      threadPoolCheck: () => this.#core.threadPoolCheck(),
    };
  }

  /** Where the engine runs now: 'webgpu' | 'cpu' (from the last answer, else from the load). */
  get backend() {
    return this.info.backend;
  }

  /** Run `fn` after every earlier request has finished. */
  #serial(fn) {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #create(body = {}, options = {}) {
    const signal = options.signal ?? body.signal;
    if (signal?.aborted) throw abortError();
    if (body.n != null && body.n !== 1) throw new TypeError('only n = 1 is supported');
    const request = {
      messages: await normalizeMessages(body.messages),
      params: generationParams(body),
      context: body.context ?? this.#context,
    };
    const meta = { id: completionId(), created: Math.floor(Date.now() / 1000), model: body.model ?? this.model };
    return body.stream ? this.#stream(request, meta, signal) : this.#complete(request, meta, signal);
  }

  #complete(request, meta, signal) {
    return this.#serial(async () => {
      if (signal?.aborted) throw abortError();
      const r = await this.#core.generate(request, { signal });
      this.info.backend = r.backend;
      if (r.finish_reason === 'aborted') throw abortError();
      return {
        ...meta,
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: finishReason(r.finish_reason),
          logprobs: null }],
        usage: usage(r),
        webvlm: extras(r),
      };
    });
  }

  #stream(request, meta, signal) {
    const controller = new AbortController();
    if (signal) signal.addEventListener('abort', () => controller.abort(), { once: true });
    const stream = new ChunkStream(controller);
    const chunk = (delta, finish = null) => ({ ...meta, object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
    stream.push(chunk({ role: 'assistant', content: '' }));
    this.#serial(async () => {
      if (controller.signal.aborted) {
        stream.push({ ...chunk({}, 'abort'), webvlm: { finish_reason: 'aborted' } });
        return;
      }
      const onToken = (text) => {
        if (text) stream.push(chunk({ content: text }));
      };
      const r = await this.#core.generate(request, { onToken, signal: controller.signal });
      this.info.backend = r.backend;
      stream.push({ ...chunk({}, finishReason(r.finish_reason)), usage: usage(r), webvlm: extras(r) });
    }).then(() => stream.end(), (e) => stream.end(e));
    return stream;
  }

  /** Forget the conversation's KV cache (the next request prefills from scratch). */
  reset() {
    return this.#serial(() => this.#core.reset());
  }

  /** Free the model (wasm memory, GPU buffers, the worker). The engine is unusable afterwards. */
  unload() {
    return this.#serial(() => this.#core.unload());
  }
}
