//! The one decoder of every Llama-family text model, following transformers'
//! `LlamaForCausalLM`: embed → N × (norm → attention → residual, norm → gated MLP → residual)
//! → norm → lm_head, with the family differences of [`super::config::Arch`]:
//! - Gemma-1 (`modeling_gemma.py`): input embeddings × `sqrt(hidden_size)` (computed in f32) in
//!   [`Llama::forward_embeds`], so image features LLaVA places among them are scaled too, as
//!   Gemma's forward does to every `inputs_embeds`; RMSNorm with `(1 + w)`; GeGLU
//!   (`gelu_pytorch_tanh`); `head_dim` from the config; tied embeddings.
//! - OLMo (`modeling_olmo.py`): weightless LayerNorm (eps 1e-5), SwiGLU, q/k/v clamped to
//!   `±clip_qkv`; also OLMo's own checkpoint names and fused `att_proj` / `ff_proj`
//!   ([`super::olmo_config`]).
//! - BitNet b1.58 (NousResearch/OLMo-Bitnet-1B, IntelLabs' LLaVaOLMoBitnet1B): every block
//!   linear is a `BitLinear158`: a weightless RMSNorm (eps 1e-5) of its input, per-token int8
//!   absmax activations and absmean-ternarized weights ([`crate::quant::ternary`],
//!   [`crate::kernels::ternary`]). The embedding and the (tied) output layer stay dense.
//!
//! Weights are read by their HF names under an optional prefix (`language_model.` inside
//! LLaVA); loading is in [`super::load`].

use super::attention::{attend, AttnShape};
use super::config::NormKind;
use super::linear::Linear;
use super::ops::{add_inplace, glu, layer_norm, rms_norm, rms_norm_plain};
use super::rope::Rope;
use super::{KvCache, LlamaConfig, LoadOptions};
use crate::error::{Error, Result};
use crate::io::WeightSource;

/// Epsilon of the RMSNorm inside BitLinear158 (OLMo `RMSLayerNorm` default).
const BITLINEAR_EPS: f32 = 1e-5;

/// A normalization layer's weights; its kind and epsilon come from the config. Gemma's
/// `(1 + w)` is folded into `w` when loading.
#[derive(Clone, Debug, Default)]
pub struct Norm {
    /// `[hidden]`, `None` for weightless norms (OLMo).
    pub w: Option<Vec<f32>>,
    /// `[hidden]`, LayerNorm bias if the checkpoint has one.
    pub b: Option<Vec<f32>>,
}

impl Norm {
    /// `x`, `y`: `[n, d]`.
    pub fn apply(&self, kind: NormKind, eps: f32, x: &[f32], d: usize, y: &mut [f32]) {
        match (kind, &self.w) {
            (NormKind::Layer, w) => layer_norm(x, d, w.as_deref(), self.b.as_deref(), eps, y),
            (_, Some(w)) => rms_norm(x, w, eps, y),
            (_, None) => {
                y.copy_from_slice(x);
                rms_norm_plain(y, d, eps);
            }
        }
    }
    pub fn nbytes(&self) -> usize {
        4 * (self.w.as_ref().map_or(0, Vec::len) + self.b.as_ref().map_or(0, Vec::len))
    }
}

/// The error of a CPU forward over weights that live only on the GPU.
fn no_cpu_weights() -> Error {
    Error::Invalid("the decoder's weights are on the GPU only; the CPU path needs them loaded again".into())
}

/// One decoder layer.
pub struct Layer {
    pub input_norm: Norm,
    /// `[heads*head_dim, hidden]`
    pub q: Linear,
    /// `[kv_heads*head_dim, hidden]`
    pub k: Linear,
    /// `[kv_heads*head_dim, hidden]`
    pub v: Linear,
    /// `[hidden, heads*head_dim]`
    pub o: Linear,
    pub post_norm: Norm,
    /// `[ffn, hidden]`
    pub gate: Linear,
    /// `[ffn, hidden]`
    pub up: Linear,
    /// `[hidden, ffn]`
    pub down: Linear,
}

/// Where [`Llama::forward_observed`] shows an activation: the input of a group of linears
/// that share it, or the final normed hidden state that enters `lm_head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// Input of q/k/v (after the input norm): `[n, hidden]`.
    Qkv,
    /// Input of o (the attention output): `[n, heads*head_dim]`.
    O,
    /// Input of gate/up (after the post-attention norm): `[n, hidden]`.
    GateUp,
    /// Input of down (the gated product): `[n, ffn]`.
    Down,
    /// The final norm's output for every position, the input of `lm_head`: `[n, hidden]`.
    Final,
}

/// Called with `(layer, site, activations, n)`; `layer` is `num_hidden_layers` for [`Site::Final`].
pub type Observer<'a> = &'a mut dyn FnMut(usize, Site, &[f32], usize);

pub struct Llama {
    pub cfg: LlamaConfig,
    /// `[vocab, hidden]`; also the output projection when embeddings are tied.
    pub embed: Linear,
    pub layers: Vec<Layer>,
    pub norm: Norm,
    /// `[vocab, hidden]`, `None` when tied to `embed`.
    pub lm_head: Option<Linear>,
    pub rope: Rope,
}

impl Llama {
    /// Build from a checkpoint's weights (HF or OLMo names, after `prefix`).
    pub fn load(cfg: LlamaConfig, src: &dyn WeightSource, prefix: &str, opts: &LoadOptions) -> Result<Llama> {
        super::load::load(cfg, src, prefix, opts)
    }

    /// A KV cache for this model holding up to `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.cfg.num_hidden_layers, self.cfg.n_kv_heads(), self.cfg.head_dim(), capacity)
    }

    /// Embedding rows for `tokens` → `[n, hidden]`. Errors on ids outside the vocabulary.
    pub fn embed_tokens(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let d = self.cfg.hidden_size;
        if self.embed.w.is_placeholder() {
            return Err(no_cpu_weights());
        }
        let mut x = vec![0f32; tokens.len() * d];
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(d)) {
            if t as usize >= self.cfg.vocab_size {
                return Err(Error::Invalid(format!(
                    "token id {t} is outside the vocabulary of {} tokens",
                    self.cfg.vocab_size
                )));
            }
            self.embed.w.row(t as usize, row);
        }
        Ok(x)
    }

    /// Run `tokens` after what `kv` holds; returns the last position's logits `[vocab]`.
    pub fn forward(&self, tokens: &[u32], kv: &mut KvCache) -> Result<Vec<f32>> {
        let x = self.embed_tokens(tokens)?;
        self.forward_embeds(x, tokens.len(), kv)
    }

    /// Run input embeddings `x: [n, hidden]` after what `kv` holds; returns the last
    /// position's logits `[vocab]`. LLaVA puts image features among the text embeddings here.
    pub fn forward_embeds(&self, x: Vec<f32>, n: usize, kv: &mut KvCache) -> Result<Vec<f32>> {
        self.forward_inner(x, n, kv, &mut None)
    }

    /// [`Llama::forward`] that also shows `observe` the input of every linear and the final
    /// normed hidden states (calibration, evaluation). The plain forward passes `None`.
    pub fn forward_observed(&self, tokens: &[u32], kv: &mut KvCache, observe: Observer) -> Result<Vec<f32>> {
        let x = self.embed_tokens(tokens)?;
        self.forward_inner(x, tokens.len(), kv, &mut Some(observe))
    }

    /// [`Llama::forward_embeds`] that shows `observe` what [`Llama::forward_observed`] shows
    /// (calibration and evaluation of LLaVA's decoder on inputs with image features).
    pub fn forward_embeds_observed(
        &self,
        x: Vec<f32>,
        n: usize,
        kv: &mut KvCache,
        observe: Observer,
    ) -> Result<Vec<f32>> {
        self.forward_inner(x, n, kv, &mut Some(observe))
    }

    fn forward_inner(
        &self,
        mut x: Vec<f32>,
        n: usize,
        kv: &mut KvCache,
        obs: &mut Option<Observer>,
    ) -> Result<Vec<f32>> {
        let d = self.cfg.hidden_size;
        if n == 0 {
            return Err(Error::Invalid("forward called with no tokens".into()));
        }
        if x.len() != n * d {
            return Err(Error::Shape(format!("{} embedding values for [{n}, {d}]", x.len())));
        }
        kv.check_room(n)?;
        if !self.has_cpu_weights() {
            return Err(no_cpu_weights());
        }
        if self.cfg.arch.embed_scale {
            let normalizer = (d as f64).sqrt() as f32; // Gemma: sqrt(hidden) in the hidden dtype
            x.iter_mut().for_each(|v| *v *= normalizer);
        }
        let pos0 = kv.len();
        let inv_freq = self.rope.frequencies(pos0 + n, &mut kv.rope_max_seq);
        for (l, layer) in self.layers.iter().enumerate() {
            self.layer_forward(l, layer, &mut x, n, pos0, &inv_freq, kv, obs);
        }
        kv.advance(n);
        if let Some(f) = obs {
            let mut h = vec![0f32; n * d]; // [n, hidden]
            self.norm.apply(self.cfg.arch.norm, self.cfg.norm_eps(), &x, d, &mut h);
            f(self.layers.len(), Site::Final, &h, n);
        }
        let last = &x[(n - 1) * d..];
        let mut h = vec![0f32; d];
        self.norm.apply(self.cfg.arch.norm, self.cfg.norm_eps(), last, d, &mut h);
        let mut logits = self.lm_head.as_ref().unwrap_or(&self.embed).apply(&h, 1);
        if self.cfg.arch.scale_logits {
            let s = 1.0 / (d as f32).sqrt();
            logits.iter_mut().for_each(|v| *v *= s);
        }
        Ok(logits)
    }

    /// One decoder layer in place on the residual stream `x: [n, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        l: usize,
        layer: &Layer,
        x: &mut [f32],
        n: usize,
        pos0: usize,
        inv_freq: &[f32],
        kv: &mut KvCache,
        obs: &mut Option<Observer>,
    ) {
        let c = &self.cfg;
        let (d, eps, kind) = (c.hidden_size, c.norm_eps(), c.arch.norm);
        let (heads, kvh, hd) = (c.n_heads(), c.n_kv_heads(), c.head_dim());
        let mut h = vec![0f32; x.len()]; // [n, hidden]
        layer.input_norm.apply(kind, eps, x, d, &mut h);
        self.bitlinear_input(&mut h, d);
        if let Some(f) = obs {
            f(l, Site::Qkv, &h, n);
        }
        let mut q = layer.q.apply(&h, n); // [n, heads, hd]
        let mut k = layer.k.apply(&h, n); // [n, kv_heads, hd]
        let mut v = layer.v.apply(&h, n); // [n, kv_heads, hd]
        if let Some(clip) = c.clip_qkv {
            let m = clip as f32;
            for t in [&mut q, &mut k, &mut v] {
                t.iter_mut().for_each(|e| *e = e.clamp(-m, m));
            }
        }
        self.rope.apply(&mut q, heads, pos0, inv_freq);
        self.rope.apply(&mut k, kvh, pos0, inv_freq);
        kv.append(l, &k, &v);
        let shape = AttnShape { heads, kv_heads: kvh, head_dim: hd, pos0, window: c.sliding_window };
        let mut att = vec![0f32; n * heads * hd]; // [n, heads, hd]
        attend(&q, &kv.k[l], &kv.v[l], shape, &mut att);
        self.bitlinear_input(&mut att, heads * hd);
        if let Some(f) = obs {
            f(l, Site::O, &att, n);
        }
        let o = layer.o.apply(&att, n); // [n, hidden]
        add_inplace(x, &o);

        layer.post_norm.apply(kind, eps, x, d, &mut h);
        self.bitlinear_input(&mut h, d);
        if let Some(f) = obs {
            f(l, Site::GateUp, &h, n);
        }
        let mut gate = layer.gate.apply(&h, n); // [n, ffn]
        let up = layer.up.apply(&h, n); // [n, ffn]
        glu(c.arch.act, &mut gate, &up);
        self.bitlinear_input(&mut gate, c.intermediate_size);
        if let Some(f) = obs {
            f(l, Site::Down, &gate, n);
        }
        let down = layer.down.apply(&gate, n); // [n, hidden]
        add_inplace(x, &down);
    }

    /// BitLinear158's own input normalization (weightless RMSNorm over rows of `width`), for
    /// models trained that way; a no-op otherwise.
    fn bitlinear_input(&self, x: &mut [f32], width: usize) {
        if self.cfg.arch.bitlinear_norm {
            rms_norm_plain(x, width, BITLINEAR_EPS);
        }
    }

    /// Bytes held by all weights.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.w.nbytes() + l.bias.as_ref().map_or(0, |b| 4 * b.len());
        let layers: usize = self
            .layers
            .iter()
            .map(|y| {
                [&y.q, &y.k, &y.v, &y.o, &y.gate, &y.up, &y.down].iter().map(|l| lin(l)).sum::<usize>()
                    + y.input_norm.nbytes()
                    + y.post_norm.nbytes()
            })
            .sum();
        layers + lin(&self.embed) + self.lm_head.as_ref().map_or(0, lin) + self.norm.nbytes()
    }
}
