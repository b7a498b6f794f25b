// One thread of the threaded wasm build's pool (started by threads.js). Receives
// { glueUrl, module, memory }, instantiates that WebAssembly.Module on the shared memory,
// reports { type: 'ready' } and then runs rayon's work loop in `thread_pool_worker()`, which
// blocks (memory.atomic.wait) between jobs and does not return while the pool lives.
self.onmessage = async ({ data }) => {
  let glue;
  try {
    glue = await import(data.glueUrl);
    await glue.default({ module_or_path: data.module, memory: data.memory });
  } catch (e) {
    self.postMessage({ type: 'error', message: String((e && e.message) || e) });
    return;
  }
  self.postMessage({ type: 'ready' });
  glue.thread_pool_worker();
};
