//! `webvlm convert`: any checkpoint that [`crate::io::open`] reads (HF folder, GGUF file,
//! converted folder) in, the converted format (`manifest.json` + safetensors shards, see
//! [`crate::io::manifest`]) out.
//!
//! 2-D `*.weight` tensors (linear layers, embeddings, `lm_head`) take the chosen weight format;
//! everything else (norms, biases, convolution kernels) stays f32. Quantization is RTN
//! ([`QTensor::quantize`]), or with [`ConvertOptions::calib`] calibrated ([`crate::calib`]:
//! GPTQ / AWQ / mixed INT4-INT8 for the block linears of text-only Llama-family models), which
//! also writes `quality.json` and `quality.svg` (per-layer error plot) beside the shards.
//!
//! LLaVA checkpoints (a config with `vision_config` and `text_config`) split three ways: the
//! language model takes the chosen format, the vision tower INT8 per output channel (or
//! `vision_weights`), the projector f16; the tower's position embeddings stay f32.
//!
//! Models whose decoder is BitNet b1.58 (OLMo-Bitnet-1B, LlavaOLMoBitnet1B: the config says
//! `ternary`, or names BitNet) store full-precision latent weights; their block linears are
//! always written ternary straight from those (absmean, as `BitLinear158` computes them),
//! whatever `--weights` says, so they are never re-ternarized from a lossy format. The
//! embedding / output head takes `--weights` (INT8 when that is `ternary`: it was not trained
//! ternary), the vision tower its own default. Their projector stays f32: every BitLinear
//! re-quantizes its input to int8 per token, so the projector's f16 rounding flips those
//! roundings and moves the tiny fixture's logits by ~6e-3 relative (f32 keeps the reference's
//! numbers; the projector is ~0.5% of LlavaOLMoBitnet1B's weights).

use crate::error::{Error, Result};
use crate::io::manifest::writer::{shard_name, write_file, ShardWriter};
use crate::io::manifest::{Manifest, ManifestTokenizer, FORMAT, VERSION};
use crate::io::{Tensor, TensorData};
use crate::quant::{QTensor, WeightFormat, INT4_GROUPS};
use std::collections::BTreeMap;
use std::path::Path;

/// The weight format asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightChoice {
    Int4,
    Int8,
    F16,
    F32,
    /// BitNet b1.58 ternary (2-bit) weights.
    Ternary,
}

impl std::str::FromStr for WeightChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "int4" => WeightChoice::Int4,
            "int8" => WeightChoice::Int8,
            "f16" => WeightChoice::F16,
            "f32" => WeightChoice::F32,
            "ternary" => WeightChoice::Ternary,
            _ => return Err(Error::Invalid(format!("weights `{s}`: choose int4, int8, f16, f32 or ternary"))),
        })
    }
}

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub weights: WeightChoice,
    /// INT4 group size along the input dimension (32, 64 or 128).
    pub group_size: usize,
    /// Symmetric INT4 (no per-group minimum).
    pub sym: bool,
    /// Largest shard file; a single tensor larger than this gets a shard of its own.
    pub shard_bytes: usize,
    /// Write into a non-empty output folder.
    pub force: bool,
    /// LLaVA vision tower's format; `None`: INT8.
    pub vision_weights: Option<WeightChoice>,
    /// Calibrated quantization (`--method`, `--calibrate`, `--ratio`); `None`: RTN.
    pub calib: Option<crate::calib::CalibConfig>,
    /// SmoothQuant α for an INT8 LLaVA vision tower ([`crate::vision::smooth`]); `None`: no smoothing.
    pub smooth_alpha: Option<f32>,
    /// Images calibrating the smoothing (else an image `--calibrate` folder, else generated ones).
    pub smooth_images: Option<std::path::PathBuf>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            weights: WeightChoice::Int4,
            group_size: 64,
            sym: true,
            shard_bytes: 64 << 20,
            force: false,
            vision_weights: None,
            calib: None,
            smooth_alpha: Some(0.6),
            smooth_images: None,
        }
    }
}

/// Reported after each tensor.
#[derive(Clone, Debug)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub name: String,
    pub format: WeightFormat,
}

#[derive(Clone, Debug, Default)]
pub struct ConvertReport {
    pub tensors: usize,
    pub shards: usize,
    /// Bytes of all shards.
    pub bytes: u64,
    /// Weight format name → number of tensors.
    pub formats: BTreeMap<String, usize>,
    pub warnings: Vec<String>,
}

/// The format tensor `name` of `shape` is stored in; explains fallbacks in `warnings`.
pub fn target_format(name: &str, shape: &[usize], opts: &ConvertOptions, warnings: &mut Vec<String>) -> WeightFormat {
    choice_format(opts.weights, name, shape, opts, warnings)
}

/// How [`convert`] picks each tensor's format for one checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormatPlan {
    /// LLaVA: split into vision / projector / text ([`llava_target_format`]).
    pub llava: bool,
    /// The decoder is BitNet b1.58: its block linears are ternary.
    pub ternary_blocks: bool,
}

impl FormatPlan {
    /// The plan for a checkpoint's config (an unreadable decoder config means not ternary).
    pub fn from_config(config: &serde_json::Value) -> FormatPlan {
        let llava = crate::model::llava::is_llava(config);
        let ternary_blocks = if llava {
            crate::model::llava::LlavaConfig::from_value(config).map(|c| c.text.arch.ternary)
        } else {
            crate::model::LlamaConfig::from_value(config).map(|c| c.arch.ternary)
        };
        FormatPlan { llava, ternary_blocks: ternary_blocks.unwrap_or(false) }
    }

    /// Whether the converted model leaves tensor `name` out: a LLaVA vision tower's SigLIP
    /// attention-pooling head (`head.*`), which only computes `pooler_output` (LLaVA reads
    /// hidden states).
    pub fn drops(&self, name: &str) -> bool {
        self.llava
            && llava_part(name) == Part::Vision
            && (name.contains("vision_tower.head.") || name.contains("vision_model.head."))
    }

    /// The format tensor `name` of `shape` is stored in under this plan.
    pub fn format(
        &self,
        name: &str,
        shape: &[usize],
        opts: &ConvertOptions,
        warnings: &mut Vec<String>,
    ) -> WeightFormat {
        let text = !self.llava || llava_part(name) == Part::Text;
        if self.ternary_blocks && self.llava && llava_part(name) == Part::Projector {
            return WeightFormat::F32;
        }
        if self.ternary_blocks && text && shape.len() == 2 && name.ends_with(".weight") {
            if is_block_linear(name) {
                return WeightFormat::Ternary;
            }
            if opts.weights == WeightChoice::Ternary {
                warnings.push(format!("{name}: not a BitLinear layer of this BitNet model, using int8"));
                return WeightFormat::Int8;
            }
        }
        if self.llava {
            llava_target_format(name, shape, opts, warnings)
        } else {
            target_format(name, shape, opts, warnings)
        }
    }
}

/// A decoder block's linear (HF `model.layers.N.*`, OLMo `transformer.blocks.N.*`).
fn is_block_linear(name: &str) -> bool {
    name.contains(".layers.") || name.contains(".blocks.")
}

/// What part of a LLaVA checkpoint a tensor belongs to, by its name (transformers 4.x/5.x
/// and original LLaVA naming).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Vision,
    Projector,
    Text,
}

pub fn llava_part(name: &str) -> Part {
    if name.contains("vision_tower.") {
        Part::Vision
    } else if name.contains("multi_modal_projector.") || name.contains("mm_projector.") {
        Part::Projector
    } else {
        Part::Text
    }
}

/// [`target_format`] for a LLaVA checkpoint: per [`Part`], position embeddings kept f32.
pub fn llava_target_format(
    name: &str,
    shape: &[usize],
    opts: &ConvertOptions,
    warnings: &mut Vec<String>,
) -> WeightFormat {
    match llava_part(name) {
        Part::Vision if name.ends_with("position_embedding.weight") => WeightFormat::F32,
        Part::Vision => choice_format(opts.vision_weights.unwrap_or(WeightChoice::Int8), name, shape, opts, warnings),
        Part::Projector => choice_format(WeightChoice::F16, name, shape, opts, warnings),
        Part::Text => choice_format(opts.weights, name, shape, opts, warnings),
    }
}

fn choice_format(
    choice: WeightChoice,
    name: &str,
    shape: &[usize],
    opts: &ConvertOptions,
    warnings: &mut Vec<String>,
) -> WeightFormat {
    let cols = match shape {
        [_, c] if name.ends_with(".weight") => *c,
        _ => return WeightFormat::F32,
    };
    match choice {
        WeightChoice::F32 => WeightFormat::F32,
        WeightChoice::F16 => WeightFormat::F16,
        WeightChoice::Int8 => WeightFormat::Int8,
        WeightChoice::Ternary => WeightFormat::Ternary,
        WeightChoice::Int4 => {
            let sym = opts.sym;
            if cols % opts.group_size == 0 {
                return WeightFormat::Int4 { group: opts.group_size, sym };
            }
            if let Some(&g) = INT4_GROUPS.iter().rev().find(|&&g| cols % g == 0) {
                warnings
                    .push(format!("{name}: group {} does not divide {cols} columns, using group {g}", opts.group_size));
                WeightFormat::Int4 { group: g, sym }
            } else {
                warnings.push(format!("{name}: no INT4 group size divides {cols} columns, using int8"));
                WeightFormat::Int8
            }
        }
    }
}

/// Bring a loaded tensor into `fmt` (dense f32 for `f32`, a [`QTensor`] otherwise).
fn to_format(name: &str, t: Tensor, fmt: WeightFormat) -> Result<Tensor> {
    let numel = t.numel();
    let shape = t.shape.clone();
    let data = match (t.data, fmt) {
        (TensorData::Quant(q), f) if f != WeightFormat::F32 && q.format() == f => TensorData::Quant(q),
        (data, fmt) => {
            let v = match data {
                TensorData::F32(v) => v,
                TensorData::Quant(q) => q.dequantize(),
            };
            if v.len() != numel {
                return Err(Error::Shape(format!("tensor `{name}`: {} values for shape {shape:?}", v.len())));
            }
            match (fmt, shape.as_slice()) {
                (WeightFormat::F32, _) => TensorData::F32(v),
                (_, [r, c]) => TensorData::Quant(QTensor::quantize(&v, *r, *c, fmt)?),
                _ => return Err(Error::Shape(format!("tensor `{name}`: {} needs 2 dims", fmt.name()))),
            }
        }
    };
    Ok(Tensor { shape, data })
}

/// Make `out` ready: create it, refuse a non-empty folder unless `force` (then remove the
/// files a previous conversion wrote there, and nothing else).
fn prepare_out(src: &Path, out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        let same = std::fs::canonicalize(src).ok() == std::fs::canonicalize(out).ok();
        if same {
            return Err(Error::Invalid(format!("output {} is the source itself", out.display())));
        }
        let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
        if entries.next().is_some() && !force {
            return Err(Error::Invalid(format!(
                "output folder {} is not empty; pass --force to overwrite",
                out.display()
            )));
        }
        for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
            let path = entry.map_err(|e| Error::io(out, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ours = name == "manifest.json"
                || name == "tokenizer.json"
                || name == "quality.json"
                || name == "quality.svg"
                || (name.starts_with("model-") && name.ends_with(".safetensors"));
            if ours && path.is_file() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

fn check_options(opts: &ConvertOptions) -> Result<()> {
    let int4 = opts.weights == WeightChoice::Int4 || opts.vision_weights == Some(WeightChoice::Int4);
    if int4 && !INT4_GROUPS.contains(&opts.group_size) {
        return Err(Error::Invalid(format!("group size {}: choose one of {INT4_GROUPS:?}", opts.group_size)));
    }
    if let Some(c) = &opts.calib {
        if !matches!(opts.weights, WeightChoice::Int4 | WeightChoice::Int8) {
            return Err(Error::Invalid("calibrated quantization needs --weights int4 or int8".into()));
        }
        if c.ratio.is_some_and(|r| !(0.0..=1.0).contains(&r))
            || (c.ratio.is_some() && opts.weights != WeightChoice::Int4)
        {
            return Err(Error::Invalid("--ratio takes a value in [0, 1] with --weights int4".into()));
        }
        if c.entropy_blocks.is_some() && c.ratio.is_none() {
            return Err(Error::Invalid("--entropy-guided allocates INT4/INT8 at a size: give --ratio R".into()));
        }
    }
    if opts.shard_bytes == 0 {
        return Err(Error::Invalid("shard size must be positive".into()));
    }
    Ok(())
}

/// SmoothQuant smoothing of a LLaVA's vision tower when it is stored INT8 and `smooth_alpha`
/// is set ([`crate::vision::smooth`]); its images: `smooth_images`, an image `--calibrate`
/// folder, or generated ones.
fn smoothing(
    ckpt: &crate::io::Checkpoint,
    plan: FormatPlan,
    opts: &ConvertOptions,
) -> Result<Option<crate::vision::smooth::Smoothed>> {
    let int8 = opts.vision_weights.unwrap_or(WeightChoice::Int8) == WeightChoice::Int8;
    let Some(alpha) = opts.smooth_alpha.filter(|_| plan.llava && int8) else { return Ok(None) };
    let calib_dir = match opts.calib.as_ref().map(|c| &c.spec) {
        Some(crate::calib::data::TextSpec::Images(d)) => Some(d.as_path()),
        _ => None,
    };
    let images = opts.smooth_images.as_deref().or(calib_dir);
    let pre = ckpt.preprocessor.as_ref();
    crate::vision::smooth::smooth_checkpoint(&ckpt.config, ckpt.weights.as_ref(), pre, images, alpha).map(Some)
}

/// Convert `src` into a converted folder `out`. `manifest.json` is written last, so an
/// interrupted conversion never looks complete.
pub fn convert(
    src: &Path,
    out: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport> {
    convert_with(src, out, opts, progress, &mut |_, _, _| {})
}

/// [`convert`] that also reports calibration progress `(stage, done, total)`.
pub fn convert_with(
    src: &Path,
    out: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Progress),
    calib_progress: crate::calib::run::Progress,
) -> Result<ConvertReport> {
    check_options(opts)?;
    let ckpt = crate::io::open(src)?;
    prepare_out(src, out, opts.force)?;
    let mut report = ConvertReport::default();
    let plan = FormatPlan::from_config(&ckpt.config);
    if opts.weights == WeightChoice::Ternary && !plan.ternary_blocks {
        report.warnings.push(
            "--weights ternary on a model not trained ternary (not BitNet b1.58): absmean rounding of its weights \
             loses most of its quality; use it for tests, or int4 / int8 for answers"
                .into(),
        );
    }
    let names: Vec<String> = ckpt.weights.names().into_iter().filter(|n| !plan.drops(n)).collect();
    let mut writer = ShardWriter::new(out, opts.shard_bytes);
    let mut calibrated = match &opts.calib {
        Some(c) => {
            let fmt = match opts.weights {
                WeightChoice::Int8 => WeightFormat::Int8,
                _ => WeightFormat::Int4 { group: opts.group_size, sym: opts.sym },
            };
            let mut w = Vec::new();
            let mut head = |n: &str, s: &[usize]| plan.format(n, s, opts, &mut w);
            Some(crate::calib::run::calibrate(src, fmt, &mut head, c, calib_progress)?)
        }
        None => None,
    };
    let mut smoothed = smoothing(&ckpt, plan, opts)?;
    for (i, name) in names.iter().enumerate() {
        let shape = ckpt.weights.shape(name)?;
        let fmt = plan.format(name, &shape, opts, &mut report.warnings);
        let tensor = match calibrated.as_mut().and_then(|c| c.tensors.remove(name)) {
            Some(t) => t,
            None => match smoothed.as_mut().and_then(|s| s.tensors.remove(name)) {
                Some(v) => to_format(name, Tensor { shape, data: TensorData::F32(v) }, fmt)?,
                None => to_format(name, ckpt.weights.load(name)?, fmt)?,
            },
        };
        let fmt = match &tensor.data {
            TensorData::Quant(q) => q.format(),
            TensorData::F32(_) => WeightFormat::F32,
        };
        writer.push(name, tensor)?;
        *report.formats.entry(fmt.name()).or_default() += 1;
        progress(Progress { done: i + 1, total: names.len(), name: name.clone(), format: fmt });
    }
    let (tensors, shards) = writer.finish()?;
    let tok_file = write_file(out, "tokenizer.json", ckpt.tokenizer.json.as_bytes())?;
    let model_type = ckpt.config.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let mut config = ckpt.config;
    if let (Some(s), Some(obj)) = (smoothed, config.as_object_mut()) {
        obj.insert(crate::vision::w8a8::SMOOTHING_KEY.into(), s.record);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        model_type,
        config,
        tokenizer: ManifestTokenizer { spec: ckpt.tokenizer, file: tok_file.file.clone() },
        preprocessor: ckpt.preprocessor,
        tensors,
        shards,
        files: vec![tok_file],
    };
    manifest.validate()?;
    if let Some(c) = &calibrated {
        write_file(out, "quality.json", serde_json::to_string_pretty(&c.quality)?.as_bytes())?;
        write_file(out, "quality.svg", c.plot.as_bytes())?;
    }
    write_file(out, "manifest.json", manifest.to_json().as_bytes())?;
    report.tensors = manifest.tensors.len();
    report.shards = manifest.shards.len();
    report.bytes = manifest.shards.iter().map(|s| s.size).sum();
    debug_assert!(manifest.shards.iter().enumerate().all(|(i, s)| s.file == shard_name(i)));
    Ok(report)
}
