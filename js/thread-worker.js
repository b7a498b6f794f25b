// One thread of the threaded wasm build's pool (started by threaded.js). Receives
// { module, memory }, instantiates that WebAssembly.Module on the shared memory, reports
// { type: 'ready' } and then runs rayon's work loop in `thread_pool_worker()`, which blocks
// (memory.atomic.wait) between jobs and does not return while the pool lives.
import init, { thread_pool_worker } from './pkg-threads/webvlm.js';

self.onmessage = async ({ data }) => {
  try {
    await init({ module_or_path: data.module, memory: data.memory });
  } catch (e) {
    self.postMessage({ type: 'error', message: String((e && e.message) || e) });
    return;
  }
  self.postMessage({ type: 'ready' });
  thread_pool_worker();
};
