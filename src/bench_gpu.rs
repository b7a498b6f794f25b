//! `webvlm bench --backend gpu`: the adapter's copy bandwidth, GEMV bandwidth per weight
//! format as a share of it (same run, weights rotated through copies several times larger
//! than a last-level cache so they stream from memory), and with `--model` decode tokens/s,
//! dispatches per token and time to first token on the GPU decoder.

use std::sync::Arc;

use crate::engine::{Engine, GenerateParams};
use crate::error::Result;
use crate::gpu::bench::{copy_gbps, gemv_gbps};
use crate::gpu::GpuContext;
use crate::quant::WeightFormat;

/// One GEMV measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuGemvRow {
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub gbps: f64,
    pub ms: f64,
    /// `gbps / copy_gbps` of the same run.
    pub share_of_copy: f64,
}

/// The kernel part of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuKernelReport {
    pub adapter: crate::gpu::AdapterSummary,
    /// Copy kernel, read + write bytes per second.
    pub copy_gbps: f64,
    pub gemv: Vec<GpuGemvRow>,
}

/// Decode on the GPU decoder.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuDecodeReport {
    pub model: String,
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    pub decode_tokens: usize,
    pub decode_tokens_per_s: f64,
    pub dispatches_per_token: Option<usize>,
    pub weight_bytes: u64,
    /// Weight bytes per second while decoding, as a share of the copy bandwidth.
    pub share_of_copy: f64,
}

/// The formats and shapes measured (LLaVA-1.5-7B / Mistral-7B projection shapes).
pub fn cases() -> Vec<(WeightFormat, usize, usize)> {
    let int4 = WeightFormat::Int4 { group: 64, sym: true };
    let mut v = Vec::new();
    for (r, c) in [(4096, 4096), (4096, 14336)] {
        v.extend([
            (int4, r, c),
            (WeightFormat::Int4 { group: 32, sym: true }, r, c),
            (WeightFormat::Int4 { group: 64, sym: false }, r, c),
            (WeightFormat::Int8, r, c),
            (WeightFormat::Ternary, r, c),
            (WeightFormat::F16, r, c),
        ]);
    }
    v
}

pub fn kernels(ctx: &GpuContext, iters: usize) -> Result<GpuKernelReport> {
    let (copy, _) = copy_gbps(ctx, 256 << 20, iters)?;
    let mut gemv = Vec::new();
    for (f, rows, cols) in cases() {
        let (gbps, ms) = gemv_gbps(ctx, f, rows, cols, iters)?;
        gemv.push(GpuGemvRow { format: f.name(), rows, cols, gbps, ms, share_of_copy: gbps / copy });
    }
    Ok(GpuKernelReport { adapter: ctx.info.clone(), copy_gbps: copy, gemv })
}

pub fn print_kernels(r: &GpuKernelReport) {
    let a = &r.adapter;
    println!("GPU: {} ({}, {}), copy kernel {:.1} GB/s (read + write)", a.name, a.backend, a.device_type, r.copy_gbps);
    for g in &r.gemv {
        println!(
            "  gemv {:>16} {:>5}x{:<5} {:7.1} GB/s  {:5.1}% of copy  {:.3} ms",
            g.format,
            g.rows,
            g.cols,
            g.gbps,
            100.0 * g.share_of_copy,
            g.ms
        );
    }
}

/// Decode `n` tokens greedily on the GPU after a short prompt.
pub fn decode(engine: &mut Engine, ctx: Arc<GpuContext>, name: &str, n: usize, copy: f64) -> Result<GpuDecodeReport> {
    engine.use_gpu(ctx, None)?;
    let prompt = engine.tokenizer().encode("The capital of France is", true)?;
    // Warm-up: pipelines compile, the decode step is recorded.
    engine.generate(&prompt, GenerateParams { max_new_tokens: 2, ..Default::default() }, &mut |_| true)?;
    engine.reset();
    let mut params = GenerateParams { max_new_tokens: n, ..Default::default() };
    params.stop.clear();
    engine.start(&prompt, params)?;
    while engine.step()?.is_some() {}
    let t = engine.timings().clone();
    let dec = engine.gpu_decoder();
    let weight_bytes = dec.map_or(0, |d| d.weight_bytes());
    let share = weight_bytes as f64 * t.decode_tokens_per_s / 1e9 / copy;
    Ok(GpuDecodeReport {
        model: name.to_string(),
        prompt_tokens: t.prefill_tokens,
        prefill_ms: t.prefill_ms,
        decode_tokens: t.decode_tokens,
        decode_tokens_per_s: t.decode_tokens_per_s,
        dispatches_per_token: dec.and_then(|d| d.dispatches_per_token()),
        weight_bytes,
        share_of_copy: share,
    })
}
