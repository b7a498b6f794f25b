//! A linear layer `y = x · Wᵀ (+ b)` over any weight format, and the loaders that turn a
//! checkpoint's tensors into runtime weights according to [`LoadOptions`].

use super::LoadOptions;
use crate::error::{Error, Result};
use crate::io::{TensorData, WeightSource};
use crate::kernels;
use crate::quant::{ternary, QData, QTensor, WeightFormat, INT4_GROUPS};

/// `nn.Linear`: weight `[out, in]` in a runtime format, optional bias `[out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: QTensor,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub fn in_features(&self) -> usize {
        self.w.cols
    }
    pub fn out_features(&self) -> usize {
        self.w.rows
    }

    /// `x: [n, in]` → `y: [n, out]`. One row takes the matrix-vector kernel, several the
    /// matrix-matrix kernel (prefill).
    pub fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) {
        let (i, o) = (self.w.cols, self.w.rows);
        debug_assert_eq!(x.len(), n * i);
        debug_assert_eq!(y.len(), n * o);
        if n == 1 {
            kernels::matvec(&self.w, x, y);
        } else {
            kernels::matmul(&self.w, x, n, y);
        }
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(o) {
                super::ops::add_inplace(row, b);
            }
        }
    }

    /// Allocating variant of [`Linear::forward`].
    pub fn apply(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * self.w.rows];
        self.forward(x, n, &mut y);
        y
    }
}

/// Load a 2-D weight `[rows, cols]` as a runtime matrix: converted tensors keep their
/// format unless `opts.weights` asks for another; dense tensors stay f32 or are
/// RTN-quantized to `opts.weights`.
pub fn load_matrix(
    src: &dyn WeightSource,
    name: &str,
    rows: usize,
    cols: usize,
    opts: &LoadOptions,
) -> Result<QTensor> {
    if !src.contains(name) {
        return Err(Error::MissingTensor(name.to_string()));
    }
    let t = src.load(name)?;
    if t.shape != [rows, cols] {
        return Err(Error::Shape(format!("`{name}` is {:?}, the config needs [{rows}, {cols}]", t.shape)));
    }
    let requant = |dense: Vec<f32>, fmt| {
        QTensor::quantize(&dense, rows, cols, fit_format(fmt, cols)).map_err(|e| Error::Shape(format!("`{name}`: {e}")))
    };
    match (t.data, opts.weights) {
        (TensorData::Quant(q), None) => Ok(q),
        (TensorData::Quant(q), Some(fmt)) if q.format() == fit_format(fmt, cols) => Ok(q),
        (TensorData::Quant(q), Some(fmt)) => requant(q.dequantize(), fmt),
        (TensorData::F32(v), None) => Ok(QTensor { rows, cols, data: crate::quant::QData::F32(v) }),
        (TensorData::F32(v), Some(fmt)) => requant(v, fmt),
    }
}

/// `fmt`, or for INT4 whose group does not divide `cols` the largest group that does (INT8
/// if none does), the same fallback `webvlm convert` applies.
pub fn fit_format(fmt: WeightFormat, cols: usize) -> WeightFormat {
    match fmt {
        WeightFormat::Int4 { group, sym } if !cols.is_multiple_of(group) => INT4_GROUPS
            .iter()
            .rev()
            .find(|&&g| cols.is_multiple_of(g))
            .map_or(WeightFormat::Int8, |&g| WeightFormat::Int4 { group: g, sym }),
        f => f,
    }
}

/// Load a linear layer `prefix.weight` `[out, in]` and, if present, `prefix.bias` `[out]`.
pub fn load_linear(src: &dyn WeightSource, prefix: &str, out: usize, inp: usize, opts: &LoadOptions) -> Result<Linear> {
    let w = load_matrix(src, &format!("{prefix}.weight"), out, inp, opts)?;
    let bname = format!("{prefix}.bias");
    let bias = if src.contains(&bname) { Some(load_vector(src, &bname, out)?) } else { None };
    Ok(Linear { w, bias })
}

/// Load a fused linear `prefix.weight` `[Σ parts, inp]` (and its bias) and split its rows into
/// one [`Linear`] per part (OLMo's `att_proj` = q|k|v, `ff_proj` = up|gate). The weight is
/// brought to its runtime format *before* the split, so a ternary scale is the fused tensor's.
pub fn load_fused(
    src: &dyn WeightSource,
    prefix: &str,
    parts: &[usize],
    inp: usize,
    opts: &LoadOptions,
) -> Result<Vec<Linear>> {
    let out: usize = parts.iter().sum();
    let whole = load_linear(src, prefix, out, inp, opts)?;
    let mut r0 = 0;
    Ok(parts
        .iter()
        .map(|&p| {
            let l = Linear {
                w: slice_rows(&whole.w, r0, r0 + p),
                bias: whole.bias.as_ref().map(|b| b[r0..r0 + p].to_vec()),
            };
            r0 += p;
            l
        })
        .collect())
}

/// Rows `r0 .. r1` of a matrix, in its format (every format stores rows contiguously; a
/// ternary slice keeps the whole tensor's scale).
pub fn slice_rows(w: &QTensor, r0: usize, r1: usize) -> QTensor {
    let c = w.cols;
    let data = match &w.data {
        QData::F32(v) => QData::F32(v[r0 * c..r1 * c].to_vec()),
        QData::F16(v) => QData::F16(v[r0 * c..r1 * c].to_vec()),
        QData::Int8 { q, scales } => QData::Int8 { q: q[r0 * c..r1 * c].to_vec(), scales: scales[r0..r1].to_vec() },
        QData::Int4 { group, q, scales, mins } => {
            let g = c / group;
            QData::Int4 {
                group: *group,
                q: q[r0 * c / 8..r1 * c / 8].to_vec(),
                scales: scales[r0 * g..r1 * g].to_vec(),
                mins: mins.as_ref().map(|m| m[r0 * g..r1 * g].to_vec()),
            }
        }
        QData::Ternary { q, scale } => {
            let wpr = ternary::words_per_row(c);
            QData::Ternary { q: q[r0 * wpr..r1 * wpr].to_vec(), scale: *scale }
        }
    };
    QTensor { rows: r1 - r0, cols: c, data }
}

/// Load a 1-D tensor of length `len` as dense f32 (norm weights, biases).
pub fn load_vector(src: &dyn WeightSource, name: &str, len: usize) -> Result<Vec<f32>> {
    if !src.contains(name) {
        return Err(Error::MissingTensor(name.to_string()));
    }
    let t = src.load(name)?;
    if t.numel() != len {
        return Err(Error::Shape(format!("`{name}` is {:?}, the config needs [{len}]", t.shape)));
    }
    Ok(t.into_f32())
}
