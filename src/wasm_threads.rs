//! Wasm threads: the CPU kernels' rayon global pool, with Web Workers as its threads.
//!
//! The CPU work is split over threads exactly as natively: [`crate::kernels`] splits a matmul
//! / GEMV over chunks of output rows and the attention splits over heads, both with rayon's
//! global pool. In the single-threaded wasm build (no `atomics` target feature) that pool falls
//! back to the calling thread, so nothing changes there; [`thread_count`] is 1.
//!
//! The threaded build (nightly `-Z build-std`, `+atomics,+bulk-memory`: one shared
//! `WebAssembly.Memory`) gives the pool real threads. A Web Worker cannot start while the
//! worker that created it blocks, and rayon's `build_global` blocks until every pool thread has
//! started, so the start-up runs in two steps (`www/threads.js` drives them):
//! 1. JavaScript starts `n` Web Workers; each instantiates this same module on the same shared
//!    memory ([`wasm_module`], [`wasm_memory`]), reports ready, and calls [`thread_pool_worker`],
//!    which blocks until a rayon thread is handed to it and then runs that thread's work loop.
//! 2. Once all are ready, [`init_thread_pool`] builds the global pool with a spawn handler that
//!    hands each rayon thread to one waiting worker, through a mutex-and-condvar queue.
//!
//! The engine's own thread (a Web Worker too, so it may block: `memory.atomic.wait`) then
//! submits work to the pool and waits for it. The pool must be built before anything calls
//! rayon (rayon would otherwise fall back to one thread for good).
//!
//! Reference followed: rayon-core's `ThreadPoolBuilder::spawn_handler` / `ThreadBuilder::run`
//! docs, and the wasm-bindgen guide's chapter on threads (`wasm_bindgen::module()` /
//! `memory()`, one module instantiated per worker on a shared memory).

use crate::kernels::{self, Isa};
use crate::quant::{QTensor, WeightFormat};
use crate::rng::Rng;
use wasm_bindgen::prelude::*;

/// Threads in the CPU kernels' pool: 1 in the single-threaded build (and before the pool of
/// the threaded build is started), else the pool size.
#[wasm_bindgen]
pub fn thread_count() -> usize {
    rayon::current_num_threads()
}

/// Whether this module is the threaded build (shared memory, Web Worker pool available).
#[wasm_bindgen]
pub fn threads_supported() -> bool {
    cfg!(target_feature = "atomics")
}

/// A check of the pool, for the browser test: every pool thread runs a job
/// (`rayon::broadcast`, which waits for each thread in turn), and an INT4 matmul (`rows` x
/// `cols`, `n` tokens; split over row chunks on the pool as the model's are) equals the same
/// rows computed in one call on this thread. Returns JSON
/// `{ threads, broadcast: [thread index per pool thread], max_abs_diff }`.
#[wasm_bindgen]
pub fn thread_pool_check(rows: usize, cols: usize, n: usize) -> Result<String, JsError> {
    let fmt = WeightFormat::Int4 { group: 64, sym: true };
    let mut rng = Rng::new(7);
    let w = QTensor::quantize(&rng.normals(rows * cols, 0.0), rows, cols, fmt).map_err(js_error)?;
    let x = rng.normals(n * cols, 0.0); // [n, cols]
    let mut split = vec![0f32; n * rows]; // [n, rows]
    kernels::matmul(&w, &x, n, &mut split);
    let mut whole = vec![0f32; rows * n]; // [rows, n]: one chunk, no pool
    kernels::rows_on(Isa::best(), &w, &kernels::prepare(&w, &x, n), 0, &mut whole);
    let max_abs_diff = (0..rows * n).map(|i| (split[(i % n) * rows + i / n] - whole[i]).abs()).fold(0f32, f32::max);
    let mut broadcast = rayon::broadcast(|ctx| ctx.index());
    broadcast.sort_unstable();
    let v = serde_json::json!({ "threads": thread_count(), "broadcast": broadcast, "max_abs_diff": max_abs_diff });
    Ok(v.to_string())
}

fn js_error(e: crate::error::Error) -> JsError {
    JsError::new(&e.to_string())
}

#[cfg(target_feature = "atomics")]
pub use pool::*;

#[cfg(target_feature = "atomics")]
mod pool {
    use rayon::ThreadBuilder;
    use std::sync::{Condvar, Mutex};
    use wasm_bindgen::prelude::*;

    /// Rayon threads built by [`init_thread_pool`], waiting for a worker to run them.
    static HANDOFF: Mutex<Vec<ThreadBuilder>> = Mutex::new(Vec::new());
    static HANDED: Condvar = Condvar::new();

    /// This module's `WebAssembly.Module`, for the pool's workers to instantiate.
    #[wasm_bindgen]
    pub fn wasm_module() -> JsValue {
        wasm_bindgen::module()
    }

    /// The shared `WebAssembly.Memory`, for the pool's workers to instantiate the module on.
    #[wasm_bindgen]
    pub fn wasm_memory() -> JsValue {
        wasm_bindgen::memory()
    }

    /// Run in a pool worker: wait for a rayon thread and run its work loop (never returns
    /// while the pool lives).
    #[wasm_bindgen]
    pub fn thread_pool_worker() {
        let thread = {
            let mut queue = HANDOFF.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(t) = queue.pop() {
                    break t;
                }
                queue = HANDED.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        thread.run();
    }

    /// Build rayon's global pool with `n` threads, each run by a worker already blocked in
    /// [`thread_pool_worker`]; returns once every thread has started.
    #[wasm_bindgen]
    pub fn init_thread_pool(n: usize) -> Result<(), JsValue> {
        if n == 0 {
            return Err(js_sys::Error::new("init_thread_pool: 0 threads").into());
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("webvlm-thread-{i}"))
            .spawn_handler(|thread| {
                HANDOFF.lock().unwrap_or_else(|e| e.into_inner()).push(thread);
                HANDED.notify_one();
                Ok(())
            })
            .build_global()
            .map_err(|e| js_sys::Error::new(&format!("init_thread_pool: {e}")).into())
    }
}
