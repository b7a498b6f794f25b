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
            let wb: &[u8] = bytemuck::cast_slice(q.as_slice());
            int4_rows(wb, scales, *group, c, a, r0, out);
            if let Some(m) = mins {
                // asymmetric offset term Σ_g (min + 8 s_w) * gcorr[g]
                let gpr = c / group;
                let mut mf = vec![0f32; gpr];
                for (i, o) in out.chunks_exact_mut(n).enumerate() {
                    let r = r0 + i;
                    let (sr, mr) = (&scales[r * gpr..(r + 1) * gpr], &m[r * gpr..(r + 1) * gpr]);
                    for ((k, &s), &mn) in mf.iter_mut().zip(sr).zip(mr) {
                        *k = f16_to_f32(mn) + 8.0 * f16_to_f32(s);
                    }
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
#[cfg(not(target_feature = "relaxed-simd"))]
#[inline(always)]
fn dot_i8x16x2(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let lo = i16x8_add(i16x8_extmul_low_i8x16(a, b), i16x8_extmul_low_i8x16(c, d));
    let hi = i16x8_add(i16x8_extmul_high_i8x16(a, b), i16x8_extmul_high_i8x16(c, d));
    i32x4_add(i32x4_extadd_pairwise_i16x8(lo), i32x4_extadd_pairwise_i16x8(hi))
}

/// INT4 rows `r0 .. r0 + out.len()/n` (without the asymmetric offset term), `out: [nrows, n]`,
/// in register tiles: [`ROWS`] rows × 1 token for decode, 2 rows × [`TOK`] tokens for prefill,
/// single rows and tokens at the edges. `wb`: the packed weights `[rows, cols/2]`.
fn int4_rows(wb: &[u8], scales: &[half::f16], group: usize, cols: usize, a: &ActQ, r0: usize, out: &mut [f32]) {
    let n = a.n;
    let nrows = out.len() / n;
    let gpr = cols / group;
    assert!(a.nb * BLOCK == cols && group % BLOCK == 0 && (r0 + nrows) * cols / 2 <= wb.len());
    let bpg = group / BLOCK;
    // f32 scales of the rows, `[nrows, gpr]`
    assert!((r0 + nrows) * gpr <= scales.len());
    let row = |i: usize| -> Row4 {
        // in bounds: i < nrows, asserted above
        (wb[(r0 + i) * cols / 2..].as_ptr(), scales[(r0 + i) * gpr..].as_ptr())
    };
    let mut i = 0;
    while i < nrows {
        let r = if n == 1 && i + ROWS <= nrows {
            ROWS
        } else if n >= TOK && i + 2 <= nrows {
            2
        } else {
            1
        };
        let mut t = 0;
        while t < n {
            let k = if r <= 2 && t + TOK <= n { TOK } else { 1 };
            // SAFETY: rows i..i+r and tokens t..t+k exist; every pointer covers its whole row.
            unsafe {
                match (r, k) {
                    (4, 1) => put(out, n, i, t, int4_tile::<4, 1>(std::array::from_fn(|j| row(i + j)), bpg, a, t)),
                    (2, 4) => put(out, n, i, t, int4_tile::<2, 4>(std::array::from_fn(|j| row(i + j)), bpg, a, t)),
                    (2, 1) => put(out, n, i, t, int4_tile::<2, 1>(std::array::from_fn(|j| row(i + j)), bpg, a, t)),
                    (1, 4) => put(out, n, i, t, int4_tile::<1, 4>([row(i)], bpg, a, t)),
                    _ => put(out, n, i, t, int4_tile::<1, 1>([row(i)], bpg, a, t)),
                }
            }
            t += k;
        }
        i += r;
    }
}

/// Rows per decode tile.
const ROWS: usize = 4;

/// Store a tile `[R][T]` at rows `i..`, tokens `t..` of `out: [nrows, n]`.
#[inline(always)]
fn put<const R: usize, const T: usize>(out: &mut [f32], n: usize, i: usize, t: usize, v: [[f32; T]; R]) {
    for (j, row) in v.iter().enumerate() {
        out[(i + j) * n + t..(i + j) * n + t + T].copy_from_slice(row);
    }
}

/// `Σ (q_w − 8)·q_a` of one block, 4 partial sums: the low nibbles `lo` times the even
/// activations `ae`, the high `hi` times the odd `ao`, plus `z` (`[-8 Σ q_a, 0, 0, 0]`).
#[inline(always)]
fn int4_dot(lo: v128, hi: v128, ae: v128, ao: v128, z: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        // a is signed, b (the nibbles, 0..15) has its top bit clear: exact on every engine.
        i32x4_relaxed_dot_i8x16_i7x16_add(ae, lo, i32x4_relaxed_dot_i8x16_i7x16_add(ao, hi, z))
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        i32x4_add(dot_i8x16x2(lo, ae, hi, ao), z)
    }
}

/// A row of an INT4 tile: the packed row and its f16 group scales.
type Row4 = (*const u8, *const half::f16);

/// An f16 as f32, exactly, for every finite value: the bits moved into f32's place and scaled
/// by 2^112 (the exponent bias difference; subnormals and zero come out right). Quick in wasm,
/// which has no f16 conversion instruction (the `half` crate's portable one is branchy and,
/// per row of scales, cost as much as the GEMV itself); infinities and NaN take that path.
#[inline(always)]
pub fn f16_to_f32(h: half::f16) -> f32 {
    let b = h.to_bits() as u32;
    if b & 0x7c00 == 0x7c00 {
        return h.to_f32();
    }
    let mag = f32::from_bits((b & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    if b & 0x8000 != 0 {
        -mag
    } else {
        mag
    }
}

/// Where block `b` of a tile's tokens lies: pair-layout offsets and the per-token pointers.
struct Blk {
    even: usize,
    odd: usize,
}

/// `acc + Σ (q_w − 8)·q_a · s_a·s_w` of block `b` of one row for one token: `v` the 16 packed
/// bytes, (`ae`, `ao`, `z`, `s`) the token's block (activation halves, zero-point vector, scale).
#[inline(always)]
fn int4_acc(acc: v128, v: v128, ae: v128, ao: v128, z: v128, s: f32, sw: f32) -> v128 {
    let mask = u8x16_splat(0x0F);
    let d = int4_dot(v128_and(v, mask), u8x16_shr(v, 4), ae, ao, z);
    f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(d), f32x4_splat(s * sw)))
}

/// Token `t` of `a`, block `b`: (`ae`, `ao`, `z`, `s`).
///
/// # Safety
/// Token `t` and block `b` exist in `a`.
#[inline(always)]
unsafe fn act_block(a: &ActQ, t: usize, b: usize, k: &Blk) -> (v128, v128, v128, f32) {
    let q = a.qp.as_ptr().add(t * a.nb * BLOCK) as *const u8;
    let z = v128_load(a.zp4.as_ptr().add((t * a.nb + b) * 4) as *const v128);
    (load(q.add(k.even)), load(q.add(k.odd)), z, *a.s.as_ptr().add(t * a.nb + b))
}

/// Walk the blocks of a row group by group: `f(b, g)` for every block `b` in group `g`.
#[inline(always)]
fn blocks(nb: usize, bpg: usize, mut f: impl FnMut(usize, usize, &Blk)) {
    for g in 0..nb / bpg {
        for b in g * bpg..(g + 1) * bpg {
            let (even, odd) = pair_offsets(b, nb);
            f(b, g, &Blk { even, odd });
        }
    }
}

/// Tokens `t0 .. t0+T` times `R` INT4 rows: the decode tile (`R` = 4, `T` = 1), the prefill
/// tile (2 × 4) and the edges (1 × 4, 2 × 1, 1 × 1), written out so that every accumulator is a
/// local (a loop over rows or tokens kept them in memory).
///
/// # Safety
/// Each row pointer covers `a.nb * 16` bytes and each scale pointer `a.nb / bpg` values; tokens
/// `t0 .. t0+T` exist in `a`.
#[inline(always)]
unsafe fn int4_tile<const R: usize, const T: usize>(rows: [Row4; R], bpg: usize, a: &ActQ, t0: usize) -> [[f32; T]; R] {
    let z4 = f32x4_splat(0.0);
    let w = |j: usize, b: usize| load(rows[j].0.add(16 * b));
    let sw = |j: usize, g: usize| f16_to_f32(*rows[j].1.add(g));
    let mut out = [[0f32; T]; R];
    match (R, T) {
        (4, 1) => {
            let (mut c0, mut c1, mut c2, mut c3) = (z4, z4, z4, z4);
            blocks(a.nb, bpg, |b, g, k| {
                let (ae, ao, z, s) = act_block(a, t0, b, k);
                c0 = int4_acc(c0, w(0, b), ae, ao, z, s, sw(0, g));
                c1 = int4_acc(c1, w(1, b), ae, ao, z, s, sw(1, g));
                c2 = int4_acc(c2, w(2, b), ae, ao, z, s, sw(2, g));
                c3 = int4_acc(c3, w(3, b), ae, ao, z, s, sw(3, g));
            });
            for (j, c) in [c0, c1, c2, c3].into_iter().enumerate() {
                out[j][0] = hsum(c);
            }
        }
        (2, 4) => {
            let mut c = [z4; 8]; // [row][token], every index constant below
            blocks(a.nb, bpg, |b, g, k| {
                let (v0, v1, s0, s1) = (w(0, b), w(1, b), sw(0, g), sw(1, g));
                let (ae, ao, z, s) = act_block(a, t0, b, k);
                c[0] = int4_acc(c[0], v0, ae, ao, z, s, s0);
                c[4] = int4_acc(c[4], v1, ae, ao, z, s, s1);
                let (ae, ao, z, s) = act_block(a, t0 + 1, b, k);
                c[1] = int4_acc(c[1], v0, ae, ao, z, s, s0);
                c[5] = int4_acc(c[5], v1, ae, ao, z, s, s1);
                let (ae, ao, z, s) = act_block(a, t0 + 2, b, k);
                c[2] = int4_acc(c[2], v0, ae, ao, z, s, s0);
                c[6] = int4_acc(c[6], v1, ae, ao, z, s, s1);
                let (ae, ao, z, s) = act_block(a, t0 + 3, b, k);
                c[3] = int4_acc(c[3], v0, ae, ao, z, s, s0);
                c[7] = int4_acc(c[7], v1, ae, ao, z, s, s1);
            });
            for (i, v) in c.into_iter().enumerate() {
                out[i / 4][i % 4] = hsum(v);
            }
        }
        (1, 4) => {
            let (mut c0, mut c1, mut c2, mut c3) = (z4, z4, z4, z4);
            blocks(a.nb, bpg, |b, g, k| {
                let (v, s0) = (w(0, b), sw(0, g));
                let (ae, ao, z, s) = act_block(a, t0, b, k);
                c0 = int4_acc(c0, v, ae, ao, z, s, s0);
                let (ae, ao, z, s) = act_block(a, t0 + 1, b, k);
                c1 = int4_acc(c1, v, ae, ao, z, s, s0);
                let (ae, ao, z, s) = act_block(a, t0 + 2, b, k);
                c2 = int4_acc(c2, v, ae, ao, z, s, s0);
                let (ae, ao, z, s) = act_block(a, t0 + 3, b, k);
                c3 = int4_acc(c3, v, ae, ao, z, s, s0);
            });
            for (t, c) in [c0, c1, c2, c3].into_iter().enumerate() {
                out[0][t] = hsum(c);
            }
        }
        (2, 1) => {
            let (mut c0, mut c1) = (z4, z4);
            blocks(a.nb, bpg, |b, g, k| {
                let (ae, ao, z, s) = act_block(a, t0, b, k);
                c0 = int4_acc(c0, w(0, b), ae, ao, z, s, sw(0, g));
                c1 = int4_acc(c1, w(1, b), ae, ao, z, s, sw(1, g));
            });
            out[0][0] = hsum(c0);
            out[1][0] = hsum(c1);
        }
        _ => {
            for j in 0..R {
                for t in 0..T {
                    let mut c0 = z4;
                    blocks(a.nb, bpg, |b, g, k| {
                        let (ae, ao, z, s) = act_block(a, t0 + t, b, k);
                        c0 = int4_acc(c0, w(j, b), ae, ao, z, s, sw(j, g));
                    });
                    out[j][t] = hsum(c0);
                }
            }
        }
    }
    out
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
