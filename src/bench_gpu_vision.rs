//! The vision side of `webvlm bench --backend gpu`: the vision tower encode on the GPU at
//! LLaVA-1.5-7B's shapes (CLIP ViT-L/14-336, the 23 layers LLaVA runs; random weights from
//! [`crate::bench_vision`]), in `f32`, `int8` (weight-only GEMM) or `w8a8` (INT8 weights with
//! per-token int8 activations, `dot4I8Packed`; that row also times one fc1 GEMM of all 577
//! tokens both ways); and with a LLaVA `--model` the time to first token of an image prompt
//! split into image encode (preprocessing + the GPU tower and projector) and prefill. On
//! lavapipe every figure is the CPU emulating the GPU.

use std::sync::Arc;

use crate::bench_vision::{encode_flops, llava15_layers, llava15_vit_l14_336, test_pixels, tower_for};
use crate::engine::{ChatTurn, Engine, GenerateParams};
use crate::error::{Error, Result};
use crate::gpu::vision::{FeatureSelect, GpuVision};
use crate::gpu::vision_kernel::{measure, VisionKernelMode};
use crate::gpu::GpuContext;
use crate::vision::image::Image;
use crate::vision::w8a8::Probe;

/// One GPU encode measurement of the ViT-L/14-336 tower (no projector).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuVisionRow {
    pub format: String,
    pub layers: usize,
    pub tokens: usize,
    /// Best wall-clock time of one tile: pixels written, plan run, features read back.
    pub encode_ms: f64,
    pub gflops: f64,
    pub dispatches: usize,
    pub weight_bytes: u64,
    /// How the INT8 linears ran (`GpuVision::kernel`).
    pub kernel: String,
    /// `w8a8`: one fc1 GEMM (`[4096, 1024]`, every token) timed weight-only and W8A8.
    pub fc1: Option<Probe>,
}

/// Encode one 336x336 tile through the tower in `format` (`f32`, `int8`, `w8a8`, …) `runs`
/// times (after a warm-up) and keep the best time.
pub fn tower(ctx: Arc<GpuContext>, format: &str, runs: usize, now_ms: &dyn Fn() -> f64) -> Result<GpuVisionRow> {
    let dims = llava15_vit_l14_336();
    let layers = llava15_layers(&dims);
    let t = tower_for(format, &dims, layers)?;
    let mode = if t.kernel.w8a8 { VisionKernelMode::W8A8 } else { VisionKernelMode::WeightOnly };
    let select = FeatureSelect { layers: vec![layers], skip: 1 };
    let v = GpuVision::new_with(ctx, &t, None, select, mode)?;
    drop(t);
    let px = test_pixels(&dims);
    let check = v.encode(&px)?; // pipelines compiled here
    if !check.iter().all(|x| x.is_finite()) {
        return Err(Error::Invalid("GPU vision bench: non-finite features".into()));
    }
    let mut best = f64::MAX;
    for _ in 0..runs.max(1) {
        let t0 = now_ms();
        v.encode(&px)?;
        best = best.min(now_ms() - t0);
    }
    let gflop = encode_flops(&dims, layers) / 1e9;
    let fc1 = if v.kernel().w8a8 { Some(measure(&v, dims.num_positions())?) } else { None };
    Ok(GpuVisionRow {
        format: format.to_string(),
        layers,
        tokens: dims.num_positions(),
        encode_ms: best,
        gflops: gflop / (best / 1e3),
        dispatches: v.dispatches(),
        weight_bytes: v.weight_bytes(),
        kernel: v.kernel().describe(),
        fc1,
    })
}

pub fn print_tower(r: &GpuVisionRow) {
    println!(
        "  vision tower {:>5} ViT-L/14-336 ({} layers, {} tokens) on the GPU: {:8.1} ms/tile  {:6.1} GFLOP/s  {} dispatches, {:.0} MiB",
        r.format,
        r.layers,
        r.tokens,
        r.encode_ms,
        r.gflops,
        r.dispatches,
        r.weight_bytes as f64 / 1048576.0
    );
    if let Some(p) = &r.fc1 {
        println!(
            "    fc1 GEMM [4096, 1024] x {} tokens on the GPU: weight-only INT8 {:.2} ms, W8A8 (dot4I8Packed) {:.2} ms",
            p.tokens, p.int8_ms, p.w8a8_ms
        );
    }
}

/// Time to first token of an image prompt on the GPU engine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuImageTtft {
    pub image: (u32, u32),
    pub tiles: usize,
    pub prompt_tokens: usize,
    /// Preprocessing, the vision tower and the projector (every tile), features read back.
    pub image_encode_ms: f64,
    /// The prompt (text and image features) through the GPU decoder to the first token.
    pub prefill_ms: f64,
    pub ttft_ms: f64,
    /// Whether the image went through the GPU tower (else the CPU one).
    pub vision_on_gpu: bool,
    /// How the GPU tower ran its INT8 linears (`GpuVision::kernel`), when it ran.
    pub vision_kernel: Option<String>,
}

/// A synthetic `w`x`h` image; `salt` changes its pixels (so the feature cache misses).
fn synthetic(w: u32, h: u32, salt: u32) -> Image {
    let rgb =
        (0..w * h * 3).map(|i| ((i / 3 % w) * 255 / w + (i / 3 / w) * 97 / h + salt * 31 + i % 3 * 40) as u8).collect();
    Image { width: w, height: h, rgb }
}

/// With the engine already on the GPU (a LLaVA model): one warm-up answer, then `runs`
/// prompts with a fresh 500x400 image each; the best time to first token and its split.
pub fn image_ttft(engine: &mut Engine, runs: usize) -> Result<Option<GpuImageTtft>> {
    if engine.llava().is_none() {
        return Ok(None);
    }
    let turn = ChatTurn { role: "user".into(), text: "Describe the image.".into(), images: 1 };
    let prompt = engine.chat_prompt_ids_with_images(&[turn])?;
    let params = GenerateParams { max_new_tokens: 1, ..Default::default() };
    let mut best: Option<GpuImageTtft> = None;
    for salt in 0..=runs.max(1) as u32 {
        engine.reset();
        let img = synthetic(500, 400, salt);
        engine.start_with_images(&prompt, std::slice::from_ref(&img), params.clone())?;
        engine.step()?;
        let t = engine.timings().clone();
        let r = GpuImageTtft {
            image: (img.width, img.height),
            tiles: engine.llava().map_or(1, |m| tiles_of(m, &img)),
            prompt_tokens: t.prefill_tokens,
            image_encode_ms: t.image_encode_ms,
            prefill_ms: t.prefill_ms,
            ttft_ms: t.image_encode_ms + t.prefill_ms,
            vision_on_gpu: engine.gpu_vision().is_some(),
            vision_kernel: engine.gpu_vision().map(|v| v.kernel().describe()),
        };
        // Run 0 warms up (pipelines compile, the caches grow).
        if salt > 0 && best.as_ref().is_none_or(|b| r.ttft_ms < b.ttft_ms) {
            best = Some(r);
        }
    }
    Ok(best)
}

/// Tiles the model's processor makes of `img` (NeXT: grid + base image).
fn tiles_of(m: &crate::model::llava::Llava, img: &Image) -> usize {
    match &m.kind {
        crate::model::llava::LlavaKind::V15 => 1,
        crate::model::llava::LlavaKind::Next { pinpoints, .. } => m
            .cfg
            .next_layout((img.height as usize, img.width as usize), pinpoints)
            .map_or(1, |l| l.grid.0 * l.grid.1 + 1),
    }
}

pub fn print_ttft(name: &str, r: &GpuImageTtft) {
    println!(
        "image prompt {name} on the GPU: time to first token {:.0} ms = image encode {:.0} ms ({} tile(s) of a {}x{} image, vision on the {}) + prefill {:.0} ms ({} tokens)",
        r.ttft_ms,
        r.image_encode_ms,
        r.tiles,
        r.image.0,
        r.image.1,
        if r.vision_on_gpu { "GPU" } else { "CPU" },
        r.prefill_ms,
        r.prompt_tokens
    );
    if let Some(k) = &r.vision_kernel {
        println!("  GPU vision tower linears: {k}");
    }
}
