//! Calibration of a LLaVA checkpoint's language model (`webvlm convert --calibrate
//! DIR|builtin|FILE` on a LLaVA source) and `webvlm eval` of a converted LLaVA.
//!
//! The whole model runs natively in f32: with an image folder ([`super::images`]) each item's
//! image goes through the vision tower and projector, its prompt through the chat template,
//! and the decoder runs on the merged embeddings while [`super::stats`] gathers its linears'
//! inputs, one item at a time (memory: one item's activations plus the fixed statistics).
//! `builtin` is the built-in image set ([`images::builtin_dir`]: real photos and the default
//! model's generated scenes with their questions) plus CPython's pydoc_data prose for
//! [`PROSE_SHARE`] of the calibration tokens, since a LLaVA's language model also answers text
//! turns; its evaluation is the image set's held-out items. A text file calibrates the decoder
//! on text alone. The decoder's block linears take the method; embedding and output layer RTN;
//! the vision tower and projector are left to `convert`'s plain formats. The evaluation feeds
//! both decoders the f32 reference's image features, so `quality.json` measures the language
//! model's quantization.

use super::data::{self, TextSpec};
use super::eval::{evaluate, evaluate_from, Quality};
use super::images::{self, Item, Sampler};
use super::pipeline::quantize_model;
use super::run::{finish, model_tensors, options, quantize_heads, CalibConfig, Calibrated, Progress};
use super::sample::Sample;
use super::stats::{collect_from, LayerStats};
use crate::error::{Error, Result};
use crate::model::config::Names;
use crate::model::llava::{Llava, LlavaNames, VisionLoadOptions};
use crate::model::LoadOptions;
use crate::quant::WeightFormat;
use crate::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Share of the calibration tokens that `builtin` gives to prose on a LLaVA (at most; the
/// image items take the rest).
pub const PROSE_SHARE: f64 = 0.25;

/// A LLaVA model with what calibration needs beside it.
struct Opened {
    model: Llava,
    tok: Tokenizer,
    preprocessor: Option<serde_json::Value>,
    names: LlavaNames,
}

/// One calibration input: an image with its prompt, or a text sequence.
enum Input {
    Image(Item),
    Text(Vec<u32>),
}

/// Open the LLaVA at `path`; `f32`: every weight dense f32 (the reference; a BitNet decoder stays
/// ternary, as it was trained), else as stored.
fn open(path: &Path, f32: bool) -> Result<Opened> {
    let ckpt = crate::io::open(path)?;
    let w = f32.then_some(WeightFormat::F32);
    let opts = LoadOptions { weights: w, context_len: None };
    let model = Llava::load(&ckpt.config, ckpt.weights.as_ref(), &opts, &VisionLoadOptions { tower: w })?;
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

/// The image folder of a spec: the folder itself, or the built-in set for `builtin`.
fn image_dir(spec: &TextSpec) -> Option<PathBuf> {
    match spec {
        TextSpec::Images(dir) => Some(dir.clone()),
        TextSpec::Builtin => Some(images::builtin_dir()),
        TextSpec::File(_) => None,
    }
}

/// The calibration inputs of `c.spec` and the token budget left to their images: text
/// sequences first (a text file: all of `calib_tokens`; `builtin`: [`PROSE_SHARE`] of it), then
/// the image folder's calibration items.
fn calib_inputs(tok: &Tokenizer, c: &CalibConfig) -> Result<(Vec<Input>, usize)> {
    let text_tokens = match &c.spec {
        TextSpec::Images(_) => 0,
        TextSpec::Builtin => (c.calib_tokens as f64 * PROSE_SHARE) as usize,
        TextSpec::File(_) => c.calib_tokens,
    };
    let mut inputs = Vec::new();
    if text_tokens > 0 {
        let seqs = data::sequences(tok, &data::load(&c.spec)?.calib, c.seq_len, text_tokens)?;
        inputs.extend(seqs.into_iter().map(Input::Text));
    }
    let used: usize = inputs.iter().map(|i| if let Input::Text(s) = i { s.len() } else { 0 }).sum();
    if let Some(dir) = image_dir(&c.spec) {
        inputs.extend(images::load(&dir)?.calib.into_iter().map(Input::Image));
    }
    Ok((inputs, c.calib_tokens.saturating_sub(used)))
}

/// The decoder's input statistics over the calibration inputs of `c.spec` (images until their
/// token budget is spent), and the tokens seen.
fn calib_stats(o: &Opened, c: &CalibConfig, progress: Progress) -> Result<(Vec<LayerStats>, usize)> {
    let (inputs, image_budget) = calib_inputs(&o.tok, c)?;
    let text_total: usize = inputs.iter().map(|i| if let Input::Text(s) = i { s.len() } else { 0 }).sum();
    let has_images = inputs.iter().any(|i| matches!(i, Input::Image(_)));
    let sampler = if has_images { Some(Sampler::new(&o.model, &o.tok, o.preprocessor.as_ref())?) } else { None };
    // text alone: every k-th row as `collect` samples; with images the sample thins itself
    let every = if has_images { 1 } else { text_total.div_ceil(c.sample_rows.max(1)).max(1) };
    let (mut tokens, mut image_tokens) = (0usize, 0usize);
    let mut next = |i: usize| -> Result<Option<Sample>> {
        let s = match (&inputs[i], &sampler) {
            (Input::Text(ids), _) => Sample::text(ids.clone()),
            (Input::Image(_), _) if image_tokens >= image_budget => return Ok(None),
            (Input::Image(item), Some(sampler)) => {
                let s = sampler.sample(item)?;
                image_tokens += s.ids.len();
                s
            }
            (Input::Image(_), None) => return Err(Error::Invalid("image input without a sampler".into())),
        };
        tokens += s.ids.len();
        Ok(Some(s))
    };
    let mut prog = |d: usize, t: usize| progress("collect", d, t);
    let stats = collect_from(&o.model.lm, inputs.len(), every, c.sample_rows, &mut next, &mut prog)?;
    Ok((stats, tokens))
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
    let opened = open(src, true)?;
    let arch = &opened.model.lm.cfg.arch;
    if arch.ternary || arch.names != Names::Hf {
        return Err(Error::Unsupported("calibrated quantization of BitNet / OLMo-named language models".into()));
    }
    let (stats, tokens) = calib_stats(&opened, c, progress)?;
    let Opened { mut model, names, .. } = opened;
    let mut rep = quantize_model(&mut model.lm, stats, &options(c, fmt), &mut |d, t| progress("quantize", d, t))?;
    rep.linears.iter_mut().for_each(|l| l.name = checkpoint_name(&names, &l.name));
    quantize_heads(&mut model.lm, &mut |n, s| head_fmt(&checkpoint_name(&names, n), s))?;
    let reference = open(src, true)?;
    let quality = heldout_quality(&reference, &model, c, progress)?;
    let tensors: HashMap<_, _> =
        model_tensors(model.lm).into_iter().map(|(n, t)| (checkpoint_name(&names, &n), t)).collect();
    let mut out = finish(c, fmt, tokens, &quality, &rep, t0, tensors)?;
    if c.spec == TextSpec::Builtin {
        let label = format!(
            "builtin: images {} and CPython pydoc_data prose (at most {:.0}% of the tokens)",
            images::builtin_dir().display(),
            PROSE_SHARE * 100.0
        );
        out.quality["calibration_text"] = label.into();
    }
    Ok(out)
}

/// Compare `model`'s decoder with the reference's on the held-out part of `c.spec` (an image
/// folder or `builtin`: every held-out item, with the reference's image features).
fn heldout_quality(reference: &Opened, model: &Llava, c: &CalibConfig, progress: Progress) -> Result<Quality> {
    let mut prog = |d: usize, t: usize| progress("evaluate", d, t);
    match image_dir(&c.spec) {
        Some(dir) => {
            let held = images::load(&dir)?.heldout;
            let sampler = Sampler::new(&reference.model, &reference.tok, reference.preprocessor.as_ref())?;
            evaluate_from(&reference.model.lm, &model.lm, held.len(), &mut |i| sampler.sample(&held[i]), &mut prog)
        }
        None => {
            let seqs = data::sequences(&reference.tok, &data::load(&c.spec)?.heldout, c.seq_len, c.eval_tokens)?;
            evaluate(&reference.model.lm, &model.lm, &seqs, &mut prog)
        }
    }
}

/// `webvlm eval` of the converted LLaVA at `model` against its source at `reference` (any
/// decoder the runtime loads, BitNet too: its reference is its own export, ternary).
pub fn eval_paths(model: &Path, reference: &Path, c: &CalibConfig, progress: Progress) -> Result<Quality> {
    let m = open(model, false)?;
    let r = open(reference, true)?;
    let (a, b) = (&m.model.lm.cfg, &r.model.lm.cfg);
    if a.vocab_size != b.vocab_size || a.num_hidden_layers != b.num_hidden_layers {
        return Err(Error::Shape("the model and the reference have different shapes".into()));
    }
    heldout_quality(&r, &m.model, c, progress)
}
