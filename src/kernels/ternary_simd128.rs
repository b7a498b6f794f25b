//! wasm32 simd128 ternary kernels, equal to [`super::ternary::rows_scalar`] up to one f32
//! rounding. 16 packed bytes (64 weights) are split into four planes of codes (0..2) with
//! `u8x16_shr` + `and`; each plane multiplies the matching 16 activation bytes of the plane
//! layout ([`super::ternary::TernAct::qp`]) with `i16x8.extmul_{low,high}_i8x16` (codes are valid
//! i8), the four planes are summed in i16 (|Σ| ≤ 8·254) and widened with
//! `i32x4.extadd_pairwise_i16x8`. `Σ (code - 1) q_a = Σ code q_a - Σ q_a`. With relaxed SIMD
//! each plane is one `i32x4.relaxed_dot_i8x16_i7x16_add_s` (codes 0..2 have the top bit clear,
//! so every engine gives the exact sum). Decode (one token) runs [`ROWS`] rows per pass, sharing
//! the activation loads.
use super::ternary::{finish, TernAct, CHUNK};
use crate::quant::ternary::words_per_row;
use core::arch::wasm32::*;

/// Tokens per pass over a weight row.
pub const TOK: usize = 4;

/// Rows `r0 .. r0 + out.len()/n` for every token, `out: [nrows, n]`.
pub fn rows(q: &[u32], gamma: f32, cols: usize, a: &TernAct, r0: usize, out: &mut [f32]) {
    let wpr = words_per_row(cols);
    let nrows = out.len() / a.n.max(1);
    let mut done = 0;
    if a.n == 1 {
        // decode: ROWS rows at a time
        done = nrows / ROWS * ROWS;
        for i in (0..done).step_by(ROWS) {
            let rows: [&[u32]; ROWS] = std::array::from_fn(|j| &q[(r0 + i + j) * wpr..(r0 + i + j + 1) * wpr]);
            let part = rows4(rows, a);
            for j in 0..ROWS {
                finish(&[part[j]], rows[j], a, 0, gamma, &mut out[i + j..i + j + 1]);
            }
        }
    }
    for (i, o) in out.chunks_exact_mut(a.n).enumerate().skip(done) {
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

/// Rows per decode pass.
const ROWS: usize = 4;

/// `acc + Σ plane · x` per i32 lane (plane: codes 0..2; x: int8 activations).
#[inline(always)]
fn plane_dot(p: v128, x: v128, acc: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        i32x4_relaxed_dot_i8x16_i7x16_add(x, p, acc)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        let s = i16x8_add(i16x8_extmul_low_i8x16(p, x), i16x8_extmul_high_i8x16(p, x));
        i32x4_add(acc, i32x4_extadd_pairwise_i16x8(s))
    }
}

/// `Σ code * q_a` over the full 128-weight chunks of [`ROWS`] rows, one token (`a.n == 1`).
fn rows4(rows: [&[u32]; ROWS], a: &TernAct) -> [i32; ROWS] {
    let nch = rows[0].len() / 8;
    let m = u8x16_splat(3);
    let qp = a.qp_tok(0);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()) && qp.len() >= nch * CHUNK);
    let mut acc = [i32x4_splat(0); ROWS];
    for c in 0..nch {
        for h in 0..2 {
            // SAFETY: chunk c holds 128 activations (asserted above): offsets up to 32*3+16+16.
            let x: [v128; 4] = std::array::from_fn(|i| unsafe {
                v128_load(qp.as_ptr().add(CHUNK * c + 32 * i + 16 * h) as *const v128)
            });
            for j in 0..ROWS {
                // SAFETY: chunk c of every row holds 32 bytes (8 words), half h the 16 at 32c + 16h.
                let v = unsafe { v128_load((rows[j].as_ptr() as *const u8).add(32 * c + 16 * h) as *const v128) };
                let mut s = acc[j];
                s = plane_dot(v128_and(v, m), x[0], s);
                s = plane_dot(v128_and(u8x16_shr(v, 2), m), x[1], s);
                s = plane_dot(v128_and(u8x16_shr(v, 4), m), x[2], s);
                s = plane_dot(u8x16_shr(v, 6), x[3], s);
                acc[j] = s;
            }
        }
    }
    acc.map(hsum_i32)
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
                for (i, p) in pl.iter().enumerate() {
                    let off = CHUNK * c + 32 * i + 16 * h;
                    // SAFETY: `off + 16 <= len` because chunk c is a full chunk of the row.
                    let x = unsafe { v128_load(qp.as_ptr().add(off) as *const v128) };
                    *acc_t = plane_dot(*p, x, *acc_t);
                }
            }
        }
    }
    std::array::from_fn(|t| hsum_i32(acc[t]))
}
