// The one place the package loads the wasm-bindgen glue (built by scripts/build.sh with
// `--target web`): `pkg/` (one thread) or `pkg-threads/` (a pool of Web Workers; threaded.js),
// each also with relaxed SIMD (`pkg-relaxed/` via relaxed.js, `pkg-threads-relaxed/` via
// threaded-relaxed.js), picked at run time by threads.js's chooseBuild and chooseSimd. Initialised once per JavaScript realm (the
// engine's worker, or the page when the engine runs in-thread); the first load's choice holds
// for the realm. A bundler sees `new URL('webvlm_bg.wasm', import.meta.url)` inside each glue
// and emits the wasm file as an asset.
import init, * as glue from './pkg/webvlm.js';
import { chooseBuild, chooseSimd } from './threads.js';

let ready = null;

async function pick({ wasmUrl, threads, simd }) {
  const choice = chooseBuild(threads);
  const flavour = chooseSimd(simd);
  if (wasmUrl) {
    if (choice.threaded) [choice.threaded, choice.reason] = [false, 'wasmUrl names the one-thread build'];
    if (flavour.relaxed) [flavour.relaxed, flavour.reason] = [false, 'wasmUrl names the SIMD128 build'];
  }
  const simdInfo = () => ({ simd: flavour.relaxed ? 'relaxed' : 'simd128', simd_reason: flavour.reason });
  if (choice.threaded) {
    try {
      const { loadThreaded } = flavour.relaxed ? await import('./threaded-relaxed.js') : await import('./threaded.js');
      const threaded = await loadThreaded(choice.threads);
      return { glue: threaded, threads: threaded.thread_count(), threaded: true, reason: null, ...simdInfo() };
    } catch (e) {
      choice.reason = `threaded build failed: ${(e && e.message) || e}`;
    }
  }
  if (flavour.relaxed) {
    try {
      const relaxed = await import('./relaxed.js');
      await relaxed.default();
      return { glue: relaxed, threads: 1, threaded: false, reason: choice.reason, ...simdInfo() };
    } catch (e) {
      [flavour.relaxed, flavour.reason] = [false, `relaxed-SIMD build failed: ${(e && e.message) || e}`];
    }
  }
  await init(wasmUrl ? { module_or_path: wasmUrl } : undefined);
  return { glue, threads: 1, threaded: false, reason: choice.reason, ...simdInfo() };
}

/**
 * Initialise the module; resolves to { glue (its exports: WasmLoader, WasmEngine, ...),
 * threads (CPU threads), threaded, reason (why one thread, or null), simd ('relaxed' |
 * 'simd128'), simd_reason (why not relaxed, or null) }.
 * @param {{ wasmUrl?: string | URL, threads?: number | 'auto', simd?: 'auto'|'relaxed'|'simd128' }} [opts]
 *   wasmUrl: where the one-thread SIMD128 build's `.wasm` file is, when not beside the glue
 *   (then that build)
 */
export function loadWasm(opts = {}) {
  ready ??= pick(opts).catch((e) => {
    ready = null;
    throw e;
  });
  return ready;
}
