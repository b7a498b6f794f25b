//! Vision-tower benchmark: time to encode one 336x336 image through a CLIP ViT-L/14-336 tower
//! at the shapes LLaVA-1.5-7B uses (`openai/clip-vit-large-patch14-336`: hidden 1024, 24 layers,
//! 16 heads, MLP 4096, patch 14 → 577 tokens). LLaVA reads `hidden_states[-2]`
//! (`vision_feature_layer = -2`), so only the first 23 layers run, as in the real model.
//!
//! The tower is built in memory through [`VisionTower::load`] from a [`RandomSource`] of random
//! tensors under HF names: runtime does not depend on the weight values. Linear weights come out
//! already in the benchmarked format (f32 or INT8, the default vision format after `convert`),
//! so no quantization time is counted. `w8a8` is the INT8 tower with its linears run W8A8
//! (int8 activations per token, [`crate::vision::w8a8`]), as a smoothed converted tower runs
//! when the load-time probe finds it faster. Used by `webvlm bench` natively and by
//! `wasm_bench::bench_vision` in wasm.

use crate::error::{Error, Result};
use crate::io::{Tensor, TensorData, WeightSource};
use crate::model::LoadOptions;
use crate::quant::{QData, QTensor, WeightFormat};
use crate::rng::Rng;
use crate::vision::clip::{TowerKind, VisionDims, VisionTower};
use crate::vision::ops::Activation;
use serde::Serialize;
use std::collections::BTreeMap;

/// LLaVA-1.5-7B's vision tower: CLIP ViT-L/14 at 336 pixels.
pub fn llava15_vit_l14_336() -> VisionDims {
    VisionDims {
        kind: TowerKind::Clip,
        hidden: 1024,
        intermediate: 4096,
        layers: 24,
        heads: 16,
        channels: 3,
        image_size: 336,
        patch_size: 14,
        act: Activation::QuickGelu,
        eps: 1e-5,
    }
}

/// Layers LLaVA-1.5 runs: features from `hidden_states[-2]`, i.e. after layer `layers - 1`.
pub fn llava15_layers(dims: &VisionDims) -> usize {
    dims.layers - 1
}

/// Random tensors with the names and shapes of a CLIP tower under `vision_model.`; 2-D linear
/// weights in `fmt` (f32 or INT8), everything else f32. Deterministic per tensor name.
pub struct RandomSource {
    shapes: BTreeMap<String, Vec<usize>>,
    fmt: WeightFormat,
}

/// Prefix of every tensor in a [`RandomSource`].
pub const PREFIX: &str = "vision_model.";

impl RandomSource {
    pub fn new(dims: &VisionDims, fmt: WeightFormat) -> Result<RandomSource> {
        if !matches!(fmt, WeightFormat::F32 | WeightFormat::Int8) {
            return Err(Error::Unsupported(format!("vision bench format {} (f32 and int8 are measured)", fmt.name())));
        }
        let (d, c, p, m) = (dims.hidden, dims.channels, dims.patch_size, dims.intermediate);
        let mut shapes = BTreeMap::new();
        let e = |s: &str| format!("{PREFIX}embeddings.{s}");
        shapes.insert(e("patch_embedding.weight"), vec![d, c, p, p]); // [hidden, C, p, p]
        shapes.insert(e("class_embedding"), vec![d]);
        shapes.insert(e("position_embedding.weight"), vec![dims.num_positions(), d]); // [tokens, hidden]
        for s in ["weight", "bias"] {
            shapes.insert(format!("{PREFIX}pre_layrnorm.{s}"), vec![d]);
        }
        for i in 0..dims.layers {
            let l = |s: &str| format!("{PREFIX}encoder.layers.{i}.{s}");
            for (name, out, inp) in [
                ("self_attn.q_proj", d, d),
                ("self_attn.k_proj", d, d),
                ("self_attn.v_proj", d, d),
                ("self_attn.out_proj", d, d),
                ("mlp.fc1", m, d),
                ("mlp.fc2", d, m),
            ] {
                shapes.insert(l(&format!("{name}.weight")), vec![out, inp]); // [out, in]
                shapes.insert(l(&format!("{name}.bias")), vec![out]);
            }
            for s in ["layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight", "layer_norm2.bias"] {
                shapes.insert(l(s), vec![d]);
            }
        }
        Ok(RandomSource { shapes, fmt })
    }
}

/// FNV-1a of a name: a per-tensor seed.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl WeightSource for RandomSource {
    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.shapes.get(name).cloned().ok_or_else(|| Error::MissingTensor(name.to_string()))
    }
    fn load(&self, name: &str) -> Result<Tensor> {
        let shape = self.shape(name)?;
        let mut r = Rng::new(seed_of(name));
        let n: usize = shape.iter().product();
        let is_linear = shape.len() == 2 && name.contains("encoder.layers.");
        if is_linear && self.fmt == WeightFormat::Int8 {
            let (rows, cols) = (shape[0], shape[1]);
            let q = QData::Int8 {
                q: (0..n).map(|_| (r.next_u32() % 255) as i32 as i8).collect(),
                scales: (0..rows).map(|_| 1e-3 + r.next_f32() * 1e-3).collect(),
            };
            return Ok(Tensor { shape, data: TensorData::Quant(QTensor { rows, cols, data: q }) });
        }
        // Small values keep LayerNorm / softmax inputs finite through 23 layers.
        let std = if name.ends_with("layer_norm1.weight") || name.ends_with("layer_norm2.weight") { 0.0 } else { 0.02 };
        let offset = if std == 0.0 { 1.0 } else { 0.0 };
        Ok(Tensor::f32(shape, (0..n).map(|_| offset + std * (r.next_f32() * 2.0 - 1.0)).collect()))
    }
}

/// One encode measurement.
#[derive(Clone, Debug, Serialize)]
pub struct VisionRow {
    /// Linear weight format of the encoder layers (`f32`, `int8`).
    pub format: String,
    pub threads: usize,
    /// Encoder layers run (23 of 24 for LLaVA-1.5).
    pub layers: usize,
    /// Tokens per image (patches + class token).
    pub tokens: usize,
    pub image_size: usize,
    /// Best wall-clock time of one image encode, milliseconds.
    pub encode_ms: f64,
    /// Floating-point operations of one encode (2 per multiply-add), in GFLOP.
    pub gflop: f64,
    /// `gflop / encode_ms`, in GFLOP/s.
    pub gflops: f64,
    /// Bytes of the tower's weights as loaded.
    pub weight_bytes: usize,
    /// Timed encodes (the best counts).
    pub runs: usize,
}

/// FLOPs of one encode through `layers` layers: the linears, QKᵀ and PV, and the patch embedding.
pub fn encode_flops(dims: &VisionDims, layers: usize) -> f64 {
    let (n, d, m) = (dims.num_positions() as f64, dims.hidden as f64, dims.intermediate as f64);
    let per_layer = 2.0 * n * (4.0 * d * d + 2.0 * d * m) + 4.0 * n * n * d;
    let patch = 2.0 * dims.num_patches() as f64 * d * (dims.channels * dims.patch_size * dims.patch_size) as f64;
    layers as f64 * per_layer + patch
}

/// Build the tower in `fmt` with `layers` layers (weights are random, see [`RandomSource`]).
pub fn build_tower(dims: &VisionDims, fmt: WeightFormat, layers: usize) -> Result<VisionTower> {
    let src = RandomSource::new(dims, fmt)?;
    VisionTower::load(dims.clone(), &src, PREFIX, layers, &LoadOptions::default())
}

/// The tower of a bench format name: `f32`, `int8` (weight-only INT8) or `w8a8`.
pub fn tower_for(name: &str, dims: &VisionDims, layers: usize) -> Result<VisionTower> {
    let (fmt, w8a8) = match name {
        "w8a8" => (WeightFormat::Int8, true),
        s => (WeightFormat::parse(s)?, false),
    };
    let mut t = build_tower(dims, fmt, layers)?;
    t.kernel.w8a8 = w8a8;
    Ok(t)
}

/// A deterministic normalized image `[3, size, size]`.
pub fn test_pixels(dims: &VisionDims) -> Vec<f32> {
    let n = dims.channels * dims.image_size * dims.image_size;
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

/// Encode the image `runs` times (at least once) on the calling thread's pool and report the
/// best time; `now_ms` is the clock (`Instant` natively, `performance.now()` in wasm).
pub fn time_encode(tower: &VisionTower, threads: usize, runs: usize, now_ms: &dyn Fn() -> f64) -> Result<VisionRow> {
    let dims = &tower.dims;
    let layers = tower.layers.len();
    let px = test_pixels(dims);
    let mut best = f64::MAX;
    let mut check = 0f32;
    for _ in 0..runs.max(1) {
        let t0 = now_ms();
        let h = tower.hidden_states(&px, dims.image_size, dims.image_size, &[layers])?;
        best = best.min(now_ms() - t0);
        check += h[0][0];
    }
    if !check.is_finite() {
        return Err(Error::Invalid(format!("vision bench: non-finite features ({check})")));
    }
    let gflop = encode_flops(dims, layers) / 1e9;
    let format = match tower.layers.first().map(|l| &l.q.w.data) {
        Some(QData::Int8 { .. }) if tower.kernel.w8a8 => "w8a8",
        Some(QData::Int8 { .. }) => "int8",
        _ => "f32",
    };
    Ok(VisionRow {
        format: format.into(),
        threads,
        layers,
        tokens: dims.num_positions(),
        image_size: dims.image_size,
        encode_ms: best,
        gflop,
        gflops: gflop / (best / 1e3),
        weight_bytes: tower.weight_bytes(),
        runs: runs.max(1),
    })
}

/// Native: encode with each format at each thread count (the thread pool resized per count), `runs`
/// timed encodes each; one tower per format is built and dropped before the next.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_native(formats: &[String], threads: &[usize], runs: usize) -> Result<Vec<VisionRow>> {
    let dims = llava15_vit_l14_336();
    let clock = std::time::Instant::now();
    let now = || clock.elapsed().as_secs_f64() * 1e3;
    let mut rows = Vec::new();
    for name in formats {
        let tower = tower_for(name, &dims, llava15_layers(&dims))?;
        for &t in threads {
            crate::par::set_threads(t);
            rows.push(time_encode(&tower, t, runs, &now)?);
        }
    }
    Ok(rows)
}

/// Print vision rows as a table.
pub fn print_rows(rows: &[VisionRow]) {
    println!("vision encode, CLIP ViT-L/14-336 (LLaVA-1.5-7B shapes), random weights:");
    println!(
        "{:<6} {:>3} {:>6} {:>6} {:>10} {:>8} {:>9}",
        "format", "thr", "layers", "tokens", "encode ms", "GFLOP/s", "MiB"
    );
    for r in rows {
        println!(
            "{:<6} {:>3} {:>6} {:>6} {:>10.0} {:>8.1} {:>9.0}",
            r.format,
            r.threads,
            r.layers,
            r.tokens,
            r.encode_ms,
            r.gflops,
            r.weight_bytes as f64 / (1 << 20) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_shapes_and_flops() {
        let d = llava15_vit_l14_336();
        assert_eq!((d.num_positions(), llava15_layers(&d)), (577, 23));
        // One layer: 2·577·(4·1024² + 2·1024·4096) + 4·577²·1024.
        let one = encode_flops(&d, 1) - encode_flops(&d, 0);
        assert!((one - 1.588_436e10).abs() / one < 1e-4, "{one}");
    }

    #[test]
    fn small_random_tower_encodes_in_both_formats() {
        let mut d = llava15_vit_l14_336();
        (d.hidden, d.intermediate, d.heads, d.layers, d.image_size) = (64, 128, 4, 3, 56);
        for fmt in [WeightFormat::F32, WeightFormat::Int8] {
            let t = build_tower(&d, fmt, 2).unwrap();
            let clock = std::time::Instant::now();
            let r = time_encode(&t, 1, 1, &|| clock.elapsed().as_secs_f64() * 1e3).unwrap();
            assert_eq!((r.format.as_str(), r.layers, r.tokens), (fmt.name().as_str(), 2, 17));
            assert!(r.encode_ms > 0.0 && r.gflops > 0.0);
        }
        assert!(RandomSource::new(&d, WeightFormat::F16).is_err());
        let t = tower_for("w8a8", &d, 2).unwrap();
        let clock = std::time::Instant::now();
        let r = time_encode(&t, 1, 1, &|| clock.elapsed().as_secs_f64() * 1e3).unwrap();
        assert_eq!(r.format, "w8a8");
    }
}
