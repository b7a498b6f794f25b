//! The engine on the GPU: a step is submitted ([`Engine::step_submit`]) and completed with
//! its logits ([`Engine::step_complete`]), so the browser can await the readback without
//! holding the engine. When the GPU fails (device lost, out of memory, a validation error)
//! the engine leaves it for good, rebuilds the CPU KV cache from the tokens (and image
//! features) of the conversation, and goes on with the same step on the CPU, reporting why
//! in [`Engine::fallback_reason`].
//!
//! When matrices were streamed to the GPU only ([`super::stream`]: the decoder's, the
//! embedding, a LLaVA model's vision tower and projector), the CPU model holds placeholders:
//! leaving the GPU then answers [`StepPending::NeedWeights`], the caller hands the weights back
//! ([`Engine::resume_on_cpu`]; [`Engine::step`] uses the [`WeightReload`] set natively) and the
//! replay goes on. On the GPU an image prompt is embedded there: the token rows gathered, the
//! image features written over the image tokens' rows (the LLaVA merge, [`GpuInput::Merged`]).

use std::sync::Arc;

use super::{now_ms, prompt_embeds, Engine, Model, Run, TokenEvent};
use crate::error::{Error, Result};
use crate::gpu::decoder::{GpuDecoder, GpuInput, GpuOutput, Pending};
use crate::gpu::decoder_weights::{footprint, GpuNeed, Streamed};
use crate::gpu::stream::GpuUpload;
use crate::gpu::vision::{llava_activation_bytes, GpuVision};
use crate::gpu::GpuContext;
use crate::io::WeightSource;
use crate::model::llava::Llava;
use crate::model::slots::Slot;
use crate::quant::QTensor;
use std::collections::BTreeMap;

/// Gives the checkpoint's weights again (natively: the model folder opened anew).
pub type WeightReload = Box<dyn FnMut() -> Result<Box<dyn WeightSource>> + Send + Sync>;

/// Where the decoder runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cpu,
    Gpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }
}

/// A submitted GPU step whose logits are on their way back.
pub struct GpuStep {
    pub pending: Pending,
    ctx: Arc<GpuContext>,
}

impl GpuStep {
    pub fn context(&self) -> Arc<GpuContext> {
        self.ctx.clone()
    }
}

/// What [`Engine::step_submit`] did.
pub enum StepPending {
    /// The step ran on the CPU (or no step was due): its event.
    Done(Option<TokenEvent>),
    /// The step was submitted to the GPU: await [`Pending::read`], then call
    /// [`Engine::step_complete`].
    Gpu(GpuStep),
    /// The step must run on the CPU but the decoder's weights lived only on the GPU: hand
    /// them back with [`Engine::resume_on_cpu`], which runs the step.
    NeedWeights,
}

impl Engine {
    /// Run the decoder on the GPU of `ctx` from now on (the conversation starts afresh); a
    /// LLaVA model's vision tower too ([`Engine::gpu_vision`]).
    /// `budget`: optional cap on GPU bytes. Errors (model too large for the adapter's
    /// limits, no memory) leave the engine on the CPU.
    pub fn use_gpu(&mut self, ctx: Arc<GpuContext>, budget: Option<u64>) -> Result<()> {
        self.check_fit(&ctx, budget, 0)?;
        let vision = self.vision_on(&ctx, &mut Streamed::new())?;
        let dec = GpuDecoder::new(ctx, self.model(), self.context_len(), budget)?;
        self.reset();
        self.gpu = Some(Box::new(dec));
        self.gpu_vision = vision;
        self.fallback = None;
        Ok(())
    }

    /// Run the model on the GPU with the matrices `up` uploaded as their shards arrived
    /// (the CPU model holds placeholders for them). On an error those weights are nowhere
    /// until [`Engine::fill_weights`] / [`Engine::resume_on_cpu`].
    pub fn use_gpu_streamed(&mut self, up: GpuUpload) -> Result<()> {
        let GpuUpload { ctx, budget, slots, mut streamed, .. } = up;
        self.gpu_only =
            slots.into_iter().filter(|(_, s)| self.matrix(*s).is_some_and(|m| m.is_placeholder())).collect();
        self.check_fit(&ctx, budget, streamed.values().map(|m| m.nbytes()).sum())?;
        let vision = self.vision_on(&ctx, &mut streamed)?;
        let dec = GpuDecoder::with_streamed(ctx, self.model(), self.context_len(), budget, streamed)?;
        self.reset();
        self.gpu = Some(Box::new(dec));
        self.gpu_vision = vision;
        self.fallback = None;
        Ok(())
    }

    /// Whether the whole model fits `ctx` (and `budget`) before anything more is allocated:
    /// the decoder (`on_gpu` bytes of it uploaded already), a LLaVA model's vision tower and
    /// projector with one tile's activations, and the KV cache at the engine's context length.
    fn check_fit(&self, ctx: &GpuContext, budget: Option<u64>, on_gpu: u64) -> Result<()> {
        let vision = match &self.model {
            Model::Llava(m) => {
                (m.tower.weight_bytes() + m.projector.weight_bytes()) as u64 + llava_activation_bytes(&m.cfg)
            }
            Model::Text(_) => 0,
        };
        let decoder = self.model().weight_bytes() as u64 + on_gpu;
        footprint(ctx, &self.model().cfg, GpuNeed { decoder, vision, context: self.context_len() }, budget).map(|_| ())
    }

    /// A LLaVA model's vision tower and projector on `ctx`, taking its streamed matrices out
    /// of `streamed` (in wasm images reach it through [`Engine::submit_images`], whose
    /// readback is awaited).
    fn vision_on(&self, ctx: &Arc<GpuContext>, streamed: &mut Streamed) -> Result<Option<Box<GpuVision>>> {
        match &self.model {
            Model::Llava(m) => Ok(Some(Box::new(GpuVision::for_llava_streamed(ctx.clone(), m, streamed)?))),
            _ => Ok(None),
        }
    }

    /// The matrix at `slot` in the CPU model (maybe a placeholder).
    fn matrix(&self, slot: Slot) -> Option<&QTensor> {
        match &self.model {
            Model::Text(m) => m.matrix(slot),
            Model::Llava(m) => m.matrix(slot),
        }
    }

    /// The matrices held only on the GPU, by checkpoint name (empty when the CPU model is
    /// whole): what [`Engine::resume_on_cpu`] needs.
    pub fn gpu_only_tensors(&self) -> &BTreeMap<String, Slot> {
        &self.gpu_only
    }

    /// Bytes of decoder weights held in memory, the embedding included (placeholders count
    /// nothing).
    pub fn decoder_cpu_bytes(&self) -> usize {
        self.model().weight_bytes()
    }

    /// Bytes of a LLaVA model's vision-tower and projector weights held in memory
    /// (placeholders count nothing; 0 for a text model).
    pub fn vision_cpu_bytes(&self) -> usize {
        self.llava().map_or(0, |m| m.tower.weight_bytes() + m.projector.weight_bytes())
    }

    /// Where [`Engine::step`] gets the weights after a GPU failure.
    pub fn set_weight_reload(&mut self, f: WeightReload) {
        self.reload = Some(f);
    }

    /// After [`StepPending::NeedWeights`]: fill the placeholders from `src` (the checkpoint's
    /// names; only [`Engine::gpu_only_tensors`] are read) and run the waiting step on the
    /// CPU, replaying the conversation.
    pub fn resume_on_cpu(&mut self, src: &dyn WeightSource) -> Result<Option<TokenEvent>> {
        let (input, t0) =
            self.awaiting.take().ok_or_else(|| Error::Invalid("no step waits for the decoder's weights".into()))?;
        self.fill_weights(src)?;
        self.replay_on_cpu(input, t0)
    }

    /// Whether the engine runs on the CPU with matrices that lived only on the GPU (a GPU
    /// failure when a streamed load finished, a lost device, a failed image encode): until
    /// [`Engine::fill_weights`], the next step answers [`StepPending::NeedWeights`] (and,
    /// natively, an image to encode reads them through the [`WeightReload`]).
    pub fn needs_weights(&self) -> bool {
        self.gpu.is_none() && !self.gpu_only.is_empty()
    }

    /// Fill the placeholders (decoder, embedding, vision tower, projector) from `src` (the
    /// checkpoint's names; only [`Engine::gpu_only_tensors`] are read). On an error they stay
    /// wanted.
    pub fn fill_weights(&mut self, src: &dyn WeightSource) -> Result<()> {
        let slots = std::mem::take(&mut self.gpu_only);
        let filled = match &mut self.model {
            Model::Text(m) => m.fill_placeholders(src, &slots),
            Model::Llava(m) => m.fill_placeholders(src, &slots),
        };
        if let Err(e) = filled {
            self.gpu_only = slots;
            self.reset();
            return Err(e);
        }
        Ok(())
    }

    fn reload_weights_error(&self) -> Error {
        let why = self.fallback.as_deref().unwrap_or("no GPU");
        Error::Gpu(format!(
            "the GPU failed ({why}) and the model's weights lived only there; no source to load them again from (set_shard_source)"
        ))
    }

    /// The weights from the [`WeightReload`], or an error saying there is none.
    pub(super) fn reload_weights(&mut self) -> Result<Box<dyn WeightSource>> {
        let err = self.reload_weights_error();
        let r = self.reload.as_mut().ok_or(err);
        match r.and_then(|f| f()) {
            Ok(src) => Ok(src),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// The error [`StepPending::NeedWeights`] turns into when the caller has no weights.
    pub fn no_weight_source(&mut self) -> Error {
        let e = self.reload_weights_error();
        self.reset();
        e
    }

    /// Where the decoder runs now.
    pub fn backend(&self) -> Backend {
        if self.gpu.is_some() {
            Backend::Gpu
        } else {
            Backend::Cpu
        }
    }

    /// Why the engine moved from the GPU to the CPU, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The GPU decoder, when running there (dispatch counts, adapter info).
    pub fn gpu_decoder(&self) -> Option<&GpuDecoder> {
        self.gpu.as_deref()
    }

    /// First half of a step: on the CPU the whole step; on the GPU record and submit it.
    pub fn step_submit(&mut self) -> Result<StepPending> {
        let Some(input) = self.next_input() else {
            return Ok(StepPending::Done(None));
        };
        let t0 = now_ms();
        if self.gpu.is_some() {
            match self.gpu_submit(&input) {
                Ok(pending) => {
                    let ctx = self.gpu.as_ref().expect("checked").context().clone();
                    self.inflight = Some((input, t0));
                    return Ok(StepPending::Gpu(GpuStep { pending, ctx }));
                }
                Err(e @ Error::Gpu(_)) => self.leave_gpu(&e),
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            }
            return self.replay_or_wait(input, t0);
        }
        if !self.gpu_only.is_empty() {
            return self.replay_or_wait(input, t0);
        }
        self.cpu_step(input, t0).map(StepPending::Done)
    }

    /// Replay on the CPU, or wait for the decoder's weights when they lived on the GPU only.
    fn replay_or_wait(&mut self, input: Vec<u32>, t0: f64) -> Result<StepPending> {
        if self.gpu_only.is_empty() {
            return self.replay_on_cpu(input, t0).map(StepPending::Done);
        }
        self.awaiting = Some((input, t0));
        Ok(StepPending::NeedWeights)
    }

    /// Second half of a GPU step: sample from the step's logits (or, when the GPU failed,
    /// redo the step on the CPU: [`StepPending::Done`], or [`StepPending::NeedWeights`]).
    pub fn step_complete(&mut self, out: Result<GpuOutput>) -> Result<StepPending> {
        let Some((input, t0)) = self.inflight.take() else {
            return Err(Error::Invalid("step_complete without a submitted step".into()));
        };
        match out {
            Ok(out) => self.finish_step(input, out, t0).map(StepPending::Done),
            Err(e @ Error::Gpu(_)) => {
                self.leave_gpu(&e);
                self.replay_or_wait(input, t0)
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// Choose decode tokens on the GPU (`true`, the default) or read logits back and sample
    /// on the CPU (`false`); both give the same tokens.
    pub fn set_gpu_sampling(&mut self, on: bool) {
        self.gpu_pick = on;
    }

    /// Submit `input` to the GPU: a prompt with images as tokens merged with the image
    /// features on the GPU, tokens otherwise.
    /// Decode steps choose their token on the GPU with the run's sampler (its RNG word passed
    /// along), so only the id comes back.
    fn gpu_submit(&mut self, input: &[u32]) -> Result<Pending> {
        let run = self.run.as_mut().expect("a step is due");
        let gpu = self.gpu.as_mut().expect("on the GPU");
        if run.prefilled && self.gpu_pick {
            if !run.gpu_sampling {
                let history: Vec<u32> = run.prompt.iter().chain(&run.generated).copied().collect();
                gpu.set_sampling(Some(&run.sampler.cfg), &history)?;
                run.gpu_sampling = true;
            }
            gpu.set_seed(run.sampler.next_draw());
        } else if run.prefilled {
            gpu.set_sampling(None, &[])?;
        }
        let run = &*run;
        match &self.model {
            Model::Llava(m) if !run.prefilled && !run.images.is_empty() => {
                let (ids, rows) = merge_rows(m, run)?;
                gpu.submit(GpuInput::Merged { ids: &ids, rows: &rows })
            }
            _ => gpu.submit(GpuInput::Tokens(input)),
        }
    }

    pub(super) fn leave_gpu(&mut self, e: &Error) {
        self.fallback = Some(e.to_string());
        self.gpu = None;
        self.gpu_vision = None;
        self.inflight = None;
    }

    /// Rebuild the CPU KV cache from the cached tokens (with their image features) and run
    /// `input` after them: the same conversation, now on the CPU.
    fn replay_on_cpu(&mut self, input: Vec<u32>, t0: f64) -> Result<Option<TokenEvent>> {
        self.kv.clear();
        let cached = std::mem::take(&mut self.cached);
        let run = self.run.as_ref().expect("a step is due");
        let all: Vec<u32> = run.prompt.iter().chain(&run.generated).copied().collect(); // the sequence so far
        let upto = cached.len() + input.len();
        if all.len() < upto || all[..cached.len()] != cached[..] || all[cached.len()..upto] != input[..] {
            self.reset();
            return Err(Error::Invalid("the conversation could not be replayed on the CPU".into()));
        }
        match forward_all(self, &all[..upto]) {
            Ok(logits) => {
                self.cached = cached;
                self.finish_step(input, GpuOutput::Logits(logits), t0)
            }
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }
}

/// Token ids and, per row, the image-feature row replacing its embedding ([`GpuInput::Merged`]).
type MergeRows<'a> = (Vec<u32>, Vec<Option<&'a [f32]>>);

/// The run's uncached prompt rows for the GPU's LLaVA merge: token ids (0 at image tokens,
/// whose id may lie outside the vocabulary) and, for each row, the image-feature row
/// `[hidden]` that replaces its embedding (as [`Llava::embed_with_images`] splices them).
fn merge_rows<'a>(m: &Llava, run: &'a Run) -> Result<MergeRows<'a>> {
    let (d, img) = (m.cfg.text.hidden_size, m.cfg.image_token_id);
    let n_img = run.prompt.iter().filter(|&&t| t == img).count();
    let n_feat: usize = run.features.iter().map(|f| f.len() / d).sum();
    if n_img != n_feat || run.features.iter().any(|f| f.len() % d != 0) {
        return Err(Error::Invalid(format!(
            "image features and image tokens do not match: tokens {n_img}, features {n_feat}"
        )));
    }
    let mut feats = run.features.iter().flat_map(|f| f.chunks_exact(d));
    let mut ids = Vec::with_capacity(run.prompt.len() - run.reused);
    let mut rows = Vec::with_capacity(ids.capacity());
    for (i, &t) in run.prompt.iter().enumerate() {
        let row = if t == img { feats.next() } else { None };
        if i >= run.reused {
            ids.push(if t == img { 0 } else { t });
            rows.push(row);
        }
    }
    Ok((ids, rows))
}

/// Forward `seq` (a prefix of the run's prompt + generated tokens) on the CPU from an empty
/// cache, with image features spliced in where the prompt has them; the last row's logits.
fn forward_all(e: &mut Engine, seq: &[u32]) -> Result<Vec<f32>> {
    let run = e.run.as_ref().expect("a step is due");
    match &e.model {
        Model::Llava(m) if !run.images.is_empty() => {
            let mut x = prompt_embeds(m, run)?; // [prompt, hidden]
            let d = m.cfg.text.hidden_size;
            if seq.len() > run.prompt.len() {
                x.extend(m.lm.embed_tokens(&seq[run.prompt.len()..])?);
            }
            x.truncate(seq.len() * d);
            m.forward_embeds(x, seq.len(), &mut e.kv)
        }
        Model::Llava(m) => m.lm.forward(seq, &mut e.kv),
        Model::Text(m) => m.forward(seq, &mut e.kv),
    }
}
