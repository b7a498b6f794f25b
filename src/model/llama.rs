//! The Llama-family decoder (Llama, Mistral with sliding window, SmolLM2), following
//! transformers' `LlamaForCausalLM`: embed → N × (RMSNorm → attention → residual,
//! RMSNorm → SwiGLU MLP → residual) → RMSNorm → lm_head. Weights are read by their HF
//! names under an optional prefix (`language_model.` inside LLaVA).

use super::attention::{attend, AttnShape};
use super::linear::{load_linear, load_matrix, load_vector, Linear};
use super::ops::{add_inplace, rms_norm, swiglu};
use super::rope::Rope;
use super::{KvCache, LlamaConfig, LoadOptions};
use crate::error::{Error, Result};
use crate::io::WeightSource;

/// One decoder layer.
pub struct Layer {
    /// `[hidden]`
    pub input_norm: Vec<f32>,
    /// `[heads*head_dim, hidden]`
    pub q: Linear,
    /// `[kv_heads*head_dim, hidden]`
    pub k: Linear,
    /// `[kv_heads*head_dim, hidden]`
    pub v: Linear,
    /// `[hidden, heads*head_dim]`
    pub o: Linear,
    /// `[hidden]`
    pub post_norm: Vec<f32>,
    /// `[ffn, hidden]`
    pub gate: Linear,
    /// `[ffn, hidden]`
    pub up: Linear,
    /// `[hidden, ffn]`
    pub down: Linear,
}

pub struct Llama {
    pub cfg: LlamaConfig,
    /// `[vocab, hidden]`; also the output projection when embeddings are tied.
    pub embed: Linear,
    pub layers: Vec<Layer>,
    /// `[hidden]`
    pub norm: Vec<f32>,
    /// `[vocab, hidden]`, `None` when tied to `embed`.
    pub lm_head: Option<Linear>,
    pub rope: Rope,
}

impl Llama {
    /// Build from a checkpoint's weights (HF names, after `prefix`).
    pub fn load(cfg: LlamaConfig, src: &dyn WeightSource, prefix: &str, opts: &LoadOptions) -> Result<Llama> {
        if cfg.hidden_act != "silu" {
            return Err(Error::Unsupported(format!("hidden_act `{}` (only silu)", cfg.hidden_act)));
        }
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let embed =
            Linear { w: load_matrix(src, &format!("{prefix}model.embed_tokens.weight"), v, d, opts)?, bias: None };
        let head_name = format!("{prefix}lm_head.weight");
        // No `lm_head.weight` means tied embeddings (GGUF files of tied models omit
        // `output.weight` whatever the config says).
        let lm_head = if src.contains(&head_name) {
            Some(load_linear(src, &format!("{prefix}lm_head"), v, d, opts)?)
        } else {
            None
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| load_layer(&cfg, src, &format!("{prefix}model.layers.{i}."), opts))
            .collect::<Result<Vec<_>>>()?;
        let norm = load_vector(src, &format!("{prefix}model.norm.weight"), d)?;
        let rope = Rope::new(&cfg)?;
        Ok(Llama { cfg, embed, layers, norm, lm_head, rope })
    }

    /// A KV cache for this model holding up to `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.cfg.num_hidden_layers, self.cfg.n_kv_heads(), self.cfg.head_dim(), capacity)
    }

    /// Embedding rows for `tokens` → `[n, hidden]`. Errors on ids outside the vocabulary.
    pub fn embed_tokens(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let d = self.cfg.hidden_size;
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
    pub fn forward_embeds(&self, mut x: Vec<f32>, n: usize, kv: &mut KvCache) -> Result<Vec<f32>> {
        let d = self.cfg.hidden_size;
        if n == 0 {
            return Err(Error::Invalid("forward called with no tokens".into()));
        }
        if x.len() != n * d {
            return Err(Error::Shape(format!("{} embedding values for [{n}, {d}]", x.len())));
        }
        kv.check_room(n)?;
        let pos0 = kv.len();
        let inv_freq = self.rope.frequencies(pos0 + n, &mut kv.rope_max_seq);
        for (l, layer) in self.layers.iter().enumerate() {
            self.layer_forward(l, layer, &mut x, n, pos0, &inv_freq, kv);
        }
        kv.advance(n);
        let last = &x[(n - 1) * d..];
        let mut h = vec![0f32; d];
        rms_norm(last, &self.norm, self.cfg.rms_norm_eps as f32, &mut h);
        Ok(self.lm_head.as_ref().unwrap_or(&self.embed).apply(&h, 1))
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
    ) {
        let c = &self.cfg;
        let eps = c.rms_norm_eps as f32;
        let (heads, kvh, hd) = (c.n_heads(), c.n_kv_heads(), c.head_dim());
        let mut h = vec![0f32; x.len()]; // [n, hidden]
        rms_norm(x, &layer.input_norm, eps, &mut h);
        let mut q = layer.q.apply(&h, n); // [n, heads, hd]
        let mut k = layer.k.apply(&h, n); // [n, kv_heads, hd]
        let v = layer.v.apply(&h, n); // [n, kv_heads, hd]
        self.rope.apply(&mut q, heads, pos0, inv_freq);
        self.rope.apply(&mut k, kvh, pos0, inv_freq);
        kv.append(l, &k, &v);
        let shape = AttnShape { heads, kv_heads: kvh, head_dim: hd, pos0, window: c.sliding_window };
        let mut att = vec![0f32; n * heads * hd]; // [n, heads, hd]
        attend(&q, &kv.k[l], &kv.v[l], shape, &mut att);
        let o = layer.o.apply(&att, n); // [n, hidden]
        add_inplace(x, &o);

        rms_norm(x, &layer.post_norm, eps, &mut h);
        let mut gate = layer.gate.apply(&h, n); // [n, ffn]
        let up = layer.up.apply(&h, n); // [n, ffn]
        swiglu(&mut gate, &up);
        let down = layer.down.apply(&gate, n); // [n, hidden]
        add_inplace(x, &down);
    }

    /// Bytes held by all weights.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.w.nbytes() + l.bias.as_ref().map_or(0, |b| 4 * b.len());
        let layers: usize = self
            .layers
            .iter()
            .map(|y| {
                [&y.q, &y.k, &y.v, &y.o, &y.gate, &y.up, &y.down].iter().map(|l| lin(l)).sum::<usize>()
                    + 4 * (y.input_norm.len() + y.post_norm.len())
            })
            .sum();
        layers + lin(&self.embed) + self.lm_head.as_ref().map_or(0, lin) + 4 * self.norm.len()
    }
}

fn load_layer(cfg: &LlamaConfig, src: &dyn WeightSource, p: &str, opts: &LoadOptions) -> Result<Layer> {
    let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
    let (qd, kvd) = (cfg.n_heads() * cfg.head_dim(), cfg.n_kv_heads() * cfg.head_dim());
    let lin = |name: &str, o, i| load_linear(src, &format!("{p}{name}"), o, i, opts);
    Ok(Layer {
        input_norm: load_vector(src, &format!("{p}input_layernorm.weight"), d)?,
        q: lin("self_attn.q_proj", qd, d)?,
        k: lin("self_attn.k_proj", kvd, d)?,
        v: lin("self_attn.v_proj", kvd, d)?,
        o: lin("self_attn.o_proj", d, qd)?,
        post_norm: load_vector(src, &format!("{p}post_attention_layernorm.weight"), d)?,
        gate: lin("mlp.gate_proj", f, d)?,
        up: lin("mlp.up_proj", f, d)?,
        down: lin("mlp.down_proj", d, f)?,
    })
}
