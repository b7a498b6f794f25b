//! Decode-speed benchmark: prefill a prompt, then greedily decode token by token and time
//! the decode steps alone (the number `webvlm bench --model` reports). Native only; the
//! caller picks the thread count by running this inside a rayon pool.

use super::{Llama, LoadOptions};
use crate::error::Result;
use crate::sampler::argmax;
use serde::Serialize;
use std::time::Instant;

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

/// Time `n_decode` greedy decode steps after prefilling `prompt`.
pub fn decode_bench(model: &Llama, prompt: &[u32], n_decode: usize) -> Result<DecodeBench> {
    let mut kv = model.new_cache(prompt.len() + n_decode + 1);
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, &mut kv)?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    for _ in 0..n_decode {
        let next = argmax(&logits);
        logits = model.forward(&[next], &mut kv)?;
    }
    let decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    Ok(DecodeBench {
        weights: weight_formats(model),
        weight_bytes: model.weight_bytes(),
        threads: rayon::current_num_threads(),
        prompt_tokens: prompt.len(),
        prefill_ms,
        decode_tokens: n_decode,
        decode_ms,
        decode_tokens_per_s: n_decode as f64 / (decode_ms / 1e3),
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
