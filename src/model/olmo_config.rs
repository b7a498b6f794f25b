//! Configs in OLMo's own format (allenai/OLMo `olmo/config.py` `ModelConfig`, as saved by
//! `hf_olmo` and by NousResearch/OLMo-Bitnet-1B / IntelLabs' LLaVaOLMoBitnet1B): `d_model`,
//! `n_heads`, `n_kv_heads`, `n_layers`, `mlp_ratio` / `mlp_hidden_size`, `embedding_size`,
//! `max_sequence_length`, `layer_norm_type` (`default`, `low_precision`, `rms`),
//! `layer_norm_with_affine`, `weight_tying`, `clip_qkv`, `scale_logits`, `rope_theta`, and the
//! BitNet flag `ternary`. Mapped onto [`LlamaConfig`] with [`Names::Olmo`].
//!
//! What OLMo's `OLMoSequentialBlock` computes (olmo/model.py, March 2024 — the version
//! OLMo-Bitnet-1B was trained with): `qkv = att_proj(attn_norm(x))`, clamped to `±clip_qkv`,
//! split `[d_model, kv, kv]`; rotate-half RoPE (theta 10000 unless `rope_theta`); causal SDPA;
//! `x += attn_out(att)`; `h = ff_proj(ff_norm(x))`, `up, gate = h.chunk(2)`,
//! `x += ff_out(silu(gate) * up)`; then `ln_f` and logits `x · wteᵀ` (tied) or `ff_out`. All
//! norms use eps 1e-5.

use super::config::{Act, Arch, LlamaConfig, Names, NormKind};
use crate::error::{Error, Result};
use serde_json::{json, Value};

fn bad(msg: String) -> Error {
    Error::format("config.json", msg)
}

/// Map an OLMo-format config document onto [`LlamaConfig`].
pub fn olmo_native(v: &Value) -> Result<LlamaConfig> {
    let num = |k: &str| v.get(k).and_then(Value::as_f64);
    let int = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
    let flag = |k: &str, d: bool| v.get(k).and_then(Value::as_bool).unwrap_or(d);
    let text = |k: &str, d: &'static str| v.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    let need = |k: &str| int(k).ok_or_else(|| bad(format!("OLMo config has no integer `{k}`")));
    let d = need("d_model")?;
    let heads = need("n_heads")?;
    let kv_heads = if flag("multi_query_attention", false) { 1 } else { int("n_kv_heads").unwrap_or(heads) };
    let vocab =
        int("embedding_size").or(int("vocab_size")).ok_or_else(|| bad("OLMo config has no vocab size".into()))?;
    let hidden = match int("mlp_hidden_size") {
        Some(h) => h,
        None => (num("mlp_ratio").unwrap_or(4.0) * d as f64) as usize,
    };
    for (key, want) in [("activation_type", "swiglu"), ("block_type", "sequential")] {
        let got = text(key, want);
        if got != want {
            return Err(Error::Unsupported(format!("OLMo `{key}: {got}` (only {want})")));
        }
    }
    for (key, what) in [("alibi", "ALiBi"), ("attention_layer_norm", "q/k layer norm")] {
        if flag(key, false) {
            return Err(Error::Unsupported(format!("OLMo {what} (`{key}: true`)")));
        }
    }
    if !flag("rope", true) {
        return Err(Error::Unsupported("OLMo learned position embeddings (`rope: false`)".into()));
    }
    let norm = match text("layer_norm_type", "default").as_str() {
        "default" | "low_precision" => NormKind::Layer,
        "rms" => NormKind::Rms,
        other => return Err(Error::Unsupported(format!("OLMo layer_norm_type `{other}`"))),
    };
    // OLMo-Bitnet-1B's config says `ternary: true`; without the key, a model type or
    // architecture naming BitNet (IntelLabs' `LlavaOLMoBitnet1BForCausalLM`) means ternary too.
    let named_bitnet = std::iter::once(text("model_type", ""))
        .chain(
            v.get("architectures")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(String::from)),
        )
        .any(|s| s.to_ascii_lowercase().contains("bitnet"));
    let ternary = flag("ternary", named_bitnet);
    let hf = json!({
        "model_type": text("model_type", "olmo"),
        "vocab_size": vocab,
        "hidden_size": d,
        "intermediate_size": hidden / 2, // SwiGLU halves ff_proj's output
        "num_hidden_layers": need("n_layers")?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "rope_theta": num("rope_theta").unwrap_or(10000.0),
        "max_position_embeddings": int("max_sequence_length").unwrap_or(2048),
        "tie_word_embeddings": flag("weight_tying", true),
        "clip_qkv": num("clip_qkv"),
        "hidden_act": "silu",
    });
    if hidden % 2 != 0 {
        return Err(bad(format!("OLMo MLP hidden size {hidden} is odd (SwiGLU splits it in two)")));
    }
    let mut c: LlamaConfig = serde_json::from_value(hf).map_err(|e| bad(e.to_string()))?;
    c.arch = Arch {
        norm,
        norm_eps: Some(num("layer_norm_eps").unwrap_or(1e-5)),
        act: Act::Silu,
        names: Names::Olmo,
        ternary,
        bitlinear_norm: ternary,
        scale_logits: flag("scale_logits", false),
        ..Arch::default()
    };
    c.check()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config of NousResearch/OLMo-Bitnet-1B (values as published).
    #[test]
    fn olmo_bitnet_1b_config() {
        let v = json!({
            "activation_type": "swiglu", "alibi": false, "attention_layer_norm": false, "block_type": "sequential",
            "clip_qkv": null, "d_model": 2048, "embedding_size": 50304, "include_bias": false,
            "layer_norm_type": "rms", "layer_norm_with_affine": true, "max_sequence_length": 2048,
            "mlp_hidden_size": null, "mlp_ratio": 8, "model_type": "olmo", "multi_query_attention": false,
            "n_heads": 16, "n_layers": 16, "rope": true, "scale_logits": false, "ternary": true,
            "vocab_size": 50280, "weight_tying": true
        });
        let c = LlamaConfig::from_value(&v).unwrap();
        assert_eq!((c.hidden_size, c.intermediate_size, c.vocab_size), (2048, 8192, 50304));
        assert_eq!((c.n_heads(), c.n_kv_heads(), c.head_dim(), c.num_hidden_layers), (16, 16, 128, 16));
        assert_eq!((c.arch.norm, c.arch.names, c.arch.ternary, c.norm_eps()), (NormKind::Rms, Names::Olmo, true, 1e-5));
        assert!(c.tie_word_embeddings && c.clip_qkv.is_none());
    }

    #[test]
    fn unsupported_variants_are_errors() {
        let base = json!({"d_model": 64, "n_heads": 4, "n_layers": 1, "vocab_size": 10});
        assert!(LlamaConfig::from_value(&base).is_ok());
        for (k, val) in [("alibi", json!(true)), ("block_type", json!("llama")), ("activation_type", json!("gelu"))] {
            let mut v = base.clone();
            v[k] = val;
            let e = LlamaConfig::from_value(&v).unwrap_err().to_string();
            assert!(e.contains(k), "{k}: {e}");
        }
        let mut v = base.clone();
        v["architectures"] = json!(["LlavaOLMoBitnet1BForCausalLM"]);
        assert!(LlamaConfig::from_value(&v).unwrap().arch.ternary);
        v["ternary"] = json!(false);
        assert!(!LlamaConfig::from_value(&v).unwrap().arch.ternary);
        let e = LlamaConfig::from_value(&json!({"d_model": 64})).unwrap_err().to_string();
        assert!(e.contains("n_heads"), "{e}");
    }
}
