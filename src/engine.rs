//! The generation loop: prefill, decode step by step, KV cache reuse, stop conditions.
//!
//! The loop is a state machine driven by [`Engine::step`], so the CLI can loop on it and the
//! browser can yield to its event loop between tokens (to stream and to honour "stop").
//! The engine remembers which tokens its KV cache holds; a new prompt that extends them
//! (the next chat turn) is prefilled from the first token that differs.

use crate::chat::{self, Message};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::model::{KvCache, Llama, LlamaConfig, LoadOptions};
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};
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
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// `performance.now()` where the global scope has it (windows, workers), else `Date.now()`.
#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
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

/// State of the generation in progress.
struct Run {
    params: GenerateParams,
    sampler: Sampler,
    prompt: Vec<u32>,
    /// Prompt tokens already in the KV cache when the run started.
    reused: usize,
    prefilled: bool,
    generated: Vec<u32>,
    stream: StreamDecoder,
    /// All generated text so far and how much of it has been handed out.
    text: String,
    emitted: usize,
    stop: Option<StopReason>,
}

pub struct Engine {
    model: Llama,
    tokenizer: Tokenizer,
    kv: KvCache,
    /// The tokens whose keys and values `kv` holds, in order.
    cached: Vec<u32>,
    run: Option<Run>,
    first_logits: Vec<f32>,
    timings: Timings,
}

impl Engine {
    /// Load the model (converting weights per `opts`), the tokenizer and an empty KV cache.
    pub fn new(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Engine> {
        let t0 = now_ms();
        let cfg = LlamaConfig::from_value(&ckpt.config)?;
        let ctx = opts.context_len.unwrap_or(cfg.max_position_embeddings);
        if ctx == 0 {
            return Err(Error::Invalid("context length must be positive".into()));
        }
        let tokenizer = Tokenizer::from_spec(ckpt.tokenizer)?;
        let model = Llama::load(cfg, ckpt.weights.as_ref(), "", opts)?;
        let kv = model.new_cache(ctx);
        let timings = Timings { load_ms: now_ms() - t0, ..Default::default() };
        Ok(Engine { model, tokenizer, kv, cached: Vec::new(), run: None, first_logits: Vec::new(), timings })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn config(&self) -> &LlamaConfig {
        &self.model.cfg
    }
    pub fn model(&self) -> &Llama {
        &self.model
    }
    /// Most tokens (prompt + generated) one conversation may hold.
    pub fn context_len(&self) -> usize {
        self.kv.capacity
    }
    /// Tokens whose keys and values the cache holds.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }
    /// Forget the KV cache (the next prompt is prefilled in full).
    pub fn reset(&mut self) {
        self.kv.clear();
        self.cached.clear();
        self.run = None;
    }

    /// Render `messages` with the model's chat template (with the assistant header
    /// appended) and tokenize the result; the template writes any BOS itself.
    pub fn chat_prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let spec = &self.tokenizer.spec;
        let tpl =
            spec.chat_template.as_deref().ok_or_else(|| Error::Template("the model ships no chat template".into()))?;
        let bos = spec.bos_token.as_deref().unwrap_or("");
        let eos = spec.eos_token.as_deref().unwrap_or("");
        let text = chat::render(tpl, messages, true, bos, eos)?;
        self.tokenizer.encode(&text, false)
    }

    /// Begin generating after `prompt_ids`. The KV cache is reused for the longest common
    /// prefix with the tokens it already holds; the first [`Engine::step`] prefills the rest.
    pub fn start(&mut self, prompt_ids: &[u32], params: GenerateParams) -> Result<()> {
        self.run = None;
        if prompt_ids.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        let limit = self.context_len();
        if prompt_ids.len() > limit {
            return Err(Error::ContextOverflow { tokens: prompt_ids.len(), limit });
        }
        let vocab = self.model.cfg.vocab_size;
        if let Some(&bad) = prompt_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Invalid(format!("token id {bad} is outside the vocabulary of {vocab} tokens")));
        }
        let common = self.cached.iter().zip(prompt_ids).take_while(|(a, b)| a == b).count();
        // Keep at least one prompt token to run: its logits pick the first new token.
        let reused = common.min(prompt_ids.len() - 1);
        self.kv.truncate(reused);
        self.cached.truncate(reused);
        self.timings = Timings { load_ms: self.timings.load_ms, ..Default::default() };
        self.first_logits.clear();
        let stop = (params.max_new_tokens == 0).then_some(StopReason::MaxNewTokens);
        self.run = Some(Run {
            sampler: Sampler::new(params.sampling.clone()),
            params,
            prompt: prompt_ids.to_vec(),
            reused,
            prefilled: false,
            generated: Vec::new(),
            stream: StreamDecoder::new(),
            text: String::new(),
            emitted: 0,
            stop,
        });
        Ok(())
    }

    /// Advance by one token: the first call prefills the prompt, later calls decode the
    /// previous token. `Ok(None)` once generation has ended (or before any `start`).
    pub fn step(&mut self) -> Result<Option<TokenEvent>> {
        let Some(run) = self.run.as_mut() else {
            return Ok(None);
        };
        if run.stop.is_some() {
            return Ok(None);
        }
        let t0 = now_ms();
        let input: Vec<u32> = if run.prefilled {
            vec![*run.generated.last().expect("a decode step follows a sampled token")]
        } else {
            run.prompt[run.reused..].to_vec()
        };
        let logits = match self.model.forward(&input, &mut self.kv) {
            Ok(l) => l,
            Err(e) => {
                // The cache may be half-written; start clean next time.
                self.reset();
                return Err(e);
            }
        };
        self.cached.extend_from_slice(&input);
        let history: Vec<u32> = run.prompt.iter().chain(&run.generated).copied().collect();
        let id = run.sampler.sample(&logits, &history);
        let dt = now_ms() - t0;
        if run.prefilled {
            self.timings.decode_ms += dt;
            self.timings.decode_tokens += 1;
            self.timings.decode_tokens_per_s = self.timings.decode_tokens as f64 / (self.timings.decode_ms / 1e3);
        } else {
            run.prefilled = true;
            self.timings.prefill_ms = dt;
            self.timings.prefill_tokens = input.len();
            self.first_logits = logits;
        }
        run.generated.push(id);
        let piece = run.stream.push(&self.tokenizer, id)?;
        run.text.push_str(&piece);
        let stop = self.stop_reason(id);
        let run = self.run.as_mut().expect("run checked above");
        run.stop = stop;
        let text = take_text(run);
        Ok(Some(TokenEvent { id, text, done: run.stop.is_some() }))
    }

    /// Whether generation ends after sampling `id` (which is already in `generated`).
    fn stop_reason(&self, id: u32) -> Option<StopReason> {
        let run = self.run.as_ref()?;
        if self.tokenizer.is_eos(id) {
            Some(StopReason::Eos)
        } else if run.params.stop.iter().any(|s| !s.is_empty() && run.text.contains(s.as_str())) {
            Some(StopReason::StopString)
        } else if run.generated.len() >= run.params.max_new_tokens {
            Some(StopReason::MaxNewTokens)
        } else if self.cached.len() + 1 > self.context_len() {
            // No room to run the token just sampled.
            Some(StopReason::ContextFull)
        } else {
            None
        }
    }

    /// Logits `[vocab]` of the prompt's last position in the current run (empty before
    /// the first step).
    pub fn first_logits(&self) -> &[f32] {
        &self.first_logits
    }
    pub fn timings(&self) -> &Timings {
        &self.timings
    }
    /// Tokens generated in the current run (including a final EOS).
    pub fn generated_ids(&self) -> &[u32] {
        self.run.as_ref().map_or(&[], |r| &r.generated)
    }
    /// Generated text so far, cut before a stop string.
    pub fn generated_text(&self) -> &str {
        self.run.as_ref().map_or("", |r| &r.text[..r.emitted])
    }
    pub fn stop_reason_of_run(&self) -> Option<StopReason> {
        self.run.as_ref().and_then(|r| r.stop)
    }

    /// Run a whole generation, calling `on_token` for each event; the callback returns
    /// `false` to stop early.
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        params: GenerateParams,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<GenerationOutput> {
        self.start(prompt_ids, params)?;
        while let Some(ev) = self.step()? {
            if !on_token(&ev) && !ev.done {
                if let Some(r) = self.run.as_mut() {
                    r.stop = Some(StopReason::Caller);
                }
                break;
            }
        }
        Ok(GenerationOutput {
            generated_ids: self.generated_ids().to_vec(),
            text: self.generated_text().to_string(),
            stop: self.stop_reason_of_run(),
            timings: self.timings.clone(),
        })
    }
}

/// Hand out the generated text that can no longer turn into a stop string: everything
/// before a stop string that occurred, everything at the end of the run, and otherwise all
/// but the longest tail that is a prefix of some stop string.
fn take_text(run: &mut Run) -> String {
    let end = if let Some(i) = first_stop(&run.text, &run.params.stop) {
        i
    } else if run.stop.is_some() {
        run.text.len()
    } else {
        run.text.len() - held_back(&run.text, &run.params.stop)
    };
    let end = end.max(run.emitted);
    let out = run.text[run.emitted..end].to_string();
    run.emitted = end;
    out
}

/// Byte offset of the earliest stop string in `text`.
fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Length of the longest tail of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if i > best && text.ends_with(&s[..i]) {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_string_tails_are_held_back() {
        let stops = vec!["</s>".to_string(), "User:".to_string()];
        assert_eq!(held_back("hello </", &stops), 2);
        assert_eq!(held_back("hello Us", &stops), 2);
        assert_eq!(held_back("hello", &stops), 0);
        assert_eq!(first_stop("a User: b </s>", &stops), Some(2));
        assert_eq!(first_stop("abc", &stops), None);
    }
}
