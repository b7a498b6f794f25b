//! GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization
//! for Generative Pre-trained Transformers"), following the reference `gptq.py`
//! (`GPTQ.fasterquant`, github.com/IST-DASLab/gptq): columns are rounded one at a time and
//! each column's rounding error, divided by the diagonal of the upper Cholesky factor `U` of
//! `H⁻¹` (`H = Σ xᵀx` over calibration inputs, damped by `damp · mean(diag H)`), is spread over
//! the columns not yet rounded (`W[:, j] -= err · U[i, j]`), inside blocks of 128 columns
//! at once and lazily (one matrix product per block) beyond them.
//!
//! Group parameters (the format's scale / min, `grid`) are computed when a group's first column
//! is reached, from the weights as updated so far (the reference's default); blocks are a
//! multiple of the group so a group never straddles blocks. With `act_order`, columns are
//! processed by decreasing `diag H`, and since the runtime's groups are fixed runs of
//! consecutive columns, every group's parameters are computed up front from the original
//! weights (the reference's `static_groups=True`), which keeps the result representable.
//! INT8 (one scale per row) always uses static parameters, as the reference does without groups.
//! Inputs whose channel never fires (`H[i,i] = 0`) get `H[i,i] = 1` and weight 0 (as the reference).

use super::grid::{Grid, Param};
use super::linalg::inverse_cholesky_upper;
use crate::error::{Error, Result};
use crate::quant::{QTensor, WeightFormat};
use rayon::prelude::*;

/// GPTQ's knobs (the reference's defaults).
#[derive(Clone, Copy, Debug)]
pub struct GptqOptions {
    /// Damping as a share of the mean diagonal of `H` (`percdamp`, 0.01).
    pub damp: f64,
    /// Columns per lazy-update block (128; rounded up to a multiple of the group).
    pub block: usize,
    /// Process columns by decreasing `diag H` (`--act-order`).
    pub act_order: bool,
}

impl Default for GptqOptions {
    fn default() -> Self {
        GptqOptions { damp: 0.01, block: 128, act_order: false }
    }
}

/// Quantize `w: [rows, cols]` to `fmt` (INT4 / INT8) given `h: [cols, cols]` = `Σ xᵀx`.
pub fn gptq(w: &[f32], rows: usize, cols: usize, h: &[f64], fmt: WeightFormat, o: &GptqOptions) -> Result<QTensor> {
    let grid = Grid::new(fmt, cols)?;
    if w.len() != rows * cols || h.len() != cols * cols {
        return Err(Error::Shape(format!("gptq: w has {} values, h {} for [{rows}, {cols}]", w.len(), h.len())));
    }
    let (w, h, perm) = prepare(w, rows, cols, h, o.act_order);
    let hp: Vec<f64> = (0..cols * cols).map(|k| h[perm[k / cols] * cols + perm[k % cols]]).collect();
    let u = damped_factor(hp, cols, o.damp)?;
    // wt: [cols, rows], column perm[p] of w as row p.
    let mut wt: Vec<f32> = (0..cols * rows).map(|k| w[(k % rows) * cols + perm[k / rows]]).collect();
    let groups = cols / grid.group;
    let static_params = o.act_order || fmt == WeightFormat::Int8;
    let mut params = vec![Param::default(); rows * groups];
    if static_params {
        for (p, g) in params.iter_mut().zip(w.chunks_exact(grid.group)) {
            *p = grid.param(g);
        }
    }
    let mut levels = vec![0i32; rows * cols];
    let block = o.block.max(1).div_ceil(grid.group) * grid.group;
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + block).min(cols);
        let mut err = vec![0f32; (i2 - i1) * rows]; // [i2 - i1, rows]
        for p in i1..i2 {
            let c = perm[p];
            if !static_params && c.is_multiple_of(grid.group) {
                group_params(&grid, &wt[p * rows..(p + grid.group) * rows], rows, c / grid.group, groups, &mut params);
            }
            let d = u[p * cols + p];
            let (cur, rest) = wt[p * rows..i2 * rows].split_at_mut(rows);
            let e = &mut err[(p - i1) * rows..(p - i1 + 1) * rows];
            for r in 0..rows {
                let pr = &params[r * groups + c / grid.group];
                let q = grid.level(pr, cur[r]);
                levels[r * cols + c] = q;
                e[r] = (cur[r] - grid.value(pr, q)) / d;
            }
            for (j, row) in rest.chunks_exact_mut(rows).enumerate() {
                let f = u[p * cols + p + 1 + j];
                row.iter_mut().zip(e.iter()).for_each(|(x, &ev)| *x -= f * ev);
            }
        }
        let tail = &mut wt[i2 * rows..];
        tail.par_chunks_mut(rows).enumerate().for_each(|(j, row)| {
            for (b, e) in err.chunks_exact(rows).enumerate() {
                let f = u[(i1 + b) * cols + i2 + j];
                row.iter_mut().zip(e).for_each(|(x, &ev)| *x -= f * ev);
            }
        });
        i1 = i2;
    }
    Ok(grid.build(rows, cols, &levels, &params))
}

/// Dead inputs zeroed (`H[i,i] = 1`, `W[:, i] = 0`) and the column order (act-order or not).
fn prepare(w: &[f32], rows: usize, cols: usize, h: &[f64], act_order: bool) -> (Vec<f32>, Vec<f64>, Vec<usize>) {
    let mut h = h.to_vec();
    let mut w = w.to_vec();
    for i in 0..cols {
        if h[i * cols + i] == 0.0 {
            h[i * cols + i] = 1.0;
            (0..rows).for_each(|r| w[r * cols + i] = 0.0);
        }
    }
    let mut perm: Vec<usize> = (0..cols).collect();
    if act_order {
        perm.sort_by(|&a, &b| h[b * cols + b].total_cmp(&h[a * cols + a]));
    }
    (w, h, perm)
}

/// The parameters of group `g` of every row from its current columns `cols_t: [group, rows]`.
fn group_params(grid: &Grid, cols_t: &[f32], rows: usize, g: usize, groups: usize, params: &mut [Param]) {
    let mut vals = vec![0f32; grid.group];
    for r in 0..rows {
        for (k, v) in vals.iter_mut().enumerate() {
            *v = cols_t[k * rows + r];
        }
        params[r * groups + g] = grid.param(&vals);
    }
}

/// `U` (f32) with `Uᵀ·U = (H + λI)⁻¹`, `λ = damp · mean(diag H)`; retried with 10× the damping
/// (up to twice) when `H` is too ill-conditioned for the factorization.
fn damped_factor(h: Vec<f64>, n: usize, damp: f64) -> Result<Vec<f32>> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let mut last = None;
    for k in 0..3 {
        let lambda = damp * 10f64.powi(k) * mean;
        let mut hd = h.clone();
        (0..n).for_each(|i| hd[i * n + i] += lambda);
        match inverse_cholesky_upper(&hd, n) {
            Ok(u) => return Ok(u.into_iter().map(|v| v as f32).collect()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Invalid("gptq: empty Hessian".into())))
}
