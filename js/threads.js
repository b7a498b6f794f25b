// Which wasm build the engine runs on, and the thread pool of the threaded one. No import of
// either build here (Node's bench and the tests import this file alone).
//
// Two builds of the same crate: `pkg/` (one thread, runs anywhere) and `pkg-threads/` (shared
// WebAssembly.Memory, nightly `-Z build-std` with atomics; the CPU kernels split their rows over
// a pool of Web Workers, see src/wasm_threads.rs). The threaded one needs SharedArrayBuffer,
// which browsers give only to cross-origin isolated pages (COOP `same-origin` + COEP
// `require-corp` headers, as scripts/serve.mjs sends), and a thread that may block (a worker:
// rayon's `memory.atomic.wait` traps on a page's main thread).
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
 * @param {{ isolated?: boolean, cores?: number, canBlock?: boolean }} [env] overrides for tests
 */
export function chooseBuild(requested, env = {}) {
  const isolated = env.isolated ?? (globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function');
  const cores = env.cores ?? (globalThis.navigator?.hardwareConcurrency || 1);
  // A window's main thread may not block (Atomics.wait throws there); workers may.
  const canBlock = env.canBlock ?? typeof globalThis.document === 'undefined';
  const auto = requested === undefined || requested === null || requested === 0 || requested === 'auto';
  const n = auto ? cores : Number(requested);
  if (!Number.isInteger(n) || n < 1) throw new Error(`threads must be 'auto' or a positive integer, got ${requested}`);
  const threads = Math.min(n, MAX_THREADS);
  if (threads === 1) return { threaded: false, threads: 1, reason: auto ? 'one logical core' : 'one thread asked for' };
  if (!isolated) {
    return { threaded: false, threads: 1, reason: 'the page is not cross-origin isolated (no SharedArrayBuffer)' };
  }
  if (!canBlock) {
    const reason = "the in-thread engine runs on the page's main thread, which may not block";
    return { threaded: false, threads: 1, reason };
  }
  return { threaded: true, threads, reason: null };
}

/**
 * Start `n` pool threads for the threaded build's glue module `glue` (already initialised).
 * `spawn({ module, memory, index, glueUrl })` starts one pool worker and resolves to it
 * (something with `terminate()`) once it is ready: the package passes a Web Worker running
 * thread-worker.js, Node's bench a worker_thread. Resolves to the pool size.
 */
export async function startThreadPool(glue, glueUrl, n, spawn) {
  if (!glue.threads_supported()) throw new Error('this wasm build has no thread support');
  const module = glue.wasm_module();
  const memory = glue.wasm_memory();
  const spawns = Array.from({ length: n }, (_, index) => spawn({ glueUrl, module, memory, index }));
  const started = await Promise.allSettled(spawns);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // Those that started wait for a rayon thread that will never come: stop them.
    for (const r of started) if (r.status === 'fulfilled') r.value?.terminate?.();
    throw failed.reason;
  }
  glue.init_thread_pool(n);
  return glue.thread_count();
}
