//! W8A8 GEMM: int8 activations with one scale per token × INT8 weights with one scale per row
//! (SmoothQuant's W8A8 with per-token dynamic activation scales, Xiao et al. 2023), one i32
//! accumulator per output over the whole row.
//!
//! Token `t` of `x: [n, cols]` gets `s_a[t] = absmax(x_t) / 127` and
//! `q_a = round_ties_even(x / s_a)` in `-127..=127` ([`TokAct`]); weights are
//! [`crate::quant::int8`] rows (`|q_w| <= 127`, scale `s_w[r]`). Then
//! `y[t, r] = s_a[t] · s_w[r] · Σ_c q_a[t, c] q_w[r, c]` (+ bias), the sum exact in i32
//! (|Σ| ≤ cols · 127², fine below 133 000 columns). Unlike the block-of-32 activations of
//! [`super::act`] there is no per-block float scale inside the dot product, so the inner loop
//! is pure integer work. The integer sums of every path equal [`dot_scalar`] exactly:
//! AVX2 `_mm256_maddubs_epi16` + `_mm256_madd_epi16` on `|q_w|` and `sign(q_a, q_w)` (a pair
//! sums to at most 2·127² < 2¹⁵, no saturation), AVX-VNNI / AVX-512 VNNI `vpdpbusd` on
//! `q_a + 128` (unsigned) minus `128 · Σ q_w`, wasm simd128 `i32x4.dot_i16x8_s` on lanes
//! widened to i16. Columns past the last full 32 (16 for simd128) are summed scalar.

use super::act::quantize_absmax;
use super::Isa;
use crate::error::{Error, Result};
use crate::quant::{QData, QTensor};

/// Tokens per pass over a weight row (each weight chunk is loaded once for all of them).
pub const TOK: usize = 4;

/// Per-token int8 activations of `n` tokens, `cols` values each.
#[derive(Clone, Debug)]
pub struct TokAct {
    pub n: usize,
    pub cols: usize,
    /// `[n, cols]` quants in `-127..=127`.
    pub q: Vec<i8>,
    /// `[n, cols]` the quants plus 128 as bytes (`vpdpbusd`'s unsigned operand).
    pub qu: Vec<u8>,
    /// `[n]` scales `s_a` (0 for an all-zero token).
    pub s: Vec<f32>,
}

impl TokAct {
    /// Quantize `x: [n, cols]` per token.
    pub fn new(x: &[f32], n: usize, cols: usize) -> TokAct {
        assert_eq!(x.len(), n * cols, "TokAct::new: {} values for [{n}, {cols}]", x.len());
        let mut q = vec![0i8; n * cols];
        let mut s = vec![0f32; n];
        if cols > 0 {
            for ((xt, qt), st) in x.chunks_exact(cols).zip(q.chunks_exact_mut(cols)).zip(s.iter_mut()) {
                *st = quantize_absmax(xt, qt);
            }
        }
        let qu = q.iter().map(|&v| (v as i16 + 128) as u8).collect();
        TokAct { n, cols, q, qu, s }
    }

    pub fn q_tok(&self, t: usize) -> &[i8] {
        &self.q[t * self.cols..(t + 1) * self.cols]
    }
    pub fn qu_tok(&self, t: usize) -> &[u8] {
        &self.qu[t * self.cols..(t + 1) * self.cols]
    }
}

/// The exact integer dot product `Σ a[c] w[c]` (the reference every path must equal).
pub fn dot_scalar(a: &[i8], w: &[i8]) -> i32 {
    a.iter().zip(w).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// `acc: [nrows, n]` integer sums of rows `r0 ..` of `wq: [rows, cols]` with every token.
pub fn gemm_i32_rows(isa: Isa, wq: &[i8], cols: usize, a: &TokAct, r0: usize, acc: &mut [i32]) {
    let n = a.n;
    for (i, o) in acc.chunks_exact_mut(n).enumerate() {
        let row = &wq[(r0 + i) * cols..(r0 + i + 1) * cols];
        let rsum: i32 = row[..cols / 32 * 32].iter().map(|&v| v as i32).sum(); // VNNI's offset term
        let mut t = 0;
        while t < n {
            let k = (n - t).min(TOK);
            dots(isa, row, rsum, a, t, &mut o[t..t + k]);
            t += k;
        }
    }
}

/// `out[j] = Σ row · q_a[t0 + j]` for `j < out.len() <= TOK`.
fn dots(isa: Isa, row: &[i8], rsum: i32, a: &TokAct, t0: usize, out: &mut [i32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(super::avx2::detected(), "AVX2 not available");
            // SAFETY: AVX2 was checked just above.
            unsafe { super::w8a8_x86::dots_maddubs(row, a, t0, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => {
            assert!(super::avx2::detected_vnni(), "AVX-VNNI not available");
            // SAFETY: AVX2 and AVX-VNNI were checked just above.
            unsafe { super::w8a8_x86::dots_avxvnni(row, rsum, a, t0, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            assert!(super::w8a8_x86::detected_512vnni(), "AVX-512 VNNI/VL not available");
            // SAFETY: AVX2, AVX-512 VNNI and VL were checked just above.
            unsafe { super::w8a8_x86::dots_avx512vnni(row, rsum, a, t0, out) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => super::w8a8_simd128::dots(row, a, t0, out),
        _ => {
            let _ = rsum;
            for (j, o) in out.iter_mut().enumerate() {
                *o = dot_scalar(a.q_tok(t0 + j), row);
            }
        }
    }
}

/// `[n, rows]` integer sums `Σ_c q_a[t, c] q_w[r, c]` on one path (for tests and benchmarks).
pub fn gemm_i32(isa: Isa, wq: &[i8], rows: usize, cols: usize, a: &TokAct) -> Result<Vec<i32>> {
    if !isa.available() {
        return Err(Error::Unsupported(format!("kernel path {isa:?} on this machine")));
    }
    if wq.len() != rows * cols || a.cols != cols {
        return Err(Error::Shape(format!("W8A8: weight [{rows}, {cols}] ({} values), tokens of {}", wq.len(), a.cols)));
    }
    let mut acc = vec![0i32; rows * a.n]; // [rows, n]
    if a.n > 0 {
        gemm_i32_rows(isa, wq, cols, a, 0, &mut acc);
    }
    Ok(transpose(&acc, rows, a.n))
}

fn transpose(v: &[i32], rows: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0i32; v.len()]; // [n, rows]
    for (r, row) in v.chunks_exact(n.max(1)).enumerate().take(rows) {
        for (t, &x) in row.iter().enumerate() {
            out[t * rows + r] = x;
        }
    }
    out
}

/// `y[n, rows] = x[n, cols] · Wᵀ` for INT8 `w` with per-token int8 activations, on `isa`,
/// rows split over the thread pool ([`crate::par`]).
pub fn matmul_with(isa: Isa, w: &QTensor, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
    let QData::Int8 { q, scales } = &w.data else {
        return Err(Error::Unsupported(format!("W8A8 needs INT8 weights, not {}", w.format().name())));
    };
    super::check(isa, w, x.len(), n, y.len())?;
    if n == 0 || w.rows == 0 {
        return Ok(());
    }
    let chunk = w.rows.div_ceil(4 * crate::par::threads()).max(8);
    // Cache blocking over tokens (about 256 KiB of int8 activations per block; per-token
    // quantization, so a block quantized alone gives the same values).
    let tb = (256 * 1024 / w.cols.max(1)).clamp(4, 64) / 4 * 4;
    let mut acc = vec![0i32; w.rows * tb.min(n)]; // [rows, tokens of the block]
    for t0 in (0..n).step_by(tb) {
        let k = tb.min(n - t0);
        let a = TokAct::new(&x[t0 * w.cols..(t0 + k) * w.cols], k, w.cols);
        let acc = &mut acc[..w.rows * k];
        crate::par::chunks_mut(acc, chunk * k, |i, o| gemm_i32_rows(isa, q, w.cols, &a, i * chunk, o));
        for (r, (row, &sw)) in acc.chunks_exact(k).zip(scales.iter()).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                y[(t0 + t) * w.rows + r] = v as f32 * (a.s[t] * sw);
            }
        }
    }
    Ok(())
}

/// [`matmul_with`] on the fastest path.
pub fn matmul(w: &QTensor, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
    matmul_with(Isa::best_w8a8(), w, x, n, y)
}
