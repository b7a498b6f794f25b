//! The generation loop: prefill, decode step by step, KV cache reuse, stop conditions.
//!
//! The loop is a state machine driven by [`Engine::step`], so the CLI can loop on it and the
//! browser can yield to its event loop between tokens (to stream and to honour "stop").

use crate::error::Result;
use crate::sampler::SamplerConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    pub sampling: SamplerConfig,
    /// Extra stop strings (the tokenizer's EOS ids always stop).
    pub stop: Vec<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams { max_new_tokens: 256, sampling: SamplerConfig::default(), stop: Vec::new() }
    }
}

/// One step's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct TokenEvent {
    pub id: u32,
    /// New text completed by this token (may be empty mid-character).
    pub text: String,
    /// True when generation ended with this step (EOS, stop string, limit).
    pub done: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub load_ms: f64,
    pub prefill_ms: f64,
    /// Prompt tokens actually run through the model (fewer when the KV cache was reused).
    pub prefill_tokens: usize,
    pub decode_ms: f64,
    pub decode_tokens: usize,
    pub decode_tokens_per_s: f64,
}

#[allow(dead_code)]
fn _api_sketch() -> Result<()> {
    Ok(())
}
