//! SmoothQuant smoothing of the vision tower at convert time (Xiao et al. 2023, "SmoothQuant:
//! Accurate and Efficient Post-Training Quantization for Large Language Models", §4), so its
//! linears can take int8 activations per token ([`super::w8a8`]).
//!
//! For the linears that read a LayerNorm's output (q/k/v after `layer_norm1`, fc1 after
//! `layer_norm2`), input channel `j` gets `s_j = max|X_j|^α / max|W_j|^(1-α)`: `max|X_j|` over
//! calibration activations (the f32 tower run natively on calibration images, [`collect`]),
//! `max|W_j|` over the rows of every linear reading that LayerNorm. The factor is folded into
//! the LayerNorm (`γ_j / s_j`, `β_j / s_j`) and the weights (`W[:, j] · s_j`), so the layer
//! computes the same function with smaller activation outliers and larger weight columns. Each
//! `s_j` is rounded to a power of two (exponent in ±[`MAX_EXP`]): dividing and multiplying by
//! it is then exact in f32, and the smoothed f32 tower gives bit-identical hidden states (a
//! unit test checks this). A channel with no activation or weight magnitude keeps `s_j = 1`.
//! Calibration images: the files of a folder (`--smooth-images DIR`, or an image
//! `--calibrate DIR`), else [`generated_images`]; each is preprocessed as one CLIP tile.

use super::clip::{Site, VisionTower};
use super::image::Image;
use super::preprocess::{preprocess_clip, ClipProcessorConfig};
use crate::error::{Error, Result};
use crate::io::WeightSource;
use crate::model::linear::Linear;
use crate::model::llava::{LlavaConfig, LlavaNames};
use crate::model::LoadOptions;
use crate::quant::{QData, WeightFormat};
use std::collections::HashMap;
use std::path::Path;

/// Largest |log2 s_j|.
pub const MAX_EXP: i32 = 24;
/// Generated calibration images when no folder is given.
pub const GENERATED_IMAGES: usize = 8;

/// Per layer, per input channel `max |x|` at each [`Site`].
#[derive(Clone, Debug, PartialEq)]
pub struct ActMax {
    /// `[layers][hidden]`: inputs of q/k/v.
    pub ln1: Vec<Vec<f32>>,
    /// `[layers][hidden]`: inputs of fc1.
    pub ln2: Vec<Vec<f32>>,
}

/// Run the tower on every tile (`[C, H, W]` each, at the tower's size) and keep the
/// per-channel absolute maxima of the linears' inputs.
pub fn collect(tower: &VisionTower, tiles: &[Vec<f32>]) -> Result<ActMax> {
    let (l, d, hw) = (tower.layers.len(), tower.dims.hidden, tower.dims.image_size);
    let mut m = ActMax { ln1: vec![vec![0f32; d]; l], ln2: vec![vec![0f32; d]; l] };
    for px in tiles {
        let mut obs = |site: Site, h: &[f32]| {
            let acc = match site {
                Site::Ln1(i) => &mut m.ln1[i],
                Site::Ln2(i) => &mut m.ln2[i],
            };
            for row in h.chunks_exact(d) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a = a.max(v.abs()));
            }
        };
        tower.run(px, hw, hw, &[l], &mut obs)?;
    }
    Ok(m)
}

/// `[cols]`: `max |W[r, j]|` over the rows of every linear (f32 weights of equal width).
pub fn weight_col_absmax(lins: &[&Linear]) -> Result<Vec<f32>> {
    let cols = lins.first().map_or(0, |l| l.w.cols);
    let mut m = vec![0f32; cols];
    for l in lins {
        let QData::F32(w) = &l.w.data else {
            return Err(Error::Unsupported("smoothing needs the f32 tower".into()));
        };
        for row in w.chunks_exact(cols) {
            m.iter_mut().zip(row).for_each(|(a, v)| *a = a.max(v.abs()));
        }
    }
    Ok(m)
}

/// SmoothQuant factors `s_j = x_j^α / w_j^(1-α)`, each rounded to the nearest power of two.
pub fn factors(x_max: &[f32], w_max: &[f32], alpha: f32) -> Vec<f32> {
    x_max
        .iter()
        .zip(w_max)
        .map(|(&x, &w)| {
            let s = (x as f64).powf(alpha as f64) / (w as f64).powf(1.0 - alpha as f64);
            if !(s.is_finite() && s > 0.0) {
                return 1.0;
            }
            let e = (s.log2().round() as i32).clamp(-MAX_EXP, MAX_EXP);
            2f32.powi(e)
        })
        .collect()
}

/// Fold `s` into a LayerNorm (`γ / s`, `β / s`) and the f32 linears reading it (`W[:, j] · s_j`).
pub fn fold(ln: &mut (Vec<f32>, Vec<f32>), lins: &mut [&mut Linear], s: &[f32]) -> Result<()> {
    for (j, &f) in s.iter().enumerate() {
        ln.0[j] /= f;
        ln.1[j] /= f;
    }
    for l in lins.iter_mut() {
        let cols = l.w.cols;
        let QData::F32(w) = &mut l.w.data else {
            return Err(Error::Unsupported("smoothing needs the f32 tower".into()));
        };
        for row in w.chunks_exact_mut(cols) {
            row.iter_mut().zip(s).for_each(|(v, &f)| *v *= f);
        }
    }
    Ok(())
}

/// Smooth every layer of the f32 `tower` in place with the statistics `m`.
pub fn smooth_tower(tower: &mut VisionTower, m: &ActMax, alpha: f32) -> Result<()> {
    for (i, l) in tower.layers.iter_mut().enumerate() {
        let s1 = factors(&m.ln1[i], &weight_col_absmax(&[&l.q, &l.k, &l.v])?, alpha);
        fold(&mut l.ln1, &mut [&mut l.q, &mut l.k, &mut l.v], &s1)?;
        let s2 = factors(&m.ln2[i], &weight_col_absmax(&[&l.fc1])?, alpha);
        fold(&mut l.ln2, &mut [&mut l.fc1], &s2)?;
    }
    Ok(())
}

/// `count` deterministic `size`×`size` images: colour gradients, stripes of several
/// frequencies and orientations, and noise, mixed differently in each.
pub fn generated_images(size: u32, count: usize) -> Vec<Image> {
    let mut rng = crate::rng::Rng::new(0x5eed);
    (0..count)
        .map(|k| {
            let f = 1.0 + k as f32 * 0.7;
            let (cx, cy) = (rng.next_f32(), rng.next_f32());
            let mut rgb = Vec::with_capacity((size * size * 3) as usize);
            for y in 0..size {
                for x in 0..size {
                    let (u, v) = (x as f32 / size as f32, y as f32 / size as f32);
                    let stripe = ((u * cx + v * cy) * f * 12.0).sin();
                    let blob = (-((u - cx).powi(2) + (v - cy).powi(2)) * 8.0).exp();
                    for c in 0..3 {
                        let g = [u, v, 1.0 - u][c] * 0.5 + stripe * 0.25 * (c as f32 - 1.0) + blob * 0.4;
                        let noise = rng.normal() * 0.08;
                        rgb.push(((g + noise).clamp(0.0, 1.0) * 255.0) as u8);
                    }
                }
            }
            Image { width: size, height: size, rgb }
        })
        .collect()
}

/// The images of folder `dir` (`.png`, `.jpg`, `.jpeg`, `.webp`, in name order).
pub fn folder_images(dir: &Path) -> Result<Vec<Image>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            p.is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "webp"))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Error::Invalid(format!("{}: no images to calibrate the vision tower", dir.display())));
    }
    paths.iter().map(|p| super::image::decode(&std::fs::read(p).map_err(|e| Error::io(p, e))?, 64 << 20)).collect()
}

/// A smoothed tower's changed tensors under the checkpoint's names, and the manifest record.
pub struct Smoothed {
    /// Checkpoint name → dense f32 values (LayerNorm weights/biases, q/k/v/fc1 weights).
    pub tensors: HashMap<String, Vec<f32>>,
    /// `config.webvlm_vision_smoothing`.
    pub record: serde_json::Value,
}

/// Smooth the vision tower of the LLaVA checkpoint (`config`, `src`, its processor settings)
/// with `alpha`, calibrated on `images` (or [`generated_images`]).
pub fn smooth_checkpoint(
    config: &serde_json::Value,
    src: &dyn WeightSource,
    preprocessor: Option<&serde_json::Value>,
    images: Option<&Path>,
    alpha: f32,
) -> Result<Smoothed> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::Invalid(format!("--smooth-alpha {alpha}: choose a value in [0, 1]")));
    }
    let cfg = LlavaConfig::from_value(config)?;
    let names = LlavaNames::detect(src)?;
    let needed = cfg.feature_layers.iter().copied().max().unwrap_or(0);
    let opts = LoadOptions { weights: Some(WeightFormat::F32), context_len: None };
    let mut tower = VisionTower::load(cfg.vision.clone(), src, &names.vision, needed, &opts)?;
    let pre = preprocessor
        .ok_or_else(|| Error::Invalid("smoothing the vision tower needs the image processor config".into()))?;
    let pcfg = ClipProcessorConfig::from_json(pre)?;
    let imgs = match images {
        Some(dir) => folder_images(dir)?,
        None => generated_images(cfg.vision.image_size as u32, GENERATED_IMAGES),
    };
    let tiles = imgs.iter().map(|im| Ok(preprocess_clip(im, &pcfg)?.data)).collect::<Result<Vec<_>>>()?;
    let m = collect(&tower, &tiles)?;
    smooth_tower(&mut tower, &m, alpha)?;
    let mut tensors = HashMap::new();
    for (i, l) in tower.layers.into_iter().enumerate() {
        let p = format!("{}encoder.layers.{i}.", names.vision);
        for (n, ln) in [("layer_norm1", l.ln1), ("layer_norm2", l.ln2)] {
            tensors.insert(format!("{p}{n}.weight"), ln.0);
            tensors.insert(format!("{p}{n}.bias"), ln.1);
        }
        for (n, lin) in
            [("self_attn.q_proj", l.q), ("self_attn.k_proj", l.k), ("self_attn.v_proj", l.v), ("mlp.fc1", l.fc1)]
        {
            if let QData::F32(w) = lin.w.data {
                tensors.insert(format!("{p}{n}.weight"), w);
            }
        }
    }
    let source = if images.is_some() { "folder" } else { "generated" };
    let record = serde_json::json!({
        "alpha": (alpha as f64 * 1e6).round() / 1e6, "images": imgs.len(), "image_source": source, "layers": needed,
        "factors": "power of two", "activations": "int8 per token"
    });
    Ok(Smoothed { tensors, record })
}
