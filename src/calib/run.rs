//! Calibration of a whole checkpoint (`webvlm convert --method … --calibrate …`) and the
//! comparison of a converted model with its source (`webvlm eval`).
//!
//! Scope: Llama-family checkpoints with HF tensor names and dense (non-BitNet) block linears;
//! LLaVA checkpoints calibrate their language model ([`super::vlm`]). The block linears take the calibrated method; the embedding and output layer take
//! the format `convert` gives them (RTN), as before.

use super::data::{self, TextSpec};
use super::eval::{evaluate, Quality};
use super::gptq::GptqOptions;
use super::pipeline::{quantize_model, CalibOptions, LinearReport, Method, ModelReport, LINEARS};
use super::stats::collect;
use crate::error::{Error, Result};
use crate::io::{Checkpoint, Tensor, TensorData};
use crate::model::config::Names;
use crate::model::{Linear, Llama, LlamaConfig, LoadOptions};
use crate::quant::{QTensor, WeightFormat};
use crate::tokenizer::Tokenizer;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Everything `--method` / `--calibrate` / `--ratio` set.
#[derive(Clone, Debug)]
pub struct CalibConfig {
    pub method: Method,
    pub ratio: Option<f64>,
    pub spec: TextSpec,
    pub act_order: bool,
    /// Calibration tokens (at most).
    pub calib_tokens: usize,
    /// Held-out tokens evaluated (at most).
    pub eval_tokens: usize,
    /// Tokens per sequence (each from an empty KV cache).
    pub seq_len: usize,
    /// Input rows kept per site for AWQ's search and the error measurements.
    pub sample_rows: usize,
    pub awq_points: usize,
    /// `--entropy-guided [--entropy-blocks N]`: INT4/INT8 at `ratio` by entropy-guided blocks
    /// (`Some(0)`: the default block count); `None`: by per-tensor sensitivity.
    pub entropy_blocks: Option<usize>,
}

impl Default for CalibConfig {
    fn default() -> Self {
        CalibConfig {
            method: Method::Rtn,
            ratio: None,
            spec: TextSpec::Builtin,
            act_order: false,
            calib_tokens: 2048,
            eval_tokens: 1024,
            seq_len: 256,
            sample_rows: 256,
            awq_points: 20,
            entropy_blocks: None,
        }
    }
}

/// `(stage, done, total)`: "collect", "quantize", "evaluate".
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// What `convert` writes for a calibrated model.
pub struct Calibrated {
    /// Tensors by HF name (block linears, their norms and biases, embedding, output layer).
    pub tensors: HashMap<String, Tensor>,
    /// The `quality.json` document.
    pub quality: serde_json::Value,
    /// `quality.svg`: per-layer relative reconstruction error ([`super::plot`]).
    pub plot: String,
}

#[derive(Serialize)]
struct QualityDoc<'a> {
    method: String,
    ratio: Option<f64>,
    /// `"sensitivity"` (`--ratio`) or `"entropy-guided"`; absent without a ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    allocation: Option<&'static str>,
    weights: String,
    calibration_text: String,
    calibration_tokens: usize,
    evaluation: &'a Quality,
    seconds: f64,
    layers: &'a [LinearReport],
    /// Activation entropy per decoder layer, bits ([`super::entropy`]).
    layer_entropy: &'a [f64],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    blocks: &'a [super::entropy::BlockReport],
}

/// The model config of a checkpoint calibration supports.
fn check_config(ckpt: &Checkpoint) -> Result<LlamaConfig> {
    let cfg = LlamaConfig::from_value(&ckpt.config)?;
    if cfg.arch.ternary || cfg.arch.names != Names::Hf {
        return Err(Error::Unsupported("calibrated quantization of BitNet / OLMo-named checkpoints".into()));
    }
    Ok(cfg)
}

/// A Llama and its tokenizer from `path`; `f32`: every weight dense f32 (the reference).
pub fn open_llama(path: &Path, f32: bool) -> Result<(Llama, Tokenizer)> {
    let ckpt = crate::io::open(path)?;
    let cfg = check_config(&ckpt)?;
    let opts = LoadOptions { weights: f32.then_some(WeightFormat::F32), context_len: None };
    let model = Llama::load(cfg, ckpt.weights.as_ref(), "", &opts)?;
    Ok((model, Tokenizer::from_spec(ckpt.tokenizer)?))
}

/// Calibrate the checkpoint at `src`: block linears to `fmt` (INT4 or INT8) by `c.method`,
/// the embedding / output layer to `head_fmt(name, shape)` by RTN; evaluate against f32.
/// LLaVA checkpoints calibrate their language model ([`super::vlm`]).
pub fn calibrate(
    src: &Path,
    fmt: WeightFormat,
    head_fmt: &mut dyn FnMut(&str, &[usize]) -> WeightFormat,
    c: &CalibConfig,
    progress: Progress,
) -> Result<Calibrated> {
    let t0 = std::time::Instant::now();
    if crate::model::llava::is_llava(&crate::io::open(src)?.config) {
        return super::vlm::calibrate(src, fmt, head_fmt, c, progress);
    }
    let (mut model, tok) = open_llama(src, true)?;
    let text = data::load(&c.spec)?;
    let calib = data::sequences(&tok, &text.calib, c.seq_len, c.calib_tokens)?;
    let held = data::sequences(&tok, &text.heldout, c.seq_len, c.eval_tokens)?;
    let stats = collect(&model, &calib, c.sample_rows, &mut |d, t| progress("collect", d, t))?;
    let rep = quantize_model(&mut model, stats, &options(c, fmt), &mut |d, t| progress("quantize", d, t))?;
    quantize_heads(&mut model, head_fmt)?;
    let (reference, _) = open_llama(src, true)?;
    let quality = evaluate(&reference, &model, &held, &mut |d, t| progress("evaluate", d, t))?;
    let tokens = calib.iter().map(Vec::len).sum();
    finish(c, fmt, tokens, &quality, &rep, t0, model_tensors(model))
}

/// The quantization options of a calibration config.
pub(super) fn options(c: &CalibConfig, fmt: WeightFormat) -> CalibOptions {
    CalibOptions {
        method: c.method,
        fmt,
        ratio: c.ratio,
        gptq: GptqOptions { act_order: c.act_order, ..GptqOptions::default() },
        awq_points: c.awq_points,
        entropy_blocks: c.entropy_blocks,
    }
}

/// `quality.json` and `quality.svg` of a finished calibration.
pub(super) fn finish(
    c: &CalibConfig,
    fmt: WeightFormat,
    calibration_tokens: usize,
    quality: &Quality,
    rep: &ModelReport,
    t0: std::time::Instant,
    tensors: HashMap<String, Tensor>,
) -> Result<Calibrated> {
    let doc = QualityDoc {
        method: format!("{:?}", c.method).to_lowercase(),
        ratio: c.ratio,
        allocation: c.ratio.map(|_| if c.entropy_blocks.is_some() { "entropy-guided" } else { "sensitivity" }),
        weights: fmt.name(),
        calibration_text: match &c.spec {
            TextSpec::Builtin => "builtin (CPython pydoc_data topics)".into(),
            TextSpec::File(p) => p.display().to_string(),
            TextSpec::Images(p) => format!("images: {}", p.display()),
        },
        calibration_tokens,
        evaluation: quality,
        seconds: t0.elapsed().as_secs_f64(),
        layers: &rep.linears,
        layer_entropy: &rep.entropy,
        blocks: &rep.blocks,
    };
    let title = format!(
        "{} {}{}: relative reconstruction error per block linear (mean KL {:.4})",
        doc.method,
        doc.weights,
        c.ratio.map(|r| format!(", {} ratio {r}", doc.allocation.unwrap_or(""))).unwrap_or_default(),
        quality.mean_kl
    );
    let plot = super::plot::svg(&rep.linears, &title);
    Ok(Calibrated { tensors, quality: serde_json::to_value(doc)?, plot })
}

/// RTN of the embedding and (untied) output layer to the formats `convert` chose.
pub(super) fn quantize_heads(
    model: &mut Llama,
    head_fmt: &mut dyn FnMut(&str, &[usize]) -> WeightFormat,
) -> Result<()> {
    let mut q = |name: &str, l: &mut Linear| -> Result<()> {
        let (r, c) = (l.w.rows, l.w.cols);
        l.w = QTensor::quantize(&l.w.dequantize(), r, c, head_fmt(name, &[r, c]))?;
        Ok(())
    };
    q("model.embed_tokens.weight", &mut model.embed)?;
    if let Some(h) = model.lm_head.as_mut() {
        q("lm_head.weight", h)?;
    }
    Ok(())
}

fn tensor(w: QTensor) -> Tensor {
    let shape = vec![w.rows, w.cols];
    match w.data {
        crate::quant::QData::F32(v) => Tensor::f32(shape, v),
        _ => Tensor { shape, data: TensorData::Quant(w) },
    }
}

/// The model's weights by HF name (norm weights are plain RMSNorm weights: checked by AWQ).
pub(super) fn model_tensors(model: Llama) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for (l, mut layer) in model.layers.into_iter().enumerate() {
        let p = format!("model.layers.{l}.");
        for (norm, name) in [(&layer.input_norm, "input_layernorm"), (&layer.post_norm, "post_attention_layernorm")] {
            if let Some(w) = &norm.w {
                out.insert(format!("{p}{name}.weight"), Tensor::f32(vec![w.len()], w.clone()));
            }
        }
        for (k, name) in LINEARS.iter().enumerate() {
            let lin = std::mem::replace(super::pipeline::linear_mut(&mut layer, k), empty());
            if let Some(b) = lin.bias {
                out.insert(format!("{p}{name}.bias"), Tensor::f32(vec![b.len()], b));
            }
            out.insert(format!("{p}{name}.weight"), tensor(lin.w));
        }
    }
    out.insert("model.embed_tokens.weight".into(), tensor(model.embed.w));
    if let Some(h) = model.lm_head {
        out.insert("lm_head.weight".into(), tensor(h.w));
    }
    out
}

fn empty() -> Linear {
    Linear { w: QTensor { rows: 0, cols: 0, data: crate::quant::QData::F32(Vec::new()) }, bias: None }
}

/// `webvlm eval`: the converted model at `model` against the f32 model at `reference` on the
/// held-out part of `spec` (LLaVA: [`super::vlm::eval_paths`]).
pub fn eval_paths(
    model: &Path,
    reference: &Path,
    spec: &TextSpec,
    c: &CalibConfig,
    progress: Progress,
) -> Result<Quality> {
    if crate::model::llava::is_llava(&crate::io::open(reference)?.config) {
        return super::vlm::eval_paths(model, reference, &CalibConfig { spec: spec.clone(), ..c.clone() }, progress);
    }
    let (m, _) = open_llama(model, false)?;
    let (r, tok) = open_llama(reference, true)?;
    if m.cfg.vocab_size != r.cfg.vocab_size || m.layers.len() != r.layers.len() {
        return Err(Error::Shape("the model and the reference have different shapes".into()));
    }
    let text = data::load(spec)?;
    let held = data::sequences(&tok, &text.heldout, c.seq_len, c.eval_tokens)?;
    evaluate(&r, &m, &held, &mut |d, t| progress("evaluate", d, t))
}
