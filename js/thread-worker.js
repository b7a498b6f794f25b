// One thread of the threaded wasm build's pool (started by threaded.js): instantiates the
// module on the shared memory it is sent, reports ready, then joins the CPU pool and runs its
// work loop (spinning briefly between jobs, then blocked in memory.atomic.wait) for good.
import init, { thread_pool_worker } from './pkg-threads/webvlm.js';
import { servePoolWorker } from './threads.js';

servePoolWorker(init, thread_pool_worker);
