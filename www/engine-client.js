// The page's only door to the engine: a thin adapter over the webvlm package (www/webvlm/, a
// copy of dist/ made by scripts/build-package.mjs), which runs the engine in its Web Worker,
// downloads, checks and caches the model (Cache Storage) and picks the wasm build (threads
// when the page is cross-origin isolated). app.js sees the shapes below; everything else is
// the package's API (README "Use it in your app").
//
//   const engine = await openEngine({ model, backend, threads, onProgress });
//     model: the model folder URL (absolute); backend: 'auto' | 'webgpu' | 'cpu';
//     threads: 'auto' | n (CPU threads); onProgress: the package's download progress
//     ({ phase: 'download', loaded, total, bytesPerSecond, etaSeconds, files }, then 'build', 'ready')
//     engine.info: { backend: 'webgpu' | 'cpu', adapter, fallbackReason, loadMs, supportsImages,
//                    threads (CPU threads of the wasm build), threadsReason (why one, if so) }
//   const result = await engine.generate({ messages, params, onToken, signal });
//     messages: [{ role, content: string, images?: Blob[] }] (the whole conversation)
//     params: { max_tokens, temperature, top_p, seed }; onToken(text) per streamed piece;
//     signal: an AbortSignal that stops the answer (it resolves, finish_reason 'aborted')
//     result: the final chunk's `webvlm` extras ({ ids, finish_reason (the engine's), timings:
//       { prefill_ms, prefill_tokens, decode_ms, decode_tokens, decode_tokens_per_s,
//       image_encode_ms, image_encoder, load_ms }, image_tokens, backend, fallback_reason, ttft_ms,
//       dispatches_per_token }) with text (the streamed answer) and prompt_tokens (the whole
//       rendered conversation; timings.prefill_tokens: the part not already in the KV cache)
//   engine.loseDevice() -> Promise<boolean>   (testing hook: destroy the WebGPU device)
//   engine.close()                            (unloads the engine and ends its worker)
//   listCachedModels() -> [{ url (manifest URL), cacheName, bytes, files, complete }];
//   deleteCachedModel(folder or manifest URL) -> whether it was there
import { createEngine, manifestUrlOf } from './webvlm/index.js';

export { listCachedModels, deleteCachedModel } from './webvlm/index.js';

/** The folder URL (ending in `/`) of a model folder or manifest URL. */
export function modelFolder(model, base = location.href) {
  const m = manifestUrlOf(model, base);
  return m.slice(0, m.lastIndexOf('/') + 1);
}

/** A page message as the package takes it: the images first (as LLaVA orders them), then the text. */
function packageMessage({ role, content, images = [] }) {
  if (!images.length) return { role, content };
  return { role, content: [...images.map((image) => ({ type: 'image', image })), { type: 'text', text: content }] };
}

class PageEngine {
  #engine;

  constructor(engine) {
    this.#engine = engine;
    const i = engine.info;
    this.info = { backend: i.backend, adapter: i.adapter, fallbackReason: i.fallback_reason, loadMs: i.load_ms,
      supportsImages: Boolean(i.supports_images), threads: i.threads, threadsReason: i.threads_reason };
  }

  async generate({ messages, params = {}, onToken, signal }) {
    const { max_tokens: maxTokens = 256, temperature = 0, top_p: topP = 1, seed } = params;
    const stream = await this.#engine.chat.completions.create({ messages: messages.map(packageMessage), stream: true,
      max_tokens: maxTokens, temperature, top_p: topP, seed, signal });
    let text = '';
    let last = null;
    for await (const chunk of stream) {
      const piece = chunk.choices[0].delta.content;
      if (piece) {
        text += piece;
        onToken?.(piece);
      }
      last = chunk;
    }
    // Stopped before the engine started on it: no answer, nothing to show.
    if (!last?.webvlm?.timings) throw new DOMException('The answer was stopped before it began.', 'AbortError');
    return { ...last.webvlm, text, prompt_tokens: last.usage.prompt_tokens };
  }

  loseDevice() {
    return this.#engine.debug.loseDevice();
  }

  close() {
    this.#engine.unload().catch(() => {});
  }
}

/** Load the model in folder `model` on `backend` with `threads` CPU threads ('auto': one per
 * logical core when the page is cross-origin isolated, else 1). */
export async function openEngine({ model, backend = 'auto', threads = 'auto', onProgress }) {
  return new PageEngine(await createEngine({ model, backend, threads, onProgress }));
}
