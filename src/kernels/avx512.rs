//! x86-64 AVX-512 (F, BW, VNNI) INT4 kernel, equal to [`super::scalar`] up to the order of
//! float additions. Other formats run the AVX2 code ([`super::avx2::rows`] with
//! [`Kern::Avx512`](super::avx2::Kern::Avx512) only changes the INT4 row kernel).
//!
//! Same scheme as the AVX2 kernel, on 64 packed bytes (four 32-weight blocks) per step:
//! nibbles split with `and`/`shift`, two 512-bit `vpdpbusd` against the quad-layout
//! activations ([`super::act`]), one f32 scale per block as a 16-lane vector: the block
//! scales `s4` load directly, the weight scales are spread with `vpermps`. Blocks after the
//! last full quad use the AVX2 pair step and lone-block code.
use super::act::ActQ;
use super::avx2::{self, hsum, int4_lone_block, int4_pair, Int4Ctx, Int4Row};
use std::arch::x86_64::*;

/// Software prefetch distance in bytes ahead of the weight stream.
const PREFETCH: usize = 1024;

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
    idx: __m512i,
    qq: [*const i8; T],
    s4: [*const f32; T],
    zp: [*const i32; T],
}

/// One quad of blocks (64 packed bytes) times every token into `acc`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn quad<const T: usize, const SYM: bool>(c: &QuadCtx<T>, q: usize, acc: &mut [__m512; T]) {
    let mask = _mm512_set1_epi8(0x0F);
    _mm_prefetch::<_MM_HINT_T0>(c.wp.add(q * 64 + PREFETCH) as *const i8);
    let v = _mm512_loadu_si512(c.wp.add(q * 64) as *const __m512i);
    let lo = _mm512_and_si512(v, mask);
    let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
    let sw4 = _mm512_castps128_ps512(_mm_loadu_ps(c.sw.add(q * c.sw_step)));
    let swv = _mm512_permutexvar_ps(c.idx, sw4);
    for t in 0..T {
        let ae = _mm512_loadu_si512(c.qq[t].add(q * 128) as *const __m512i);
        let ao = _mm512_loadu_si512(c.qq[t].add(q * 128 + 64) as *const __m512i);
        let init = if SYM {
            _mm512_loadu_si512(c.zp[t].add(q * 16) as *const __m512i)
        } else {
            _mm512_setzero_si512()
        };
        let di = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, lo, ae), hi, ao);
        let d = _mm512_mul_ps(swv, _mm512_loadu_ps(c.s4[t].add(q * 16)));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(di), d, acc[t]);
    }
}

/// Tokens `t0 .. t0+T` times one INT4 row (without the asymmetric min term).
/// `G32` is the AVX2 pair step's flag for the blocks after the last full quad.
///
/// # Safety
/// The CPU must support the features of [`detected`]; `row.swf` must have 4 floats of
/// slack after its `cols/group` scales.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn int4_row<const T: usize, const SYM: bool, const G32: bool>(
    row: &Int4Row,
    a: &ActQ,
    t0: usize,
) -> [f32; T] {
    let lanes: [i32; 16] = std::array::from_fn(|i| ((i / 4) * 32 / row.group) as i32);
    let c = QuadCtx::<T> {
        wp: row.wb.as_ptr(),
        sw: row.swf.as_ptr(),
        sw_step: 128 / row.group,
        idx: _mm512_loadu_si512(lanes.as_ptr() as *const __m512i),
        qq: std::array::from_fn(|t| a.qq_tok(t0 + t).as_ptr()),
        s4: std::array::from_fn(|t| a.s4_tok(t0 + t).as_ptr()),
        zp: std::array::from_fn(|t| a.zp4_tok(t0 + t).as_ptr()),
    };
    let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    let nq = a.nb / 4;
    let mut q = 0;
    while q + 2 <= nq {
        quad::<T, SYM>(&c, q, &mut acc0);
        quad::<T, SYM>(&c, q + 1, &mut acc1);
        q += 2;
    }
    if q < nq {
        quad::<T, SYM>(&c, q, &mut acc0);
    }
    // Remaining whole pairs in the pair layout (identical to the quad layout there).
    let pc = Int4Ctx::<T>::new(row, a, t0);
    let mut acc256 = [_mm256_setzero_ps(); T];
    for p in 2 * nq..a.nb / 2 {
        int4_pair::<T, SYM, G32>(&pc, p, &mut acc256);
    }
    let mut res = [0f32; T];
    for t in 0..T {
        res[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) + hsum(acc256[t]);
        if a.nb % 2 == 1 {
            res[t] += int4_lone_block::<SYM>(row, a, t0 + t);
        }
    }
    res
}
