//! Llama-family text-model configuration, read from an HF `config.json` with serde.
//! Missing fields take the defaults transformers uses; nothing about a model's size is
//! hard-coded anywhere else.
//!
//! One decoder serves several families; [`Arch`] records how they differ, derived from
//! `model_type` (`llama`/`mistral`/… as Llama, `gemma` as transformers' `modeling_gemma.py`,
//! `olmo` as `modeling_olmo.py`) or, for configs in OLMo's own format (`d_model`, `n_heads`,
//! `mlp_ratio`, … as written by allenai/OLMo's `hf_olmo` and NousResearch/OLMo-Bitnet-1B), by
//! [`olmo_native`].

use crate::error::{Error, Result};
use serde::Deserialize;

/// RoPE frequency scaling (`rope_scaling` in HF configs).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RopeScaling {
    /// `linear`, `dynamic`, `llama3`, `yarn` (older configs say `type`).
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
    pub beta_fast: Option<f64>,
    pub beta_slow: Option<f64>,
    pub attention_factor: Option<f64>,
}

fn one() -> f64 {
    1.0
}
fn rope_theta_default() -> f64 {
    10000.0
}
fn eps_default() -> f64 {
    1e-6
}
fn act_default() -> String {
    "silu".into()
}
fn max_pos_default() -> usize {
    2048
}

/// `v` with the fields it leaves out filled from the defaults of transformers' config class for
/// its `model_type` (`LlamaConfig`, `MistralConfig`, `GemmaConfig`; no `model_type`, as in a
/// LLaVA `text_config`, is Llama, as `LlavaConfig` makes it). Published configs rely on them:
/// `llava-hf/llava-1.5-7b-hf`'s `text_config` gives only the vocabulary, context and epsilon.
fn with_family_defaults(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let defaults = match v.get("model_type").and_then(|t| t.as_str()).unwrap_or("llama") {
        "llama" => json!({"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": false}),
        "mistral" => json!({"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "sliding_window": 4096, "hidden_act": "silu", "tie_word_embeddings": false}),
        "gemma" => json!({"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
            "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": true}),
        _ => return v.clone(),
    };
    let mut out = v.clone();
    if let (Some(obj), Some(d)) = (out.as_object_mut(), defaults.as_object()) {
        for (k, val) in d {
            obj.entry(k.clone()).or_insert_with(|| val.clone());
        }
        obj.entry("model_type").or_insert_with(|| json!("llama"));
    }
    out
}

#[derive(Clone, Debug, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no GQA).
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    #[serde(default = "eps_default")]
    pub rms_norm_eps: f64,
    #[serde(default = "rope_theta_default")]
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "max_pos_default")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Mistral's sliding-window attention; `None` for full attention.
    pub sliding_window: Option<usize>,
    #[serde(default = "act_default")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// Gemma: the MLP activation (Gemma-1 ignores `hidden_act`; unset means
    /// `gelu_pytorch_tanh`, as transformers does).
    pub hidden_activation: Option<String>,
    /// OLMo: clamp q, k and v to `±clip_qkv` after their projections.
    pub clip_qkv: Option<f64>,
    /// How this family differs from Llama (derived, not read).
    #[serde(skip)]
    pub arch: Arch,
}

/// Normalization layers of a family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NormKind {
    /// `w * x / sqrt(mean(x²) + eps)` (LlamaRMSNorm).
    #[default]
    Rms,
    /// Gemma: `(1 + w) * x / sqrt(mean(x²) + eps)`.
    RmsPlusOne,
    /// LayerNorm `(x - mean) / sqrt(var + eps)` (then `* w + b` when the checkpoint has them).
    Layer,
}

/// MLP gate activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Act {
    #[default]
    Silu,
    /// `gelu_pytorch_tanh` / `gelu_new` (tanh approximation).
    GeluTanh,
    /// Exact (erf) GELU.
    Gelu,
}

/// Tensor naming scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Names {
    /// HF Llama names (`model.layers.N.self_attn.q_proj.weight`, …).
    #[default]
    Hf,
    /// OLMo's own names (`model.transformer.blocks.N.att_proj.weight`, fused q/k/v and
    /// fused up/gate `ff_proj`).
    Olmo,
}

/// The family-specific parts of the decoder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Arch {
    pub norm: NormKind,
    /// Norm epsilon when the family fixes it (OLMo: 1e-5), else `rms_norm_eps`.
    pub norm_eps: Option<f64>,
    /// Gemma: input embeddings × `sqrt(hidden_size)` (in f32) inside `forward_embeds`.
    pub embed_scale: bool,
    pub act: Act,
    pub names: Names,
    /// BitNet b1.58: block linears are `BitLinear158` (ternary weights, per-token int8
    /// activations).
    pub ternary: bool,
    /// `BitLinear158` normalizes its input with a weightless RMSNorm (eps 1e-5) first.
    pub bitlinear_norm: bool,
    /// OLMo `scale_logits`: logits × `1 / sqrt(d_model)`.
    pub scale_logits: bool,
}

impl LlamaConfig {
    /// Parse from a config document. For LLaVA-style configs pass the `text_config` object.
    pub fn from_value(v: &serde_json::Value) -> Result<Self> {
        if v.get("d_model").is_some() {
            return super::olmo_config::olmo_native(v);
        }
        let mut c: LlamaConfig =
            serde_json::from_value(with_family_defaults(v)).map_err(|e| Error::format("config.json", e.to_string()))?;
        c.arch = Arch::for_model_type(&c)?;
        c.check()
    }

    /// Checks shared by every config path.
    pub(crate) fn check(self) -> Result<Self> {
        let mut c = self;
        if c.num_attention_heads == 0 || c.hidden_size == 0 || c.num_hidden_layers == 0 {
            return Err(Error::format("config.json", "zero-sized model dimension"));
        }
        // Mistral configs write `sliding_window: null` or a window larger than the context.
        if let Some(w) = c.sliding_window {
            if w == 0 || w >= c.max_position_embeddings {
                c.sliding_window = None;
            }
        }
        if !c.n_heads().is_multiple_of(c.n_kv_heads()) {
            return Err(Error::format(
                "config.json",
                format!("{} heads is not a multiple of {} KV heads", c.n_heads(), c.n_kv_heads()),
            ));
        }
        Ok(c)
    }
    pub fn n_heads(&self) -> usize {
        self.num_attention_heads
    }
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// Epsilon of the normalization layers.
    pub fn norm_eps(&self) -> f32 {
        self.arch.norm_eps.unwrap_or(self.rms_norm_eps) as f32
    }
}

impl Arch {
    /// The family of an HF-format config, from `model_type`.
    fn for_model_type(c: &LlamaConfig) -> Result<Arch> {
        let act = |name: &str| match name {
            "silu" | "swish" => Ok(Act::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Act::GeluTanh),
            "gelu" => Ok(Act::Gelu),
            other => Err(Error::Unsupported(format!("activation `{other}` (silu, gelu, gelu_pytorch_tanh)"))),
        };
        Ok(match c.model_type.as_str() {
            "gemma" => Arch {
                norm: NormKind::RmsPlusOne,
                embed_scale: true,
                act: act(c.hidden_activation.as_deref().unwrap_or("gelu_pytorch_tanh"))?,
                ..Arch::default()
            },
            "olmo" => Arch { norm: NormKind::Layer, norm_eps: Some(1e-5), act: act(&c.hidden_act)?, ..Arch::default() },
            _ => Arch { act: act(&c.hidden_act)?, ..Arch::default() },
        })
    }
}
