//! Decoder tests on tiny random models held in memory: prefill equals token-by-token
//! decoding, the sliding window limits what a position sees, bad input gives errors, and
//! load-time quantization changes formats but not the answer much.

use super::{Llama, LlamaConfig, LoadOptions};
use crate::error::Error;
use crate::io::Tensor;
use crate::quant::WeightFormat;
use std::collections::BTreeMap;

/// Deterministic pseudo-random values in [-scale, scale].
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = crate::sampler::Rng::new(seed);
    (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * scale).collect()
}

fn tiny(layers: usize, window: Option<usize>, tied: bool) -> (LlamaConfig, BTreeMap<String, Tensor>) {
    let v = serde_json::json!({
        "vocab_size": 40, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0,
        "max_position_embeddings": 64, "sliding_window": window, "tie_word_embeddings": tied,
        "rms_norm_eps": 1e-5
    });
    let cfg = LlamaConfig::from_value(&v).unwrap();
    let mut m = BTreeMap::new();
    let mut seed = 1;
    let mut put = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        seed += 1;
        let n = shape.iter().product();
        let data = values(n, seed, scale).into_iter().map(|x| x + offset).collect();
        m.insert(name, Tensor::f32(shape, data));
    };
    put("model.embed_tokens.weight".into(), vec![40, 64], 1.0, 0.0);
    if !tied {
        put("lm_head.weight".into(), vec![40, 64], 0.2, 0.0);
    }
    put("model.norm.weight".into(), vec![64], 0.1, 1.0);
    for l in 0..layers {
        let p = format!("model.layers.{l}.");
        put(format!("{p}input_layernorm.weight"), vec![64], 0.1, 1.0);
        put(format!("{p}post_attention_layernorm.weight"), vec![64], 0.1, 1.0);
        for (n, o, i) in [("q", 64, 64), ("k", 32, 64), ("v", 32, 64), ("o", 64, 64)] {
            put(format!("{p}self_attn.{n}_proj.weight"), vec![o, i], 0.3, 0.0);
        }
        for (n, o, i) in [("gate", 128, 64), ("up", 128, 64), ("down", 64, 128)] {
            put(format!("{p}mlp.{n}_proj.weight"), vec![o, i], 0.2, 0.0);
        }
    }
    (cfg, m)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const TOKENS: [u32; 9] = [3, 17, 5, 39, 0, 22, 22, 8, 31];

#[test]
fn prefill_equals_decode() {
    let (cfg, src) = tiny(2, None, true);
    let m = Llama::load(cfg, &src, "", &LoadOptions::default()).unwrap();
    let mut kv = m.new_cache(64);
    let full = m.forward(&TOKENS, &mut kv).unwrap();
    let mut kv2 = m.new_cache(64);
    let mut step = Vec::new();
    for t in TOKENS {
        step = m.forward(&[t], &mut kv2).unwrap();
    }
    assert_eq!(full.len(), 40);
    assert!(max_diff(&full, &step) < 1e-4, "{}", max_diff(&full, &step));
    // Prefill in two chunks, too.
    let mut kv3 = m.new_cache(64);
    m.forward(&TOKENS[..4], &mut kv3).unwrap();
    let chunked = m.forward(&TOKENS[4..], &mut kv3).unwrap();
    assert!(max_diff(&full, &chunked) < 1e-4);
    assert_eq!(kv3.len(), TOKENS.len());
    // Truncating the cache and re-running gives the same answer.
    kv3.truncate(4);
    assert!(max_diff(&full, &m.forward(&TOKENS[4..], &mut kv3).unwrap()) < 1e-4);
}

#[test]
fn sliding_window_limits_context() {
    // One layer with window 3: the last position sees only the last 3 tokens, and RoPE is
    // relative, so a fresh run on those 3 tokens gives the same logits.
    let (cfg, src) = tiny(1, Some(3), false);
    let m = Llama::load(cfg, &src, "", &LoadOptions::default()).unwrap();
    let full = m.forward(&TOKENS, &mut m.new_cache(64)).unwrap();
    let tail = m.forward(&TOKENS[TOKENS.len() - 3..], &mut m.new_cache(64)).unwrap();
    assert!(max_diff(&full, &tail) < 1e-4, "{}", max_diff(&full, &tail));
    // Without the window the earlier tokens matter.
    let (cfg, src) = tiny(1, None, false);
    let m = Llama::load(cfg, &src, "", &LoadOptions::default()).unwrap();
    let full = m.forward(&TOKENS, &mut m.new_cache(64)).unwrap();
    let tail = m.forward(&TOKENS[TOKENS.len() - 3..], &mut m.new_cache(64)).unwrap();
    assert!(max_diff(&full, &tail) > 1e-3);
}

#[test]
fn bad_input_errors() {
    let (cfg, src) = tiny(1, None, true);
    let m = Llama::load(cfg, &src, "", &LoadOptions::default()).unwrap();
    let mut kv = m.new_cache(8);
    assert!(matches!(m.forward(&[1, 40], &mut kv), Err(Error::Invalid(_))));
    assert!(matches!(m.forward(&TOKENS, &mut kv), Err(Error::ContextOverflow { tokens: 9, limit: 8 })));
    assert_eq!(kv.len(), 0);
    m.forward(&TOKENS[..8], &mut kv).unwrap();
    assert!(matches!(m.forward(&[1], &mut kv), Err(Error::ContextOverflow { .. })));
    // A missing tensor is named.
    let (cfg, mut src) = tiny(1, None, true);
    src.remove("model.layers.0.mlp.up_proj.weight");
    match Llama::load(cfg, &src, "", &LoadOptions::default()) {
        Err(Error::MissingTensor(n)) => assert_eq!(n, "model.layers.0.mlp.up_proj.weight"),
        other => panic!("expected a missing tensor, got {:?}", other.err()),
    }
}

#[test]
fn quantize_on_load() {
    let (cfg, src) = tiny(2, None, false);
    let dense = Llama::load(cfg.clone(), &src, "", &LoadOptions::default()).unwrap();
    let want = dense.forward(&TOKENS, &mut dense.new_cache(64)).unwrap();
    for (fmt, tol) in [
        (WeightFormat::Int8, 0.1),
        (WeightFormat::F16, 0.01),
        (WeightFormat::Int4 { group: 32, sym: false }, 0.6),
        (WeightFormat::Int4 { group: 128, sym: true }, 0.8),
    ] {
        let m = Llama::load(cfg.clone(), &src, "", &LoadOptions { weights: Some(fmt), context_len: None }).unwrap();
        // group 128 does not divide 64 columns: the largest group that does is used instead.
        let expect = super::linear::fit_format(fmt, 64);
        assert_eq!(m.layers[0].q.w.format(), expect);
        assert_eq!(m.embed.w.format(), expect);
        assert!(m.weight_bytes() < dense.weight_bytes());
        let got = m.forward(&TOKENS, &mut m.new_cache(64)).unwrap();
        let d = max_diff(&want, &got);
        assert!(d < tol && d > 0.0, "{}: {d}", fmt.name());
    }
}
