//! W8A8 linears on the GPU (SmoothQuant W8A8, Xiao et al. 2023, with dynamic per-token
//! activation scales): `quantize_act_i8.wgsl` turns f32 activations `x: [n, cols]` into int8
//! codes and one scale per token ([`ActI8`]), then `gemm_w8a8.wgsl` multiplies them with an
//! INT8 matrix's bytes as stored (docs/FORMAT.md) by `dot4I8Packed`, one exact i32 sum per
//! output, scaled by `s_a[t] · s_w[r]` (+ bias) in f32.
//!
//! CPU reference: [`crate::kernels::w8a8`] (`TokAct::new` for the codes and scales, `dot_scalar`
//! for the sums): the same f32 operations, so the sums match exactly and the codes match except
//! where WGSL's division (2.5 ULP allowed) moves a value across a rounding tie.
//!
//! Several linears reading the same input (q, k, v) share one quantization: record
//! [`plan_quantize_act`] once and [`plan_gemm_w8a8`] for each.

use super::ops::Launch;
use super::weights::GpuMatrix;
use super::{grid, GpuContext, Plan};
use crate::error::{Error, Result};
use crate::quant::WeightFormat;

/// Rows and tokens of one `gemm_w8a8` workgroup's tile.
const TILE: u32 = 64;

/// Per-token int8 activations on the GPU: codes `qa: u32 [n, ceil(cols / 4)]` (4 per word,
/// column order, zero bytes past `cols`) and scales `qs: f32 [n]`.
pub struct ActI8 {
    pub qa: wgpu::Buffer,
    pub qs: wgpu::Buffer,
}

impl ActI8 {
    /// Scratch for up to `n` tokens of up to `cols` columns.
    pub fn new(ctx: &GpuContext, n: usize, cols: usize) -> ActI8 {
        ActI8 {
            qa: ctx.zeros("w8a8.qa", 4 * (n * words(cols)).max(1) as u64),
            qs: ctx.zeros("w8a8.qs", 4 * n.max(1) as u64),
        }
    }

    /// Whether `n` tokens of `cols` columns fit.
    fn fits(&self, n: u32, cols: usize) -> bool {
        self.qa.size() >= 4 * n as u64 * words(cols) as u64 && self.qs.size() >= 4 * n as u64
    }
}

/// Packed words per token of `cols` columns.
pub fn words(cols: usize) -> usize {
    cols.div_ceil(4)
}

/// Record `x: f32 [n, cols]` → `act` (one workgroup per token).
pub fn plan_quantize_act(ctx: &GpuContext, x: &wgpu::Buffer, act: &ActI8, n: u32, cols: u32) -> Result<Plan> {
    if n == 0 || cols == 0 || x.size() < 4 * n as u64 * cols as u64 || !act.fits(n, cols as usize) {
        return Err(Error::Gpu(format!("int8 activations of [{n}, {cols}]: empty shape or buffers too small")));
    }
    let mut plan = Plan::default();
    Launch {
        label: "quantize_act_i8",
        shader: "quantize_act_i8",
        entry: "main",
        overrides: &[],
        params: &[n, cols, words(cols as usize) as u32],
        buffers: &[(1, x), (2, &act.qa), (3, &act.qs)],
        groups: grid(n),
    }
    .push(ctx, &mut plan)?;
    Ok(plan)
}

/// Record `y[n, rows] = act · Wᵀ (+ bias[rows])` for an INT8 `w` (one dispatch per part),
/// `act` quantized from `n` tokens of `w.cols` columns.
pub fn plan_gemm_w8a8(
    ctx: &GpuContext,
    w: &GpuMatrix,
    bias: Option<&wgpu::Buffer>,
    act: &ActI8,
    y: &wgpu::Buffer,
    n: u32,
) -> Result<Plan> {
    if w.format != WeightFormat::Int8 {
        return Err(Error::Gpu(format!("W8A8 GEMM needs INT8 weights, not {}", w.format.name())));
    }
    if n == 0 || !act.fits(n, w.cols) || y.size() < 4 * n as u64 * w.rows as u64 {
        return Err(Error::Gpu(format!("W8A8 GEMM [{}, {}] × {n} tokens: buffers too small", w.rows, w.cols)));
    }
    let dummy = ctx.zeros("w8a8.dummy", 16);
    let mut plan = Plan::default();
    for part in &w.parts {
        let scales = part.scales.as_ref().ok_or_else(|| Error::Gpu("INT8 matrix without scales".into()))?;
        let params = [part.rows as u32, w.cols as u32, part.r0 as u32, bias.is_some() as u32, n, w.rows as u32];
        let tiles = (part.rows as u32).div_ceil(TILE) * n.div_ceil(TILE);
        Launch {
            label: "gemm_w8a8",
            shader: "gemm_w8a8",
            entry: "main",
            overrides: &[],
            params: &params,
            buffers: &[(1, &part.q), (2, scales), (3, &act.qa), (4, &act.qs), (5, bias.unwrap_or(&dummy)), (6, y)],
            groups: grid(tiles),
        }
        .push(ctx, &mut plan)?;
    }
    plan.keep.push(dummy);
    Ok(plan)
}

/// Both steps with scratch of their own: `y[n, rows] = x[n, cols] · Wᵀ (+ bias)`.
pub fn plan_linear_w8a8(
    ctx: &GpuContext,
    w: &GpuMatrix,
    bias: Option<&wgpu::Buffer>,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n: u32,
) -> Result<Plan> {
    let act = ActI8::new(ctx, n as usize, w.cols);
    let mut plan = plan_quantize_act(ctx, x, &act, n, w.cols as u32)?;
    plan.extend(plan_gemm_w8a8(ctx, w, bias, &act, y, n)?);
    plan.keep.extend([act.qa, act.qs]);
    Ok(plan)
}
