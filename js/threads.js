// Which wasm build the engine runs on, and the thread pool of the threaded one. No import of
// either build here (Node's bench and the tests import this file alone).
//
// Four builds of the same crate: `pkg/` (one thread, SIMD128, runs anywhere), `pkg-threads/`
// (shared WebAssembly.Memory, nightly `-Z build-std` with atomics; the CPU kernels split their
// rows over a pool of Web Workers, see src/wasm_threads.rs), and the same two with relaxed SIMD
// (`pkg-relaxed/`, `pkg-threads-relaxed/`: `i32x4.relaxed_dot_i8x16_i7x16_add_s` in the INT4 and
// ternary kernels), chosen by feature detection (chooseSimd). The threaded one needs SharedArrayBuffer,
// which browsers give only to cross-origin isolated pages (COOP `same-origin` + COEP
// `require-corp` headers, as scripts/serve.mjs sends), and a thread that may block (a worker:
// rayon's `memory.atomic.wait` traps on a page's main thread).
//
// Pool start-up for n threads: the engine's thread is one of them. It calls
// `init_thread_pool(n)` (makes the pool, does not block), then starts n - 1 pool workers
// (thread-worker.js); each instantiates the same module on the same memory, reports ready and
// enters `thread_pool_worker()`, which joins the pool and runs its work loop. The engine's
// thread then waits (without blocking: a worker cannot start while its creator blocks) until
// `thread_count()` is n.

/**
 * A one-function wasm module whose body is `i32x4.relaxed_dot_i8x16_i7x16_add_s` of three
 * constants: it validates exactly where the engine has relaxed SIMD.
 */
function relaxedProbe() {
  const zero = () => [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
  const body = [0x00, ...zero(), ...zero(), ...zero(), 0xfd, 0x93, 0x02, 0x0b]; // no locals ... end
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // code section
  ]);
}

/** Whether this engine runs wasm relaxed SIMD (Chrome 114+, Firefox 120+ on x86/ARM). */
export function relaxedSimdSupported() {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(relaxedProbe());
  } catch {
    return false;
  }
}

/**
 * Pick the SIMD flavour. `requested`: 'auto' (default) = relaxed SIMD where the engine has it,
 * 'relaxed' = the same (never forced where unsupported), 'simd128' = the plain build.
 * Returns { relaxed, reason } (reason: why the plain build, or null).
 * @param {'auto'|'relaxed'|'simd128'|undefined} requested
 * @param {{ supported?: boolean }} [env] override for tests
 */
export function chooseSimd(requested = 'auto', env = {}) {
  if (!['auto', 'relaxed', 'simd128'].includes(requested)) {
    throw new Error(`simd must be 'auto', 'relaxed' or 'simd128', got ${requested}`);
  }
  if (requested === 'simd128') return { relaxed: false, reason: 'simd128 asked for' };
  const supported = env.supported ?? relaxedSimdSupported();
  return supported ? { relaxed: true, reason: null } : { relaxed: false, reason: 'this browser has no wasm relaxed SIMD' };
}

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

/** How long the pool's workers may take to join once started. */
const JOIN_TIMEOUT_MS = 10000;

/**
 * Run on `n` threads with the threaded build's glue module `glue` (already initialised): this
 * thread and `n - 1` pool workers. `spawn({ module, memory, index, glueUrl })` starts one pool
 * worker and resolves to it (something with `terminate()`) once it is ready: the package passes
 * a Web Worker running thread-worker.js, Node's bench a worker_thread. Resolves to the number
 * of threads.
 */
export async function startThreadPool(glue, glueUrl, n, spawn) {
  if (!glue.threads_supported()) throw new Error('this wasm build has no thread support');
  const module = glue.wasm_module();
  const memory = glue.wasm_memory();
  glue.init_thread_pool(n);
  const spawns = Array.from({ length: n - 1 }, (_, index) => spawn({ glueUrl, module, memory, index }));
  const started = await Promise.allSettled(spawns);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // The pool would wait for workers that never come: stop those that started.
    for (const r of started) if (r.status === 'fulfilled') r.value?.terminate?.();
    throw failed.reason;
  }
  const t0 = Date.now();
  while (glue.thread_count() < n) {
    if (Date.now() - t0 > JOIN_TIMEOUT_MS) throw new Error(`thread pool: ${glue.thread_count() - 1} of ${n - 1} workers joined`);
    await new Promise((r) => setTimeout(r, 1));
  }
  return glue.thread_count();
}

/**
 * A `spawn` for startThreadPool that starts each pool thread as the Web Worker `make(name)`
 * returns (thread-worker.js or thread-worker-relaxed.js; the caller writes the literal
 * `new Worker(new URL('./…', import.meta.url), …)` so bundlers emit the file); resolves once it
 * is ready.
 * @param {(name: string) => Worker} make
 */
export function webWorkerSpawner(make) {
  return ({ module, memory, index }) => new Promise((resolve, reject) => {
    const w = make(`webvlm-thread-${index}`);
    w.onmessage = (ev) => {
      if (ev.data?.type === 'ready') resolve(w);
      else reject(new Error(`thread worker ${index}: ${ev.data?.message || 'failed'}`));
    };
    w.onerror = (ev) => reject(new Error(`thread worker ${index}: ${ev.message || 'could not start'}`));
    w.postMessage({ module, memory });
  });
}

/**
 * The body of a pool worker (thread-worker.js and its relaxed twin): on { module, memory },
 * instantiate the glue's module on the shared memory with `init`, report ready, then join the
 * pool (`threadPoolWorker`, which does not return while the pool lives).
 */
export function servePoolWorker(init, threadPoolWorker) {
  self.onmessage = async ({ data }) => {
    try {
      await init({ module_or_path: data.module, memory: data.memory });
    } catch (e) {
      self.postMessage({ type: 'error', message: String((e && e.message) || e) });
      return;
    }
    self.postMessage({ type: 'ready' });
    threadPoolWorker();
  };
}
