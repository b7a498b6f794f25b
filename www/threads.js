// Which wasm build the engine worker loads, and the thread pool of the threaded one.
//
// Two builds of the same crate: `pkg/` (one thread, runs anywhere) and `pkg-threads/` (shared
// WebAssembly.Memory, nightly `-Z build-std` with atomics; the CPU kernels split their rows over
// a pool of Web Workers, see src/wasm_threads.rs). The threaded one needs SharedArrayBuffer,
// which browsers give only to cross-origin isolated pages (COOP `same-origin` + COEP
// `require-corp` headers, as scripts/serve.mjs sends).
//
// Pool start-up: every pool worker (thread-worker.js) instantiates the same module on the same
// memory, reports ready and blocks in `thread_pool_worker()`; only then does the engine's
// thread call `init_thread_pool(n)`, which hands one rayon thread to each (a worker cannot start
// while its creator blocks, so the order matters).

/** Most pool threads we start, whatever is asked for. */
export const MAX_THREADS = 64;

/**
 * Pick the build. `requested`: undefined / 0 / 'auto' = one thread per logical core
 * (`navigator.hardwareConcurrency`); 1 = the single-threaded build; n > 1 = n pool threads.
 * Returns { threaded, threads, reason } (reason: why the single-threaded build, or null).
 * @param {number|string|undefined} requested
 * @param {{ isolated?: boolean, cores?: number }} [env] overrides for tests
 */
export function chooseBuild(requested, env = {}) {
  const isolated = env.isolated ?? (globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function');
  const cores = env.cores ?? (globalThis.navigator?.hardwareConcurrency || 1);
  const auto = requested === undefined || requested === null || requested === 0 || requested === 'auto';
  const n = auto ? cores : Number(requested);
  if (!Number.isInteger(n) || n < 1) throw new Error(`threads must be 'auto' or a positive integer, got ${requested}`);
  const threads = Math.min(n, MAX_THREADS);
  if (threads === 1) return { threaded: false, threads: 1, reason: auto ? 'one logical core' : 'one thread asked for' };
  if (!isolated) {
    return { threaded: false, threads: 1, reason: 'the page is not cross-origin isolated (no SharedArrayBuffer)' };
  }
  return { threaded: true, threads, reason: null };
}

/** Start one pool worker (Web Worker running thread-worker.js); resolves once it is ready. */
function spawnWebWorker({ glueUrl, module, memory, index }) {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./thread-worker.js', import.meta.url), { type: 'module', name: `webvlm-thread-${index}` });
    w.onmessage = (ev) => {
      if (ev.data?.type === 'ready') resolve(w);
      else reject(new Error(`thread worker ${index}: ${ev.data?.message || 'failed'}`));
    };
    w.onerror = (ev) => reject(new Error(`thread worker ${index}: ${ev.message || 'could not start'}`));
    w.postMessage({ glueUrl, module, memory });
  });
}

/**
 * Start `n` pool threads for the threaded build's glue module `glue` (already initialised,
 * loaded from `glueUrl`). `spawn` starts one pool worker and resolves to it (something with
 * `terminate()`) once it is ready (default: a Web Worker; Node's bench passes a worker_threads
 * one). Resolves to the pool size.
 */
export async function startThreadPool(glue, glueUrl, n, spawn = spawnWebWorker) {
  if (!glue.threads_supported()) throw new Error('this wasm build has no thread support');
  const module = glue.wasm_module();
  const memory = glue.wasm_memory();
  const started = await Promise.allSettled(Array.from({ length: n }, (_, index) => spawn({ glueUrl, module, memory, index })));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // Those that started wait for a rayon thread that will never come: stop them.
    for (const r of started) if (r.status === 'fulfilled') r.value?.terminate?.();
    throw failed.reason;
  }
  glue.init_thread_pool(n);
  return glue.thread_count();
}

/**
 * Load and initialise the wasm glue: the threaded build with its pool when `chooseBuild` says
 * so (falling back to the single-threaded build, with the reason, if that fails), else `pkg/`.
 * Resolves to { glue, threads, threaded, reason }.
 */
export async function loadWasm(requested) {
  const pick = chooseBuild(requested);
  if (pick.threaded) {
    const glueUrl = new URL('./pkg-threads/webvlm.js', import.meta.url).href;
    try {
      const glue = await import(glueUrl);
      await glue.default();
      const threads = await startThreadPool(glue, glueUrl, pick.threads);
      return { glue, threads, threaded: true, reason: null };
    } catch (e) {
      pick.reason = `threaded build failed: ${(e && e.message) || e}`;
    }
  }
  const glue = await import(new URL('./pkg/webvlm.js', import.meta.url).href);
  await glue.default();
  return { glue, threads: 1, threaded: false, reason: pick.reason };
}
