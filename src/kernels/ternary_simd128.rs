//! wasm32 simd128 ternary kernels, equal to [`super::ternary::rows_scalar`] up to one f32
//! rounding. 16 packed bytes (64 weights) are split into four planes of codes (0..2) with
//! `u8x16_shr` + `and`; each plane multiplies the matching 16 activation bytes of the plane
//! layout ([`super::ternary::TernAct::qp`]) with `i16x8.extmul_{low,high}_i8x16` (codes are valid
//! i8), the four planes are summed in i16 (|Σ| ≤ 8·254) and widened with
//! `i32x4.extadd_pairwise_i16x8`. `Σ (code - 1) q_a = Σ code q_a - Σ q_a`.
use super::ternary::{finish, TernAct, CHUNK};
use crate::quant::ternary::words_per_row;
use core::arch::wasm32::*;

/// Tokens per pass over a weight row.
pub const TOK: usize = 4;

/// Rows `r0 .. r0 + out.len()/n` for every token, `out: [nrows, n]`.
pub fn rows(q: &[u32], gamma: f32, cols: usize, a: &TernAct, r0: usize, out: &mut [f32]) {
    let wpr = words_per_row(cols);
    for (i, o) in out.chunks_exact_mut(a.n).enumerate() {
        let row = &q[(r0 + i) * wpr..(r0 + i + 1) * wpr];
        let mut t = 0;
        while t < a.n {
            let k = if t + TOK <= a.n { TOK } else { 1 };
            if k == TOK {
                finish(&row_t::<TOK>(row, a, t), row, a, t, gamma, o);
            } else {
                finish(&row_t::<1>(row, a, t), row, a, t, gamma, o);
            }
            t += k;
        }
    }
}

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

/// `Σ code * q_a` over the full 128-weight chunks of one row for tokens `t0 .. t0+T`.
fn row_t<const T: usize>(row: &[u32], a: &TernAct, t0: usize) -> [i32; T] {
    let nch = row.len() / 8;
    let wb: &[u8] = bytemuck::cast_slice(row);
    let m = u8x16_splat(3);
    let mut acc = [i32x4_splat(0); T];
    for c in 0..nch {
        for h in 0..2 {
            // SAFETY: chunk c holds 32 bytes, half h the 16 at 32c + 16h (in bounds of `wb`).
            let v = unsafe { v128_load(wb.as_ptr().add(32 * c + 16 * h) as *const v128) };
            let pl = [
                v128_and(v, m),
                v128_and(u8x16_shr(v, 2), m),
                v128_and(u8x16_shr(v, 4), m),
                v128_and(u8x16_shr(v, 6), m),
            ];
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let qp = a.qp_tok(t0 + t);
                let mut s = i16x8_splat(0);
                for (i, p) in pl.iter().enumerate() {
                    let off = CHUNK * c + 32 * i + 16 * h;
                    // SAFETY: `off + 16 <= len` because chunk c is a full chunk of the row.
                    let x = unsafe { v128_load(qp.as_ptr().add(off) as *const v128) };
                    s = i16x8_add(s, i16x8_add(i16x8_extmul_low_i8x16(*p, x), i16x8_extmul_high_i8x16(*p, x)));
                }
                *acc_t = i32x4_add(*acc_t, i32x4_extadd_pairwise_i16x8(s));
            }
        }
    }
    std::array::from_fn(|t| hsum_i32(acc[t]))
}
