//! wasm export of the vision-tower benchmark ([`crate::bench_vision`]): builds the CLIP
//! ViT-L/14-336 tower of LLaVA-1.5-7B from random weights inside wasm memory and times one
//! image encode on the wasm thread (on the pool's threads in the threaded build, see
//! [`crate::wasm_threads`]). Called by `scripts/bench-wasm.mjs --vision`.

use crate::bench_vision::{llava15_layers, llava15_vit_l14_336, time_encode, tower_for};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function bench_now_ms() {
  return globalThis.performance ? globalThis.performance.now() : Date.now();
}
"#)]
extern "C" {
    fn bench_now_ms() -> f64;
}

/// Encode a 336x336 image through the 23 layers LLaVA-1.5 runs, with linear weights in
/// `format` (`int8`, `w8a8` or `f32`), `runs` times (the best counts). `layers` = 0 runs the 23;
/// a smaller count runs fewer (for tight memory). Returns a JSON `VisionRow` (threads: the
/// pool's size, 1 in the single-threaded build).
#[wasm_bindgen]
pub fn bench_vision(format: &str, runs: usize, layers: usize) -> Result<String, JsError> {
    let dims = llava15_vit_l14_336();
    let n = if layers == 0 { llava15_layers(&dims) } else { layers };
    let t0 = bench_now_ms();
    let tower = tower_for(format, &dims, n).map_err(|e| JsError::new(&e.to_string()))?;
    let build_ms = bench_now_ms() - t0;
    let row = time_encode(&tower, crate::wasm_threads::thread_count(), runs, &bench_now_ms)
        .map_err(|e| JsError::new(&e.to_string()))?;
    let mut v = serde_json::to_value(&row).map_err(|e| JsError::new(&e.to_string()))?;
    v["build_ms"] = serde_json::json!(build_ms);
    Ok(v.to_string())
}

/// The CPU kernels in wasm: `y = W·x` for `format` (`int4_sym_g64`, `int8`, `ternary`, `f32`,
/// ... — any [`crate::quant::WeightFormat`] name) at `rows` x `cols`, for `n` tokens (1: the
/// decode GEMV; more: the prefill GEMM), `reps` timed passes over enough copies of the weights
/// to pass ~96 MiB (several times a last-level cache, so a GEMV reads from memory), the best
/// counting. Returns JSON `{ format, rows, cols, n, threads, copies, ms_per_product,
/// weight_gbs, gops }` (gops: 2 operations per multiply-add).
#[wasm_bindgen]
pub fn bench_kernel(format: &str, rows: usize, cols: usize, n: usize, reps: usize) -> Result<String, JsError> {
    use crate::quant::{QTensor, WeightFormat};
    let err = |e: crate::error::Error| JsError::new(&e.to_string());
    let fmt = WeightFormat::parse(format).map_err(err)?;
    let mut rng = crate::rng::Rng::new(0x5eed);
    let proto = QTensor::quantize(&rng.normals(rows * cols, 0.0), rows, cols, fmt).map_err(err)?;
    let copies = if n == 1 { (96usize << 20).div_ceil(proto.nbytes().max(1)).max(1) } else { 1 };
    let ws: Vec<QTensor> = (0..copies).map(|_| proto.clone()).collect();
    let x = rng.normals(n * cols, 0.0);
    let mut y = vec![0f32; n * rows];
    let mut best = f64::MAX;
    for rep in 0..reps.max(1) + 1 {
        let t0 = bench_now_ms();
        for w in &ws {
            crate::kernels::matmul(w, &x, n, &mut y);
        }
        if rep > 0 {
            best = best.min((bench_now_ms() - t0) / copies as f64); // the first pass warms up
        }
    }
    let v = serde_json::json!({
        "format": fmt.name(), "rows": rows, "cols": cols, "n": n, "copies": copies,
        "threads": crate::wasm_threads::thread_count(), "ms_per_product": best,
        "weight_gbs": proto.nbytes() as f64 / (best / 1e3) / 1e9,
        "gops": 2.0 * (rows * cols * n) as f64 / (best / 1e3) / 1e9,
    });
    Ok(v.to_string())
}
