//! Loading a [`Llama`] from a checkpoint, by HF Llama names or OLMo's own names
//! ([`Names`]), with the family's norm layout and, for BitNet models, ternary block linears.
//!
//! HF names (Llama, Mistral, Gemma, HF `olmo`): `model.embed_tokens.weight`,
//! `model.layers.N.{input_layernorm,post_attention_layernorm}.weight` (absent for OLMo's
//! weightless LayerNorm), `self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`,
//! `model.norm.weight`, optional `lm_head.weight`.
//! OLMo names (under `model.transformer.` or `transformer.`): `wte.weight`
//! `[embedding_size, d_model]`, `blocks.N.attn_norm` / `ff_norm` (weights only with
//! `layer_norm_with_affine`), `blocks.N.att_proj` `[d + 2·kv, d]` (q | k | v),
//! `blocks.N.attn_out` `[d, d]`, `blocks.N.ff_proj` `[2·ffn, d]` (up | gate: OLMo's SwiGLU is
//! `x, gate = h.chunk(2)`), `blocks.N.ff_out` `[d, ffn]`, `ln_f`, and `ff_out` when untied.

use super::config::{Names, NormKind};
use super::linear::{load_fused, load_linear, load_matrix, load_vector, Linear};
use super::llama::{Layer, Llama, Norm};
use super::rope::Rope;
use super::{LlamaConfig, LoadOptions};
use crate::error::{Error, Result};
use crate::io::WeightSource;
use crate::quant::WeightFormat;

pub(super) fn load(cfg: LlamaConfig, src: &dyn WeightSource, prefix: &str, opts: &LoadOptions) -> Result<Llama> {
    let (d, v) = (cfg.hidden_size, cfg.vocab_size);
    let (embed_name, head_name, norm_name, block) = match cfg.arch.names {
        Names::Hf => (
            format!("{prefix}model.embed_tokens.weight"),
            format!("{prefix}lm_head"),
            format!("{prefix}model.norm"),
            format!("{prefix}model.layers."),
        ),
        Names::Olmo => {
            let root = olmo_root(src, prefix);
            (format!("{root}wte.weight"), format!("{root}ff_out"), format!("{root}ln_f"), format!("{root}blocks."))
        }
    };
    let embed = Linear { w: load_matrix(src, &embed_name, v, d, opts)?, bias: None };
    // No output weight means tied embeddings (GGUF files of tied models omit `output.weight`
    // whatever the config says).
    let lm_head = if src.contains(&format!("{head_name}.weight")) {
        Some(load_linear(src, &head_name, v, d, opts)?)
    } else {
        None
    };
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| match cfg.arch.names {
            Names::Hf => load_hf_layer(&cfg, src, &format!("{block}{i}."), opts),
            Names::Olmo => load_olmo_block(&cfg, src, &format!("{block}{i}."), opts),
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = load_norm(&cfg, src, &norm_name)?;
    let rope = Rope::new(&cfg)?;
    Ok(Llama { cfg, embed, layers, norm, lm_head, rope })
}

/// `{prefix}model.transformer.` (hf_olmo) or `{prefix}transformer.` (OLMo's own checkpoints).
fn olmo_root(src: &dyn WeightSource, prefix: &str) -> String {
    let hf = format!("{prefix}model.transformer.");
    if src.contains(&format!("{hf}wte.weight")) {
        hf
    } else {
        format!("{prefix}transformer.")
    }
}

/// Load options for block linears: BitNet models always get ternary weights (BitLinear158
/// semantics), whatever `opts.weights` asks.
fn block_opts(cfg: &LlamaConfig, opts: &LoadOptions) -> LoadOptions {
    if cfg.arch.ternary {
        LoadOptions { weights: Some(WeightFormat::Ternary), ..*opts }
    } else {
        *opts
    }
}

/// A norm `name.weight` (+ `name.bias`). RMSNorms of HF-named models need their weight;
/// LayerNorms and OLMo-named norms may be weightless.
fn load_norm(cfg: &LlamaConfig, src: &dyn WeightSource, name: &str) -> Result<Norm> {
    let d = cfg.hidden_size;
    let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
    let optional = cfg.arch.norm == NormKind::Layer || cfg.arch.names == Names::Olmo;
    let w = if src.contains(&wn) || !optional { Some(load_vector(src, &wn, d)?) } else { None };
    let w = match (cfg.arch.norm, w) {
        (NormKind::RmsPlusOne, Some(w)) => Some(w.into_iter().map(|x| 1.0 + x).collect()),
        (_, w) => w,
    };
    let b = if src.contains(&bn) { Some(load_vector(src, &bn, d)?) } else { None };
    if b.is_some() && cfg.arch.norm != NormKind::Layer {
        return Err(Error::Unsupported(format!("`{bn}`: a bias on an RMSNorm")));
    }
    Ok(Norm { w, b })
}

fn load_hf_layer(cfg: &LlamaConfig, src: &dyn WeightSource, p: &str, opts: &LoadOptions) -> Result<Layer> {
    let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
    let (qd, kvd) = (cfg.n_heads() * cfg.head_dim(), cfg.n_kv_heads() * cfg.head_dim());
    let bo = block_opts(cfg, opts);
    let lin = |name: &str, o, i| load_linear(src, &format!("{p}{name}"), o, i, &bo);
    Ok(Layer {
        input_norm: load_norm(cfg, src, &format!("{p}input_layernorm"))?,
        q: lin("self_attn.q_proj", qd, d)?,
        k: lin("self_attn.k_proj", kvd, d)?,
        v: lin("self_attn.v_proj", kvd, d)?,
        o: lin("self_attn.o_proj", d, qd)?,
        post_norm: load_norm(cfg, src, &format!("{p}post_attention_layernorm"))?,
        gate: lin("mlp.gate_proj", f, d)?,
        up: lin("mlp.up_proj", f, d)?,
        down: lin("mlp.down_proj", d, f)?,
    })
}

fn load_olmo_block(cfg: &LlamaConfig, src: &dyn WeightSource, p: &str, opts: &LoadOptions) -> Result<Layer> {
    let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
    let (qd, kvd) = (cfg.n_heads() * cfg.head_dim(), cfg.n_kv_heads() * cfg.head_dim());
    let bo = block_opts(cfg, opts);
    let split = |e: Vec<Linear>| Error::Shape(format!("{p}: fused projection split into {} parts", e.len()));
    let [q, k, v]: [Linear; 3] =
        load_fused(src, &format!("{p}att_proj"), &[qd, kvd, kvd], d, &bo)?.try_into().map_err(split)?;
    let [up, gate]: [Linear; 2] =
        load_fused(src, &format!("{p}ff_proj"), &[f, f], d, &bo)?.try_into().map_err(split)?;
    Ok(Layer {
        input_norm: load_norm(cfg, src, &format!("{p}attn_norm"))?,
        q,
        k,
        v,
        o: load_linear(src, &format!("{p}attn_out"), d, qd, &bo)?,
        post_norm: load_norm(cfg, src, &format!("{p}ff_norm"))?,
        gate,
        up,
        down: load_linear(src, &format!("{p}ff_out"), d, f, &bo)?,
    })
}
