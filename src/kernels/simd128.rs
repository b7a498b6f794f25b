//! wasm32 simd128 kernels (compiled when the build enables `+simd128`), equal to
//! [`super::scalar`] up to the order of float additions.
//!
//! INT4: one 16-byte load holds a 32-weight block; `and`/`shr` split it into the even
//! (low-nibble) and odd (high-nibble) weights, which multiply the matching halves of the
//! pair-layout activations ([`super::act`]) with `i16x8.extmul_*_i8x16` (levels 0..15 are
//! valid i8); the i16 products of both halves are added (|Σ| ≤ 4·15·127) and widened with
//! `i32x4.extadd_pairwise_i16x8`. INT8 does the same on i8 × i8 (2·127² < 2^15). Each
//! unpacked block is reused for up to [`TOK`] tokens. simd128 has no FMA, so f32 uses
//! `mul` + `add`.
use super::act::{pair_offsets, ActQ, BLOCK};
use super::Input;
use crate::quant::{QData, QTensor};
use core::arch::wasm32::*;
use half::slice::HalfFloatSliceExt;

/// Tokens processed per pass over a weight row.
pub const TOK: usize = 4;

/// Rows `r0 .. r0 + out.len()/n` of `W · x` for every token, `out: [nrows, n]`.
pub fn rows(w: &QTensor, inp: &Input, r0: usize, out: &mut [f32]) {
    let n = inp.n();
    let c = w.cols;
    match (&w.data, inp) {
        (QData::F32(wd), Input::F32 { x, .. }) => {
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                float_row(&wd[r * c..(r + 1) * c], x, o);
            }
        }
        (QData::F16(wd), Input::F32 { x, .. }) => {
            let mut buf = vec![0f32; c];
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                wd[r * c..(r + 1) * c].convert_to_f32_slice(&mut buf);
                float_row(&buf, x, o);
            }
        }
        (QData::Int8 { q, scales }, Input::Q { a, .. }) => {
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                int8_tokens(&q[r * c..(r + 1) * c], scales[r], a, o);
            }
        }
        (QData::Int4 { group, q, scales, mins }, Input::Q { a, gcorr }) => {
            let gpr = c / group;
            let mut swf = vec![0f32; gpr];
            let mut mf = vec![0f32; gpr];
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = r0 + i;
                let wb: &[u8] = bytemuck::cast_slice(&q[r * c / 8..(r + 1) * c / 8]);
                scales[r * gpr..(r + 1) * gpr].convert_to_f32_slice(&mut swf);
                int4_tokens(wb, &swf, *group, a, o);
                if let Some(m) = mins {
                    // asymmetric offset term Σ_g (min + 8 s_w) * gcorr[g]
                    m[r * gpr..(r + 1) * gpr].convert_to_f32_slice(&mut mf);
                    mf.iter_mut().zip(&swf).for_each(|(k, s)| *k += 8.0 * s);
                    for (t, v) in o.iter_mut().enumerate() {
                        *v += mf.iter().zip(&gcorr[t * gpr..(t + 1) * gpr]).map(|(a, b)| a * b).sum::<f32>();
                    }
                }
            }
        }
        _ => unreachable!("input prepared for another format"),
    }
}

/// Every token of `a` times one INT8 row `qw: [cols]` with row scale `sw`; `o: [n]`.
fn int8_tokens(qw: &[i8], sw: f32, a: &ActQ, o: &mut [f32]) {
    let mut t = 0;
    while t < a.n {
        let k = if t + TOK <= a.n { TOK } else { 1 };
        if k == TOK {
            o[t..t + k].copy_from_slice(&int8_row::<TOK>(qw, a, t));
        } else {
            o[t] = int8_row::<1>(qw, a, t)[0];
        }
        o[t..t + k].iter_mut().for_each(|v| *v *= sw);
        t += k;
    }
}

/// Every token of `a` times one INT4 row (without the asymmetric offset term); `o: [n]`.
fn int4_tokens(wb: &[u8], swf: &[f32], group: usize, a: &ActQ, o: &mut [f32]) {
    let mut t = 0;
    while t < a.n {
        if t + TOK <= a.n {
            o[t..t + TOK].copy_from_slice(&int4_row::<TOK>(wb, swf, group, a, t));
            t += TOK;
        } else {
            o[t] = int4_row::<1>(wb, swf, group, a, t)[0];
            t += 1;
        }
    }
}

#[inline(always)]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

/// # Safety
/// `p` must point to 16 readable bytes.
#[inline(always)]
unsafe fn load(p: *const u8) -> v128 {
    v128_load(p as *const v128)
}

/// `Σ a·b + c·d` per i32 lane of 4 (i8 inputs, i16 pair sums must not overflow).
#[inline(always)]
fn dot_i8x16x2(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let lo = i16x8_add(i16x8_extmul_low_i8x16(a, b), i16x8_extmul_low_i8x16(c, d));
    let hi = i16x8_add(i16x8_extmul_high_i8x16(a, b), i16x8_extmul_high_i8x16(c, d));
    i32x4_add(i32x4_extadd_pairwise_i16x8(lo), i32x4_extadd_pairwise_i16x8(hi))
}

/// Tokens `t0 .. t0+T` times one INT4 row `wb: [cols/2]` with f32 scales `swf`
/// (without the asymmetric offset term). The zero point is subtracted in integers.
fn int4_row<const T: usize>(wb: &[u8], swf: &[f32], group: usize, a: &ActQ, t0: usize) -> [f32; T] {
    let nb = a.nb;
    assert!(wb.len() >= nb * 16 && swf.len() * group >= nb * BLOCK);
    let mask = u8x16_splat(0x0F);
    let mut acc = [f32x4_splat(0.0); T];
    for b in 0..nb {
        // SAFETY: wb holds nb*16 bytes (asserted above).
        let v = unsafe { load(wb.as_ptr().add(b * 16)) };
        let (lo, hi) = (v128_and(v, mask), u8x16_shr(v, 4));
        let sw = swf[b * BLOCK / group];
        let (even, odd) = pair_offsets(b, nb);
        for t in 0..T {
            let tt = t0 + t;
            let qp = &a.qp_tok(tt)[..nb * BLOCK];
            // SAFETY: even/odd + 16 <= nb*32 = qp.len() by construction of the pair layout.
            let (ae, ao) =
                unsafe { (load(qp.as_ptr().add(even) as *const u8), load(qp.as_ptr().add(odd) as *const u8)) };
            let zp = &a.zp4_tok(tt)[b * 4..b * 4 + 4];
            let d = i32x4_add(dot_i8x16x2(lo, ae, hi, ao), i32x4(zp[0], zp[1], zp[2], zp[3]));
            let s = f32x4_splat(sw * a.s_tok(tt)[b]);
            acc[t] = f32x4_add(acc[t], f32x4_mul(f32x4_convert_i32x4(d), s));
        }
    }
    acc.map(hsum)
}

/// Tokens `t0 .. t0+T` times one INT8 row `qw: [cols]` (without the row scale).
fn int8_row<const T: usize>(qw: &[i8], a: &ActQ, t0: usize) -> [f32; T] {
    let full = qw.len() / BLOCK;
    let mut acc = [f32x4_splat(0.0); T];
    for b in 0..full {
        let wp = qw[b * BLOCK..(b + 1) * BLOCK].as_ptr() as *const u8;
        // SAFETY: the block slice holds 32 bytes.
        let (w0, w1) = unsafe { (load(wp), load(wp.add(16))) };
        for t in 0..T {
            let xa = &a.q_tok(t0 + t)[b * BLOCK..(b + 1) * BLOCK];
            let xp = xa.as_ptr() as *const u8;
            // SAFETY: the block slice holds 32 bytes.
            let (x0, x1) = unsafe { (load(xp), load(xp.add(16))) };
            let p0 = i16x8_add(i16x8_extmul_low_i8x16(w0, x0), i16x8_extmul_high_i8x16(w0, x0));
            let p1 = i16x8_add(i16x8_extmul_low_i8x16(w1, x1), i16x8_extmul_high_i8x16(w1, x1));
            let d = i32x4_add(i32x4_extadd_pairwise_i16x8(p0), i32x4_extadd_pairwise_i16x8(p1));
            let s = f32x4_splat(a.s_tok(t0 + t)[b]);
            acc[t] = f32x4_add(acc[t], f32x4_mul(f32x4_convert_i32x4(d), s));
        }
    }
    let mut res = acc.map(hsum);
    if full * BLOCK < qw.len() {
        for (t, r) in res.iter_mut().enumerate() {
            let xa = &a.q_tok(t0 + t)[full * BLOCK..];
            let d: i32 = qw[full * BLOCK..].iter().zip(xa).map(|(&v, &x)| v as i32 * x as i32).sum();
            *r += a.s_tok(t0 + t)[full] * d as f32;
        }
    }
    res
}

/// Every token of `x: [n, cols]` times one f32 row `w: [cols]`; `o: [n]`.
fn float_row(w: &[f32], x: &[f32], o: &mut [f32]) {
    let cols = w.len();
    let n = o.len();
    let mut t = 0;
    while t < n {
        let k = if t + TOK <= n { TOK } else { 1 };
        if k == TOK {
            o[t..t + k].copy_from_slice(&float_row_t::<TOK>(w, &x[t * cols..(t + k) * cols]));
        } else {
            o[t] = float_row_t::<1>(w, &x[t * cols..(t + 1) * cols])[0];
        }
        t += k;
    }
}

/// `x: [T, cols]`.
fn float_row_t<const T: usize>(w: &[f32], x: &[f32]) -> [f32; T] {
    let cols = w.len();
    let n8 = cols / 8 * 8;
    let mut acc = [[f32x4_splat(0.0); 2]; T];
    for i in (0..n8).step_by(8) {
        // SAFETY: i + 8 <= n8 <= cols for w and for every token row of x.
        let (w0, w1) = unsafe { (load(w.as_ptr().add(i) as *const u8), load(w.as_ptr().add(i + 4) as *const u8)) };
        for t in 0..T {
            let xp = x[t * cols..(t + 1) * cols].as_ptr();
            let (x0, x1) = unsafe { (load(xp.add(i) as *const u8), load(xp.add(i + 4) as *const u8)) };
            acc[t][0] = f32x4_add(acc[t][0], f32x4_mul(w0, x0));
            acc[t][1] = f32x4_add(acc[t][1], f32x4_mul(w1, x1));
        }
    }
    let mut res = [0f32; T];
    for t in 0..T {
        res[t] = hsum(f32x4_add(acc[t][0], acc[t][1]));
        res[t] += w[n8..].iter().zip(&x[t * cols + n8..(t + 1) * cols]).map(|(a, b)| a * b).sum::<f32>();
    }
    res
}
