//! The linear layer on the GPU, `y = W · x (+ bias)` for every weight format, and the embedding
//! gather. CPU references: `crate::kernels::matmul` (the ternary path bit for bit in its
//! integer sums; INT4/INT8 here keep f32 activations and so are closer to `QTensor::dequantize`
//! times x than the CPU's int8-activation kernels) and `QTensor::row`.
//!
//! - n == 1 (decode): one `gemv_<format>.wgsl` dispatch per [`MatrixPart`], each workgroup
//!   streaming whole rows (see `shaders/gemv_common.wgsl`).
//! - n > 1 (prefill, vision tower): `gemm_dequant.wgsl`, 64 × 64 tiles of y (ternary:
//!   `gemm_ternary.wgsl`, exact i32 sums by `dot4I8Packed`).
//! - ternary: `quantize_act_ternary.wgsl` first (per-token int8 activations into scratch
//!   buffers owned by the plan), then the GEMV/GEMM on the quants.
//!
//! `gemv_ternary.wgsl` and `gemm_ternary.wgsl` use `dot4I8Packed` (WGSL language feature
//! `packed_4x8_integer_dot_product`: naga, Chrome/Tint and lavapipe have it).
//!
//! Every dispatch writes its part's rows `r0 .. r0 + rows` of y, so split matrices need no
//! extra pass.

use super::weights::{GpuMatrix, MatrixPart};
use super::{grid, Dispatch, GpuContext, Plan};
use crate::error::{Error, Result};
use crate::quant::WeightFormat;

/// The `Params` struct shared by the gemv/gemm/gather shaders (8 words).
struct Params {
    rows: u32,
    cols: u32,
    y_off: u32,
    has_bias: u32,
    group: u32,
    gamma: f32,
    n: u32,
    ld_y: u32,
}

impl Params {
    fn new(w: &GpuMatrix, part: &MatrixPart, has_bias: bool, n: u32) -> Params {
        let group = match w.format {
            WeightFormat::Int4 { group, .. } => group as u32,
            _ => 0,
        };
        Params {
            rows: part.rows as u32,
            cols: w.cols as u32,
            y_off: part.r0 as u32,
            has_bias: has_bias as u32,
            group,
            gamma: w.scale,
            n,
            ld_y: w.rows as u32,
        }
    }
    fn words(&self) -> [u32; 8] {
        let s = self;
        [s.rows, s.cols, s.y_off, s.has_bias, s.group, s.gamma.to_bits(), s.n, s.ld_y]
    }
}

/// The `FORMAT` override of `gemm_wdecode.wgsl` and the `SYM` flag.
fn format_code(f: WeightFormat) -> (f64, f64) {
    match f {
        WeightFormat::F32 => (0.0, 1.0),
        WeightFormat::F16 => (1.0, 1.0),
        WeightFormat::Int8 => (2.0, 1.0),
        WeightFormat::Int4 { sym, .. } => (3.0, sym as u32 as f64),
        WeightFormat::Ternary => (4.0, 1.0),
    }
}

/// `y[n, rows] = x[n, cols] · Wᵀ (+ bias[rows])`, recorded once. `x`, `y` f32 row-major.
pub fn plan_linear(
    ctx: &GpuContext,
    w: &GpuMatrix,
    bias: Option<&wgpu::Buffer>,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: u32,
) -> Result<Plan> {
    check_sizes(w, x, y, n)?;
    let mut plan = Plan::default();
    let dummy = ctx.zeros("linear.dummy", 16);
    let bias_buf = bias.unwrap_or(&dummy);
    // Ternary: per-token int8 activations first; `act` = (qa [n, 4·wpr] u32, qs [n, 2]).
    let act = if w.format == WeightFormat::Ternary { Some(quantize_ternary(ctx, &mut plan, w, x, n)?) } else { None };
    let io = Io { x, act: act.as_ref(), bias: bias_buf, y, dummy: &dummy, n };
    for part in &w.parts {
        let params = ctx.uniform("linear.params", &Params::new(w, part, bias.is_some(), n).words());
        let d = if n == 1 {
            gemv_dispatch(ctx, w, part, &params, &io)?
        } else {
            gemm_dispatch(ctx, w, part, &params, &io)?
        };
        plan.push(d);
        plan.keep.push(params);
    }
    plan.keep.push(dummy);
    if let Some((qa, qs)) = act {
        plan.keep.extend([qa, qs]);
    }
    Ok(plan)
}

fn check_sizes(w: &GpuMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer, n: u32) -> Result<()> {
    let (xb, yb) = (4 * n as u64 * w.cols as u64, 4 * n as u64 * w.rows as u64);
    if x.size() < xb || y.size() < yb {
        return Err(Error::Gpu(format!(
            "linear [{}, {}] × {n} tokens needs x ≥ {xb} and y ≥ {yb} bytes, got {} and {}",
            w.rows,
            w.cols,
            x.size(),
            y.size()
        )));
    }
    Ok(())
}

/// Record the activation quantization for ternary weights; returns its scratch buffers.
fn quantize_ternary(
    ctx: &GpuContext,
    plan: &mut Plan,
    w: &GpuMatrix,
    x: &wgpu::Buffer,
    n: u32,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let wpr = w.cols.div_ceil(16) as u64;
    let qa = ctx.zeros("ternary.qa", 16 * wpr * n as u64); // [n, 4·wpr] u32
    let qs = ctx.zeros("ternary.qs", 8 * n as u64); // [n, 2]
    let params = ctx.uniform("ternary.params", &[n, w.cols as u32, wpr as u32]);
    let pipe = ctx.pipeline("quantize_act_ternary", "main", &[])?;
    let bind = ctx.bind(&pipe, &[&params, x, &qa, &qs]);
    plan.push(Dispatch { label: "quantize_act_ternary", pipe, bind, groups: grid(n) });
    plan.keep.push(params);
    Ok((qa, qs))
}

/// Rows per team (`NR`) of the int4 and ternary GEMVs, whose activations cost more bytes than
/// their weights: each activation load then serves this many rows.
const GEMV_NR: u32 = 2;

/// Threads per row for a GEMV whose rows are `chunks` loads long: about two loads per lane,
/// between 16 and 256 lanes. Returns rows per workgroup (the `RPW` override).
fn rows_per_workgroup(chunks: usize) -> u32 {
    let tpr = chunks.div_ceil(2).next_power_of_two().clamp(16, 256);
    (256 / tpr) as u32
}

/// The buffers one linear dispatch binds besides the weights.
struct Io<'a> {
    x: &'a wgpu::Buffer,
    /// Ternary activations `(qa, qs)`.
    act: Option<&'a (wgpu::Buffer, wgpu::Buffer)>,
    bias: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    /// Bound where a format has no such segment.
    dummy: &'a wgpu::Buffer,
    n: u32,
}

fn gemv_dispatch(
    ctx: &GpuContext,
    w: &GpuMatrix,
    part: &MatrixPart,
    params: &wgpu::Buffer,
    io: &Io,
) -> Result<Dispatch> {
    let (cols, x, bias, y, dummy) = (w.cols, io.x, io.bias, io.y, io.dummy);
    let scales = part.scales.as_ref().unwrap_or(dummy);
    let (label, pipe, bind, rows_per_wg) = match w.format {
        WeightFormat::F32 | WeightFormat::F16 | WeightFormat::Int8 => {
            let (name, per_chunk) = match w.format {
                WeightFormat::F32 => ("gemv_f32", 4),
                WeightFormat::F16 => ("gemv_f16", 8),
                _ => ("gemv_int8", 16),
            };
            let rpw = rows_per_workgroup(cols.div_ceil(per_chunk));
            let pipe = ctx.pipeline(name, "main", &[("RPW", rpw as f64)])?;
            let bind = if w.format == WeightFormat::Int8 {
                ctx.bind(&pipe, &[params, &part.q, scales, x, bias, y])
            } else {
                ctx.bind(&pipe, &[params, &part.q, x, bias, y])
            };
            (name, pipe, bind, rpw)
        }
        WeightFormat::Int4 { sym, .. } => {
            let rpw = rows_per_workgroup(cols / 32);
            let consts = [("RPW", rpw as f64), ("NR", GEMV_NR as f64), ("SYM", sym as u32 as f64)];
            let pipe = ctx.pipeline("gemv_int4", "main", &consts)?;
            let mins = part.mins.as_ref().unwrap_or(dummy);
            let bind = ctx.bind(&pipe, &[params, &part.q, scales, mins, x, bias, y]);
            ("gemv_int4", pipe, bind, rpw * GEMV_NR)
        }
        WeightFormat::Ternary => {
            let wpr = cols.div_ceil(16);
            let vec = wpr % 4 == 0;
            let rpw = rows_per_workgroup(if vec { wpr / 4 } else { wpr });
            let consts = [("RPW", rpw as f64), ("NR", GEMV_NR as f64), ("VEC", vec as u32 as f64)];
            let pipe = ctx.pipeline("gemv_ternary", "main", &consts)?;
            let (qa, qs) = io.act.ok_or_else(|| Error::Gpu("ternary GEMV without activations".into()))?;
            let bind = ctx.bind(&pipe, &[params, &part.q, qa, qs, bias, y]);
            ("gemv_ternary", pipe, bind, rpw * GEMV_NR)
        }
    };
    Ok(Dispatch { label, pipe, bind, groups: grid((part.rows as u32).div_ceil(rows_per_wg)) })
}

fn gemm_dispatch(
    ctx: &GpuContext,
    w: &GpuMatrix,
    part: &MatrixPart,
    params: &wgpu::Buffer,
    io: &Io,
) -> Result<Dispatch> {
    let dummy = io.dummy;
    let tiles = (part.rows as u32).div_ceil(64) * io.n.div_ceil(64);
    if let Some((qa, qs)) = io.act {
        let pipe = ctx.pipeline("gemm_ternary", "main", &[])?;
        let bind = ctx.bind(&pipe, &[params, &part.q, qa, qs, io.bias, io.y]);
        return Ok(Dispatch { label: "gemm_ternary", pipe, bind, groups: grid(tiles) });
    }
    let (format, sym) = format_code(w.format);
    let pipe = ctx.pipeline("gemm_dequant", "main", &[("FORMAT", format), ("SYM", sym)])?;
    let scales = part.scales.as_ref().unwrap_or(dummy);
    let mins = part.mins.as_ref().unwrap_or(dummy);
    let bind = ctx.bind(&pipe, &[params, &part.q, scales, mins, io.x, io.bias, io.y]);
    Ok(Dispatch { label: "gemm_dequant", pipe, bind, groups: grid(tiles) })
}

/// `out[t] = W[ids[t]]` as f32 `[n, cols]` for `ids: u32 [n]` (every id < rows).
pub fn plan_gather(ctx: &GpuContext, w: &GpuMatrix, ids: &wgpu::Buffer, out: &wgpu::Buffer, n: u32) -> Result<Plan> {
    if out.size() < 4 * n as u64 * w.cols as u64 || ids.size() < 4 * n as u64 {
        return Err(Error::Gpu(format!("gather of {n} rows of [{}, {}]: buffers too small", w.rows, w.cols)));
    }
    let (format, sym) = format_code(w.format);
    let pipe = ctx.pipeline("gather_rows", "main", &[("FORMAT", format), ("SYM", sym)])?;
    let mut plan = Plan::default();
    let dummy = ctx.zeros("gather.dummy", 16);
    for part in &w.parts {
        let params = ctx.uniform("gather.params", &Params::new(w, part, false, n).words());
        let scales = part.scales.as_ref().unwrap_or(&dummy);
        let mins = part.mins.as_ref().unwrap_or(&dummy);
        let bind = ctx.bind(&pipe, &[&params, ids, &part.q, scales, mins, out]);
        let groups = grid((n as u64 * w.cols as u64).div_ceil(256) as u32);
        plan.push(Dispatch { label: "gather_rows", pipe: pipe.clone(), bind, groups });
        plan.keep.push(params);
    }
    plan.keep.push(dummy);
    Ok(plan)
}
