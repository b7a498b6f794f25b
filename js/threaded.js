// The threaded wasm build (`pkg-threads/`) with its pool of Web Workers (thread-worker.js),
// imported by wasm.js only when threads.js's chooseBuild says so (and chooseSimd says SIMD128;
// threaded-relaxed.js is the relaxed-SIMD twin). The literal import and
// `new Worker(new URL(..., import.meta.url))` let bundlers emit the build and the pool worker.
// A package built without the threaded build (WEBVLM_NO_THREADS=1) gets, in place of this
// file, one whose import fails with that reason (scripts/build-package.mjs), and runs on one
// thread.
import init, * as glue from './pkg-threads/webvlm.js';
import { startThreadPool, webWorkerSpawner } from './threads.js';

/** Initialise the threaded build and run on `n` threads; resolves to its exports. */
export async function loadThreaded(n) {
  await init();
  await startThreadPool(glue, null, n, webWorkerSpawner((name) =>
    new Worker(new URL('./thread-worker.js', import.meta.url), { type: 'module', name })));
  return glue;
}
