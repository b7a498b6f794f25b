// One pool thread of the threaded wasm build under Node (worker_threads), for
// scripts/bench-wasm.mjs --threads N: the Node twin of js/thread-worker.js. Instantiates the
// module on the shared memory from workerData, reports ready, then joins the CPU pool and runs its work loop.
import { parentPort, workerData } from 'node:worker_threads';

let glue;
try {
  glue = await import(workerData.glueUrl);
  await glue.default({ module_or_path: workerData.module, memory: workerData.memory });
} catch (e) {
  parentPort.postMessage({ type: 'error', message: String((e && e.message) || e) });
  process.exit(1);
}
parentPort.postMessage({ type: 'ready' });
glue.thread_pool_worker();
