//! An HF-style `config.json` synthesized from GGUF metadata (`{arch}.block_count`, ...).
//!
//! Key names follow llama.cpp's `gguf-py/gguf/constants.py` (`Keys.LLM`, `Keys.Attention`,
//! `Keys.Rope`); the mapping onto HF fields follows transformers' `GGUF_CONFIG_MAPPING` in
//! `integrations/ggml.py`. The result parses with [`crate::model::config::LlamaConfig`].

use super::reader::{GgufHeader, MetaValue};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};

/// An `f32` metadata value as the shortest decimal that round-trips through f32, so
/// `1e-5` stored as f32 reads back as `1e-5` rather than `9.999999747378752e-6`.
fn f32_as_decimal(v: f32) -> f64 {
    format!("{v}").parse().unwrap_or(v as f64)
}

fn num(v: &MetaValue) -> Option<Value> {
    match *v {
        MetaValue::F32(f) => Some(json!(f32_as_decimal(f))),
        MetaValue::F64(f) => Some(json!(f)),
        _ => v.as_i64().map(|i| json!(i)),
    }
}

struct Meta<'a> {
    h: &'a GgufHeader,
    arch: &'a str,
    what: &'a str,
}

impl Meta<'_> {
    fn opt(&self, key: &str) -> Option<Value> {
        self.h.get(&format!("{}.{key}", self.arch)).and_then(num)
    }
    fn req(&self, key: &str) -> Result<Value> {
        self.opt(key).ok_or_else(|| {
            Error::format(self.what, format!("metadata `{}.{key}` is missing or not a number", self.arch))
        })
    }
}

/// Build the config for `arch` (already checked to be a known architecture).
pub fn synthesize(h: &GgufHeader, arch: &str, what: &str) -> Result<Value> {
    let m = Meta { h, arch, what };
    let mut c = Map::new();
    c.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    c.insert("model_type".into(), json!(arch));
    let vocab = match m.opt("vocab_size") {
        Some(v) => v,
        None => {
            let toks = h.get("tokenizer.ggml.tokens").and_then(|t| t.as_array());
            json!(toks.map(|t| t.len()).ok_or_else(|| Error::format(
                what,
                format!("neither `{arch}.vocab_size` nor `tokenizer.ggml.tokens` gives the vocabulary size")
            ))?)
        }
    };
    c.insert("vocab_size".into(), vocab);
    c.insert("hidden_size".into(), m.req("embedding_length")?);
    c.insert("intermediate_size".into(), m.req("feed_forward_length")?);
    c.insert("num_hidden_layers".into(), m.req("block_count")?);
    let heads = m.req("attention.head_count")?;
    let kv = m.opt("attention.head_count_kv").unwrap_or_else(|| heads.clone());
    c.insert("num_attention_heads".into(), heads);
    c.insert("num_key_value_heads".into(), kv);
    if let Some(hd) = m.opt("attention.key_length") {
        c.insert("head_dim".into(), hd);
    }
    let eps = m.opt("attention.layer_norm_rms_epsilon").unwrap_or(json!(1e-6));
    c.insert("rms_norm_eps".into(), eps);
    c.insert("rope_theta".into(), m.opt("rope.freq_base").unwrap_or(json!(10000.0)));
    if let Some(ctx) = m.opt("context_length") {
        c.insert("max_position_embeddings".into(), ctx);
    }
    if let Some(rs) = rope_scaling(&m) {
        c.insert("rope_scaling".into(), rs);
    }
    let tied = h.tensor("output.weight").is_none();
    c.insert("tie_word_embeddings".into(), json!(tied));
    for (key, field) in [("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")] {
        if let Some(v) = h.get(&format!("tokenizer.ggml.{key}")).and_then(num) {
            c.insert(field.into(), v);
        }
    }
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("torch_dtype".into(), json!("float32"));
    Ok(Value::Object(c))
}

/// `rope_scaling` from `{arch}.rope.scaling.*` (`type` linear / yarn; `none` gives nothing).
/// llama3-style scaling has no metadata keys (llama.cpp stores a `rope_freqs` tensor), so it
/// is not reconstructed here.
fn rope_scaling(m: &Meta) -> Option<Value> {
    let ty = m.h.get(&format!("{}.rope.scaling.type", m.arch)).and_then(|v| v.as_str());
    let factor = m.opt("rope.scaling.factor");
    let ty = match (ty, &factor) {
        (Some("none"), _) | (None, None) => return None,
        (Some(t), _) => t.to_string(),
        (None, Some(_)) => "linear".to_string(),
    };
    let mut rs = Map::new();
    rs.insert("rope_type".into(), json!(ty));
    rs.insert("factor".into(), factor.unwrap_or(json!(1.0)));
    if let Some(orig) = m.opt("rope.scaling.original_context_length") {
        rs.insert("original_max_position_embeddings".into(), orig);
    }
    if let Some(af) = m.opt("rope.scaling.attn_factor") {
        rs.insert("attention_factor".into(), af);
    }
    Some(Value::Object(rs))
}
