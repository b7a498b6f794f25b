//! x86-64 AVX-512 (F, BW, VNNI) INT4 kernel, equal to [`super::scalar`] up to the order of
//! float additions. Other formats run the AVX2 code ([`super::avx2::rows`] with
//! [`Kern::Avx512`](super::avx2::Kern::Avx512) only changes the INT4 row kernel).
//!
//! Same scheme as the AVX2 kernel, on 64 packed bytes (four 32-weight blocks) per step:
//! nibbles split with `and`/`shift`, two 512-bit `vpdpbusd` (started from the integer zero
//! point [`ActQ::zp4`](super::act::ActQ::zp4)) against the quad-layout
//! activations ([`super::act`]), one f32 scale per block as a 16-lane vector (block and
//! weight scales spread with `vpermps`). Blocks after the last full quad use the AVX2 pair
//! step and lone-block code.
use super::act::ActQ;
use super::avx2::{self, hsum, int4_lone_block, int4_pair, Int4Ctx, Int4Row};
use std::arch::x86_64::*;

/// Whether AVX-512 F, BW and VNNI are present (with AVX2/FMA/F16C).
pub fn detected() -> bool {
    avx2::detected()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// Pointers for one INT4 row times tokens `t0 .. t0+T` in the quad layout.
struct QuadCtx<const T: usize> {
    wp: *const u8,
    sw: *const f32,
    /// Weight-scale floats per quad: `128 / group`.
    sw_step: usize,
    /// Lane `i` takes weight scale `(i / 4) * 32 / group` of the quad.
    idx_w: __m512i,
    /// Lane `i` takes block scale `i / 4` of the quad.
    idx_a: __m512i,
    qq: [*const i8; T],
    sa: [*const f32; T],
    zp: [*const i32; T],
}

/// One quad of blocks (64 packed bytes) times every token into `acc`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
#[inline]
#[allow(clippy::needless_range_loop)] // t indexes several per-token arrays
unsafe fn quad<const T: usize>(c: &QuadCtx<T>, q: usize, acc: &mut [__m512; T]) {
    let mask = _mm512_set1_epi8(0x0F);
    let v = _mm512_loadu_si512(c.wp.add(q * 64) as *const __m512i);
    let lo = _mm512_and_si512(v, mask);
    let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
    let sw4 = _mm512_castps128_ps512(_mm_loadu_ps(c.sw.add(q * c.sw_step)));
    let swv = _mm512_permutexvar_ps(c.idx_w, sw4);
    for t in 0..T {
        let ae = _mm512_loadu_si512(c.qq[t].add(q * 128) as *const __m512i);
        let ao = _mm512_loadu_si512(c.qq[t].add(q * 128 + 64) as *const __m512i);
        let zp = _mm512_loadu_si512(c.zp[t].add(q * 16) as *const __m512i);
        let di = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zp, lo, ae), hi, ao);
        let sa4 = _mm512_castps128_ps512(_mm_loadu_ps(c.sa[t].add(q * 4)));
        let d = _mm512_mul_ps(swv, _mm512_permutexvar_ps(c.idx_a, sa4));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(di), d, acc[t]);
    }
}

/// Tokens `t0 .. t0+T` times one INT4 row (without the asymmetric offset term).
/// `G32` is the AVX2 pair step's flag for the blocks after the last full quad.
///
/// # Safety
/// The CPU must support the features of [`detected`]; `row.swf` must have 4 floats of
/// slack after its `cols/group` scales.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn int4_row<const T: usize, const G32: bool>(row: &Int4Row, a: &ActQ, t0: usize) -> [f32; T] {
    let lanes_w: [i32; 16] = std::array::from_fn(|i| ((i / 4) * 32 / row.group) as i32);
    let lanes_a: [i32; 16] = std::array::from_fn(|i| (i / 4) as i32);
    let c = QuadCtx::<T> {
        wp: row.wb.as_ptr(),
        sw: row.swf.as_ptr(),
        sw_step: 128 / row.group,
        idx_w: _mm512_loadu_si512(lanes_w.as_ptr() as *const __m512i),
        idx_a: _mm512_loadu_si512(lanes_a.as_ptr() as *const __m512i),
        qq: std::array::from_fn(|t| a.qq_tok(t0 + t).as_ptr()),
        sa: std::array::from_fn(|t| a.s_tok(t0 + t).as_ptr()),
        zp: std::array::from_fn(|t| a.zp4_tok(t0 + t).as_ptr()),
    };
    let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    let nq = a.nb / 4;
    let mut q = 0;
    while q + 2 <= nq {
        quad::<T>(&c, q, &mut acc0);
        quad::<T>(&c, q + 1, &mut acc1);
        q += 2;
    }
    if q < nq {
        quad::<T>(&c, q, &mut acc0);
    }
    // Remaining whole pairs in the pair layout (identical to the quad layout there).
    let pc = Int4Ctx::<T>::new(row, a, t0);
    let mut acc256 = [_mm256_setzero_ps(); T];
    for p in 2 * nq..a.nb / 2 {
        int4_pair::<T, G32>(&pc, p, &mut acc256);
    }
    let mut res = [0f32; T];
    for t in 0..T {
        res[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) + hsum(acc256[t]);
        if a.nb % 2 == 1 {
            res[t] += int4_lone_block(row, a, t0 + t);
        }
    }
    res
}
