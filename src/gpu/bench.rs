//! GPU throughput probes for `webvlm bench --backend gpu`: the decode GEMV of each weight
//! format in GB/s of weights streamed, and the adapter's copy bandwidth (`shaders/copy.wgsl`)
//! that the GEMV figures are quoted against.
//!
//! Both rotate through several buffer copies whose total is at least 4 × 105 MiB (more than
//! any GPU's last-level cache) when the adapter's limits allow, record every iteration into one
//! compute pass, and time one submit + wait, so neither cache hits nor per-submit overhead
//! inflate the figure.

use std::time::Instant;

use super::linear::plan_linear;
use super::weights::GpuMatrix;
use super::{Dispatch, GpuContext, Plan};
use crate::error::{Error, Result};
use crate::quant::{QTensor, WeightFormat};
use crate::rng::Rng;

/// Bytes the rotating copies should add up to (cache-proof).
const ROTATE_BYTES: u64 = (4 * 105) << 20;
/// At most this many copies (bounds memory on adapters with small matrices).
const MAX_COPIES: u64 = 16;

/// Run `plans[i % len]` for `iters` iterations after one warm-up round; milliseconds each.
fn time_plans(ctx: &GpuContext, plans: &[Plan], iters: usize) -> Result<f64> {
    let run = |count: usize| -> Result<f64> {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            (0..count).for_each(|i| plans[i % plans.len()].record(&mut pass));
        }
        let t0 = Instant::now();
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    run(plans.len())?;
    Ok(run(iters.max(1))? / iters.max(1) as f64)
}

/// How many copies of `bytes` make the rotation cache-proof.
fn copies_for(bytes: u64) -> u64 {
    ROTATE_BYTES.div_ceil(bytes.max(1)).clamp(1, MAX_COPIES)
}

/// GEMV `y = W x` throughput for a random `[rows, cols]` matrix in `format`:
/// `(GB/s of weight bytes, ms per GEMV)`.
pub fn gemv_gbps(ctx: &GpuContext, format: WeightFormat, rows: usize, cols: usize, iters: usize) -> Result<(f64, f64)> {
    let mut rng = Rng::new(0x6e6d);
    let w = rng.normals(rows * cols, 0.0);
    let q = QTensor::quantize(&w, rows, cols, format)?;
    drop(w);
    let x = ctx.upload_f32("bench.x", &rng.normals(cols, 0.0));
    let y = ctx.zeros("bench.y", 4 * rows as u64);
    let copies = copies_for(q.nbytes() as u64);
    let mut mats = Vec::new();
    let mut plans = Vec::new();
    for i in 0..copies {
        let m = GpuMatrix::upload(ctx, &q, &format!("bench.w{i}"))?;
        plans.push(plan_linear(ctx, &m, None, &x, &y, 1)?);
        mats.push(m);
    }
    let ms = time_plans(ctx, &plans, iters)?;
    Ok((mats[0].nbytes() as f64 / (ms * 1e-3) / 1e9, ms))
}

/// Copy-kernel bandwidth over `bytes`-byte buffers: `(GB/s counting read + write, ms per copy)`.
pub fn copy_gbps(ctx: &GpuContext, bytes: u64, iters: usize) -> Result<(f64, f64)> {
    let bytes = bytes.min(ctx.max_binding()) / 16 * 16;
    if bytes == 0 {
        return Err(Error::Gpu("copy_gbps: no bytes to copy".into()));
    }
    let n_vec4 = (bytes / 16) as u32;
    let pipe = ctx.pipeline("copy", "main", &[])?;
    let params = ctx.uniform("copy.params", &[n_vec4]);
    let copies = copies_for(2 * bytes);
    let mut plans = Vec::new();
    for _ in 0..copies {
        let (src, dst) = (ctx.zeros("copy.src", bytes), ctx.zeros("copy.dst", bytes));
        let bind = ctx.bind(&pipe, &[&params, &src, &dst]);
        let groups = [n_vec4.div_ceil(256).min(65535), 1, 1];
        let mut plan = Plan::default();
        plan.push(Dispatch { label: "copy", pipe: pipe.clone(), bind, groups });
        plan.keep.extend([src, dst]);
        plans.push(plan);
    }
    let ms = time_plans(ctx, &plans, iters)?;
    Ok((2.0 * bytes as f64 / (ms * 1e-3) / 1e9, ms))
}
