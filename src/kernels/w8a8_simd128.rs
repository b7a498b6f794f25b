//! wasm32 simd128 kernel of [`super::w8a8`]: 16 columns per step, both operands widened to
//! i16 (`i16x8.extend_{low,high}_i8x16_s`) and multiplied pairwise into i32 lanes with
//! `i32x4.dot_i16x8_s`; equal to [`super::w8a8::dot_scalar`]. Columns past the last full 16
//! are summed scalar.
use super::w8a8::{dot_scalar, TokAct, TOK};
use core::arch::wasm32::*;

#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v) + i32x4_extract_lane::<1>(v) + i32x4_extract_lane::<2>(v) + i32x4_extract_lane::<3>(v)
}

/// Sums of `row` with tokens `t0 .. t0 + out.len()` (at most [`TOK`]).
pub fn dots(row: &[i8], a: &TokAct, t0: usize, out: &mut [i32]) {
    let k = out.len();
    debug_assert!(k <= TOK);
    let nfull = row.len() / 16;
    let mut acc = [i32x4_splat(0); TOK];
    for c in 0..nfull {
        // SAFETY: chunk c's 16 bytes lie inside `row` (c < len / 16).
        let w = unsafe { v128_load(row.as_ptr().add(16 * c) as *const v128) };
        let (wl, wh) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
        for (j, acc_j) in acc.iter_mut().enumerate().take(k) {
            let at = a.q_tok(t0 + j);
            // SAFETY: a token row has as many columns as `row`.
            let x = unsafe { v128_load(at.as_ptr().add(16 * c) as *const v128) };
            let d = i32x4_add(
                i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), wl),
                i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), wh),
            );
            *acc_j = i32x4_add(*acc_j, d);
        }
    }
    let full = nfull * 16;
    for (j, o) in out.iter_mut().enumerate() {
        *o = hsum_i32(acc[j]) + dot_scalar(&a.q_tok(t0 + j)[full..], &row[full..]);
    }
}
