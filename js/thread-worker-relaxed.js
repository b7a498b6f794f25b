// thread-worker.js for the threaded relaxed-SIMD build (started by threaded-relaxed.js).
import init, { thread_pool_worker } from './pkg-threads-relaxed/webvlm.js';
import { servePoolWorker } from './threads.js';

servePoolWorker(init, thread_pool_worker);
