//! Wasm threads: the CPU kernels' pool ([`crate::par`]), with Web Workers as its workers.
//!
//! The CPU work is split over threads exactly as natively: [`crate::kernels`] splits a matmul
//! / GEMV over chunks of output rows and the attention over (row, head) pairs, both with
//! [`crate::par`]. In the single-threaded wasm build (no `atomics` target feature) there are no
//! workers and every job runs on the calling thread; [`thread_count`] is 1.
//!
//! The threaded build (nightly `-Z build-std`, `+atomics,+bulk-memory`: one shared
//! `WebAssembly.Memory`) gives the pool real threads. The engine's own thread (a Web Worker, so
//! it may block) is one of them: for `n` threads JavaScript (`js/threads.js`)
//! 1. calls [`init_thread_pool`]`(n)`, which makes the pool for `n - 1` workers;
//! 2. starts `n - 1` Web Workers; each instantiates this same module on the same shared memory
//!    ([`wasm_module`], [`wasm_memory`]), reports ready, and calls [`thread_pool_worker`], which
//!    joins the pool and runs its work loop (spinning briefly between jobs, then asleep on
//!    `memory.atomic.wait`);
//! 3. waits until [`thread_count`] is `n`.
//!
//! Reference followed: the wasm-bindgen guide's chapter on threads (`wasm_bindgen::module()` /
//! `memory()`, one module instantiated per worker on a shared memory).

use crate::kernels::{self, Isa};
use crate::quant::{QTensor, WeightFormat};
use crate::rng::Rng;
use wasm_bindgen::prelude::*;

/// Threads that run the CPU kernels: 1 in the single-threaded build (and before the pool of
/// the threaded build is started), else the engine's thread plus the workers that joined.
#[wasm_bindgen]
pub fn thread_count() -> usize {
    crate::par::threads()
}

/// Whether this module is the threaded build (shared memory, Web Worker pool available).
#[wasm_bindgen]
pub fn threads_supported() -> bool {
    cfg!(target_feature = "atomics")
}

/// A check of the pool, for the browser test: every pool thread runs a task at the same time
/// (a job of one task per thread whose tasks wait for each other), and an INT4 matmul (`rows` x
/// `cols`, `n` tokens; split over row chunks on the pool as the model's are) equals the same
/// rows computed in one call on this thread. Returns JSON
/// `{ threads, broadcast: [arrival index of each task that met all the others], max_abs_diff }`.
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
    let mut broadcast = broadcast();
    broadcast.sort_unstable();
    let v = serde_json::json!({ "threads": thread_count(), "broadcast": broadcast, "max_abs_diff": max_abs_diff });
    Ok(v.to_string())
}

/// One task per thread, each waiting (up to 5 s) until all have started: only `threads()`
/// distinct threads running at once get there. Returns the arrival order of those that did.
fn broadcast() -> Vec<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let n = thread_count();
    let arrived = AtomicUsize::new(0);
    let met = std::sync::Mutex::new(Vec::new());
    crate::par::for_each(n, |_| {
        let k = arrived.fetch_add(1, SeqCst);
        let t0 = js_sys::Date::now();
        while arrived.load(SeqCst) < n && js_sys::Date::now() - t0 < 5000.0 {
            std::hint::spin_loop();
        }
        if arrived.load(SeqCst) >= n {
            met.lock().unwrap_or_else(|e| e.into_inner()).push(k);
        }
    });
    met.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn js_error(e: crate::error::Error) -> JsError {
    JsError::new(&e.to_string())
}

#[cfg(target_feature = "atomics")]
pub use pool::*;

#[cfg(target_feature = "atomics")]
mod pool {
    use wasm_bindgen::prelude::*;

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

    /// Run in a pool worker: join the pool made by [`init_thread_pool`] and run its work loop
    /// (never returns while the pool lives; returns at once if there is no pool).
    #[wasm_bindgen]
    pub fn thread_pool_worker() {
        crate::par::worker_main();
    }

    /// Make the pool for `n` threads: this (the engine's) thread and `n - 1` workers that
    /// JavaScript starts next, each entering [`thread_pool_worker`]. Does not block.
    #[wasm_bindgen]
    pub fn init_thread_pool(n: usize) -> Result<(), JsValue> {
        if n == 0 {
            return Err(js_sys::Error::new("init_thread_pool: 0 threads").into());
        }
        crate::par::init_external(n - 1);
        Ok(())
    }
}
