//! Decode-speed benchmark over the engine's own step loop — the path `webvlm generate`, the
//! wasm API and the page take (prefill, then one `Engine::step` per token: forward, sampling,
//! incremental detokenization, stop checks) — so its tokens/s is what a user gets. Greedy;
//! the caller sets the thread count ([`crate::par::set_threads`]) before calling.

use super::{Engine, GenerateParams};
use crate::error::Result;
use crate::model::{Llama, LoadOptions};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct DecodeBench {
    /// Weight formats in use (`f32`, `int4_sym_g64`, ...), most common first.
    pub weights: String,
    pub weight_bytes: usize,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    pub decode_tokens: usize,
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
}

/// Prefill `prompt`, then time up to `n_decode` greedy decode steps (fewer if the model
/// emits EOS first; `decode_tokens` says how many ran). The KV cache starts empty.
pub fn decode_bench(engine: &mut Engine, prompt: &[u32], n_decode: usize) -> Result<DecodeBench> {
    engine.reset();
    let params = GenerateParams { max_new_tokens: n_decode + 1, ..GenerateParams::default() };
    let out = engine.generate(prompt, params, &mut |_| true)?;
    let t = &out.timings;
    Ok(DecodeBench {
        weights: weight_formats(engine.model()),
        weight_bytes: engine.model().weight_bytes(),
        threads: crate::par::threads(),
        prompt_tokens: prompt.len(),
        prefill_ms: t.prefill_ms,
        decode_tokens: t.decode_tokens,
        decode_ms: t.decode_ms,
        decode_tokens_per_s: t.decode_tokens_per_s,
    })
}

/// Distinct weight formats of the linear layers, most common first (`int4_sym_g64+f32`).
pub fn weight_formats(model: &Llama) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut add = |f: String| match counts.iter_mut().find(|c| c.0 == f) {
        Some(c) => c.1 += 1,
        None => counts.push((f, 1)),
    };
    add(model.embed.w.format().name());
    for l in &model.layers {
        for lin in [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down] {
            add(lin.w.format().name());
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts.into_iter().map(|c| c.0).collect::<Vec<_>>().join("+")
}

/// Options echoed in reports: `None` → "as stored".
pub fn describe(opts: &LoadOptions) -> String {
    opts.weights.map_or("as stored".into(), |f| f.name())
}
