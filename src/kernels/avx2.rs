//! x86-64 AVX2 + FMA + F16C kernels (runtime-detected), equal to [`super::scalar`] up to the
//! order of float additions.
//!
//! INT4 follows llama.cpp's AVX2 `ggml_vec_dot_q4_0_q8_0`: 32 packed bytes (two 32-weight
//! blocks) are split into low and high nibbles with `and`/`shift`, multiplied as *unsigned*
//! levels by the *signed* int8 activations with `_mm256_maddubs_epi16` (the activations are
//! pre-arranged in the pair layout of [`super::act`] so one load matches each nibble half),
//! summed to i32 with `_mm256_madd_epi16`, and accumulated in f32 with one scale per block.
//! The zero point (`-8 Σ q_a`) is added in integers (from [`ActQ::zp4`]); the asymmetric
//! offset term is a per-group dot product after the loop. Each unpacked weight block is reused for up to 4
//! tokens ([`TOK`]) in `matmul`. INT8 uses the `sign_epi8` trick of `ggml_vec_dot_q8_0_q8_0`.
//! Where AVX-VNNI exists, `vpdpbusd` replaces the `maddubs` + `madd` pair (same integers).
use super::act::{ActQ, BLOCK};
use super::Input;
use crate::quant::{QData, QTensor};
use half::f16;
use std::arch::x86_64::*;

/// Tokens processed per pass over a weight row.
pub const TOK: usize = 4;

/// Whether AVX2, FMA and F16C are all present.
pub fn detected() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether AVX-VNNI is present too ([`Kern::Vnni`]).
pub fn detected_vnni() -> bool {
    detected() && is_x86_feature_detected!("avxvnni")
}

/// Which integer dot-product instructions [`rows`] uses (all give the same integers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kern {
    /// `maddubs` + `madd` (AVX2).
    Avx2,
    /// AVX-VNNI `vpdpbusd` on 256 bits.
    Vnni,
    /// INT4 on 512 bits with AVX-512 VNNI ([`super::avx512`]); other formats as `Avx2`.
    Avx512,
}

/// Rows `r0 .. r0 + out.len()/n` of `W · x` for every token, `out: [nrows, n]`.
///
/// `k` picks the integer dot-product instructions.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C ([`detected`]), and AVX-VNNI for [`Kern::Vnni`]
/// ([`detected_vnni`]), AVX-512 F/BW/VNNI for [`Kern::Avx512`] ([`super::avx512::detected`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn rows(w: &QTensor, inp: &Input, r0: usize, out: &mut [f32], k: Kern) {
    let n = inp.n();
    let c = w.cols;
    match (&w.data, inp) {
        (QData::F32(wd), Input::F32 { x, .. }) => {
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                float_row(FloatRow::F32(&wd[r * c..(r + 1) * c]), x, c, o);
            }
        }
        (QData::F16(wd), Input::F32 { x, .. }) => {
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                float_row(FloatRow::F16(&wd[r * c..(r + 1) * c]), x, c, o);
            }
        }
        (QData::Int8 { q, scales }, Input::Q { a, .. }) => {
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                int8_row(&q[r * c..(r + 1) * c], scales[r], a, k == Kern::Vnni, o);
            }
        }
        (QData::Int4 { group, q, scales, mins }, Input::Q { a, gcorr }) => {
            let gpr = c / group;
            let mut swf = vec![0f32; gpr + 8]; // slack for 128-bit loads of the last scales
            let mut kf = vec![0f32; gpr];
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                let wb: &[u8] = bytemuck::cast_slice(&q[r * c / 8..(r + 1) * c / 8]);
                f16_to_f32(&scales[r * gpr..(r + 1) * gpr], &mut swf);
                let row = Int4Row { wb, swf: &swf, group: *group };
                int4_row_tokens(&row, a, k, o);
                if let Some(m) = mins {
                    // asymmetric offset term Σ_g (min + 8 s_w) * gcorr[g]
                    f16_to_f32(&m[r * gpr..(r + 1) * gpr], &mut kf);
                    for (kv, sv) in kf.iter_mut().zip(&swf[..gpr]) {
                        *kv += 8.0 * sv;
                    }
                    for (t, v) in o.iter_mut().enumerate() {
                        *v += dot_f32(&kf[..gpr], &gcorr[t * gpr..(t + 1) * gpr]);
                    }
                }
            }
        }
        _ => unreachable!("input prepared for another format"),
    }
}

/// Convert f16 to f32 eight at a time (`out.len() >= h.len()`).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_to_f32(h: &[f16], out: &mut [f32]) {
    let n8 = h.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        let v = _mm_loadu_si128(h.as_ptr().add(i) as *const __m128i);
        _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(v));
    }
    for i in n8..h.len() {
        out[i] = h[i].to_f32();
    }
}

/// `Σ a[i] * b[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n8 = a.len() / 8 * 8;
    let mut acc = _mm256_setzero_ps();
    for i in (0..n8).step_by(8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc);
    }
    hsum(acc) + a[n8..].iter().zip(&b[n8..]).map(|(x, y)| x * y).sum::<f32>()
}

#[inline(always)]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// The sum of the eight i32 lanes of `v`.
#[inline(always)]
pub(super) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

#[inline(always)]
unsafe fn hsum128(v: __m128) -> f32 {
    let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// One INT4 weight row: packed bytes `[cols/2]` and its scales as f32 `[cols/group]`.
pub(super) struct Int4Row<'a> {
    pub wb: &'a [u8],
    pub swf: &'a [f32],
    pub group: usize,
}

/// Every token of `a` times one INT4 row (without the asymmetric offset term), [`TOK`]
/// tokens per pass; `o: [n]`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn int4_row_tokens(row: &Int4Row, a: &ActQ, k: Kern, o: &mut [f32]) {
    let mut t = 0;
    while t < a.n {
        if t + TOK <= a.n {
            o[t..t + TOK].copy_from_slice(&int4_dispatch::<TOK>(row, a, k, t));
            t += TOK;
        } else {
            o[t] = int4_dispatch::<1>(row, a, k, t)[0];
            t += 1;
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn int4_dispatch<const T: usize>(row: &Int4Row, a: &ActQ, k: Kern, t: usize) -> [f32; T] {
    match (k, row.group == 32) {
        (Kern::Avx2, true) => int4_row::<T, true>(row, a, t),
        (Kern::Avx2, false) => int4_row::<T, false>(row, a, t),
        (Kern::Vnni, true) => int4_row_vnni::<T, true>(row, a, t),
        (Kern::Vnni, false) => int4_row_vnni::<T, false>(row, a, t),
        (Kern::Avx512, true) => super::avx512::int4_row::<T, true>(row, a, t),
        (Kern::Avx512, false) => super::avx512::int4_row::<T, false>(row, a, t),
    }
}

/// `init + Σ lo·ae + hi·ao` per i32 lane (u8 × i8 products, 4 lanes per 32-weight block).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_maddubs(init: __m256i, lo: __m256i, ae: __m256i, hi: __m256i, ao: __m256i) -> __m256i {
    let prod = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ae), _mm256_maddubs_epi16(hi, ao));
    _mm256_add_epi32(init, _mm256_madd_epi16(prod, _mm256_set1_epi16(1)))
}

/// Same as [`dot_maddubs`] with AVX-VNNI `vpdpbusd`.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn dot_vnni(init: __m256i, lo: __m256i, ae: __m256i, hi: __m256i, ao: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(init, lo, ae), hi, ao)
}

/// Pointers for one INT4 row times tokens `t0 .. t0+T`.
pub(super) struct Int4Ctx<const T: usize> {
    pub wp: *const u8,
    pub sw: *const f32,
    pub gshift: u32,
    pub qp: [*const i8; T],
    pub sa: [*const f32; T],
    pub zp: [*const i32; T],
}

impl<const T: usize> Int4Ctx<T> {
    pub fn new(row: &Int4Row, a: &ActQ, t0: usize) -> Self {
        Int4Ctx {
            wp: row.wb.as_ptr(),
            sw: row.swf.as_ptr(),
            gshift: (row.group / 64).max(1).trailing_zeros(), // pair p uses group p >> gshift (group >= 64)
            qp: std::array::from_fn(|t| a.qp_tok(t0 + t).as_ptr()),
            sa: std::array::from_fn(|t| a.s_tok(t0 + t).as_ptr()),
            zp: std::array::from_fn(|t| a.zp4_tok(t0 + t).as_ptr()),
        }
    }
}

/// `[v0 x4, v1 x4]` from two consecutive floats.
#[inline(always)]
unsafe fn spread2(v: __m128) -> __m256 {
    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1))
}

#[inline(always)]
unsafe fn load2(p: *const f32) -> __m128 {
    _mm_castpd_ps(_mm_load_sd(p as *const f64))
}

/// Tokens `t0 .. t0+T` times one INT4 row (without the asymmetric offset term).
/// `G32`: group size 32 (two weight scales per pair of blocks), else one scale per pair.
/// Two accumulator sets alternate over pairs of blocks to hide the FMA latency.
macro_rules! int4_kernel {
    ($name:ident, $step:ident, $feat:literal, $dot:ident) => {
        /// One pair of blocks (32 packed bytes) times every token into `acc`.
        #[target_feature(enable = $feat)]
        #[inline]
        pub(super) unsafe fn $step<const T: usize, const G32: bool>(c: &Int4Ctx<T>, p: usize, acc: &mut [__m256; T]) {
            let mask = _mm256_set1_epi8(0x0F);
            let v = _mm256_loadu_si256(c.wp.add(p * 32) as *const __m256i);
            let lo = _mm256_and_si256(v, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
            let sw = if G32 { load2(c.sw.add(2 * p)) } else { _mm_broadcast_ss(&*c.sw.add(p >> c.gshift)) };
            for t in 0..T {
                let ae = _mm256_loadu_si256(c.qp[t].add(p * 64) as *const __m256i);
                let ao = _mm256_loadu_si256(c.qp[t].add(p * 64 + 32) as *const __m256i);
                let zp = _mm256_loadu_si256(c.zp[t].add(p * 8) as *const __m256i);
                let di = $dot(zp, lo, ae, hi, ao);
                let d = spread2(_mm_mul_ps(sw, load2(c.sa[t].add(2 * p))));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(di), d, acc[t]);
            }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $name<const T: usize, const G32: bool>(row: &Int4Row, a: &ActQ, t0: usize) -> [f32; T] {
            let c = Int4Ctx::<T>::new(row, a, t0);
            let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
            let np = a.nb / 2;
            let mut p = 0;
            while p + 2 <= np {
                $step::<T, G32>(&c, p, &mut acc0);
                $step::<T, G32>(&c, p + 1, &mut acc1);
                p += 2;
            }
            if p < np {
                $step::<T, G32>(&c, p, &mut acc0);
            }
            let mut res = [0f32; T];
            for t in 0..T {
                res[t] = hsum(_mm256_add_ps(acc0[t], acc1[t]));
                if a.nb % 2 == 1 {
                    res[t] += int4_lone_block(row, a, t0 + t);
                }
            }
            res
        }
    };
}

int4_kernel!(int4_row, int4_pair, "avx2,fma,f16c", dot_maddubs);
int4_kernel!(int4_row_vnni, int4_pair_vnni, "avx2,fma,f16c,avxvnni", dot_vnni);

/// The last block of a row with an odd block count (128-bit lanes).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn int4_lone_block(row: &Int4Row, a: &ActQ, t: usize) -> f32 {
    let b = a.nb - 1;
    let sw_b = row.swf[b * BLOCK / row.group];
    let qp = a.qp_tok(t).as_ptr();
    let v = _mm_loadu_si128(row.wb.as_ptr().add(b * 16) as *const __m128i);
    let m128 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(v, m128);
    let hi = _mm_and_si128(_mm_srli_epi16(v, 4), m128);
    let ae = _mm_loadu_si128(qp.add(b * 32) as *const __m128i);
    let ao = _mm_loadu_si128(qp.add(b * 32 + 16) as *const __m128i);
    let prod = _mm_add_epi16(_mm_maddubs_epi16(lo, ae), _mm_maddubs_epi16(hi, ao));
    let zp = _mm_loadu_si128(a.zp4_tok(t).as_ptr().add(b * 4) as *const __m128i);
    let di = _mm_add_epi32(zp, _mm_madd_epi16(prod, _mm_set1_epi16(1)));
    hsum128(_mm_cvtepi32_ps(di)) * (sw_b * a.s_tok(t)[b])
}

/// Every token of `a` times one INT8 row `qw: [cols]` with row scale `sw`; `o: [n]`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn int8_row(qw: &[i8], sw: f32, a: &ActQ, vnni: bool, o: &mut [f32]) {
    let mut t = 0;
    while t < a.n {
        let k = if t + TOK <= a.n { TOK } else { 1 };
        match (k == TOK, vnni) {
            (true, false) => o[t..t + k].copy_from_slice(&int8_row_t::<TOK>(qw, a, t)),
            (false, false) => o[t..t + k].copy_from_slice(&int8_row_t::<1>(qw, a, t)),
            (true, true) => o[t..t + k].copy_from_slice(&int8_row_t_vnni::<TOK>(qw, a, t)),
            (false, true) => o[t..t + k].copy_from_slice(&int8_row_t_vnni::<1>(qw, a, t)),
        }
        for v in &mut o[t..t + k] {
            *v *= sw;
        }
        t += k;
    }
}

/// `Σ |w| · (a · sign(w))` per i32 lane (i8 × i8 via the sign trick), maddubs or VNNI.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot8_maddubs(aw: __m256i, sx: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1))
}

#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn dot8_vnni(aw: __m256i, sx: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx)
}

macro_rules! int8_kernel {
    ($name:ident, $feat:literal, $dot:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name<const T: usize>(qw: &[i8], a: &ActQ, t0: usize) -> [f32; T] {
            let full = qw.len() / BLOCK;
            let mut acc = [_mm256_setzero_ps(); T];
            let qa: [*const i8; T] = std::array::from_fn(|t| a.q_tok(t0 + t).as_ptr());
            let sa: [&[f32]; T] = std::array::from_fn(|t| a.s_tok(t0 + t));
            for b in 0..full {
                let w = _mm256_loadu_si256(qw.as_ptr().add(b * BLOCK) as *const __m256i);
                let aw = _mm256_sign_epi8(w, w);
                for t in 0..T {
                    let x = _mm256_loadu_si256(qa[t].add(b * BLOCK) as *const __m256i);
                    let di = $dot(aw, _mm256_sign_epi8(x, w));
                    let s = _mm256_broadcast_ss(sa[t].get_unchecked(b));
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(di), s, acc[t]);
                }
            }
            let mut res = [0f32; T];
            for t in 0..T {
                res[t] = hsum(acc[t]);
                if full * BLOCK < qw.len() {
                    let tail = &qw[full * BLOCK..];
                    let xa = &a.q_tok(t0 + t)[full * BLOCK..];
                    let d: i32 = tail.iter().zip(xa).map(|(&v, &x)| v as i32 * x as i32).sum();
                    res[t] += sa[t][full] * d as f32;
                }
            }
            res
        }
    };
}

int8_kernel!(int8_row_t, "avx2,fma,f16c", dot8_maddubs);
int8_kernel!(int8_row_t_vnni, "avx2,fma,f16c,avxvnni", dot8_vnni);

/// An f32 or f16 weight row `[cols]`.
#[derive(Clone, Copy)]
enum FloatRow<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// Every token of `x: [n, cols]` times one float row; `o: [n]`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_row(w: FloatRow, x: &[f32], cols: usize, o: &mut [f32]) {
    let n = o.len();
    let mut t = 0;
    while t + TOK <= n {
        o[t..t + TOK].copy_from_slice(&float_row_t::<TOK>(w, x, cols, t));
        t += TOK;
    }
    while t < n {
        o[t] = float_row_t::<1>(w, x, cols, t)[0];
        t += 1;
    }
}

#[inline(always)]
unsafe fn load8(w: FloatRow, i: usize) -> __m256 {
    match w {
        FloatRow::F32(v) => _mm256_loadu_ps(v.as_ptr().add(i)),
        FloatRow::F16(v) => _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i)),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_row_t<const T: usize>(w: FloatRow, x: &[f32], cols: usize, t0: usize) -> [f32; T] {
    let n16 = cols / 16 * 16;
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let xs: [*const f32; T] = std::array::from_fn(|t| x.as_ptr().add((t0 + t) * cols));
    for i in (0..n16).step_by(16) {
        let (w0, w1) = (load8(w, i), load8(w, i + 8));
        for t in 0..T {
            acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[t].add(i)), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xs[t].add(i + 8)), acc[t][1]);
        }
    }
    let mut res = [0f32; T];
    for t in 0..T {
        res[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1]));
        for i in n16..cols {
            let wv = match w {
                FloatRow::F32(v) => v[i],
                FloatRow::F16(v) => v[i].to_f32(),
            };
            res[t] += wv * *xs[t].add(i);
        }
    }
    res
}
