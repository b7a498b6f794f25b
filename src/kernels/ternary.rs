//! Ternary weights × int8 activations, the arithmetic of BitNet b1.58's `BitLinear158`.
//!
//! Activations are quantized per token (the whole row, not in blocks), as the b1.58 training
//! FAQ's `activation_quant` does: `inv = 127 / max(max|x|, 1e-5)`,
//! `q_a = clamp(round_half_even(x * inv), -128, 127)`, dequantization scale `s_a = 1 / inv`.
//! Per output row `r` and token `t` the scalar reference computes the exact integer
//! `d = Σ_c (code[r, c] - 1) * q_a[c]` and `y = d * (gamma * s_a)` ([`rows_scalar`]); SIMD paths
//! compute `d` as `Σ code * q_a - Σ q_a` (unsigned codes times signed activations with
//! `maddubs` / `vpdpbusd` / `extmul`), which is the same integer, so they match the scalar
//! path up to one f32 rounding.
//!
//! The activations are also stored in a *plane layout* matched to the 2-bit packing: for each
//! full chunk of 8 words (128 weights) the 128 quants are `[plane0 | plane1 | plane2 | plane3]`,
//! 32 bytes each, where plane `i` holds the quants of columns `4b + i`, `b = 0..32` (the
//! weights that sit in bits `2i .. 2i+1` of byte `b`). A SIMD kernel shifts the 32 packed
//! bytes by `2i`, masks with 3 and multiplies with one contiguous load per plane. Columns after
//! the last full chunk keep the natural order in both arrays.

use super::act::round_ties_even_i32;
use crate::quant::ternary::{words_per_row, PER_WORD};

/// Weights per SIMD chunk (8 packed words).
pub const CHUNK: usize = 128;

/// Per-token int8 activations for ternary weights.
#[derive(Clone, Debug)]
pub struct TernAct {
    pub n: usize,
    pub cols: usize,
    /// Padded row length `ceil(cols / 16) * 16` (the packed weight row's length).
    pub len: usize,
    /// `[n, len]` quants in column order, zero-padded.
    pub q: Vec<i8>,
    /// `[n, len]` quants in the plane layout (module doc).
    pub qp: Vec<i8>,
    /// `[n]` dequantization scales `s_a = max|x| / 127`.
    pub s: Vec<f32>,
    /// `[n]` sums `Σ q_a`.
    pub sum: Vec<i32>,
}

impl TernAct {
    /// Quantize `x: [n, cols]`.
    pub fn new(x: &[f32], n: usize, cols: usize) -> TernAct {
        assert_eq!(x.len(), n * cols, "TernAct::new: {} values for [{n}, {cols}]", x.len());
        let len = words_per_row(cols) * PER_WORD;
        let mut a =
            TernAct { n, cols, len, q: vec![0; n * len], qp: vec![0; n * len], s: vec![0.0; n], sum: vec![0; n] };
        let full = len / CHUNK * CHUNK;
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let amax = xt.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-5);
            let inv = 127.0 / amax;
            let qt = &mut a.q[t * len..t * len + cols];
            for (o, &v) in qt.iter_mut().zip(xt) {
                *o = round_ties_even_i32(v * inv).clamp(-128, 127) as i8;
            }
            a.s[t] = 1.0 / inv;
            a.sum[t] = qt.iter().map(|&v| v as i32).sum();
            let (qn, qp) = (&a.q[t * len..(t + 1) * len], &mut a.qp[t * len..(t + 1) * len]);
            for c0 in (0..full).step_by(CHUNK) {
                for b in 0..CHUNK / 4 {
                    for i in 0..4 {
                        qp[c0 + 32 * i + b] = qn[c0 + 4 * b + i];
                    }
                }
            }
            qp[full..].copy_from_slice(&qn[full..]);
        }
        a
    }

    pub fn q_tok(&self, t: usize) -> &[i8] {
        &self.q[t * self.len..(t + 1) * self.len]
    }
    pub fn qp_tok(&self, t: usize) -> &[i8] {
        &self.qp[t * self.len..(t + 1) * self.len]
    }
}

/// `Σ code * q_a` over the packed words `row` (4 codes per byte), natural-order `qa`.
pub fn code_dot(row: &[u32], qa: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (k, &w) in row.iter().enumerate() {
        for j in 0..PER_WORD {
            acc += ((w >> (2 * j)) & 3) as i32 * qa[k * PER_WORD + j] as i32;
        }
    }
    acc
}

/// Complete SIMD partial sums `part[j] = Σ code * q_a` over the full chunks of `row` for tokens
/// `t0 + j`: add the tail words, subtract `Σ q_a`, scale into `o[t0 + j]`.
pub fn finish(part: &[i32], row: &[u32], a: &TernAct, t0: usize, gamma: f32, o: &mut [f32]) {
    let full_words = row.len() / 8 * 8;
    for (j, &p) in part.iter().enumerate() {
        let t = t0 + j;
        let tail = code_dot(&row[full_words..], &a.q_tok(t)[full_words * PER_WORD..]);
        o[t] = (p + tail - a.sum[t]) as f32 * (gamma * a.s[t]);
    }
}

/// Scalar reference: rows `r0 .. r0 + out.len()/n` for every token, `out: [nrows, n]`.
/// `q: [rows * wpr]` packed codes, `gamma` the tensor scale.
pub fn rows_scalar(q: &[u32], gamma: f32, cols: usize, a: &TernAct, r0: usize, out: &mut [f32]) {
    let wpr = words_per_row(cols);
    for (i, o) in out.chunks_exact_mut(a.n).enumerate() {
        let row = &q[(r0 + i) * wpr..(r0 + i + 1) * wpr];
        for (t, y) in o.iter_mut().enumerate() {
            let qa = a.q_tok(t);
            let d: i32 =
                qa[..cols].iter().enumerate().map(|(c, &x)| crate::quant::ternary::value(row, c) * x as i32).sum();
            *y = d as f32 * (gamma * a.s[t]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_absmax_and_plane_layout() {
        let cols = 130; // one full chunk + a 2-value tail in a third word
        let x: Vec<f32> = (0..2 * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1).collect();
        let a = TernAct::new(&x, 2, cols);
        assert_eq!(a.len, 144);
        for t in 0..2 {
            let xt = &x[t * cols..(t + 1) * cols];
            let amax = xt.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((a.s[t] - amax / 127.0).abs() < 1e-6 * amax);
            assert_eq!(a.q_tok(t).iter().map(|v| v.unsigned_abs()).max(), Some(127));
            for b in 0..32 {
                for i in 0..4 {
                    assert_eq!(a.qp_tok(t)[32 * i + b], a.q_tok(t)[4 * b + i]);
                }
            }
            assert_eq!(&a.qp_tok(t)[128..], &a.q_tok(t)[128..]);
        }
    }

    #[test]
    fn zero_row_quantizes_to_zero() {
        let a = TernAct::new(&[0.0; 16], 1, 16);
        assert!(a.q.iter().all(|&v| v == 0));
        assert_eq!(a.sum[0], 0);
    }
}
