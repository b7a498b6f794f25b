//! Scalar reference kernels: the definition every SIMD path is tested against.
//!
//! Per output row `r` and token `t` (llama.cpp `ggml_vec_dot_q4_0_q8_0` / `_q4_1_q8_1` /
//! `_q8_0_q8_0` arithmetic, with our scales):
//! - f32 / f16: `y = Σ_c w[r, c] * x[c]` in f32.
//! - INT8: `y = s_w[r] * Σ_b s_a[b] * Σ_{c in b} q_w[r, c] * q_a[c]`.
//! - INT4: `y = Σ_b (s_w[g(b)] * s_a[b] * Σ_{c in b} (q_w - 8) * q_a + k[g(b)] * s_a[b] * Σ q_a)`
//!   with the levels `q_w` in 0..=15, the integer sums exact, and `k = 0` (sym) or
//!   `k = min + 8 s_w` (asym). This is llama.cpp's `s_w s_a Σ q_w q_a + c s_a Σ q_a`
//!   (`c = -8 s_w` sym, `c = min` asym) with the zero point `8` moved into the integer sum,
//!   which keeps the two float terms from cancelling when activations have a large mean.
//!   SIMD paths sum the asymmetric offset term per weight group after the row
//!   ([`super::act::ActQ::group_corr`]).
//!
//! `b` runs over the 32-column activation blocks ([`super::act`]), `g(b)` is the weight group
//! holding block `b`.
use super::act::BLOCK;
use super::Input;
use crate::quant::{int4, QData, QTensor};
use half::f16;

/// `y[rows] = W · x` on the scalar path (no shape errors: see [`super::matvec_with`]).
pub fn matvec(w: &QTensor, x: &[f32], y: &mut [f32]) {
    if let Err(e) = super::matvec_with(super::Isa::Scalar, w, x, y) {
        panic!("scalar::matvec: {e}");
    }
}

/// Rows `r0 .. r0 + out.len()/n` of `W · x` for every token, `out: [nrows, n]`.
pub fn rows(w: &QTensor, inp: &Input, r0: usize, out: &mut [f32]) {
    let n = inp.n();
    let c = w.cols;
    for (i, o) in out.chunks_exact_mut(n).enumerate() {
        let r = r0 + i;
        for (t, yv) in o.iter_mut().enumerate() {
            *yv = match (&w.data, inp) {
                (QData::F32(wd), Input::F32 { x, .. }) => dot_f32(&wd[r * c..(r + 1) * c], &x[t * c..(t + 1) * c]),
                (QData::F16(wd), Input::F32 { x, .. }) => dot_f16(&wd[r * c..(r + 1) * c], &x[t * c..(t + 1) * c]),
                (QData::Int8 { q, scales }, Input::Q { a, .. }) => {
                    scales[r] * int8_row(&q[r * c..(r + 1) * c], a.q_tok(t), a.s_tok(t))
                }
                (QData::Int4 { group, q, scales, mins }, Input::Q { a, .. }) => {
                    let gpr = c / group;
                    let words = &q[r * c / 8..(r + 1) * c / 8];
                    let sc = &scales[r * gpr..(r + 1) * gpr];
                    let mn = mins.as_ref().map(|m| &m[r * gpr..(r + 1) * gpr]);
                    int4_row(words, sc, mn, *group, a.q_tok(t), a.s_tok(t), a.sum_tok(t))
                }
                _ => unreachable!("input prepared for another format"),
            };
        }
    }
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum()
}

/// `Σ_b s_a[b] * Σ_{c in b} q_w * q_a` (without the row scale). The last block may be short.
fn int8_row(qw: &[i8], qa: &[i8], sa: &[f32]) -> f32 {
    qw.chunks(BLOCK)
        .zip(qa.chunks(BLOCK))
        .zip(sa)
        .map(|((w, a), &s)| {
            let d: i32 = w.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum();
            s * d as f32
        })
        .sum()
}

fn int4_row(words: &[u32], sc: &[f16], mins: Option<&[f16]>, group: usize, qa: &[i8], sa: &[f32], sums: &[i32]) -> f32 {
    let mut acc = 0f32;
    for (b, a) in qa.chunks_exact(BLOCK).enumerate() {
        let g = b * BLOCK / group;
        let sw = sc[g].to_f32();
        let d: i32 =
            a.iter().enumerate().map(|(j, &y)| (int4::level(words, b * BLOCK + j) as i32 - 8) * y as i32).sum();
        acc += sw * sa[b] * d as f32;
        if let Some(m) = mins {
            acc += (m[g].to_f32() + 8.0 * sw) * sa[b] * sums[b] as f32;
        }
    }
    acc
}
