//! x86-64 AVX2 ternary kernels, equal to [`super::ternary::rows_scalar`] up to one f32
//! rounding (the integer dot product is exact). Used on every x86 path (AVX2, AVX-VNNI,
//! AVX-512).
//!
//! Int8 dot-product approach (as bitnet.cpp's I2_S kernels, rather than its TL1/TL2 lookup
//! tables): 32 packed bytes hold 128 weights; `srli_epi16` by `0/2/4/6` and `and 3` give four
//! planes of unsigned codes (0..2), each multiplied with the matching 32-byte plane of the
//! activations ([`super::ternary::TernAct::qp`]) by `_mm256_maddubs_epi16` (|pair| ≤ 508, so the
//! i16 sum of four planes cannot saturate) and widened by `_mm256_madd_epi16`.
//! `Σ (code - 1) q_a = Σ code q_a - Σ q_a`. Each unpacked chunk is reused for up to [`TOK`]
//! tokens. An AVX-VNNI variant (`vpdpbusd` per plane, two accumulators per token) measured
//! slower at 4096×4096 on one thread (0.0122 vs 0.0102 ns/weight, DRAM-resident), so this
//! `maddubs` kernel is kept for every x86 path. A lookup-table kernel (bitnet.cpp TL1/TL2) was
//! not built: this kernel already reads weights at the memory bandwidth INT4 reaches.
use super::avx2::hsum_i32;
use super::ternary::{finish, TernAct, CHUNK};
use crate::quant::ternary::words_per_row;
use std::arch::x86_64::*;

/// Tokens per pass over a weight row.
pub const TOK: usize = 4;

/// Rows `r0 .. r0 + out.len()/n` for every token, `out: [nrows, n]`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C ([`super::avx2::detected`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows(q: &[u32], gamma: f32, cols: usize, a: &TernAct, r0: usize, out: &mut [f32]) {
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

/// The four code planes of 32 packed bytes.
#[inline(always)]
unsafe fn planes(p: *const u8) -> [__m256i; 4] {
    let m = _mm256_set1_epi8(3);
    let v = _mm256_loadu_si256(p as *const __m256i);
    [
        _mm256_and_si256(v, m),
        _mm256_and_si256(_mm256_srli_epi16(v, 2), m),
        _mm256_and_si256(_mm256_srli_epi16(v, 4), m),
        _mm256_and_si256(_mm256_srli_epi16(v, 6), m),
    ]
}

/// `Σ code * q_a` over the full 128-weight chunks of one row, tokens `t0 .. t0+T` (maddubs).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_t<const T: usize>(row: &[u32], a: &TernAct, t0: usize) -> [i32; T] {
    let nch = row.len() / 8;
    let wp = row.as_ptr() as *const u8;
    let qp: [*const i8; T] = std::array::from_fn(|t| a.qp_tok(t0 + t).as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); T];
    for c in 0..nch {
        let pl = planes(wp.add(32 * c));
        for t in 0..T {
            let b = qp[t].add(CHUNK * c);
            let ld = |i: usize| _mm256_loadu_si256(b.add(32 * i) as *const __m256i);
            let s01 = _mm256_add_epi16(_mm256_maddubs_epi16(pl[0], ld(0)), _mm256_maddubs_epi16(pl[1], ld(1)));
            let s23 = _mm256_add_epi16(_mm256_maddubs_epi16(pl[2], ld(2)), _mm256_maddubs_epi16(pl[3], ld(3)));
            acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_add_epi16(s01, s23), ones));
        }
    }
    std::array::from_fn(|t| hsum_i32(acc[t]))
}
