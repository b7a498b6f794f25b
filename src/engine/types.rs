//! The engine's public value types: generation parameters, token events, timings, stop
//! reasons; and the clock it times steps with.

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
    /// Preprocessing and encoding the run's images (0 when all came from the cache).
    pub image_encode_ms: f64,
    /// Where the run's uncached images were encoded (`gpu`, `cpu`; `None` when all came from
    /// the cache).
    pub image_encoder: Option<super::Backend>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Eos,
    StopString,
    MaxNewTokens,
    ContextFull,
    /// The `generate` callback asked to stop.
    Caller,
}

/// What [`Engine::generate`] returns.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationOutput {
    pub generated_ids: Vec<u32>,
    /// The generated text, cut before a stop string.
    pub text: String,
    pub stop: Option<StopReason>,
    pub timings: Timings,
}

/// Milliseconds from an arbitrary origin (`Instant` panics on wasm32-unknown-unknown).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// `performance.now()` where the global scope has it (windows, workers), else `Date.now()`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn now_ms() -> f64 {
    use wasm_bindgen::JsCast;
    let g = js_sys::global();
    js_sys::Reflect::get(&g, &"performance".into())
        .ok()
        .filter(|p| p.is_object())
        .and_then(|p| {
            let f = js_sys::Reflect::get(&p, &"now".into()).ok()?.dyn_into::<js_sys::Function>().ok()?;
            f.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}
