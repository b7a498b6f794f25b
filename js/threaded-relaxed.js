// threaded.js for the threaded relaxed-SIMD build (`pkg-threads-relaxed/`, pool workers
// running thread-worker-relaxed.js); replaced like threaded.js when that build is absent.
import init, * as glue from './pkg-threads-relaxed/webvlm.js';
import { startThreadPool, webWorkerSpawner } from './threads.js';

/** Initialise the threaded relaxed-SIMD build and run on `n` threads; resolves to its exports. */
export async function loadThreaded(n) {
  await init();
  await startThreadPool(glue, null, n, webWorkerSpawner((name) =>
    new Worker(new URL('./thread-worker-relaxed.js', import.meta.url), { type: 'module', name })));
  return glue;
}
