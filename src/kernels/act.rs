//! Activation quantization for the integer kernels (llama.cpp `Q8_0`-style activations).
//!
//! Each token's activation vector `x: [cols]` is cut into blocks of [`BLOCK`] = 32 values
//! (the last block is zero-padded). Block `b` gets the f32 scale `s_a = absmax / 127` and
//! `q_a = round_ties_even(x * (127 / absmax))`, in `-127..=127`; an all-zero block has
//! `s_a = 0`, `q_a = 0`. Every ISA uses these same quantized activations, so the SIMD paths
//! differ from the scalar reference only in the order of float additions.
//!
//! Besides the natural order, the quants are stored in a *pair layout* matched to the INT4
//! nibble packing (byte `j` of a block holds weights `2j` (low nibble) and `2j+1` (high)):
//! for blocks `2p` and `2p+1` the 64 bytes are `[even(2p) | even(2p+1) | odd(2p) | odd(2p+1)]`,
//! 16 bytes each, where `even(b)` are the quants of columns `0, 2, .., 30` of block `b`. A lone
//! last block (odd block count) is stored `[even | odd]`. A SIMD kernel then masks the low
//! nibbles of 32 packed bytes and multiplies them with one contiguous 32-byte load.
//! The *quad layout* does the same for 512-bit registers: blocks `4k .. 4k+3` are stored
//! `[even(4k) .. even(4k+3) | odd(4k) .. odd(4k+3)]` (128 bytes); blocks after the last full
//! quad are stored as in the pair layout.

/// Activation block length (values per scale).
pub const BLOCK: usize = 32;

/// Quantized activations of `n` tokens, `cols` values each.
#[derive(Clone, Debug)]
pub struct ActQ {
    pub n: usize,
    pub cols: usize,
    /// Blocks per token: `ceil(cols / 32)`.
    pub nb: usize,
    /// `[n, nb*32]` quants in column order, zero-padded.
    pub q: Vec<i8>,
    /// `[n, nb*32]` quants in the pair layout (module doc).
    pub qp: Vec<i8>,
    /// `[n, nb*32]` quants in the quad layout (module doc), for 512-bit kernels.
    pub qq: Vec<i8>,
    /// `[n, nb]` block scales `s_a`.
    pub s: Vec<f32>,
    /// `[n, nb]` block sums `Σ q_a`.
    pub sum: Vec<i32>,
    /// `[n, nb*4]`: `[-8 * sum_b, 0, 0, 0]` per block, the INT4 zero point in integers
    /// (`Σ (q_w - 8) q_a = Σ q_w q_a - 8 Σ q_a`), added to one i32 lane of 4 per block.
    pub zp4: Vec<i32>,
}

impl ActQ {
    /// Quantize `x: [n, cols]`.
    pub fn new(x: &[f32], n: usize, cols: usize) -> ActQ {
        assert_eq!(x.len(), n * cols, "ActQ::new: {} values for [{n}, {cols}]", x.len());
        let nb = cols.div_ceil(BLOCK);
        let mut a = ActQ {
            n,
            cols,
            nb,
            q: vec![0; n * nb * BLOCK],
            qp: vec![0; n * nb * BLOCK],
            qq: vec![0; n * nb * BLOCK],
            s: vec![0.0; n * nb],
            sum: vec![0; n * nb],
            zp4: vec![0; n * nb * 4],
        };
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            for b in 0..nb {
                let mut xb = [0f32; BLOCK];
                let src = &xt[b * BLOCK..((b + 1) * BLOCK).min(cols)];
                xb[..src.len()].copy_from_slice(src);
                a.quantize_block(t, b, &xb);
            }
        }
        a
    }

    /// Quantize block `b` of token `t` (zero-padded to 32 values) into every layout.
    fn quantize_block(&mut self, t: usize, b: usize, xb: &[f32; BLOCK]) {
        let mut qb = [0i8; BLOCK];
        let s = quantize_absmax(xb, &mut qb);
        let sum: i32 = qb.iter().map(|&v| v as i32).sum();
        let tb = t * self.nb + b;
        self.q[tb * BLOCK..(tb + 1) * BLOCK].copy_from_slice(&qb);
        let base = t * self.nb * BLOCK;
        let (even, odd) = pair_offsets(b, self.nb);
        let (qe, qo) = quad_offsets(b, self.nb);
        for j in 0..BLOCK / 2 {
            self.qp[base + even + j] = qb[2 * j];
            self.qp[base + odd + j] = qb[2 * j + 1];
            self.qq[base + qe + j] = qb[2 * j];
            self.qq[base + qo + j] = qb[2 * j + 1];
        }
        self.s[tb] = s;
        self.sum[tb] = sum;
        self.zp4[tb * 4] = -8 * sum;
    }

    /// Token `t`'s slice of `q`.
    pub fn q_tok(&self, t: usize) -> &[i8] {
        &self.q[t * self.nb * BLOCK..(t + 1) * self.nb * BLOCK]
    }
    /// Token `t`'s slice of `qq`.
    pub fn qq_tok(&self, t: usize) -> &[i8] {
        &self.qq[t * self.nb * BLOCK..(t + 1) * self.nb * BLOCK]
    }
    /// Token `t`'s slice of `qp`.
    pub fn qp_tok(&self, t: usize) -> &[i8] {
        &self.qp[t * self.nb * BLOCK..(t + 1) * self.nb * BLOCK]
    }
    pub fn s_tok(&self, t: usize) -> &[f32] {
        &self.s[t * self.nb..(t + 1) * self.nb]
    }
    pub fn sum_tok(&self, t: usize) -> &[i32] {
        &self.sum[t * self.nb..(t + 1) * self.nb]
    }
    pub fn zp4_tok(&self, t: usize) -> &[i32] {
        &self.zp4[t * self.nb * 4..(t + 1) * self.nb * 4]
    }

    /// `[n, cols/group]`: `Σ_{b in group} s_a[b] * sum[b]`, for the asymmetric INT4 offset
    /// term `y += Σ_g (min[g] + 8 s_w[g]) * corr[g]`. `group` must be a multiple of 32
    /// dividing `cols`.
    pub fn group_corr(&self, group: usize) -> Vec<f32> {
        let per = group / BLOCK;
        (0..self.n)
            .flat_map(|t| {
                let (s, sum) = (self.s_tok(t), self.sum_tok(t));
                (0..self.nb / per).map(move |g| (g * per..(g + 1) * per).map(|b| s[b] * sum[b] as f32).sum::<f32>())
            })
            .collect()
    }
}

/// Symmetric int8 by absmax (BitNet / SmoothQuant per-token activations): `q = round(x · 127 /
/// max|x|)` with ties to even, in -127..=127; returns the scale `max|x| / 127` (0 for all zeros).
pub fn quantize_absmax(x: &[f32], q: &mut [i8]) -> f32 {
    // |x| compared as integer bits: monotonic for non-NaN floats, and vectorizes.
    let amax = f32::from_bits(x.iter().map(|v| v.to_bits() & 0x7fff_ffff).max().unwrap_or(0));
    let (s, inv) = if amax > 0.0 { (amax / 127.0, 127.0 / amax) } else { (0.0, 0.0) };
    for (o, &v) in q.iter_mut().zip(x) {
        *o = round_ties_even_i32(v * inv).clamp(-127, 127) as i8;
    }
    s
}

/// `round_ties_even(v) as i32` for `|v| <= 2^22` by the 1.5·2^23 trick: the IEEE
/// round-to-nearest-even addition leaves the rounded integer in the low mantissa bits.
/// Identical to `f32::round_ties_even` there, but inlined and vectorized on every target
/// (the library call is not, without SSE4.1). Here `|v| <= 127`.
#[inline(always)]
pub fn round_ties_even_i32(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23, bits 0x4B40_0000
    (v + MAGIC).to_bits() as i32 - 0x4B40_0000
}

/// Byte offsets of `even(b)` and `odd(b)` inside a token's quad-layout quants.
#[inline]
pub fn quad_offsets(b: usize, nb: usize) -> (usize, usize) {
    if b < nb / 4 * 4 {
        let (q, k) = (b / 4, b % 4);
        (q * 128 + k * 16, q * 128 + 64 + k * 16)
    } else {
        pair_offsets(b, nb)
    }
}

/// Byte offsets of `even(b)` and `odd(b)` inside a token's pair-layout quants.
#[inline]
pub fn pair_offsets(b: usize, nb: usize) -> (usize, usize) {
    let p = b / 2;
    if b % 2 == 1 || b + 1 < nb {
        let k = b % 2;
        (p * 64 + k * 16, p * 64 + 32 + k * 16)
    } else {
        (p * 64, p * 64 + 16)
    }
}
