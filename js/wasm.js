// The one place the package loads the wasm-bindgen glue (built by scripts/build.sh with
// `--target web`): `pkg/` (one thread) or `pkg-threads/` (a pool of Web Workers; threaded.js),
// picked at run time by threads.js's chooseBuild. Initialised once per JavaScript realm (the
// engine's worker, or the page when the engine runs in-thread); the first load's choice holds
// for the realm. A bundler sees `new URL('webvlm_bg.wasm', import.meta.url)` inside each glue
// and emits the wasm file as an asset.
import init, * as glue from './pkg/webvlm.js';
import { chooseBuild } from './threads.js';

let ready = null;

async function pick({ wasmUrl, threads }) {
  const choice = chooseBuild(threads);
  if (choice.threaded && wasmUrl) {
    choice.threaded = false;
    choice.reason = 'wasmUrl names the one-thread build';
  }
  if (choice.threaded) {
    try {
      const { loadThreaded } = await import('./threaded.js');
      const threaded = await loadThreaded(choice.threads);
      return { glue: threaded, threads: threaded.thread_count(), threaded: true, reason: null };
    } catch (e) {
      choice.reason = `threaded build failed: ${(e && e.message) || e}`;
    }
  }
  await init(wasmUrl ? { module_or_path: wasmUrl } : undefined);
  return { glue, threads: 1, threaded: false, reason: choice.reason };
}

/**
 * Initialise the module; resolves to { glue (its exports: WasmLoader, WasmEngine, ...),
 * threads (CPU threads), threaded, reason (why one thread, or null) }.
 * @param {{ wasmUrl?: string | URL, threads?: number | 'auto' }} [opts] wasmUrl: where the
 *   one-thread build's `.wasm` file is, when not beside the glue (then no threads)
 */
export function loadWasm(opts = {}) {
  ready ??= pick(opts).catch((e) => {
    ready = null;
    throw e;
  });
  return ready;
}
