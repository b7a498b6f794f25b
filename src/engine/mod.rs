//! The generation loop: prefill, decode step by step, KV cache reuse, stop conditions.
//!
//! The loop is a state machine driven by [`Engine::step`], so the CLI can loop on it and the
//! browser can yield to its event loop between tokens (to stream and to honour "stop").
//! The engine remembers which tokens its KV cache holds; a new prompt that extends them
//! (the next chat turn) is prefilled from the first token that differs.
//!
//! LLaVA checkpoints take images with the prompt ([`Engine::start_with_images`]): each image
//! token of the prompt is expanded to the image's feature count as the model's processor
//! does, and the prefill replaces those embeddings by the image features (cached by image
//! hash). The KV cache is reused only across positions whose tokens *and* images agree.

use crate::chat::{self, Message};
use crate::error::{Error, Result};
use crate::gpu::decoder::GpuOutput;
use crate::io::Checkpoint;
use crate::model::llava::{is_llava, Llava, VisionLoadOptions};
use crate::model::{KvCache, Llama, LlamaConfig, LoadOptions};
use crate::sampler::Sampler;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::vision::features::{self, image_hash, prepared_hash, FeatureCache, PreparedImage};
use crate::vision::image::Image;
use crate::vision::preprocess::ClipProcessorConfig;
use crate::vision::prompt::render_turns;
pub use crate::vision::prompt::ChatTurn;
use std::sync::Arc;

pub mod bench;
mod gpu;
mod gpu_vision;
mod stops;
pub mod stream;
mod types;
pub use gpu::{Backend, StepPending, WeightReload};
pub use gpu_vision::{ImagesPending, ImagesRead};
use stops::take_text;
pub(crate) use types::now_ms;
pub use types::{GenerateParams, GenerationOutput, StopReason, Timings, TokenEvent};

/// An image's place in a prompt: its first position, its token count, its hash.
#[derive(Clone, Debug, PartialEq)]
struct ImageSpan {
    start: usize,
    len: usize,
    hash: u64,
}

/// An image as the caller hands it over.
enum ImageInput<'a> {
    Image(&'a Image),
    Prepared(&'a PreparedImage),
}

/// The decoder alone, or a LLaVA model around it.
enum Model {
    Text(Box<Llama>),
    Llava(Box<Llava>),
}

/// State of the generation in progress.
struct Run {
    params: GenerateParams,
    sampler: Sampler,
    /// With image tokens expanded.
    prompt: Vec<u32>,
    images: Vec<ImageSpan>,
    features: Vec<Arc<Vec<f32>>>,
    /// Prompt tokens already in the KV cache when the run started.
    reused: usize,
    prefilled: bool,
    generated: Vec<u32>,
    stream: StreamDecoder,
    /// Whether the GPU decoder was told this run's sampling config.
    gpu_sampling: bool,
    /// All generated text so far and how much of it has been handed out.
    text: String,
    emitted: usize,
    stop: Option<StopReason>,
}

pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    kv: KvCache,
    /// The tokens whose keys and values `kv` holds, in order.
    cached: Vec<u32>,
    /// The images among `cached`.
    cached_images: Vec<ImageSpan>,
    /// The image processor's settings (LLaVA checkpoints that ship them).
    processor: Option<ClipProcessorConfig>,
    feature_cache: FeatureCache,
    run: Option<Run>,
    first_logits: Vec<f32>,
    timings: Timings,
    /// The GPU decoder when the engine runs on the GPU ([`Engine::use_gpu`]).
    gpu: Option<Box<crate::gpu::decoder::GpuDecoder>>,
    /// The vision tower on the GPU (LLaVA models on the GPU, native).
    gpu_vision: Option<Box<crate::gpu::vision::GpuVision>>,
    /// Why the engine left the GPU for the CPU, once it did.
    fallback: Option<String>,
    /// The input of a step submitted to the GPU and not yet completed, and when it started.
    inflight: Option<(Vec<u32>, f64)>,
    /// Choose decode tokens on the GPU (one id read back per token) rather than reading the
    /// logits back and sampling here. On by default.
    gpu_pick: bool,
    /// The decoder matrices whose bytes live only on the GPU (placeholders in `model`), by
    /// checkpoint name; empty when the CPU model is whole.
    gpu_only: std::collections::BTreeMap<String, crate::model::slots::Slot>,
    /// A step that waits for those weights to come back ([`StepPending::NeedWeights`]).
    awaiting: Option<(Vec<u32>, f64)>,
    /// Where [`Engine::step`] gets them (native: the model folder mapped again).
    reload: Option<WeightReload>,
    /// Where images were encoded since the last run started, and for how many milliseconds.
    encoded: Option<(Backend, f64)>,
}

impl Engine {
    /// Load the model (converting weights per `opts`), the tokenizer and an empty KV cache.
    pub fn new(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Engine> {
        Engine::new_with_vision(ckpt, opts, &VisionLoadOptions::default())
    }

    /// [`Engine::new`] with the vision tower's load-time format chosen apart (LLaVA).
    pub fn new_with_vision(ckpt: Checkpoint, opts: &LoadOptions, vopts: &VisionLoadOptions) -> Result<Engine> {
        let t0 = now_ms();
        let (model, processor) = if is_llava(&ckpt.config) {
            let m = Llava::load(&ckpt.config, ckpt.weights.as_ref(), opts, vopts)?;
            // A broken processor config only matters once an image comes.
            let p = ckpt.preprocessor.as_ref().map(|_| features::processor_config(ckpt.preprocessor.as_ref(), &m));
            // LLaVA's original `image_aspect_ratio: "pad"` lives in the model config.
            let p = p
                .map(|r| r.map(|c| ClipProcessorConfig { pad_to_square: c.pad_to_square || m.cfg.pad_to_square, ..c }));
            (Model::Llava(Box::new(m)), p.transpose()?)
        } else {
            let cfg = LlamaConfig::from_value(&ckpt.config)?;
            (Model::Text(Box::new(Llama::load(cfg, ckpt.weights.as_ref(), "", opts)?)), None)
        };
        let lm = match &model {
            Model::Text(m) => m,
            Model::Llava(m) => &m.lm,
        };
        let ctx = opts.context_len.unwrap_or(lm.cfg.max_position_embeddings);
        if ctx == 0 {
            return Err(Error::Invalid("context length must be positive".into()));
        }
        let tokenizer = Tokenizer::from_spec(ckpt.tokenizer)?;
        let kv = lm.new_cache(ctx);
        let timings = Timings { load_ms: now_ms() - t0, ..Default::default() };
        Ok(Engine {
            model,
            tokenizer,
            kv,
            cached: Vec::new(),
            cached_images: Vec::new(),
            processor,
            feature_cache: FeatureCache::new(8),
            run: None,
            first_logits: Vec::new(),
            timings,
            gpu: None,
            gpu_vision: None,
            fallback: None,
            inflight: None,
            gpu_pick: true,
            gpu_only: Default::default(),
            awaiting: None,
            reload: None,
            encoded: None,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn config(&self) -> &LlamaConfig {
        &self.model().cfg
    }
    /// The text decoder (of a LLaVA model, its language model).
    pub fn model(&self) -> &Llama {
        match &self.model {
            Model::Text(m) => m,
            Model::Llava(m) => &m.lm,
        }
    }
    /// The LLaVA model, when the checkpoint is one.
    pub fn llava(&self) -> Option<&Llava> {
        match &self.model {
            Model::Text(_) => None,
            Model::Llava(m) => Some(m),
        }
    }
    /// The LLaVA model, mutably (e.g. to pick the vision tower's kernel, [`crate::vision::w8a8`]).
    pub fn llava_mut(&mut self) -> Option<&mut Llava> {
        match &mut self.model {
            Model::Text(_) => None,
            Model::Llava(m) => Some(m),
        }
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
        if let Some(g) = self.gpu.as_mut() {
            g.truncate(0);
        }
        self.inflight = None;
        self.awaiting = None;
        self.cached.clear();
        self.cached_images.clear();
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
        let texts: Vec<String> = messages.iter().map(|m| m.content.clone()).collect();
        if !self.holds_control_text(&texts) {
            return self.tokenizer.encode(&text, false);
        }
        let pieces = chat::render_apart(&texts, &text, |subs| {
            let msgs: Vec<Message> =
                messages.iter().zip(subs).map(|(m, c)| Message { role: m.role.clone(), content: c.clone() }).collect();
            chat::render(tpl, &msgs, true, bos, eos)
        })?;
        self.encode_pieces(&pieces, false)
    }

    /// Whether any user text holds control-token text (or, for LLaVA, the `<image>` marker):
    /// then the prompt is rendered with the texts apart ([`chat::render_apart`]) and they are
    /// tokenized as text, so a user cannot forge turn boundaries, EOS or image slots.
    fn holds_control_text(&self, texts: &[String]) -> bool {
        self.tokenizer.has_control_text(texts)
            || (self.llava().is_some() && texts.iter().any(|t| t.contains("<image>")))
    }

    /// Tokenize rendered pieces: the template's through [`Engine::encode_with_images`], the user's
    /// literally; BOS first per `add_bos` and the tokenizer's policy.
    fn encode_pieces(&self, pieces: &chat::Pieces, add_bos: bool) -> Result<Vec<u32>> {
        let spec = &self.tokenizer.spec;
        let mut ids = Vec::new();
        if let (true, true, Some(bos)) = (add_bos, spec.add_bos, spec.bos_id) {
            ids.push(bos);
        }
        for (text, literal) in pieces {
            ids.extend(if *literal {
                self.tokenizer.encode_literal(text)?
            } else {
                self.encode_with_images(text, false)?
            });
        }
        Ok(ids)
    }

    /// Render chat turns whose content may hold images with the model's chat template and
    /// tokenize the result (one image token per image, unexpanded: pass the images to
    /// [`Engine::start_with_images`]). LLaVA templates get every content as a list of parts,
    /// `{"type": "image"}` for each image then `{"type": "text", "text": ...}`, as transformers'
    /// processors hand it to them; BOS is added as the processor's tokenizer adds it, unless
    /// the template wrote it.
    pub fn chat_prompt_ids_with_images(&self, turns: &[ChatTurn]) -> Result<Vec<u32>> {
        if self.llava().is_none() {
            if turns.iter().any(|t| t.images > 0) {
                return Err(Error::Unsupported("images: this model is text-only".into()));
            }
            let msgs: Vec<Message> =
                turns.iter().map(|t| Message { role: t.role.clone(), content: t.text.clone() }).collect();
            return self.chat_prompt_ids(&msgs);
        }
        let spec = &self.tokenizer.spec;
        let tpl =
            spec.chat_template.as_deref().ok_or_else(|| Error::Template("the model ships no chat template".into()))?;
        let bos = spec.bos_token.as_deref().unwrap_or("");
        let eos = spec.eos_token.as_deref().unwrap_or("");
        let text = render_turns(tpl, turns, bos, eos)?;
        let add_bos = spec.add_bos && !(bos.is_empty() || text.starts_with(bos));
        let texts: Vec<String> = turns.iter().map(|t| t.text.clone()).collect();
        if self.holds_control_text(&texts) {
            let pieces = chat::render_apart(&texts, &text, |subs| {
                let ts: Vec<ChatTurn> =
                    turns.iter().zip(subs).map(|(t, s)| ChatTurn { text: s.clone(), ..t.clone() }).collect();
                render_turns(tpl, &ts, bos, eos)
            })?;
            return self.encode_pieces(&pieces, add_bos);
        }
        self.encode_with_images(&text, add_bos) // LLaVA's original layout needs the -200 placeholder
    }

    /// Tokenize raw `text` holding `<image>` markers: LLaVA's original layout as its
    /// `tokenizer_image_token` does (chunks around `<image>` alone, joined by the -200
    /// placeholder, BOS per `add_bos`); other models through the tokenizer (`<image>` is a token).
    pub fn encode_with_images(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        match self.llava() {
            Some(m) => crate::model::llava::encode_image_prompt(&self.tokenizer, m.cfg.image_token_id, text, add_bos),
            None => self.tokenizer.encode(text, add_bos),
        }
    }

    /// Begin generating after `prompt_ids`. The KV cache is reused for the longest common
    /// prefix with the tokens it already holds; the first [`Engine::step`] prefills the rest.
    pub fn start(&mut self, prompt_ids: &[u32], params: GenerateParams) -> Result<()> {
        self.start_with_images(prompt_ids, &[], params)
    }

    /// [`Engine::start`] with images (LLaVA): `prompt_ids` hold one image token per image, in
    /// the order of `images`, as the tokenizer writes `<image>`; each is expanded to the
    /// image's feature count. Features come from the cache when the same image was encoded
    /// before.
    pub fn start_with_images(&mut self, prompt_ids: &[u32], images: &[Image], params: GenerateParams) -> Result<()> {
        let inputs: Vec<ImageInput> = images.iter().map(ImageInput::Image).collect();
        self.start_with_inputs(prompt_ids, &inputs, params)
    }

    /// [`Engine::start_with_images`] with images already preprocessed (pixel values).
    pub fn start_with_prepared(
        &mut self,
        prompt_ids: &[u32],
        images: &[PreparedImage],
        params: GenerateParams,
    ) -> Result<()> {
        let inputs: Vec<ImageInput> = images.iter().map(ImageInput::Prepared).collect();
        self.start_with_inputs(prompt_ids, &inputs, params)
    }

    fn start_with_inputs(&mut self, prompt_ids: &[u32], images: &[ImageInput], params: GenerateParams) -> Result<()> {
        self.run = None;
        if prompt_ids.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        params.sampling.validate()?;
        let (feats, encode_ms, encoder) = self.encode_images(images)?;
        let (prompt, spans) = self.expand(prompt_ids, &feats)?;
        let limit = self.context_len();
        if prompt.len() > limit {
            return Err(Error::ContextOverflow { tokens: prompt.len(), limit });
        }
        let vocab = self.config().vocab_size;
        let image_id = self.llava().map(|m| m.cfg.image_token_id);
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab && Some(t) != image_id) {
            return Err(Error::Invalid(format!("token id {bad} is outside the vocabulary of {vocab} tokens")));
        }
        let mut common = self.cached.iter().zip(&prompt).take_while(|(a, b)| a == b).count();
        // Positions of an image count as equal only when the image is the same.
        for s in self
            .cached_images
            .iter()
            .filter(|s| !spans.contains(s))
            .chain(spans.iter().filter(|s| !self.cached_images.contains(s)))
        {
            if s.start < common {
                common = s.start;
            }
        }
        // Keep at least one prompt token to run: its logits pick the first new token.
        let reused = common.min(prompt.len() - 1);
        self.kv.truncate(reused);
        if let Some(g) = self.gpu.as_mut() {
            g.truncate(reused);
        }
        self.inflight = None;
        self.cached.truncate(reused);
        self.cached_images.retain(|s| s.start < reused);
        let load_ms = self.timings.load_ms;
        self.timings = Timings { load_ms, image_encode_ms: encode_ms, image_encoder: encoder, ..Default::default() };
        self.first_logits.clear();
        let stop = (params.max_new_tokens == 0).then_some(StopReason::MaxNewTokens);
        self.run = Some(Run {
            sampler: Sampler::new(params.sampling.clone()),
            params,
            prompt,
            images: spans,
            features: feats.into_iter().map(|(_, f)| f).collect(),
            reused,
            prefilled: false,
            generated: Vec::new(),
            stream: StreamDecoder::new(),
            gpu_sampling: false,
            text: String::new(),
            emitted: 0,
            stop,
        });
        Ok(())
    }

    /// Each image's hash and projected features `[tokens, hidden]`, from the cache or encoded.
    fn image_features(&mut self, images: &[ImageInput]) -> Result<Vec<(u64, Arc<Vec<f32>>)>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        if !matches!(self.model, Model::Llava(_)) {
            return Err(Error::Unsupported("images: this model is text-only".into()));
        }
        let mut out = Vec::with_capacity(images.len());
        for img in images {
            let key = match img {
                ImageInput::Image(i) => image_hash(i),
                ImageInput::Prepared(p) => prepared_hash(p),
            };
            let f = match self.feature_cache.get(key) {
                Some(f) => f,
                None => {
                    let f = Arc::new(match img {
                        ImageInput::Image(i) => {
                            let cfg = self.processor.as_ref().ok_or_else(|| {
                                Error::Invalid(
                                    "the checkpoint has no image processor config (preprocessor_config.json)".into(),
                                )
                            })?;
                            let model = self.llava().expect("checked above");
                            let p = features::prepare(i, cfg, model)?;
                            self.encode_prepared(&p)?
                        }
                        ImageInput::Prepared(p) => self.encode_prepared(p)?,
                    });
                    self.feature_cache.insert(key, f.clone());
                    f
                }
            };
            out.push((key, f));
        }
        Ok(out)
    }

    /// Expand the image tokens of `ids` to the features' lengths; where each image lies.
    fn expand(&self, ids: &[u32], feats: &[(u64, Arc<Vec<f32>>)]) -> Result<(Vec<u32>, Vec<ImageSpan>)> {
        let Some(model) = self.llava() else {
            return Ok((ids.to_vec(), Vec::new()));
        };
        let d = model.cfg.text.hidden_size;
        let counts: Vec<usize> = feats.iter().map(|(_, f)| f.len() / d).collect();
        let prompt = model.expand_image_tokens(ids, &counts)?;
        let mut spans = Vec::with_capacity(counts.len());
        let mut pos = 0;
        for &t in ids {
            if t == model.cfg.image_token_id {
                let k = spans.len();
                spans.push(ImageSpan { start: pos, len: counts[k], hash: feats[k].0 });
                pos += counts[k];
            } else {
                pos += 1;
            }
        }
        Ok((prompt, spans))
    }

    /// Advance by one token: the first call prefills the prompt, later calls decode the
    /// previous token. `Ok(None)` once generation has ended (or before any `start`).
    pub fn step(&mut self) -> Result<Option<TokenEvent>> {
        let pending = match self.step_submit()? {
            #[cfg(not(target_arch = "wasm32"))]
            StepPending::Gpu(p) => {
                let ctx = p.context();
                let out = pollster::block_on(p.pending.read(&ctx));
                self.step_complete(out)?
            }
            #[cfg(target_arch = "wasm32")]
            StepPending::Gpu(_) => {
                return Err(Error::Invalid("on the GPU in wasm, drive steps with step_submit".into()))
            }
            other => other,
        };
        match pending {
            StepPending::Done(ev) => Ok(ev),
            StepPending::NeedWeights => {
                let src = self.reload_weights()?;
                self.resume_on_cpu(src.as_ref())
            }
            StepPending::Gpu(_) => Err(Error::Invalid("a GPU step completed into another GPU step".into())),
        }
    }

    /// The input of the next step (the prompt's uncached tail, else the last token), or
    /// `None` when no step is due.
    fn next_input(&mut self) -> Option<Vec<u32>> {
        let run = self.run.as_mut()?;
        if run.stop.is_some() {
            return None;
        }
        Some(if run.prefilled {
            vec![*run.generated.last().expect("a decode step follows a sampled token")]
        } else {
            run.prompt[run.reused..].to_vec()
        })
    }

    /// The CPU step: forward `input` and sample.
    fn cpu_step(&mut self, input: Vec<u32>, t0: f64) -> Result<Option<TokenEvent>> {
        let run = self.run.as_ref().expect("a step is due");
        let logits = match forward(&self.model, run, &input, &mut self.kv) {
            Ok(l) => l,
            Err(e) => {
                // The cache may be half-written; start clean next time.
                self.reset();
                return Err(e);
            }
        };
        self.finish_step(input, GpuOutput::Logits(logits), t0)
    }

    /// Record `input` as cached, take the token (sampled here from logits, or chosen on the
    /// GPU), emit the token event.
    fn finish_step(&mut self, input: Vec<u32>, out: GpuOutput, t0: f64) -> Result<Option<TokenEvent>> {
        let run = self.run.as_mut().expect("a step is due");
        self.cached.extend_from_slice(&input);
        let (id, logits) = match out {
            GpuOutput::Logits(logits) => {
                let history: Vec<u32> = run.prompt.iter().chain(&run.generated).copied().collect();
                (run.sampler.sample(&logits, &history), logits)
            }
            GpuOutput::Token(id) => {
                run.sampler.confirm_draw();
                (id, Vec::new())
            }
        };
        let dt = now_ms() - t0;
        if run.prefilled {
            self.timings.decode_ms += dt;
            self.timings.decode_tokens += 1;
            self.timings.decode_tokens_per_s = self.timings.decode_tokens as f64 / (self.timings.decode_ms / 1e3);
        } else {
            run.prefilled = true;
            self.cached_images = run.images.clone();
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
    /// The current run's prompt, image tokens expanded.
    pub fn prompt_ids(&self) -> &[u32] {
        self.run.as_ref().map_or(&[], |r| &r.prompt)
    }
    /// Image tokens in the current run's prompt.
    pub fn image_tokens(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.images.iter().map(|s| s.len).sum())
    }
    /// Images whose features are cached.
    pub fn cached_images(&self) -> usize {
        self.feature_cache.len()
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

/// Run `input` (the prompt's uncached tail on prefill, else the last token) through the
/// model; a LLaVA prefill with images embeds the whole prompt with the image features and
/// runs its uncached rows.
fn forward(model: &Model, run: &Run, input: &[u32], kv: &mut KvCache) -> Result<Vec<f32>> {
    match model {
        Model::Llava(m) if !run.prefilled && !run.images.is_empty() => {
            let x = prompt_embeds(m, run)?; // [prompt, hidden]
            let d = m.cfg.text.hidden_size;
            m.forward_embeds(x[run.reused * d..].to_vec(), input.len(), kv)
        }
        Model::Llava(m) => m.lm.forward(input, kv),
        Model::Text(m) => m.forward(input, kv),
    }
}

/// The run's whole prompt embedded, `[prompt, hidden]`, its image features spliced in.
fn prompt_embeds(m: &Llava, run: &Run) -> Result<Vec<f32>> {
    let feats: Vec<&[f32]> = run.features.iter().map(|f| f.as_slice()).collect();
    m.embed_with_images(&run.prompt, &feats)
}
