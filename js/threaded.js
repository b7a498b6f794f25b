// The threaded wasm build (`pkg-threads/`) with its pool of Web Workers (thread-worker.js),
// imported by wasm.js only when threads.js's chooseBuild says so. The literal import and
// `new Worker(new URL(..., import.meta.url))` let bundlers emit the build and the pool worker.
// A package built without the threaded build (WEBVLM_NO_THREADS=1) gets, in place of this
// file, one whose import fails with that reason (scripts/build-package.mjs), and runs on one
// thread.
import init, * as glue from './pkg-threads/webvlm.js';
import { startThreadPool } from './threads.js';

/** Start one pool worker; resolves once it has instantiated the module on the shared memory. */
function spawnWebWorker({ module, memory, index }) {
  return new Promise((resolve, reject) => {
    const name = `webvlm-thread-${index}`;
    const w = new Worker(new URL('./thread-worker.js', import.meta.url), { type: 'module', name });
    w.onmessage = (ev) => {
      if (ev.data?.type === 'ready') resolve(w);
      else reject(new Error(`thread worker ${index}: ${ev.data?.message || 'failed'}`));
    };
    w.onerror = (ev) => reject(new Error(`thread worker ${index}: ${ev.message || 'could not start'}`));
    w.postMessage({ module, memory });
  });
}

/** Initialise the threaded build and start `n` pool threads; resolves to its exports. */
export async function loadThreaded(n) {
  await init();
  await startThreadPool(glue, null, n, spawnWebWorker);
  return glue;
}
