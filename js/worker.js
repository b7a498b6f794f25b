// Module Web Worker of the webvlm package: hosts a LocalCore (core.js) for a WorkerCore
// (worker-core.js) in the page. Protocol, every message tagged with the request's `id`:
//   page -> worker  { type: 'load', id, options }
//                   { type: 'generate', id, request }   (image ArrayBuffers transferred)
//                   { type: 'stop', id }                 (id of the generate request)
//                   { type: 'reset' | 'unload' | 'lose_device' | 'thread_pool_check', id }
//   worker -> page  { type: 'progress', id, progress }
//                   { type: 'token', id, text, tokenId }
//                   { type: 'result', id, value }        (LoadInfo, RawResult, a boolean, a check, or null)
//                   { type: 'error', id, error: { name, message, code } }
// Stop works because the wasm generation loop yields to this worker's event loop between
// tokens, so the 'stop' message is handled before the next token.
import { LocalCore } from './core.js';

const core = new LocalCore();
const running = new Map(); // generate id -> AbortController

const post = (msg) => self.postMessage(msg);

async function handle(msg) {
  switch (msg.type) {
    case 'load':
      return core.load(msg.options, (progress) => post({ type: 'progress', id: msg.id, progress }));
    case 'generate': {
      const ctl = new AbortController();
      running.set(msg.id, ctl);
      try {
        const onToken = (text, tokenId) => post({ type: 'token', id: msg.id, text, tokenId });
        return await core.generate(msg.request, { onToken, signal: ctl.signal });
      } finally {
        running.delete(msg.id);
      }
    }
    case 'stop':
      running.get(msg.id)?.abort();
      return undefined;
    case 'lose_device':
      return core.loseDevice();
    case 'thread_pool_check':
      return core.threadPoolCheck();
    case 'reset':
      return core.reset().then(() => null);
    case 'unload':
      return core.unload().then(() => null);
    default:
      throw new Error(`webvlm worker: unknown request type ${JSON.stringify(msg.type)}`);
  }
}

self.onmessage = async (ev) => {
  const msg = ev.data || {};
  try {
    const value = await handle(msg);
    if (msg.type !== 'stop') post({ type: 'result', id: msg.id, value });
  } catch (e) {
    const error = { name: e?.name || 'Error', message: e?.message || String(e), code: e?.code };
    post({ type: 'error', id: msg.id, error });
  }
};
