//! Llama-family text-model configuration, read from an HF `config.json` with serde.
//! Missing fields take the defaults transformers uses; nothing about a model's size is
//! hard-coded anywhere else.

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
}

impl LlamaConfig {
    /// Parse from a config document. For LLaVA-style configs pass the `text_config` object.
    pub fn from_value(v: &serde_json::Value) -> Result<Self> {
        let mut c: LlamaConfig =
            serde_json::from_value(v.clone()).map_err(|e| Error::format("config.json", e.to_string()))?;
        if c.num_attention_heads == 0 || c.hidden_size == 0 || c.num_hidden_layers == 0 {
            return Err(Error::format("config.json", "zero-sized model dimension"));
        }
        // Mistral configs write `sliding_window: null` or a window larger than the context.
        if let Some(w) = c.sliding_window {
            if w == 0 || w >= c.max_position_embeddings {
                c.sliding_window = None;
            }
        }
        if c.n_heads() % c.n_kv_heads() != 0 {
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
}
