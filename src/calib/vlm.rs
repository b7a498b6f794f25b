//! Calibration of a LLaVA checkpoint's language model (`webvlm convert --calibrate DIR|FILE`
//! on a LLaVA source) and `webvlm eval` of a converted LLaVA.
//!
//! The whole model runs natively in f32: with an image folder ([`super::images`]) each item's
//! image goes through the vision tower and projector, its prompt through the chat template,
//! and the decoder runs on the merged embeddings while [`super::stats`] gathers its linears'
//! inputs, one item at a time (memory: one item's activations plus the fixed statistics). A
//! text spec calibrates the decoder on text alone. The decoder's block linears take the
//! method; embedding and output layer RTN; the vision tower and projector are left to
//! `convert`'s plain formats. The evaluation feeds both decoders the f32 reference's image
//! features, so `quality.json` measures the language model's quantization.

use super::data::{self, TextSpec};
use super::eval::{evaluate, evaluate_from, Quality};
use super::images::{self, Sampler};
use super::pipeline::quantize_model;
use super::run::{finish, model_tensors, options, quantize_heads, CalibConfig, Calibrated, Progress};
use super::stats::{collect, collect_from};
use crate::error::{Error, Result};
use crate::model::config::Names;
use crate::model::llava::{Llava, LlavaNames, VisionLoadOptions};
use crate::model::LoadOptions;
use crate::quant::WeightFormat;
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::path::Path;

/// A LLaVA model with what calibration needs beside it.
struct Opened {
    model: Llava,
    tok: Tokenizer,
    preprocessor: Option<serde_json::Value>,
    names: LlavaNames,
}

/// Open the LLaVA at `path`; `f32`: every weight dense f32 (the reference), else as stored.
fn open(path: &Path, f32: bool) -> Result<Opened> {
    let ckpt = crate::io::open(path)?;
    let w = f32.then_some(WeightFormat::F32);
    let opts = LoadOptions { weights: w, context_len: None };
    let model = Llava::load(&ckpt.config, ckpt.weights.as_ref(), &opts, &VisionLoadOptions { tower: w })?;
    let arch = &model.lm.cfg.arch;
    if arch.ternary || arch.names != Names::Hf {
        return Err(Error::Unsupported("calibrated quantization of BitNet / OLMo-named language models".into()));
    }
    let names = LlavaNames::detect(ckpt.weights.as_ref())?;
    Ok(Opened { model, tok: Tokenizer::from_spec(ckpt.tokenizer)?, preprocessor: ckpt.preprocessor, names })
}

/// The checkpoint's name of a decoder tensor named `model.*` / `lm_head.*`.
fn checkpoint_name(names: &LlavaNames, name: &str) -> String {
    names
        .text
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from.as_str()).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| name.to_string())
}

/// Calibrate the language model of the LLaVA at `src` ([`super::run::calibrate`]'s contract;
/// tensors come back under the checkpoint's names).
pub fn calibrate(
    src: &Path,
    fmt: WeightFormat,
    head_fmt: &mut dyn FnMut(&str, &[usize]) -> WeightFormat,
    c: &CalibConfig,
    progress: Progress,
) -> Result<Calibrated> {
    let t0 = std::time::Instant::now();
    let Opened { mut model, tok, preprocessor, names } = open(src, true)?;
    let mut tokens = 0usize;
    let stats = match &c.spec {
        TextSpec::Images(dir) => {
            let split = images::load(dir)?;
            let sampler = Sampler::new(&model, &tok, preprocessor.as_ref())?;
            let items = &split.calib;
            let mut next = |i: usize| {
                if tokens >= c.calib_tokens {
                    return Ok(None);
                }
                let s = sampler.sample(&items[i])?;
                tokens += s.ids.len();
                Ok(Some(s))
            };
            collect_from(&model.lm, items.len(), 1, c.sample_rows, &mut next, &mut |d, t| progress("collect", d, t))?
        }
        spec => {
            let seqs = data::sequences(&tok, &data::load(spec)?.calib, c.seq_len, c.calib_tokens)?;
            tokens = seqs.iter().map(Vec::len).sum();
            collect(&model.lm, &seqs, c.sample_rows, &mut |d, t| progress("collect", d, t))?
        }
    };
    let mut rep = quantize_model(&mut model.lm, stats, &options(c, fmt), &mut |d, t| progress("quantize", d, t))?;
    rep.linears.iter_mut().for_each(|l| l.name = checkpoint_name(&names, &l.name));
    quantize_heads(&mut model.lm, &mut |n, s| head_fmt(&checkpoint_name(&names, n), s))?;
    let reference = open(src, true)?;
    let quality = heldout_quality(&reference, &model, c, progress)?;
    let tensors: HashMap<_, _> =
        model_tensors(model.lm).into_iter().map(|(n, t)| (checkpoint_name(&names, &n), t)).collect();
    finish(c, fmt, tokens, &quality, &rep, t0, tensors)
}

/// Compare `model`'s decoder with the reference's on the held-out part of `c.spec` (images:
/// every held-out item, with the reference's image features).
fn heldout_quality(reference: &Opened, model: &Llava, c: &CalibConfig, progress: Progress) -> Result<Quality> {
    let mut prog = |d: usize, t: usize| progress("evaluate", d, t);
    match &c.spec {
        TextSpec::Images(dir) => {
            let held = images::load(dir)?.heldout;
            let sampler = Sampler::new(&reference.model, &reference.tok, reference.preprocessor.as_ref())?;
            evaluate_from(&reference.model.lm, &model.lm, held.len(), &mut |i| sampler.sample(&held[i]), &mut prog)
        }
        spec => {
            let seqs = data::sequences(&reference.tok, &data::load(spec)?.heldout, c.seq_len, c.eval_tokens)?;
            evaluate(&reference.model.lm, &model.lm, &seqs, &mut prog)
        }
    }
}

/// `webvlm eval` of the converted LLaVA at `model` against its source at `reference`.
pub fn eval_paths(model: &Path, reference: &Path, c: &CalibConfig, progress: Progress) -> Result<Quality> {
    let m = open(model, false)?;
    let r = open(reference, true)?;
    let (a, b) = (&m.model.lm.cfg, &r.model.lm.cfg);
    if a.vocab_size != b.vocab_size || a.num_hidden_layers != b.num_hidden_layers {
        return Err(Error::Shape("the model and the reference have different shapes".into()));
    }
    heldout_quality(&r, &m.model, c, progress)
}
