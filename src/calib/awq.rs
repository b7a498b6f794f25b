//! AWQ (Lin, Tang, Tang, Yang, Gan, Han 2023, "AWQ: Activation-aware Weight Quantization for
//! LLM Compression and Acceleration"), the scale search of the reference `auto_scale.py`
//! (github.com/mit-han-lab/llm-awq, `_search_module_scale`): for linears sharing one input
//! `X: [n, cols]`, per-input-channel scales `s = mean|x|^α` (clamped to 1e-4, normalized by
//! `sqrt(max s · min s)`) for α on a grid of `points` values `0, 1/points, …`, choosing the α
//! whose `Ŵ = Q(W·diag(s))·diag(s)⁻¹` minimizes `Σ ‖X·Wᵀ − X·Ŵᵀ‖²` over the group.
//! α = 0 gives `s = 1`, which is RTN, so the result is never worse than RTN on the same `X`.
//!
//! The runtime has no input scale, so the caller folds `1/s` into the op producing `X`
//! (see [`super::model`]); what is stored is `Q(W·diag(s))`, exactly. The reference's second
//! step (`auto_clip`, a search of clipped group ranges) is not done.

use super::grid::{rtn, Grid};
use crate::error::{Error, Result};
use crate::kernels;
use crate::quant::{QData, QTensor, WeightFormat};

/// The outcome of one search.
#[derive(Clone, Debug)]
pub struct AwqScales {
    /// `[cols]`, all 1 when α = 0 won.
    pub s: Vec<f32>,
    pub alpha: f32,
    /// `Σ ‖X·Wᵀ − X·Ŵᵀ‖²` at the chosen α, and at α = 0 (RTN).
    pub err: f64,
    pub rtn_err: f64,
}

/// `y = x · wᵀ` for dense `w: [rows, cols]`, `x: [n, cols]` → `[n, rows]`.
pub fn dense_matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    let wt = QTensor { rows, cols, data: QData::F32(w.to_vec()) };
    let mut y = vec![0f32; n * rows];
    kernels::matmul(&wt, x, n, &mut y);
    y
}

/// `Σ (a − b)²` in f64.
pub fn sq_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&p, &q)| ((p - q) as f64).powi(2)).sum()
}

/// The scales for exponent `alpha` from per-channel `mean_abs: [cols]`.
pub fn scales_for(mean_abs: &[f32], alpha: f32) -> Vec<f32> {
    if alpha == 0.0 {
        return vec![1.0; mean_abs.len()];
    }
    let s: Vec<f32> = mean_abs.iter().map(|&m| m.powf(alpha).max(1e-4)).collect();
    let (lo, hi) = s.iter().fold((f32::INFINITY, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let norm = (lo * hi).sqrt();
    s.into_iter().map(|v| v / norm).collect()
}

/// `Q(W·diag(s))` on `grid` (what is stored) for dense `w: [rows, cols]`.
pub fn quantize_scaled(w: &[f32], rows: usize, cols: usize, s: &[f32], fmt: WeightFormat) -> Result<QTensor> {
    let grid = Grid::new(fmt, cols)?;
    let ws: Vec<f32> = w.chunks_exact(cols).flat_map(|r| r.iter().zip(s).map(|(v, k)| v * k)).collect();
    Ok(rtn(&grid, &ws, rows, cols))
}

/// Search α for the linears `mats` (`(w: [rows, cols], rows)`, one shared input `x: [n, cols]`).
pub fn search(
    mats: &[(&[f32], usize)],
    x: &[f32],
    n: usize,
    mean_abs: &[f32],
    fmt: WeightFormat,
    points: usize,
) -> Result<AwqScales> {
    let cols = mean_abs.len();
    if x.len() != n * cols || mats.iter().any(|(w, r)| w.len() != r * cols) {
        return Err(Error::Shape(format!("awq: inputs [{n}, {cols}] do not match x or weights")));
    }
    let refs: Vec<Vec<f32>> = mats.iter().map(|(w, r)| dense_matmul(w, *r, cols, x, n)).collect();
    let mut best: Option<AwqScales> = None;
    let mut rtn_err = 0.0;
    for i in 0..points.max(1) {
        let alpha = i as f32 / points.max(1) as f32;
        let s = scales_for(mean_abs, alpha);
        let mut err = 0.0;
        for ((w, rows), y) in mats.iter().zip(&refs) {
            let deq = quantize_scaled(w, *rows, cols, &s, fmt)?.dequantize();
            let wh: Vec<f32> = deq.chunks_exact(cols).flat_map(|r| r.iter().zip(&s).map(|(v, k)| v / k)).collect();
            err += sq_err(y, &dense_matmul(&wh, *rows, cols, x, n));
        }
        if i == 0 {
            rtn_err = err;
        }
        if best.as_ref().is_none_or(|b| err < b.err) {
            best = Some(AwqScales { s, alpha, err, rtn_err: 0.0 });
        }
    }
    let mut b = best.ok_or_else(|| Error::Invalid("awq: empty grid".into()))?;
    b.rtn_err = rtn_err;
    Ok(b)
}
