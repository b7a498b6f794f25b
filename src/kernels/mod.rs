//! CPU kernels for `y = W · x` over every weight format.
//!
//! Quantized formats (INT4, INT8) quantize the activations to int8 in blocks of 32 (one f32
//! scale per block, round-to-nearest of `x / (absmax/127)`) and accumulate integer dot
//! products per block, as llama.cpp does; f32 and f16 weights multiply f32 activations.
//! The scalar reference in [`scalar`] defines the exact arithmetic; SIMD paths (AVX2/FMA
//! natively, simd128 in wasm), chosen by `cfg(target_feature)` or runtime detection, must
//! equal it within 1e-5 relative.

pub mod scalar;

use crate::quant::QTensor;

/// `y[rows] = W[rows, cols] · x[cols]`.
pub fn matvec(w: &QTensor, x: &[f32], y: &mut [f32]) {
    let _ = (w, x, y);
    todo!()
}

/// `y[n, rows] = x[n, cols] · Wᵀ` (every row of `x` times the matrix).
pub fn matmul(w: &QTensor, x: &[f32], n: usize, y: &mut [f32]) {
    let _ = (w, x, n, y);
    todo!()
}
