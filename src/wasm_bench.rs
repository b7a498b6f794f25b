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
