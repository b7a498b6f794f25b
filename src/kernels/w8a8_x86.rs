//! x86-64 kernels of [`super::w8a8`]: the integer sums of one INT8 weight row with up to
//! [`TOK`] per-token int8 activation rows, 32 columns per step, equal to
//! [`super::w8a8::dot_scalar`]. AVX2: `maddubs(|w|, sign(a, w))` then `madd` with ones (pair
//! sums ≤ 2·127², no i16 saturation). VNNI (AVX-VNNI or AVX-512 VNNI+VL on 256 bits):
//! `vpdpbusd(a + 128, w)` minus `128 · Σ w` (the unsigned operand must be non-negative).
use super::avx2::hsum_i32;
use super::w8a8::{dot_scalar, TokAct, TOK};
use std::arch::x86_64::*;

/// Whether AVX-512 VNNI with VL (256-bit `vpdpbusd`) is present beside AVX2.
pub fn detected_512vnni() -> bool {
    super::avx2::detected() && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
}

#[inline(always)]
unsafe fn load(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Scalar sum over the columns past the last full 32.
fn tails(row: &[i8], a: &TokAct, t0: usize, out: &mut [i32]) {
    let full = row.len() / 32 * 32;
    for (j, o) in out.iter_mut().enumerate() {
        *o += dot_scalar(&a.q_tok(t0 + j)[full..], &row[full..]);
    }
}

/// AVX2 `maddubs` sums of `row` with tokens `t0 .. t0 + out.len()`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn dots_maddubs(row: &[i8], a: &TokAct, t0: usize, out: &mut [i32]) {
    let k = out.len();
    debug_assert!(k <= TOK);
    let ones = _mm256_set1_epi16(1);
    let ap: [*const i8; TOK] = std::array::from_fn(|j| a.q_tok(t0 + j.min(k - 1)).as_ptr());
    let mut acc = [_mm256_setzero_si256(); TOK];
    for c in 0..row.len() / 32 {
        let w = load(row.as_ptr().add(32 * c));
        let wabs = _mm256_sign_epi8(w, w);
        for j in 0..k {
            let x = _mm256_sign_epi8(load(ap[j].add(32 * c)), w);
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, x), ones));
        }
    }
    for j in 0..k {
        out[j] = hsum_i32(acc[j]);
    }
    tails(row, a, t0, out);
}

macro_rules! vnni_dots {
    ($name:ident, $feat:literal, $dp:ident) => {
        /// `vpdpbusd` sums of `row` (`rsum`: the sum of its full 32-column chunks) with tokens `t0 .. t0 + out.len()`.
        ///
        /// # Safety
        /// The CPU must support the features named in `target_feature`.
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(row: &[i8], rsum: i32, a: &TokAct, t0: usize, out: &mut [i32]) {
            let k = out.len();
            debug_assert!(k <= TOK);
            let ap: [*const u8; TOK] = std::array::from_fn(|j| a.qu_tok(t0 + j.min(k - 1)).as_ptr());
            let mut acc = [_mm256_setzero_si256(); TOK];
            let nfull = row.len() / 32;
            for c in 0..nfull {
                let w = load(row.as_ptr().add(32 * c));
                for j in 0..k {
                    acc[j] = $dp(acc[j], _mm256_loadu_si256(ap[j].add(32 * c) as *const __m256i), w);
                }
            }
            for j in 0..k {
                out[j] = hsum_i32(acc[j]) - 128 * rsum;
            }
            tails(row, a, t0, out);
        }
    };
}

vnni_dots!(dots_avxvnni, "avx2,avxvnni", _mm256_dpbusd_avx_epi32);
vnni_dots!(dots_avx512vnni, "avx2,avx512vnni,avx512vl", _mm256_dpbusd_epi32);
